-- The access audit is append-only and hash-chained (`kintsmesh audit verify` checks the chain).
-- Each row's hash covers its content and the previous row's hash, in chain order (`chain_seq`, given under a
-- lock by the trigger, so concurrent writers cannot fork the chain); UPDATE, DELETE and TRUNCATE are refused
-- by triggers, and no component role is granted them (kintsmesh/security/postgres_roles.yaml).
ALTER TABLE access_audit ADD COLUMN chain_seq bigint, ADD COLUMN prev_hash bytea, ADD COLUMN row_hash bytea,
    ADD COLUMN status integer;   -- the HTTP status, or 0 for CLI and life-event accesses

CREATE FUNCTION access_audit_content(a access_audit) RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(concat_ws(E'\x1f', a.chain_seq::text, a.subject_ric, a.requester, a.purpose, a.channel,
        a.resource, a.fields::text, coalesce(a.outcome, ''), coalesce(a.status, 0)::text,
        to_char(a.requested_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US')), 'UTF8')
$$;

CREATE FUNCTION access_audit_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('access_audit_chain'));
    SELECT chain_seq, row_hash INTO last FROM access_audit WHERE chain_seq IS NOT NULL
        ORDER BY chain_seq DESC LIMIT 1;
    NEW.chain_seq := coalesce(last.chain_seq, 0) + 1;
    NEW.prev_hash := coalesce(last.row_hash, '\x'::bytea);
    NEW.requested_at := coalesce(NEW.requested_at, now());
    NEW.row_hash := sha256(NEW.prev_hash || access_audit_content(NEW));
    RETURN NEW;
END $$;

CREATE FUNCTION access_audit_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'access_audit is append-only: % refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;

-- rows written before the chain existed join it in their order
DO $$
DECLARE
    r record;
    prev bytea := '\x'::bytea;
    n bigint := 0;
BEGIN
    FOR r IN SELECT * FROM access_audit ORDER BY audit_id LOOP
        n := n + 1;
        r.chain_seq := n;
        r.prev_hash := prev;
        prev := sha256(prev || access_audit_content(r::access_audit));
        UPDATE access_audit SET chain_seq = n, prev_hash = r.prev_hash, row_hash = prev WHERE audit_id = r.audit_id;
    END LOOP;
END $$;

CREATE UNIQUE INDEX access_audit_chain_seq ON access_audit (chain_seq);
CREATE TRIGGER access_audit_chain BEFORE INSERT ON access_audit FOR EACH ROW EXECUTE FUNCTION access_audit_chain();
CREATE TRIGGER access_audit_no_change BEFORE UPDATE OR DELETE ON access_audit
    FOR EACH ROW EXECUTE FUNCTION access_audit_refuse();
CREATE TRIGGER access_audit_no_truncate BEFORE TRUNCATE ON access_audit
    FOR EACH STATEMENT EXECUTE FUNCTION access_audit_refuse();
