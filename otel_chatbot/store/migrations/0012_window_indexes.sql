-- Indexes for queries over a time window on tables that are not partitioned by time.
-- New conversations over a time window (dashboards, engagement views) read sessions by first_seen:
-- without this index that is a scan of every session ever seen, growing with the whole history.
CREATE INDEX IF NOT EXISTS sessions_first_seen_idx ON sessions (first_seen);

-- Ratings over a time window (quality dashboard) read feedback by given_at; same reason.
CREATE INDEX IF NOT EXISTS feedback_given_at_idx ON feedback (given_at);
