-- Leads per UTC day, service and channel beside conversions: business_outcomes_daily gains the
-- conversations with a lead outcome (recorded whenever) and their share of the day's conversations.
-- The new columns come last, so CREATE OR REPLACE keeps the view (and the reader's grant) in place.
CREATE OR REPLACE VIEW business_outcomes_daily AS
WITH conversations AS (
    SELECT (started_at AT TIME ZONE 'UTC')::date AS day, service, COALESCE(source, 'unknown') AS source,
           session_id,
           count(*) AS turns, count(*) FILTER (WHERE escalated) AS escalated_turns
    FROM chat_turns WHERE session_id IS NOT NULL
    GROUP BY 1, 2, 3, 4
), outcome_of AS (
    SELECT session_id, bool_or(kind = 'conversion') AS converted, bool_or(kind = 'lead') AS led,
           avg(value) FILTER (WHERE kind = 'csat') AS csat, avg(value) FILTER (WHERE kind = 'nps') AS nps
    FROM outcomes WHERE NOT pending AND session_id IS NOT NULL GROUP BY session_id
)
SELECT c.day, c.service, c.source, count(*) AS conversations,
       count(*) FILTER (WHERE o.converted) AS converted_conversations,
       (count(*) FILTER (WHERE o.converted))::double precision / count(*) AS conversion_rate,
       sum(c.turns)::bigint AS turns, sum(c.escalated_turns)::bigint AS escalated_turns,
       sum(c.escalated_turns)::double precision / sum(c.turns) AS escalation_rate,
       avg(o.csat) AS csat_average, avg(o.nps) AS nps_average,
       count(*) FILTER (WHERE o.led) AS lead_conversations,
       (count(*) FILTER (WHERE o.led))::double precision / count(*) AS lead_rate
FROM conversations c LEFT JOIN outcome_of o USING (session_id)
GROUP BY c.day, c.service, c.source;
