-- A held event whose subject's own record is not linked yet when its hold is over (the
-- newborn's person still in resolve, merge or review: a backlog, a restart) waits on until give_up_at
-- (the rule's hold_max_s); NULL: released at release_at, as before.
ALTER TABLE held_event ADD COLUMN give_up_at timestamptz;
