-- Rows whose time lies outside the window of daily partitions (today - 31 days .. tomorrow) go to a
-- DEFAULT partition instead of a new daily table each: a batch of scattered client timestamps
-- otherwise created a table per distinct day. When a daily partition is created later for a day
-- that has rows here, they are moved into it first (store/partitions.py); retention deletes the
-- old rows of these tables (they are never dropped whole).
CREATE TABLE IF NOT EXISTS spans_default PARTITION OF spans DEFAULT;
CREATE TABLE IF NOT EXISTS chat_turns_default PARTITION OF chat_turns DEFAULT;
