-- Who looked at a citizen's data, for which stated purpose, when, through which channel, and
-- which parts were returned: one row per dossier (CLI, HTTP, or attached to a life event),
-- written in the transaction that assembled it. `kintsmesh audit <RIC>` reads it.
CREATE TABLE access_audit (
    audit_id     bigserial PRIMARY KEY,
    subject_ric  text NOT NULL,
    requester    text NOT NULL,
    purpose      text NOT NULL,
    channel      text NOT NULL,                -- cli / http / life_event
    resource     text NOT NULL,                -- e.g. school_enrolment_dossier
    fields       jsonb NOT NULL,               -- the parts returned
    outcome      text,                         -- the verdict given
    requested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX access_audit_subject ON access_audit (subject_ric, requested_at);
