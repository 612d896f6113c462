-- Life events held back for a while because their subject may still become known (a birth whose
-- newborn's person record merges in a later batch than the certificate). A later golden change that
-- names the subject replaces the held event (same id) in life_event; otherwise the worker moves it
-- there, as it is, at release_at. Written in the same transaction as the consumed offsets.
CREATE TABLE held_event (
    event_id   uuid PRIMARY KEY,
    event      jsonb NOT NULL,                  -- the LifeEvent as it would be published now
    release_at timestamptz NOT NULL
);
CREATE INDEX held_event_release ON held_event (release_at);
