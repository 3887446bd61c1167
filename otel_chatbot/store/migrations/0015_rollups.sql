-- Rollups of closed UTC days, and window functions that read them, so that dashboard and `stats` queries
-- cost what their time window holds instead of what the whole history holds.
--
-- The views of 0006 and 0014 group every conversation (or user, or rating) ever stored before a window
-- applies: their cost grows with the history. The functions below return exactly the rows of those
-- views for a window, reading
--   * days before rollup_state.live_from from the rollup tables (one row per conversation and day, per
--     user and day, per turn id), kept by store/rollup.py: a job inside `serve` that rebuilds a closed
--     day from its partition when the partition changed since the last rebuild (late turns, settled
--     flags, erasure), and drops the rows of days no longer stored;
--   * days from live_from on (today, and yesterday until the job has closed it) live from chat_turns,
--     bounded by literal timestamps (EXECUTE … USING) so that the planner prunes partitions at plan time.
-- live_from NULL (nothing rolled up yet, e.g. right after this migration) reads everything live: slow
-- on a long history, but exact. A change to a closed day shows once the job has run after it
-- (`rollup_interval`, default 5 minutes).

CREATE TABLE rollup_state (
    singleton  bool PRIMARY KEY DEFAULT true CHECK (singleton),
    live_from  date                -- days before this one are read from the rollups; NULL: none yet
);
INSERT INTO rollup_state (live_from) VALUES (NULL);

-- One row per rolled-up day: which table the day was read from (a daily partition, or the DEFAULT
-- partition for far-off days) and that table's inserted + updated + deleted row counters at that time.
CREATE TABLE rollup_days (
    day           date        PRIMARY KEY,
    source_table  oid         NOT NULL,
    changes       bigint      NOT NULL,
    refreshed_at  timestamptz NOT NULL DEFAULT now()
);

-- The turns of one conversation (session_id, service) on one day, aggregated as engagement_conversations
-- aggregates a whole conversation; merging a conversation's days gives its row of that view.
CREATE TABLE rollup_conversation_days (
    session_id     text        NOT NULL,
    service        text        NOT NULL,
    day            date        NOT NULL,
    first_at       timestamptz NOT NULL,
    last_at        timestamptz NOT NULL,
    turns          bigint      NOT NULL,
    problem_turns  bigint      NOT NULL,
    first_source   text        NOT NULL,
    first_user     text,
    last_turn_id   text        NOT NULL,
    PRIMARY KEY (session_id, service, day)
);
CREATE INDEX rollup_conversation_days_day_idx ON rollup_conversation_days (day);

-- Users active per day, service and channel (engagement_returning_users' "active"); the key also answers
-- "did this user have a turn before day X" with one index probe.
CREATE TABLE rollup_user_days (
    user_id  text NOT NULL,
    service  text NOT NULL,
    day      date NOT NULL,
    source   text NOT NULL,
    PRIMARY KEY (user_id, service, day, source)
);
CREATE INDEX rollup_user_days_day_idx ON rollup_user_days (day);

-- Where each turn of a closed day is stored: a lookup by turn id then probes one partition instead of
-- every one. Rows are written day by day, so a BRIN index finds a day's rows to replace them.
CREATE TABLE rollup_turn_index (
    turn_id     text        NOT NULL,
    started_at  timestamptz NOT NULL,
    PRIMARY KEY (turn_id, started_at)
);
CREATE INDEX rollup_turn_index_started_at_idx ON rollup_turn_index USING brin (started_at);

-- Where live reading starts: midnight UTC of rollup_state.live_from, or -infinity.
CREATE FUNCTION rollup_live_from() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT COALESCE((SELECT live_from FROM rollup_state)::timestamp AT TIME ZONE 'UTC', '-infinity')
$$;

-- Conversations with a turn on one of the UTC days p_first..p_last (a superset: callers filter on
-- started_at or last_turn_at), each aggregated over all its turns, columns as engagement_conversations.
CREATE FUNCTION engagement_conversations_touching(p_first date, p_last date)
RETURNS TABLE (session_id text, service text, source text, user_id text, started_at timestamptz,
               last_turn_at timestamptz, turns bigint, problem_turns bigint, last_turn_id text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
    WITH live AS (
        SELECT t.session_id, t.service, min(t.started_at) AS first_at, max(t.started_at) AS last_at,
               count(*) AS turns,
               count(*) FILTER (WHERE t.fallback OR t.error OR t.hallucinated OR t.blocked OR t.rate_limited)
                   AS problem_turns,
               (array_agg(COALESCE(t.source, 'unknown') ORDER BY t.started_at))[1] AS first_source,
               (array_agg(t.user_id ORDER BY t.started_at))[1] AS first_user,
               (array_agg(t.turn_id ORDER BY t.started_at DESC))[1] AS last_turn_id
        FROM chat_turns t
        WHERE t.session_id IS NOT NULL AND t.started_at >= $1
        GROUP BY t.session_id, t.service
    ), keys AS (
        SELECT r.session_id, r.service FROM rollup_conversation_days r
        WHERE r.day >= $2 AND r.day <= $3 AND r.day < $4
        UNION
        SELECT l.session_id, l.service FROM live l
        WHERE l.first_at < ($3 + 1)::timestamp AT TIME ZONE 'UTC'
          AND l.last_at >= $2::timestamp AT TIME ZONE 'UTC'
    ), parts AS (
        SELECT r.session_id, r.service, r.first_at, r.last_at, r.turns, r.problem_turns, r.first_source,
               r.first_user, r.last_turn_id
        FROM keys k
        JOIN rollup_conversation_days r ON r.session_id = k.session_id AND r.service = k.service AND r.day < $4
        UNION ALL
        SELECT l.session_id, l.service, l.first_at, l.last_at, l.turns, l.problem_turns, l.first_source,
               l.first_user, l.last_turn_id
        FROM keys k JOIN live l ON l.session_id = k.session_id AND l.service = k.service
    )
    SELECT p.session_id, p.service, (array_agg(p.first_source ORDER BY p.first_at))[1],
           (array_agg(p.first_user ORDER BY p.first_at))[1], min(p.first_at), max(p.last_at),
           sum(p.turns)::bigint, sum(p.problem_turns)::bigint,
           (array_agg(p.last_turn_id ORDER BY p.last_at DESC))[1]
    FROM parts p
    GROUP BY p.session_id, p.service
    $q$ USING rollup_live_from(), p_first, p_last, (SELECT s.live_from FROM rollup_state s);
END
$$;

-- engagement_conversations WHERE started_at BETWEEN p_from AND p_to.
CREATE FUNCTION engagement_conversations_between(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (session_id text, service text, source text, user_id text, started_at timestamptz,
               last_turn_at timestamptz, turns bigint, problem_turns bigint, last_turn_id text)
LANGUAGE sql STABLE AS $$
    SELECT c.* FROM engagement_conversations_touching((p_from AT TIME ZONE 'UTC')::date,
                                                      (p_to AT TIME ZONE 'UTC')::date) c
    WHERE c.started_at BETWEEN p_from AND p_to
$$;

-- engagement_conversations_daily WHERE day BETWEEN p_first AND p_last.
CREATE FUNCTION engagement_conversations_daily_between(p_first date, p_last date)
RETURNS TABLE (day date, service text, source text, conversations bigint, turns bigint, users bigint)
LANGUAGE sql STABLE AS $$
    SELECT (c.started_at AT TIME ZONE 'UTC')::date, c.service, c.source, count(*), sum(c.turns)::bigint,
           count(DISTINCT c.user_id)
    FROM engagement_conversations_touching(p_first, p_last) c
    WHERE (c.started_at AT TIME ZONE 'UTC')::date BETWEEN p_first AND p_last
    GROUP BY 1, 2, 3
$$;

-- engagement_turns_per_conversation WHERE day BETWEEN p_first AND p_last.
CREATE FUNCTION engagement_turns_per_conversation_between(p_first date, p_last date)
RETURNS TABLE (day date, service text, source text, conversations bigint, avg_turns double precision,
               median_turns double precision, max_turns bigint, single_turn_conversations bigint)
LANGUAGE sql STABLE AS $$
    SELECT (c.started_at AT TIME ZONE 'UTC')::date, c.service, c.source, count(*),
           avg(c.turns)::double precision, percentile_cont(0.5) WITHIN GROUP (ORDER BY c.turns),
           max(c.turns), count(*) FILTER (WHERE c.turns = 1)
    FROM engagement_conversations_touching(p_first, p_last) c
    WHERE (c.started_at AT TIME ZONE 'UTC')::date BETWEEN p_first AND p_last
    GROUP BY 1, 2, 3
$$;

-- engagement_dropoff WHERE last_turn_at BETWEEN p_from AND p_to.
CREATE FUNCTION engagement_dropoff_between(p_from timestamptz, p_to timestamptz)
RETURNS TABLE (session_id text, service text, source text, conversation_started_at timestamptz,
               last_turn_at timestamptz, turn_number bigint, turn_id text, reason text, user_message text,
               bot_response text)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
    SELECT c.session_id, c.service, c.source, c.started_at, t.started_at, c.turns, t.turn_id,
           CASE WHEN t.error THEN 'error'
                WHEN t.blocked THEN 'blocked'
                WHEN t.rate_limited THEN 'rate_limited'
                WHEN t.fallback THEN 'fallback'
                WHEN t.hallucinated THEN 'hallucination'
                ELSE 'rated_down' END,
           t.user_message, t.bot_response
    FROM engagement_conversations_touching(($1 AT TIME ZONE 'UTC')::date, ($2 AT TIME ZONE 'UTC')::date) c
    JOIN chat_turns t ON t.turn_id = c.last_turn_id AND t.started_at = c.last_turn_at
         AND t.started_at >= $1 AND t.started_at <= $2
    LEFT JOIN feedback f ON f.turn_id = t.turn_id
    WHERE c.last_turn_at BETWEEN $1 AND $2
      AND c.last_turn_at < now() - interval '30 minutes'
      AND (t.error OR t.blocked OR t.rate_limited OR t.fallback OR t.hallucinated OR f.rating = 'down')
    $q$ USING p_from, p_to;
END
$$;

-- engagement_returning_users WHERE day BETWEEN p_first AND p_last.
CREATE FUNCTION engagement_returning_users_between(p_first date, p_last date)
RETURNS TABLE (day date, service text, source text, users bigint, returning_users bigint, new_users bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
    WITH live AS (
        SELECT DISTINCT (t.started_at AT TIME ZONE 'UTC')::date AS day, t.service,
               COALESCE(t.source, 'unknown') AS source, t.user_id
        FROM chat_turns t
        WHERE t.user_id IS NOT NULL AND t.started_at >= $1 AND t.started_at < ($3 + 1)::timestamp AT TIME ZONE 'UTC'
    ), active AS (
        SELECT r.day, r.service, r.source, r.user_id FROM rollup_user_days r
        WHERE r.day >= $2 AND r.day <= $3 AND r.day < $4
        UNION ALL
        SELECT l.day, l.service, l.source, l.user_id FROM live l WHERE l.day >= $2 AND l.day <= $3
    ), live_first AS (
        SELECT l.service, l.user_id, min(l.day) AS first_day FROM live l GROUP BY 1, 2
    ), first_seen AS (
        SELECT u.service, u.user_id,
               least((SELECT min(r.day) FROM rollup_user_days r
                      WHERE r.user_id = u.user_id AND r.service = u.service AND r.day < $4),
                     lf.first_day) AS first_day
        FROM (SELECT DISTINCT a.service, a.user_id FROM active a) u
        LEFT JOIN live_first lf ON lf.service = u.service AND lf.user_id = u.user_id
    )
    SELECT a.day, a.service, a.source, count(*), count(*) FILTER (WHERE f.first_day < a.day),
           count(*) FILTER (WHERE f.first_day = a.day)
    FROM active a
    JOIN first_seen f ON f.service = a.service AND f.user_id = a.user_id
    GROUP BY 1, 2, 3
    $q$ USING rollup_live_from(), p_first, p_last, (SELECT s.live_from FROM rollup_state s);
END
$$;

-- The service and channel of an outcome's turn (or of a turn of its session): what
-- engagement_csat_daily looks up for an outcome stored without them. Probes every partition, so it is
-- called only for such outcomes; PL/pgSQL, so that it is not inlined (and planned over every partition)
-- into a query that never calls it.
CREATE FUNCTION outcome_turn_origin(p_turn_id text, p_session_id text)
RETURNS TABLE (service text, source text)
LANGUAGE plpgsql STABLE ROWS 1 AS $$
BEGIN
    RETURN QUERY
    SELECT ct.service, ct.source FROM chat_turns ct
    WHERE ct.turn_id = p_turn_id OR (p_turn_id IS NULL AND ct.session_id = p_session_id)
    LIMIT 1;
END
$$;

-- engagement_csat_daily WHERE day BETWEEN p_first AND p_last (ratings by the day of their turn,
-- CSAT outcomes by the day they were recorded).
CREATE FUNCTION engagement_csat_daily_between(p_first date, p_last date)
RETURNS TABLE (day date, service text, source text, rated_turns bigint, thumbs_up bigint, thumbs_down bigint,
               csat double precision, csat_outcome_mean double precision, csat_outcomes bigint)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
    WITH rated AS (
        SELECT (t.started_at AT TIME ZONE 'UTC')::date AS day, t.service, COALESCE(t.source, 'unknown') AS source,
               count(*)                                  AS rated_turns,
               count(*) FILTER (WHERE f.rating = 'up')   AS thumbs_up,
               count(*) FILTER (WHERE f.rating = 'down') AS thumbs_down
        FROM feedback f
        JOIN chat_turns t ON t.turn_id = f.turn_id
        WHERE t.started_at >= $1 AND t.started_at < $2
        GROUP BY 1, 2, 3
    ), reported AS (
        SELECT (o.recorded_at AT TIME ZONE 'UTC')::date AS day, COALESCE(o.service, t.service) AS service,
               COALESCE(o.source, t.source, 'unknown')  AS source,
               avg(o.value)                             AS csat_outcome_mean,
               count(*)                                 AS csat_outcomes
        FROM outcomes o
        LEFT JOIN LATERAL (
            SELECT x.service, x.source FROM outcome_turn_origin(o.turn_id, o.session_id) x
            WHERE o.service IS NULL OR o.source IS NULL
        ) t ON true
        WHERE o.kind = 'csat' AND o.recorded_at >= $1 AND o.recorded_at < $2
        GROUP BY 1, 2, 3
    )
    SELECT COALESCE(r.day, p.day), COALESCE(r.service, p.service), COALESCE(r.source, p.source),
           COALESCE(r.rated_turns, 0), COALESCE(r.thumbs_up, 0), COALESCE(r.thumbs_down, 0),
           r.thumbs_up::double precision / NULLIF(r.rated_turns, 0), p.csat_outcome_mean,
           COALESCE(p.csat_outcomes, 0)
    FROM rated r
    FULL JOIN reported p ON p.day = r.day AND p.service = r.service AND p.source = r.source
    $q$ USING p_first::timestamp AT TIME ZONE 'UTC', (p_last + 1)::timestamp AT TIME ZONE 'UTC';
END
$$;

-- business_outcomes_daily WHERE day BETWEEN p_first AND p_last, with the lead columns that migration
-- 0019 adds to the view (computed here from outcomes, so the function does not depend on the order in
-- which a database applies 0015 and 0019).
CREATE FUNCTION business_outcomes_daily_between(p_first date, p_last date)
RETURNS TABLE (day date, service text, source text, conversations bigint, converted_conversations bigint,
               conversion_rate double precision, turns bigint, escalated_turns bigint,
               escalation_rate double precision, csat_average double precision, nps_average double precision,
               lead_conversations bigint, lead_rate double precision)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY EXECUTE $q$
    WITH conversations AS (
        SELECT (started_at AT TIME ZONE 'UTC')::date AS day, service, COALESCE(source, 'unknown') AS source,
               session_id, count(*) AS turns, count(*) FILTER (WHERE escalated) AS escalated_turns
        FROM chat_turns
        WHERE session_id IS NOT NULL AND started_at >= $1 AND started_at < $2
        GROUP BY 1, 2, 3, 4
    ), outcome_of AS (
        SELECT session_id, bool_or(kind = 'conversion') AS converted, bool_or(kind = 'lead') AS led,
               avg(value) FILTER (WHERE kind = 'csat') AS csat, avg(value) FILTER (WHERE kind = 'nps') AS nps
        FROM outcomes
        WHERE NOT pending AND session_id IN (SELECT c.session_id FROM conversations c)
        GROUP BY session_id
    )
    SELECT c.day, c.service, c.source, count(*),
           count(*) FILTER (WHERE o.converted),
           (count(*) FILTER (WHERE o.converted))::double precision / count(*),
           sum(c.turns)::bigint, sum(c.escalated_turns)::bigint,
           sum(c.escalated_turns)::double precision / sum(c.turns),
           avg(o.csat), avg(o.nps), count(*) FILTER (WHERE o.led),
           (count(*) FILTER (WHERE o.led))::double precision / count(*)
    FROM conversations c LEFT JOIN outcome_of o USING (session_id)
    GROUP BY c.day, c.service, c.source
    $q$ USING p_first::timestamp AT TIME ZONE 'UTC', (p_last + 1)::timestamp AT TIME ZONE 'UTC';
END
$$;

-- The chat_turns rows of these turn ids: live days directly, closed days where the turn index puts
-- them (one range of partitions, not all of them). For joins from feedback or evaluations, which carry
-- a turn id and their own time but not the turn's.
CREATE FUNCTION chat_turns_by_id(p_turn_ids text[]) RETURNS SETOF chat_turns
LANGUAGE plpgsql STABLE AS $$
DECLARE
    live_from timestamptz := rollup_live_from();
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT min(r.started_at), max(r.started_at) INTO lo, hi
    FROM rollup_turn_index r WHERE r.turn_id = ANY(p_turn_ids) AND r.started_at < live_from;
    IF lo IS NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM chat_turns WHERE turn_id = ANY($1) AND started_at >= $2'
            USING p_turn_ids, live_from;
    ELSE
        RETURN QUERY EXECUTE 'SELECT * FROM chat_turns WHERE turn_id = ANY($1)'
            ' AND (started_at >= $2 OR (started_at >= $3 AND started_at <= $4))'
            USING p_turn_ids, live_from, lo, hi;
    END IF;
END
$$;

-- Every turn of one conversation (any service), wherever its days lie: the rollup says which days.
-- ROWS: a conversation is a few turns, so a join to feedback probes its index (the default estimate of
-- 1000 rows made the planner hash the whole feedback table).
CREATE FUNCTION conversation_turns(p_session_id text) RETURNS SETOF chat_turns
LANGUAGE plpgsql STABLE ROWS 20 AS $$
DECLARE
    live_from timestamptz := rollup_live_from();
    lo timestamptz;
    hi timestamptz;
BEGIN
    SELECT min(r.first_at), max(r.last_at) INTO lo, hi
    FROM rollup_conversation_days r
    WHERE r.session_id = p_session_id AND r.day < (SELECT s.live_from FROM rollup_state s);
    IF lo IS NULL THEN
        RETURN QUERY EXECUTE 'SELECT * FROM chat_turns WHERE session_id = $1 AND started_at >= $2'
            USING p_session_id, live_from;
    ELSE
        RETURN QUERY EXECUTE 'SELECT * FROM chat_turns WHERE session_id = $1'
            ' AND (started_at >= $2 OR (started_at >= $3 AND started_at <= $4))'
            USING p_session_id, live_from, lo, hi;
    END IF;
END
$$;

-- Whether a turn with this id is stored (the feedback API's 200 or 202): live days, then the one
-- partition the turn index names.
CREATE FUNCTION turn_stored(p_turn_id text) RETURNS bool
LANGUAGE plpgsql STABLE AS $$
DECLARE
    live_from timestamptz := rollup_live_from();
    stored_at timestamptz;
    found_it bool;
BEGIN
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM chat_turns WHERE turn_id = $1 AND started_at >= $2)'
        INTO found_it USING p_turn_id, live_from;
    IF found_it THEN
        RETURN true;
    END IF;
    FOR stored_at IN SELECT r.started_at FROM rollup_turn_index r
              WHERE r.turn_id = p_turn_id AND r.started_at < live_from LOOP
        EXECUTE 'SELECT EXISTS (SELECT 1 FROM chat_turns WHERE turn_id = $1 AND started_at = $2)'
            INTO found_it USING p_turn_id, stored_at;
        IF found_it THEN
            RETURN true;
        END IF;
    END LOOP;
    RETURN false;
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'otel_chatbot_reader') THEN
        GRANT SELECT ON rollup_state, rollup_days, rollup_conversation_days, rollup_user_days,
            rollup_turn_index TO otel_chatbot_reader;
    END IF;
END
$$;
