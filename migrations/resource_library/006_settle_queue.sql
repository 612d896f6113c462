-- Repartition by canonical id. The resolve stage decides identity (contributions, links, review
-- queue) and queues every golden record it touched here, in its transaction; a relay publishes each
-- row on gldm.<entity>.resolved keyed by canonical id (and moves settle_relay's mark), and the merge stage that
-- owns the partition recomputes the record from its contributions and deletes the row in its own
-- transaction. A row therefore lives until its record is merged: resolve matches new mentions
-- against the persons still queued here, which the golden table does not show yet.
CREATE TABLE settle_queue (
    seq          bigserial PRIMARY KEY,          -- queue order (resolve transactions are serialized)
    entity       text NOT NULL,
    canonical_id text NOT NULL,
    causes       jsonb NOT NULL,                 -- [[department, table, primary key, role, provenance], ...] in order
    fallback     jsonb,                          -- the cause when none of its own (a late match, a review re-scored)
    person_rows  jsonb NOT NULL DEFAULT '[]',    -- a person's source rows [department, table, primary key] linked
    absorbed_by  text,                           -- a person made from a mention without an ID, matched late into this one
    queued_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX settle_queue_record ON settle_queue (entity, canonical_id);

-- How far the relay published the queue: rows with a greater seq are still to publish. A mark of its
-- own, not a flag on the rows, so that the relay never waits for a merge deleting them.
CREATE TABLE settle_relay (
    one           boolean PRIMARY KEY DEFAULT true CHECK (one),
    published_seq bigint NOT NULL DEFAULT 0
);
INSERT INTO settle_relay DEFAULT VALUES;
