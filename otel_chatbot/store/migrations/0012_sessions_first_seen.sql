-- New conversations over a time window (dashboards, engagement views) read sessions by first_seen:
-- without this index that is a scan of every session ever seen, growing with the whole history.
CREATE INDEX IF NOT EXISTS sessions_first_seen_idx ON sessions (first_seen);
