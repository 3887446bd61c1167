-- Feedback that arrived before its turn. A chat widget posts a rating right after showing the reply,
-- while the app's exporter may still hold the turn's span for a few seconds; such feedback waits here
-- (one row per turn, latest given_at wins) and moves to `feedback` in the transaction that stores the
-- turn. Bounded by the processor: rows older than pending_feedback_max_age, and the oldest rows beyond
-- pending_feedback_max, are deleted and counted in otel_chatbot_feedback_expired_total{reason}.
CREATE TABLE pending_feedback (
    turn_id      text        PRIMARY KEY,
    rating       text        NOT NULL CHECK (rating IN ('up', 'down')),
    comment      text,
    origin       text        NOT NULL CHECK (origin IN ('span', 'log', 'api')),
    given_at     timestamptz NOT NULL,
    service      text,
    received_at  timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX pending_feedback_received_at ON pending_feedback (received_at, turn_id);
