"""The set-based statements of BatchWriter.write(), in the order it sends them.

Staging tables are per-connection TEMP tables (ON COMMIT DELETE ROWS: emptied in place at commit,
no catalog churn), used only on the rare paths (a retried batch's spans, turns to merge). Small inputs
(usage deltas, feedback, sessions) arrive as one json parameter. Everything runs inside the write
transaction after the advisory locks on the touched trace/turn ids, so a later statement sees the
effects of the earlier ones and two writers never merge the same trace at once.
"""

from __future__ import annotations

from otel_chatbot.store.copyrows import SPAN_COLUMNS, TURN_COLUMNS, USAGE_COLUMNS

TURN_STAGE = "_otel_chatbot_turn_in"
SPAN_STAGE = "_otel_chatbot_span_in"

CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {SPAN_STAGE} (LIKE spans INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {TURN_STAGE} (
    turn_id text, started_at timestamptz, trace_id text, span_id text, auto bool, session_id text,
    user_id text, source text, service text, latency_seconds double precision, user_message text,
    bot_response text, model text, fallback bool, fallback_reason text, hallucinated bool,
    hallucination_source text, prompt_injection bool, blocked bool, rate_limited bool, error bool
) ON COMMIT DELETE ROWS;

-- Temp tables are never auto-analysed; analysed once while empty, the planner sizes them from their
-- actual page count at each batch instead of guessing ~1000s of rows (which chose hash joins with
-- sequential scans of whole partitions).
ANALYZE {SPAN_STAGE}, {TURN_STAGE};
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

# Small per-batch inputs (usage deltas, feedback events, sessions) travel as ONE json parameter of a
# pipelined statement rather than a COPY into a staging table: a COPY is a round trip of its own.
# json_to_recordset parses each object once (e->>N on json would parse the element again per field).
# Times are Unix microseconds (exact as JSON integers).
_US = "(timestamptz 'epoch' + ({}) * interval '1 microsecond')"

# What this batch's new LLM spans add to their traces: json [{t: trace_id, i: input_tokens, o:
# output_tokens, c: cost_usd, n: llm_spans, m: model, ma: model_at_us, la: last_span_at_us}, …] sorted
# by trace id. Latest model wins by the start of the span that named it. Returns the new totals.
_NEWER_MODEL = "excluded.model IS NOT NULL AND (u.model_at IS NULL OR excluded.model_at > u.model_at)"
UPSERT_USAGE = f"""
INSERT INTO trace_usage AS u ({", ".join(USAGE_COLUMNS)})
SELECT t, i, o, c, n, m, {_US.format("ma")}, {_US.format("la")}
FROM json_to_recordset(%s::json)
     AS e(t text, i bigint, o bigint, c float8, n int, m text, ma bigint, la bigint)
ON CONFLICT (trace_id) DO UPDATE
SET input_tokens = u.input_tokens + excluded.input_tokens,
    output_tokens = u.output_tokens + excluded.output_tokens,
    cost_usd = u.cost_usd + excluded.cost_usd, llm_spans = u.llm_spans + excluded.llm_spans,
    model = CASE WHEN {_NEWER_MODEL} THEN excluded.model ELSE u.model END,
    model_at = CASE WHEN {_NEWER_MODEL} THEN excluded.model_at ELSE u.model_at END,
    last_span_at = GREATEST(u.last_span_at, excluded.last_span_at)
RETURNING u.trace_id, u.input_tokens, u.output_tokens, u.cost_usd, u.model"""

# The turns already stored for the traces of this batch's turns (usually none: a new trace): one index
# probe per trace and partition, forced by LATERAL … OFFSET 0 (a plain join or "= ANY(array)" gets
# planned as a scan of a whole young partition, whose trace_id statistics are not gathered yet).
# started_us is exact (extract(epoch) is numeric). Then the usage of the turn traces that got no new
# LLM span in this batch (the others' totals come back from UPSERT_USAGE).
PROBE_TURNS = """
SELECT k.trace_id, c.turn_id, (extract(epoch FROM c.started_at) * 1000000)::bigint, c.auto
FROM unnest(%s::text[]) AS k(trace_id)
CROSS JOIN LATERAL (
    SELECT turn_id, started_at, auto FROM chat_turns WHERE trace_id = k.trace_id OFFSET 0
) c"""
USAGE_OF_TRACES = """
SELECT trace_id, input_tokens, output_tokens, cost_usd, model FROM trace_usage
WHERE trace_id = ANY(%s::text[])"""
# Auto turns displaced by a new SDK turn of their trace.
DELETE_AUTO_TURNS = "DELETE FROM chat_turns WHERE auto AND trace_id = ANY(%s::text[])"

# Tokens, cost and model of a turn: its trace's row of trace_usage (already updated with this batch's
# spans), one primary-key probe; no row → no LLM span yet. Model: the latest LLM span's, else the turn's.
_USAGE = "LEFT JOIN trace_usage u ON u.trace_id = {alias}.trace_id"
_USAGE_COLS = ("input_tokens", "output_tokens", "cost_usd")
_USAGE_VALUES = ", ".join(f"COALESCE(u.{c}, 0)" for c in _USAGE_COLS)

# SDK turns are inserted as they are, with their usage (a retry conflicts and is skipped); auto
# turns of their traces go.
_SDK_VALUES = ", ".join("COALESCE(u.model, n.model)" if c == "model" else f"n.{c}" for c in TURN_COLUMNS)
INSERT_SDK_TURNS = f"""
WITH ins AS (
    INSERT INTO chat_turns ({_TURN_COLS}, {", ".join(_USAGE_COLS)})
    SELECT {_SDK_VALUES}, {_USAGE_VALUES}
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
        {", ".join(f"{c} = COALESCE(u.{c}, 0)" for c in _USAGE_COLS)}
    FROM stored JOIN n ON n.trace_id = stored.trace_id {_USAGE.format(alias="n")}
    WHERE stored.auto AND e.turn_id = stored.turn_id AND e.started_at = stored.started_at
      AND ({", ".join(f"e.{f}" for f in _MERGED)}, {", ".join(f"e.{c}" for c in _USAGE_COLS)})
          IS DISTINCT FROM ({", ".join(_MERGED_WITH_USAGE)}, {_USAGE_VALUES})
)
INSERT INTO chat_turns ({", ".join(_AUTO_INSERT)}, model, {", ".join(_USAGE_COLS)})
SELECT {", ".join("true" if c == "auto" else f"n.{c}" for c in _AUTO_INSERT)},
       COALESCE(u.model, n.model), {_USAGE_VALUES}
FROM stored JOIN n ON n.trace_id = stored.trace_id {_USAGE.format(alias="n")}
WHERE stored.turn_id IS NULL
ORDER BY n.trace_id
ON CONFLICT (turn_id, started_at) DO NOTHING
RETURNING turn_id"""

# Turns stored by earlier batches whose traces got new LLM spans in this one (the turns written by
# this batch already carry their usage).
UPDATE_TOKEN_SUMS = """
UPDATE chat_turns t
SET input_tokens = u.input_tokens, output_tokens = u.output_tokens, cost_usd = u.cost_usd,
    model = COALESCE(u.model, t.model)
FROM trace_usage u
WHERE u.trace_id = ANY(%s::text[]) AND t.trace_id = u.trace_id
  AND (t.input_tokens, t.output_tokens, t.cost_usd, t.model)
      IS DISTINCT FROM (u.input_tokens, u.output_tokens, u.cost_usd, COALESCE(u.model, t.model))"""

# First sight of a (session, service): json [{session_id, service, source, first_us}, …], one per
# key (the writer aggregates the batch's turns: earliest start, the earliest known source), sorted. An
# earlier turn arriving later moves first_seen back and a known source fills a missing one.
# (xmax = 0) is true only for rows this statement inserted.
UPSERT_SESSIONS = f"""
INSERT INTO sessions AS s (session_id, service, source, first_seen)
SELECT session_id, service, source, {_US.format("first_us")}
FROM json_to_recordset(%s::json) AS e(session_id text, service text, source text, first_us bigint)
ON CONFLICT (session_id, service) DO UPDATE
SET first_seen = LEAST(s.first_seen, excluded.first_seen), source = COALESCE(s.source, excluded.source)
WHERE excluded.first_seen < s.first_seen OR (s.source IS NULL AND excluded.source IS NOT NULL)
RETURNING s.session_id, s.service, s.source, (s.xmax = 0) AS inserted"""
