"""The statements of BatchWriter that keep chat turns right whatever the batching: turn parts, the
merge of turns across batches, the refresh of stored turns from their parts, and the settle that
hands final turns to the metrics. Run inside the write transaction after the advisory locks on the
touched traces (the settle also alone, in its own transaction).

Every statement that inserts or changes a turn sets its ``settle_at`` and adds a reminder to
``unsettled_turns`` (migration 0018): the settle finds due turns there, so that its own update of
the turn changes no indexed column of chat_turns (a HOT update).
"""

from __future__ import annotations

from otel_chatbot.store.copyrows import TURN_COLUMNS
from otel_chatbot.store.merge_sql import TURN_STAGE

_US = "(timestamptz 'epoch' + ({}) * interval '1 microsecond')"
_TO_US = "(extract(epoch FROM {}) * 1000000)::bigint"

# --- parts --------------------------------------------------------------------------------------
# What this batch adds per (trace, scope): json [{t, s, i, o, c, n, m, ma, f, fr, fra, h, hs, hsa, pi, b,
# rl, la}] sorted by key (parts.parts_json). Sums add, flags OR, the latest model and the earliest
# reasons win (ties broken on the text, so the result does not depend on arrival order).
_NEWER_MODEL = ("excluded.model IS NOT NULL AND (p.model IS NULL OR "
                "(excluded.model_at, excluded.model) > (p.model_at, p.model))")


def _earlier(col: str) -> str:
    return (f"excluded.{col} IS NOT NULL AND (p.{col} IS NULL OR "
            f"(excluded.{col}_at, excluded.{col}) < (p.{col}_at, p.{col}))")


def _pick(condition: str, col: str) -> str:
    return f"{col} = CASE WHEN {condition} THEN excluded.{col} ELSE p.{col} END"


_REASON, _SOURCE = _earlier("fallback_reason"), _earlier("hallucination_source")
# What a new turn's values are computed from (parts.stored_parts reads these columns).
_PART_COLUMNS = (
    "{p}trace_id, {p}scope, {p}input_tokens, {p}output_tokens, {p}cost_usd, {p}model, "
    + _TO_US.format("{p}model_at") + ", {p}fallback, {p}fallback_reason, "
    + _TO_US.format("{p}fallback_reason_at") + ", {p}hallucinated, {p}hallucination_source, "
    + _TO_US.format("{p}hallucination_source_at") + ", {p}prompt_injection, {p}blocked, {p}rate_limited")
UPSERT_PARTS = f"""
INSERT INTO turn_parts AS p (trace_id, scope, input_tokens, output_tokens, cost_usd, llm_spans, model,
    model_at, fallback, fallback_reason, fallback_reason_at, hallucinated, hallucination_source,
    hallucination_source_at, prompt_injection, blocked, rate_limited, last_span_at)
SELECT t, s, i, o, c, n, m, {_US.format("ma")}, f, fr, {_US.format("fra")}, h, hs, {_US.format("hsa")},
       pi, b, rl, {_US.format("la")}
FROM json_to_recordset(%s::json) AS e(t text, s text, i bigint, o bigint, c float8, n int, m text, ma bigint,
     f bool, fr text, fra bigint, h bool, hs text, hsa bigint, pi bool, b bool, rl bool, la bigint)
ON CONFLICT (trace_id, scope) DO UPDATE
SET input_tokens = p.input_tokens + excluded.input_tokens,
    output_tokens = p.output_tokens + excluded.output_tokens,
    cost_usd = p.cost_usd + excluded.cost_usd, llm_spans = p.llm_spans + excluded.llm_spans,
    {_pick(_NEWER_MODEL, "model")}, {_pick(_NEWER_MODEL, "model_at")},
    fallback = p.fallback OR excluded.fallback,
    {_pick(_REASON, "fallback_reason")}, {_pick(_REASON, "fallback_reason_at")},
    hallucinated = p.hallucinated OR excluded.hallucinated,
    {_pick(_SOURCE, "hallucination_source")}, {_pick(_SOURCE, "hallucination_source_at")},
    prompt_injection = p.prompt_injection OR excluded.prompt_injection,
    blocked = p.blocked OR excluded.blocked,
    rate_limited = p.rate_limited OR excluded.rate_limited,
    last_span_at = GREATEST(p.last_span_at, excluded.last_span_at)
RETURNING {_PART_COLUMNS.format(p="p.")}"""

# Parts a new turn needs that this batch did not upsert: json [{t, s}, …] (one index probe each).
PARTS_OF_KEYS = f"""
SELECT {_PART_COLUMNS.format(p="p.")}
FROM json_to_recordset(%s::json) AS k(t text, s text)
CROSS JOIN LATERAL (SELECT * FROM turn_parts WHERE trace_id = k.t AND scope = k.s OFFSET 0) p"""

# --- reminders: when a stored or changed turn is due to settle -------------------------------------
_REMIND = "INSERT INTO unsettled_turns (turn_id, started_at, settle_at)"
# The turns COPYed straight into chat_turns: text[] turn ids, bigint[] their started_at (Unix µs), and
# their settle_at (Unix µs).
REMIND_FRESH_TURNS = f"""
{_REMIND}
SELECT k.turn_id, {_US.format("k.started_us")}, {_US.format("%s")}
FROM unnest(%s::text[], %s::bigint[]) AS k(turn_id, started_us)"""

# --- turns through the staging table (rare: their traces have turns stored already) --------------
_TURN_COLS = ", ".join(TURN_COLUMNS)
# SDK turns are inserted as they are (a retry conflicts and is skipped); parameter: settle_at (µs).
INSERT_SDK_TURNS = f"""
WITH added AS (
    INSERT INTO chat_turns ({_TURN_COLS}, settle_at)
    SELECT {", ".join(f"n.{c}" for c in TURN_COLUMNS)}, {_US.format("%s")}
    FROM {TURN_STAGE} n WHERE NOT n.auto ORDER BY n.turn_id
    ON CONFLICT (turn_id, started_at) DO NOTHING
    RETURNING turn_id, started_at, settle_at
)
{_REMIND} SELECT turn_id, started_at, settle_at FROM added"""

# Auto candidates arrive folded to one per trace (the writer folds coalesced batches). Against the
# turns already stored for the trace: none → insert (a new turn); an auto turn → merge; an SDK turn →
# nothing. In a merge the candidate first in identity order — earliest start, then the longer span
# (the enclosing one), then the span id — gives identity (start, span, service, latency, error) and is
# preferred for every descriptive field; flags, usage and model are left to REFRESH_TURNS. A changed
# row is due to settle again; one whose started_at changes moves partition. Parameter: settle_at (µs).
_IDENTITY = ("span_id", "service", "latency_seconds", "error")
_COALESCED = ("session_id", "user_id", "source", "user_message", "bot_response", "model",
              "escalation_reason", "prompt_version", "app_version")
_MERGED = ["started_at", *_IDENTITY, *_COALESCED, "escalated"]
_FIRST = ("(n.started_at, -n.latency_seconds, n.span_id) < (e.started_at, -e.latency_seconds, e.span_id)")
_MERGE_EXPR = [f"CASE WHEN {_FIRST} THEN n.{f} ELSE e.{f} END" for f in ("started_at", *_IDENTITY)] + [
    f"CASE WHEN {_FIRST} THEN COALESCE(n.{f}, e.{f}) ELSE COALESCE(e.{f}, n.{f}) END" for f in _COALESCED] + [
    "(e.escalated OR n.escalated)"]
_AUTO_INSERT = ("turn_id", "started_at", "trace_id", "auto", *_IDENTITY, *_COALESCED, "escalated")
MERGE_AUTO_TURNS = f"""
WITH n AS MATERIALIZED (
    SELECT * FROM {TURN_STAGE} WHERE auto
), stored AS MATERIALIZED (
    -- one probe per candidate: the turns its trace already has (none, its auto turn, or SDK turns)
    SELECT n.trace_id, c.turn_id, c.started_at, c.auto
    FROM n LEFT JOIN chat_turns c ON c.trace_id = n.trace_id
), updated AS (
    UPDATE chat_turns e
    SET {", ".join(f"{f} = {x}" for f, x in zip(_MERGED, _MERGE_EXPR, strict=True))},
        settle_at = {_US.format("%(settle)s")}
    FROM stored JOIN n ON n.trace_id = stored.trace_id
    WHERE stored.auto AND e.turn_id = stored.turn_id AND e.started_at = stored.started_at
      AND ({", ".join(f"e.{f}" for f in _MERGED)}) IS DISTINCT FROM ({", ".join(_MERGE_EXPR)})
    RETURNING e.turn_id, e.started_at, e.settle_at
), added AS (
    INSERT INTO chat_turns ({", ".join(_AUTO_INSERT)}, settle_at)
    SELECT {", ".join("true" if c == "auto" else f"n.{c}" for c in _AUTO_INSERT)}, {_US.format("%(settle)s")}
    FROM stored JOIN n ON n.trace_id = stored.trace_id
    WHERE stored.turn_id IS NULL
    ORDER BY n.trace_id
    ON CONFLICT (turn_id, started_at) DO NOTHING
    RETURNING turn_id, started_at, settle_at
)
{_REMIND}
SELECT turn_id, started_at, settle_at FROM updated
UNION ALL SELECT turn_id, started_at, settle_at FROM added"""

# Auto turns of traces that now have an SDK turn go. One already counted by the metrics hands its count
# to the trace's earliest new SDK turn: the same user message, counted once (not re-observed).
DISPLACE_AUTO_TURNS = """
WITH gone AS (
    DELETE FROM chat_turns WHERE auto AND trace_id = ANY(%s::text[]) RETURNING trace_id, counted
), heir AS (
    SELECT DISTINCT ON (c.trace_id) c.turn_id, c.started_at, g.counted
    FROM gone g JOIN chat_turns c ON c.trace_id = g.trace_id AND NOT c.auto AND c.counted IS NULL
    WHERE g.counted IS NOT NULL
    ORDER BY c.trace_id, c.started_at, c.turn_id
)
UPDATE chat_turns c SET counted = h.counted FROM heir h
WHERE c.turn_id = h.turn_id AND c.started_at = h.started_at"""

# --- refresh: stored turns from their parts (the rule of parts.turn_values, in SQL) ---------------
_OR = ("fallback", "hallucinated", "prompt_injection", "blocked", "rate_limited")
_FROM_PARTS = ("input_tokens", "output_tokens", "cost_usd", "model", *_OR, "fallback_reason",
               "hallucination_source")


def _first_by(col: str, order: str) -> str:
    return f"(array_agg(p.{col} ORDER BY {order}) FILTER (WHERE p.{col} IS NOT NULL))[1]"


_REFRESHED = [f"w.{f}" for f in _FROM_PARTS]
REFRESH_TURNS = f"""
WITH t AS MATERIALIZED (
    SELECT c.turn_id, c.started_at, c.trace_id, c.auto,
           count(*) FILTER (WHERE NOT c.auto) OVER (PARTITION BY c.trace_id) AS sdk_turns
    FROM unnest(%(traces)s::text[]) AS k(trace_id)
    CROSS JOIN LATERAL (
        SELECT turn_id, started_at, trace_id, auto FROM chat_turns WHERE trace_id = k.trace_id OFFSET 0
    ) c
), w AS (
    SELECT t.turn_id, t.started_at,
           COALESCE(sum(p.input_tokens), 0) AS input_tokens,
           COALESCE(sum(p.output_tokens), 0) AS output_tokens,
           COALESCE(sum(p.cost_usd), 0) AS cost_usd,
           {_first_by("model", "p.model_at DESC, p.model DESC")} AS model,
           {", ".join(f"COALESCE(bool_or(p.{f}), false) AS {f}" for f in _OR)},
           {_first_by("fallback_reason", "p.fallback_reason_at, p.fallback_reason")} AS fallback_reason,
           {_first_by("hallucination_source", "p.hallucination_source_at, p.hallucination_source")}
               AS hallucination_source
    FROM t LEFT JOIN turn_parts p ON p.trace_id = t.trace_id
        AND (p.scope = CASE WHEN t.auto THEN '' ELSE t.turn_id END
             OR (p.scope = '' AND NOT t.auto AND t.sdk_turns = 1))
    GROUP BY t.turn_id, t.started_at
), refreshed AS (
    UPDATE chat_turns c
    SET {", ".join(f"{f} = {x}" for f, x in zip(_FROM_PARTS, _REFRESHED, strict=True))},
        settle_at = {_US.format("%(settle)s")}
    FROM w
    WHERE c.turn_id = w.turn_id AND c.started_at = w.started_at
      AND ({", ".join(f"c.{f}" for f in _FROM_PARTS)}) IS DISTINCT FROM ({", ".join(_REFRESHED)})
    RETURNING c.turn_id, c.started_at, c.settle_at
)
{_REMIND} SELECT turn_id, started_at, settle_at FROM refreshed"""

# --- settle: hand final turns to the metrics -------------------------------------------------------
# The due reminders (oldest first), then their turns, locked (SKIP LOCKED both: two settles never
# count one turn and never wait; a turn a writer is changing right now is left for later with its
# reminder). A locked turn still due (settle_at passed) is counted: settle_at becomes NULL and counted
# the bit set of what is counted now, OR-ed with what was counted before (a flag is counted once, ever).
# A reminder goes once its turn is locked (counted, or moved on: a later change added its own reminder)
# or gone (displaced, erased); one whose turn is held steps back. The update of the turn sets no indexed
# column: HOT, in place on the row's page.
# The sessions of settled turns are upserted here, not at write time, so an auto turn displaced before
# it settles leaves no session behind (a session id that a merge brings later still counts, once).
# Rows: ('turn', …columns, bits, counted before), ('session', id, …, source, service) for each session
# seen for the first time, and ('taken', number of reminders dropped).
# (Postgres gives | and << the same precedence: every shift is parenthesised.)
_BITS = "(1 | " + " | ".join(f"(c.{flag}::int << {bit})" for bit, flag in enumerate(
    ("error", "fallback", "hallucinated", "prompt_injection", "blocked", "rate_limited"), start=1)) + ")"
_UNTIL = _US.format("%(until)s")
SETTLE_TURNS = f"""
WITH due AS (
    SELECT ctid AS entry, turn_id, started_at FROM unsettled_turns
    WHERE settle_at <= {_UNTIL}
    ORDER BY settle_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), turn AS MATERIALIZED (
    SELECT d.entry, d.turn_id, d.started_at, c.part, c.tid, c.counted, c.settle_at
    FROM due d LEFT JOIN LATERAL (
        SELECT tableoid AS part, ctid AS tid, counted, settle_at FROM chat_turns
        WHERE turn_id = d.turn_id AND started_at = d.started_at
        FOR UPDATE SKIP LOCKED
    ) c ON true
), checked AS MATERIALIZED (
    SELECT t.entry, t.tid IS NOT NULL OR NOT EXISTS (
        -- one probe per turn not locked (OFFSET 0: not hashed from a scan of every partition)
        SELECT FROM chat_turns c WHERE c.turn_id = t.turn_id AND c.started_at = t.started_at OFFSET 0) AS done
    FROM turn t
), taken AS (
    -- by address too (a join on ctid gets planned as a scan of the whole table)
    DELETE FROM unsettled_turns WHERE ctid = ANY(ARRAY(SELECT entry FROM checked WHERE done))
    RETURNING 1
), deferred AS (
    -- turns held elsewhere: their reminders step back a second, so they never hold up the ones behind
    UPDATE unsettled_turns SET settle_at = settle_at + interval '1 second'
    WHERE ctid = ANY(ARRAY(SELECT entry FROM checked WHERE NOT done))
), settled AS (
    -- by row address: the rows are locked, so they are where the probe found them
    UPDATE chat_turns c SET settle_at = NULL, counted = (COALESCE(t.counted, 0) | {_BITS})::smallint
    FROM (SELECT DISTINCT part, tid, counted FROM turn WHERE settle_at <= {_UNTIL}) t
    WHERE c.tableoid = t.part AND c.ctid = t.tid
    RETURNING c.turn_id, c.trace_id, c.span_id, c.auto, c.session_id, c.user_id, c.source, c.service,
              {_TO_US.format("c.started_at")} AS started_us, c.latency_seconds, c.model, c.fallback_reason,
              c.hallucination_source, {_BITS} AS bits, t.counted AS before, c.user_message, c.bot_response,
              c.escalated, c.escalation_reason, c.prompt_version, c.app_version
), first_sessions AS (
    SELECT DISTINCT ON (session_id, service) session_id, service, source, {_US.format("started_us")} AS first
    FROM settled WHERE session_id IS NOT NULL
    ORDER BY session_id, service, started_us, source
), sessions_added AS (
    INSERT INTO sessions AS s (session_id, service, source, first_seen)
    SELECT session_id, service, source, first FROM first_sessions f
    -- most sessions are known already and would not change: a read, not the upsert's row lock
    WHERE NOT EXISTS (SELECT FROM sessions k WHERE k.session_id = f.session_id AND k.service = f.service
                      AND k.first_seen <= f.first AND (k.source IS NOT NULL OR f.source IS NULL) OFFSET 0)
    ORDER BY session_id, service
    ON CONFLICT (session_id, service) DO UPDATE
    SET first_seen = LEAST(s.first_seen, excluded.first_seen), source = COALESCE(s.source, excluded.source)
    WHERE excluded.first_seen < s.first_seen OR (s.source IS NULL AND excluded.source IS NOT NULL)
    RETURNING s.session_id, s.service, s.source, (s.xmax = 0) AS inserted
)
SELECT 'turn', turn_id, trace_id, span_id, auto, session_id, user_id, source, service, started_us,
       latency_seconds, model, fallback_reason, hallucination_source, bits, before, user_message,
       bot_response, escalated, escalation_reason, prompt_version, app_version
FROM settled
UNION ALL
SELECT 'session', session_id, NULL, NULL, NULL, NULL, NULL, source, service, NULL, NULL, NULL, NULL, NULL,
       NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
FROM sessions_added WHERE inserted
UNION ALL
SELECT 'taken', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, count(*), NULL,
       NULL, NULL, NULL, NULL, NULL, NULL
FROM taken"""
