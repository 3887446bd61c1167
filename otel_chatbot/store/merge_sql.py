"""The set-based statements one write() runs after COPYing a batch into the staging tables.

Staging tables are per-connection TEMP tables (ON COMMIT DELETE ROWS: emptied in place at commit,
no catalog churn). Statements run in this order inside the write transaction, after the advisory
locks on the touched trace/turn ids, so a later statement sees the effects of the earlier ones and
two writers never merge the same trace at once.
"""

from __future__ import annotations

from otel_chatbot.store.copyrows import FEEDBACK_COLUMNS, SPAN_COLUMNS, TURN_COLUMNS

TURN_STAGE = "_otel_chatbot_turn_in"
FEEDBACK_STAGE = "_otel_chatbot_feedback_in"
SPAN_STAGE = "_otel_chatbot_span_in"

CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {SPAN_STAGE} (LIKE spans INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {TURN_STAGE} (
    turn_id text, started_at timestamptz, trace_id text, span_id text, auto bool, session_id text,
    user_id text, source text, service text, latency_seconds double precision, user_message text,
    bot_response text, model text, fallback bool, fallback_reason text, hallucinated bool,
    hallucination_source text, prompt_injection bool, blocked bool, rate_limited bool, error bool
) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {FEEDBACK_STAGE} (
    turn_id text, rating text, comment text, origin text, given_at timestamptz, service text
) ON COMMIT DELETE ROWS;
-- Temp tables are never auto-analysed; analysed once while empty, the planner sizes them from their
-- actual page count at each batch instead of guessing ~1000s of rows (which chose hash joins with
-- sequential scans of whole partitions).
ANALYZE {SPAN_STAGE}, {TURN_STAGE}, {FEEDBACK_STAGE};
"""

# Session settings of the writer connection: every statement it runs is a batch of index probes
# into hot, cached partitions, which the default random_page_cost (tuned for spinning disks) prices
# as if sequential scans of whole partitions were cheaper.
WRITER_SESSION = "SET random_page_cost = 1.1"

_SPAN_COLS = ", ".join(SPAN_COLUMNS)
# Slow path of the span COPY (some spans already stored): learn which rows are new.
INSERT_NEW_SPANS = f"""
INSERT INTO spans ({_SPAN_COLS}) SELECT {_SPAN_COLS} FROM {SPAN_STAGE}
ON CONFLICT DO NOTHING RETURNING trace_id, span_id"""

# Serialise writers per trace/turn id: the token sums and the auto-turn merge read rows that a
# concurrent transaction may be inserting; with the lock, the later one sees the earlier's commit.
# unnest() yields the keys in array order and the caller sorts them, so lock order is global.
LOCK_IDS = "SELECT count(pg_advisory_xact_lock(%s, k)) FROM unnest(%s::int4[]) AS k"

_TURN_COLS = ", ".join(TURN_COLUMNS)

# Tokens, cost and model of a turn: sums over all the LLM spans stored for its trace (whatever batch
# brought them; this batch's spans are already in). Model: the latest LLM span's, else the turn's own.
# A LATERAL probe per turn keeps it on the (trace_id, …) primary key of each partition.
_USAGE = """CROSS JOIN LATERAL (
    SELECT COALESCE(sum(s.input_tokens), 0) AS input_tokens,
           COALESCE(sum(s.output_tokens), 0) AS output_tokens,
           COALESCE(sum(s.cost_usd), 0) AS cost_usd, count(*) AS llm_spans,
           (array_agg(s.model ORDER BY s.start_time DESC) FILTER (WHERE s.model IS NOT NULL))[1] AS model
    FROM spans s
    WHERE s.trace_id = {alias}.trace_id
      AND (s.input_tokens IS NOT NULL OR s.output_tokens IS NOT NULL OR s.cost_usd IS NOT NULL)
) u"""
_USAGE_COLS = ("input_tokens", "output_tokens", "cost_usd")

# SDK turns are inserted as they are, with their usage (a retry conflicts and is skipped); auto
# turns of their traces go.
_SDK_VALUES = ", ".join("COALESCE(u.model, n.model)" if c == "model" else f"n.{c}" for c in TURN_COLUMNS)
INSERT_SDK_TURNS = f"""
WITH ins AS (
    INSERT INTO chat_turns ({_TURN_COLS}, {", ".join(_USAGE_COLS)})
    SELECT {_SDK_VALUES}, {", ".join(f"u.{c}" for c in _USAGE_COLS)}
    FROM {TURN_STAGE} n {_USAGE.format(alias="n")}
    WHERE NOT n.auto ORDER BY n.turn_id
    ON CONFLICT (turn_id, started_at) DO NOTHING
    RETURNING turn_id
), gone AS (
    DELETE FROM chat_turns c USING (SELECT DISTINCT trace_id FROM {TURN_STAGE} WHERE NOT auto) s
    WHERE c.auto AND c.trace_id = s.trace_id
)
SELECT turn_id FROM ins"""

# Auto candidates arrive folded to one per trace (the writer folds coalesced batches). Against the
# turns already stored for the trace: none → insert (a new turn); an auto turn → merge, where the
# earlier-starting of the two gives identity and is preferred for every field (an ancestor arriving
# later replaces its descendant) and flags are OR-ed; an SDK turn → nothing. Unchanged rows are not
# rewritten; a row whose started_at changes moves partition. One probe per candidate.
_IDENTITY = ("span_id", "service", "latency_seconds")
_COALESCED = ("session_id", "user_id", "source", "user_message", "bot_response", "model",
              "fallback_reason", "hallucination_source")  # model: the turn's own, if no LLM span has one
_FLAGS = ("fallback", "hallucinated", "prompt_injection", "blocked", "rate_limited", "error")
_MERGED = ["started_at", *_IDENTITY, *_COALESCED, *_FLAGS]
_EARLIER = "n.started_at < e.started_at"
_MERGE_EXPR = (
    f"CASE WHEN {_EARLIER} THEN n.started_at ELSE e.started_at END",
    *(f"CASE WHEN {_EARLIER} THEN n.{f} ELSE e.{f} END" for f in _IDENTITY),
    *(f"CASE WHEN {_EARLIER} THEN COALESCE(n.{f}, e.{f}) ELSE COALESCE(e.{f}, n.{f}) END"
      for f in _COALESCED),
    *(f"(e.{f} OR n.{f})" for f in _FLAGS),
)
_AUTO_INSERT = ("turn_id", "started_at", "trace_id", "auto", *_IDENTITY,
                *(c for c in _COALESCED if c != "model"), *_FLAGS)
_SET_MERGED = [f"{f} = {x}" for f, x in zip(_MERGED, _MERGE_EXPR, strict=True) if f != "model"]
_MERGED_WITH_USAGE = [f"COALESCE(u.model, {x})" if f == "model" else x
                      for f, x in zip(_MERGED, _MERGE_EXPR, strict=True)]
MERGE_AUTO_TURNS = f"""
WITH n AS MATERIALIZED (
    SELECT * FROM {TURN_STAGE} WHERE auto
), stored AS MATERIALIZED (
    -- one probe per candidate: the turns its trace already has (none, its auto turn, or SDK turns)
    SELECT n.trace_id, c.turn_id, c.started_at, c.auto
    FROM n LEFT JOIN chat_turns c ON c.trace_id = n.trace_id
), updated AS (
    UPDATE chat_turns e
    SET {", ".join(_SET_MERGED)},
        model = COALESCE(u.model, {_MERGE_EXPR[_MERGED.index("model")]}),
        {", ".join(f"{c} = u.{c}" for c in _USAGE_COLS)}
    FROM stored JOIN n ON n.trace_id = stored.trace_id {_USAGE.format(alias="n")}
    WHERE stored.auto AND e.turn_id = stored.turn_id AND e.started_at = stored.started_at
      AND ({", ".join(f"e.{f}" for f in _MERGED)}, {", ".join(f"e.{c}" for c in _USAGE_COLS)})
          IS DISTINCT FROM ({", ".join(_MERGED_WITH_USAGE)}, {", ".join(f"u.{c}" for c in _USAGE_COLS)})
)
INSERT INTO chat_turns ({", ".join(_AUTO_INSERT)}, model, {", ".join(_USAGE_COLS)})
SELECT {", ".join("true" if c == "auto" else f"n.{c}" for c in _AUTO_INSERT)},
       COALESCE(u.model, n.model), {", ".join(f"u.{c}" for c in _USAGE_COLS)}
FROM stored JOIN n ON n.trace_id = stored.trace_id {_USAGE.format(alias="n")}
WHERE stored.turn_id IS NULL
ORDER BY n.trace_id
ON CONFLICT (turn_id, started_at) DO NOTHING
RETURNING turn_id"""

# Turns stored by earlier batches whose traces got new LLM spans in this one (the turns written by
# this batch already carry their usage).
UPDATE_TOKEN_SUMS = f"""
UPDATE chat_turns t
SET input_tokens = u.input_tokens, output_tokens = u.output_tokens, cost_usd = u.cost_usd,
    model = COALESCE(u.model, t.model)
FROM (SELECT DISTINCT unnest(%s::text[]) AS trace_id) tr {_USAGE.format(alias="tr")}
WHERE t.trace_id = tr.trace_id AND u.llm_spans > 0
  AND (t.input_tokens, t.output_tokens, t.cost_usd, t.model)
      IS DISTINCT FROM (u.input_tokens, u.output_tokens, u.cost_usd, COALESCE(u.model, t.model))"""

_FB_COLS = ", ".join(FEEDBACK_COLUMNS)
# Latest given_at wins per turn; the result lists the turns whose stored rating changed (a new
# rating, or a newer event with the other rating), which is what the feedback counter counts.
UPSERT_FEEDBACK = f"""
WITH incoming AS (
    SELECT DISTINCT ON (turn_id) {_FB_COLS} FROM {FEEDBACK_STAGE} ORDER BY turn_id, given_at DESC
), prior AS (
    SELECT f.turn_id, f.rating FROM feedback f JOIN incoming USING (turn_id)
), upserted AS (
    INSERT INTO feedback AS f ({_FB_COLS}) SELECT {_FB_COLS} FROM incoming ORDER BY turn_id
    ON CONFLICT (turn_id) DO UPDATE
    SET rating = excluded.rating, comment = excluded.comment, origin = excluded.origin,
        given_at = excluded.given_at, service = COALESCE(excluded.service, f.service)
    WHERE excluded.given_at > f.given_at
    RETURNING f.turn_id, f.rating
)
SELECT u.turn_id FROM upserted u LEFT JOIN prior p USING (turn_id) WHERE p.rating IS DISTINCT FROM u.rating"""

# First sight of a (session, service); an earlier turn arriving later moves first_seen back and a
# known source fills a missing one. (xmax = 0) is true only for rows this statement inserted.
UPSERT_SESSIONS = f"""
INSERT INTO sessions AS s (session_id, service, source, first_seen)
SELECT session_id, service, (array_agg(source ORDER BY started_at) FILTER (WHERE source IS NOT NULL))[1],
       min(started_at)
FROM {TURN_STAGE} WHERE session_id IS NOT NULL
GROUP BY session_id, service ORDER BY session_id, service
ON CONFLICT (session_id, service) DO UPDATE
SET first_seen = LEAST(s.first_seen, excluded.first_seen), source = COALESCE(s.source, excluded.source)
WHERE excluded.first_seen < s.first_seen OR (s.source IS NULL AND excluded.source IS NOT NULL)
RETURNING s.session_id, s.service, s.source, (s.xmax = 0) AS inserted"""
