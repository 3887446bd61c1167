"""The set-based statements of BatchWriter.write(), in the order it sends them.

Staging tables are per-connection TEMP tables (ON COMMIT DELETE ROWS: emptied in place at commit,
no catalog churn), used only on the rare paths (a retried batch's spans, turns to merge). Small inputs
(feedback, parts) arrive as one json parameter. Everything runs inside the write
transaction after the advisory locks on the touched trace/turn ids, so a later statement sees the
effects of the earlier ones and two writers never merge the same trace at once.
"""

from __future__ import annotations

from otel_chatbot.store.copyrows import SPAN_COLUMNS, TURN_COLUMNS

TURN_STAGE = "_otel_chatbot_turn_in"
SPAN_STAGE = "_otel_chatbot_span_in"

CREATE_STAGING = f"""
CREATE TEMP TABLE IF NOT EXISTS {SPAN_STAGE} (LIKE spans INCLUDING DEFAULTS) ON COMMIT DELETE ROWS;
CREATE TEMP TABLE IF NOT EXISTS {TURN_STAGE} (
    turn_id text, started_at timestamptz, trace_id text, span_id text, auto bool, session_id text,
    user_id text, source text, service text, latency_seconds double precision, user_message text,
    bot_response text, model text, fallback bool, fallback_reason text, hallucinated bool,
    hallucination_source text, prompt_injection bool, blocked bool, rate_limited bool, error bool,
    escalated bool, escalation_reason text, prompt_version text, app_version text
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
# For the session (committed with the connection's preparation); '0ms' turns the limit off.
SET_STATEMENT_TIMEOUT = "SELECT set_config('statement_timeout', %s, false)"

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

# The turns already stored for the traces of this batch's turns and parts (usually none: a new trace): one
# index probe per trace and partition, forced by LATERAL … OFFSET 0 (a plain join or "= ANY(array)" gets
# planned as a scan of a whole young partition, whose trace_id statistics are not gathered yet).
# started_us is exact (extract(epoch) is numeric).
PROBE_TURNS = """
SELECT k.trace_id, c.turn_id, (extract(epoch FROM c.started_at) * 1000000)::bigint, c.auto
FROM unnest(%s::text[]) AS k(trace_id)
CROSS JOIN LATERAL (
    SELECT turn_id, started_at, auto FROM chat_turns WHERE trace_id = k.trace_id OFFSET 0
) c"""

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
