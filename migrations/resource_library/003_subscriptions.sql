-- Subscription delivery: per subscriber, the last life_event.seq delivered to sub.<name>.life.
-- Rows of life_event become visible in seq order (their inserts are serialized by an advisory
-- lock), so a cursor never skips one. The topic's end offsets at each cursor move are kept in
-- consumer_offset (group kintsmesh-marks-sub-<name>), so a restart can find what a crash delivered
-- after the last move.
CREATE TABLE subscription (
    subscriber    text PRIMARY KEY,
    start_seq     bigint NOT NULL,     -- life_event.seq when it subscribed: older events only by back-fill
    backfill_from date,                -- deliver older events that occurred on or after this day
    last_seq      bigint NOT NULL,     -- delivered (or skipped as not wanted) through this seq
    delivered     bigint NOT NULL DEFAULT 0,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
