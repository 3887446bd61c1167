-- Engagement views: conversations per day, turns per conversation, returning users, where
-- conversations are abandoned, CSAT from ratings; each by channel (source) and service. Read by the
-- Grafana engagement dashboard and by `otel-chatbot stats`. Days are UTC. A conversation is the turns
-- of one session_id within one service; turns without a session id are not conversations.

-- One row per conversation: when it started and ended, how many turns, and its last turn.
CREATE VIEW engagement_conversations AS
SELECT session_id,
       service,
       (array_agg(COALESCE(source, 'unknown') ORDER BY started_at))[1]  AS source,
       (array_agg(user_id ORDER BY started_at))[1]                     AS user_id,
       min(started_at)                                                  AS started_at,
       max(started_at)                                                  AS last_turn_at,
       count(*)                                                         AS turns,
       count(*) FILTER (WHERE fallback OR error OR hallucinated OR blocked OR rate_limited) AS problem_turns,
       (array_agg(turn_id ORDER BY started_at DESC))[1]                 AS last_turn_id
FROM chat_turns
WHERE session_id IS NOT NULL
GROUP BY session_id, service;

-- Conversations by the day they started, with their turns and distinct users.
CREATE VIEW engagement_conversations_daily AS
SELECT (started_at AT TIME ZONE 'UTC')::date AS day,
       service,
       source,
       count(*)                              AS conversations,
       sum(turns)::bigint                    AS turns,
       count(DISTINCT user_id)               AS users
FROM engagement_conversations
GROUP BY 1, 2, 3;

-- Turns per conversation, by the day conversations started.
CREATE VIEW engagement_turns_per_conversation AS
SELECT (started_at AT TIME ZONE 'UTC')::date                       AS day,
       service,
       source,
       count(*)                                                    AS conversations,
       avg(turns)::double precision                                AS avg_turns,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY turns)          AS median_turns,
       max(turns)                                                  AS max_turns,
       count(*) FILTER (WHERE turns = 1)                           AS single_turn_conversations
FROM engagement_conversations
GROUP BY 1, 2, 3;

-- Users active per day; returning: the same user (user_id) had a turn with this service on an
-- earlier day (any channel).
CREATE VIEW engagement_returning_users AS
WITH active AS (
    SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date AS day, service,
           COALESCE(source, 'unknown') AS source, user_id
    FROM chat_turns
    WHERE user_id IS NOT NULL
), first_seen AS (
    SELECT service, user_id, min((started_at AT TIME ZONE 'UTC')::date) AS first_day
    FROM chat_turns
    WHERE user_id IS NOT NULL
    GROUP BY service, user_id
)
SELECT a.day,
       a.service,
       a.source,
       count(*)                                    AS users,
       count(*) FILTER (WHERE f.first_day < a.day) AS returning_users,
       count(*) FILTER (WHERE f.first_day = a.day) AS new_users
FROM active a
JOIN first_seen f USING (service, user_id)
GROUP BY 1, 2, 3;

-- Drop-off: the last turn of every abandoned conversation. Abandoned: no turn for 30 minutes after a
-- last turn that went wrong (fallback, error, hallucination, blocked, rate-limited, or rated down),
-- i.e. the user left on a bad answer. turn_number says how deep into the conversation that was.
CREATE VIEW engagement_dropoff AS
SELECT c.session_id,
       c.service,
       c.source,
       c.started_at                                  AS conversation_started_at,
       t.started_at                                  AS last_turn_at,
       c.turns                                       AS turn_number,
       t.turn_id,
       CASE WHEN t.error THEN 'error'
            WHEN t.blocked THEN 'blocked'
            WHEN t.rate_limited THEN 'rate_limited'
            WHEN t.fallback THEN 'fallback'
            WHEN t.hallucinated THEN 'hallucination'
            ELSE 'rated_down' END                    AS reason,
       t.user_message,
       t.bot_response
FROM engagement_conversations c
JOIN chat_turns t ON t.turn_id = c.last_turn_id AND t.started_at = c.last_turn_at
LEFT JOIN feedback f ON f.turn_id = t.turn_id
WHERE c.last_turn_at < now() - interval '30 minutes'
  AND (t.error OR t.blocked OR t.rate_limited OR t.fallback OR t.hallucinated OR f.rating = 'down');

-- CSAT from thumbs ratings: the share of rated turns rated up, by the day of the turn; plus the mean
-- of CSAT outcomes reported for that day's turns or conversations (NULL when none).
CREATE VIEW engagement_csat_daily AS
WITH rated AS (
    SELECT (t.started_at AT TIME ZONE 'UTC')::date AS day, t.service, COALESCE(t.source, 'unknown') AS source,
           count(*)                                 AS rated_turns,
           count(*) FILTER (WHERE f.rating = 'up')  AS thumbs_up,
           count(*) FILTER (WHERE f.rating = 'down') AS thumbs_down
    FROM feedback f
    JOIN chat_turns t ON t.turn_id = f.turn_id
    GROUP BY 1, 2, 3
), reported AS (
    SELECT (o.recorded_at AT TIME ZONE 'UTC')::date AS day, COALESCE(o.service, t.service) AS service,
           COALESCE(o.source, t.source, 'unknown')  AS source,
           avg(o.value)                             AS csat_outcome_mean,
           count(*)                                 AS csat_outcomes
    FROM outcomes o
    LEFT JOIN LATERAL (
        SELECT ct.service, ct.source FROM chat_turns ct
        WHERE ct.turn_id = o.turn_id OR (o.turn_id IS NULL AND ct.session_id = o.session_id)
        LIMIT 1
    ) t ON true
    WHERE o.kind = 'csat'
    GROUP BY 1, 2, 3
)
SELECT COALESCE(r.day, p.day)                                     AS day,
       COALESCE(r.service, p.service)                             AS service,
       COALESCE(r.source, p.source)                               AS source,
       COALESCE(r.rated_turns, 0)                                 AS rated_turns,
       COALESCE(r.thumbs_up, 0)                                   AS thumbs_up,
       COALESCE(r.thumbs_down, 0)                                 AS thumbs_down,
       r.thumbs_up::double precision / NULLIF(r.rated_turns, 0)   AS csat,
       p.csat_outcome_mean,
       COALESCE(p.csat_outcomes, 0)                               AS csat_outcomes
FROM rated r
FULL JOIN reported p ON p.day = r.day AND p.service = r.service AND p.source = r.source;

-- Default privileges (0002) grant SELECT on new relations, views included, to the reader; granted
-- explicitly too so that a database whose 0002 ran before the role existed still gets them.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'otel_chatbot_reader') THEN
        GRANT SELECT ON engagement_conversations, engagement_conversations_daily,
            engagement_turns_per_conversation, engagement_returning_users, engagement_dropoff,
            engagement_csat_daily TO otel_chatbot_reader;
    END IF;
END
$$;
