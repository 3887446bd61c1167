-- The settle's queue moves out of chat_turns, so that counting a turn rewrites its row in place.
--
-- Before: every change of a turn set chat_turns.settle_at, indexed, and the settle found due turns by
-- that index and set settle_at NULL and counted: a change of an indexed column, so each settle wrote
-- a new copy of the whole row (messages included) elsewhere and new entries in every index of
-- chat_turns. Now each change also adds a narrow row here (the turn's key and when it is due), the
-- settle finds due turns by this table's index, and its update of chat_turns touches no indexed
-- column: with the free space that the partitions keep (fillfactor, below) it is a HOT update on the
-- same page, logged as the few changed bytes. chat_turns.settle_at and counted keep their meaning;
-- settle_at is the authority on when a turn is due (a row here whose turn has moved its settle_at on
-- is only a reminder: the settle drops it without counting), so changes add rows instead of
-- updating one, and the table needs no unique key.
CREATE TABLE unsettled_turns (
    turn_id     text        NOT NULL,
    started_at  timestamptz NOT NULL,
    settle_at   timestamptz NOT NULL
);
CREATE INDEX unsettled_turns_settle_at_idx ON unsettled_turns (settle_at);

-- The pending state of the turns stored before this migration.
INSERT INTO unsettled_turns (turn_id, started_at, settle_at)
SELECT turn_id, started_at, settle_at FROM chat_turns WHERE settle_at IS NOT NULL;

DROP INDEX chat_turns_settle_at_idx;

-- Room on each page for settled versions (a row is rewritten once, ~turn_settle_seconds after it is
-- stored): 30%, the new versions of about half to three quarters of a page's rows. Partitions created
-- from now on get it from store/partitions.py; existing ones keep their pages and apply it to the rows
-- they receive from now on.
DO $$
DECLARE
    part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'chat_turns'::regclass LOOP
        EXECUTE format('ALTER TABLE %s SET (fillfactor = 70)', part);
    END LOOP;
END
$$;
