-- Life events: every event detected, once (its id is deterministic), and whether it is published.
--
-- The life-event worker inserts the events a batch of golden changes reveals (ON CONFLICT
-- DO NOTHING: a replayed change or a re-run daily pass adds no row) in the same transaction
-- as the consumed offsets, then publishes the unpublished rows to events.life.<type> and
-- marks them: this table is also its outbox.
CREATE TABLE life_event (
    event_id     uuid PRIMARY KEY,
    seq          bigserial UNIQUE,              -- publication order
    event_type   text NOT NULL,
    subject_kind text NOT NULL,
    subject_id   text NOT NULL,
    subject_code text,                          -- RIC / USCC
    occurred_on  date NOT NULL,
    trigger      text NOT NULL,                 -- CHANGE / CALENDAR
    event        jsonb NOT NULL,                -- the LifeEvent as published
    detected_at  timestamptz NOT NULL,
    published_at timestamptz
);
CREATE INDEX life_event_unpublished ON life_event (seq) WHERE published_at IS NULL;
CREATE INDEX life_event_type_day ON life_event (event_type, occurred_on);
CREATE INDEX life_event_subject_code ON life_event (subject_code);

-- The daily (calendar) pass: one row per day it completed.
CREATE TABLE calendar_pass (
    day         date PRIMARY KEY,
    finished_at timestamptz NOT NULL,
    people      integer NOT NULL,              -- people whose birthday crossed a threshold that day
    events      integer NOT NULL,              -- events detected (new or not)
    seconds     double precision NOT NULL
);
