-- References that must resolve (issue 18): a coded candidate whose mapping says a field must name a person
-- source row (`resolves: insured_no`: an insurance month names its insured person's sb_cbry row) is not merged
-- alone while no accepted row of that person is in the library. It waits here, one row per source row (a
-- newer candidate of the same row replaces it), until such a row arrives (then it is merged) or until the
-- hold expires (then it goes to dlq.merge with reason unresolved_reference and leaves this table).
CREATE TABLE held_reference (
    department     text NOT NULL,
    source_table   text NOT NULL,
    primary_key    text NOT NULL,
    role           text NOT NULL,
    entity         text NOT NULL,
    field          text NOT NULL,          -- the field whose value names no accepted row
    identifier     text NOT NULL,          -- what it must name (the `identifies:` of person source rows)
    value          text NOT NULL,
    record         jsonb NOT NULL,         -- the candidate, as the merge reads it
    source_topic   text NOT NULL,          -- where it came from: a candidates topic, or extract:<batch>
    source_partition integer NOT NULL DEFAULT 0,
    source_offset  bigint NOT NULL DEFAULT 0,
    original_key   bytea,
    original_value bytea,                  -- the message's bytes (dlq.merge and `dlq replay merge` need them)
    held_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (department, source_table, primary_key, role)
);
CREATE INDEX held_reference_value ON held_reference (identifier, value);
CREATE INDEX held_reference_age ON held_reference (held_at);
