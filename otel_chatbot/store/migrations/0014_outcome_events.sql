-- Outcomes as events: a retried span or log record is stored once (event_key), and an outcome that
-- names a turn not stored yet waits, pending, until the turn arrives (then it gets the turn's session,
-- service and source, and is counted).
ALTER TABLE outcomes
    ADD COLUMN event_key  text,
    ADD COLUMN pending    bool NOT NULL DEFAULT false;
CREATE UNIQUE INDEX outcomes_event_key_uq ON outcomes (event_key);
CREATE INDEX outcomes_turn_id_idx ON outcomes (turn_id);
CREATE INDEX outcomes_pending_turn_idx ON outcomes (turn_id) WHERE pending;

-- Business outcomes per UTC day, service and channel, for Grafana's SQL panels: conversations (sessions
-- with a turn that day), those with a conversion outcome (recorded whenever), turns escalated to a
-- human, and the CSAT / NPS answers of those conversations.
CREATE VIEW business_outcomes_daily AS
WITH conversations AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, service, COALESCE(source, 'unknown') AS source,
           session_id,
           count(*) AS turns, count(*) FILTER (WHERE escalated) AS escalated_turns
    FROM chat_turns WHERE session_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
), outcome_of AS (
    SELECT session_id, bool_or(kind = 'conversion') AS converted,
           avg(value) FILTER (WHERE kind = 'csat') AS csat, avg(value) FILTER (WHERE kind = 'nps') AS nps
    FROM outcomes WHERE NOT pending AND session_id IS NOT NULL GROUP BY session_id
)
SELECT c.day, c.service, c.source, count(*) AS conversations,
       count(*) FILTER (WHERE o.converted) AS converted_conversations,
       (count(*) FILTER (WHERE o.converted))::double precision / count(*) AS conversion_rate,
       sum(c.turns)::bigint AS turns, sum(c.escalated_turns)::bigint AS escalated_turns,
       sum(c.escalated_turns)::double precision / sum(c.turns) AS escalation_rate,
       avg(o.csat) AS csat_average, avg(o.nps) AS nps_average
FROM conversations c LEFT JOIN outcome_of o USING (session_id)
GROUP BY c.day, c.service, c.source;

-- Turns per UTC day by prompt template version and app version: compare a new prompt with the old one.
CREATE VIEW turns_by_version_daily AS
SELECT (t.started_at AT TIME ZONE 'UTC')::date AS day, t.service,
       COALESCE(t.prompt_version, 'unknown') AS prompt_version,
       COALESCE(t.app_version, 'unknown') AS app_version, count(*) AS turns,
       avg(t.fallback::int)::double precision AS fallback_rate,
       avg(t.escalated::int)::double precision AS escalation_rate,
       count(f.turn_id) AS rated_turns,
       (count(*) FILTER (WHERE f.rating = 'down'))::double precision / NULLIF(count(f.turn_id), 0)
           AS thumbs_down_rate
FROM chat_turns t LEFT JOIN feedback f USING (turn_id)
GROUP BY 1, 2, 3, 4;

-- Default privileges (0002) grant SELECT on new relations to the reader; granted explicitly too for a
-- database whose 0002 ran before the role existed.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'otel_chatbot_reader') THEN
        GRANT SELECT ON business_outcomes_daily, turns_by_version_daily TO otel_chatbot_reader;
    END IF;
END
$$;
