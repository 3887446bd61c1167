"""COPY of the processor's records, and json parameters of the small per-batch inputs.

Spans go through psycopg's binary ``write_row`` (its C row formatter; measured here it costs less
client CPU than building the PGCOPY stream in Python, ~6-7 µs per span including the send), with two
small dumpers: times arrive as Unix nanoseconds and go out as timestamptz microseconds since
2000-01-01 (one integer operation, no datetime objects), and JSON arrives already serialised, so it
is sent as jsonb's binary form (version byte + text) as it is.
Turns are encoded by hand instead (PGCOPY: signature, per row an int16 field count and per field an
int32 length, -1 = NULL, then the value's binary form; an int16 -1 ends the stream) because the writer
encodes them while the database answers the probe that decides their model and usage columns.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import orjson
import psycopg
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

from otel_chatbot.records import FeedbackRow, SpanRow, TurnRow

_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)
_NULL = struct.pack(">i", -1)
_len = struct.Struct(">i").pack
_pack_int8 = struct.Struct(">q").pack
_CACHE_MAX = 4096  # distinct repeated strings remembered per encoder (cleared when full: bounded memory)

SPAN_COLUMNS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time",
                "duration_ms", "status_code", "status_message", "service", "model", "provider",
                "input_tokens", "output_tokens", "cost_usd", "operation", "attributes", "resource", "events")
SPAN_TYPES = ("text", "text", "text", "text", "int2", "timestamptz", "timestamptz", "float8", "int2", "text",
              "text", "text", "text", "int4", "int4", "float8", "text", "jsonb", "jsonb", "jsonb")
TURN_COLUMNS = ("turn_id", "started_at", "trace_id", "span_id", "auto", "session_id", "user_id", "source",
                "service", "latency_seconds", "user_message", "bot_response", "model", "fallback",
                "fallback_reason", "hallucinated", "hallucination_source", "prompt_injection", "blocked",
                "rate_limited", "error")
NEW_TURN_COLUMNS = (*TURN_COLUMNS, "input_tokens", "output_tokens", "cost_usd")
USAGE_COLUMNS = ("trace_id", "input_tokens", "output_tokens", "cost_usd", "llm_spans", "model", "model_at",
                 "last_span_at")

_float8 = struct.Struct(">id").pack
_int8 = struct.Struct(">iq").pack
_turn_usage = struct.Struct(">iqiqid").pack
# A turn's usage: (input_tokens, output_tokens, cost_usd, model or None).
TurnUsage = tuple[int, int, float, str | None]
_NO_USAGE: TurnUsage = (0, 0, 0.0, None)
_BOOL = (b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x01\x01")
_INT2 = range(-(2**15), 2**15)
_INT4 = range(-(2**31), 2**31)


class _NsTime:
    """Marker class: the registration key of the nanosecond dumper (never instantiated)."""


class _JsonText:
    """Marker class: the registration key of the JSON-text dumper (never instantiated)."""


class NsTimestamptzDumper(Dumper):
    """Unix nanoseconds (int) → binary timestamptz. Used through COPY set_types only."""

    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer:
        return _pack_int8(obj // 1000 - _PG_EPOCH_US)


class JsonTextJsonbDumper(Dumper):
    """Already serialised JSON text (str) → binary jsonb, without parsing it again in Python."""

    format = Format.BINARY

    def dump(self, obj: Any) -> Buffer:
        data: bytes = obj.encode()
        return b"\x01" + data


def copy_cursor(conn: psycopg.Connection[Any]) -> psycopg.Cursor[Any]:
    """A cursor whose COPY dumps timestamptz from Unix ns and jsonb from JSON text."""
    cur = conn.cursor()
    types = conn.adapters.types
    tstz, jsonb = types["timestamptz"], types["jsonb"]
    assert tstz is not None and jsonb is not None
    # Registered on the cursor's own adapters map, so the connection's normal adapters are untouched.
    cur.adapters.register_dumper(_NsTime, type("NsTstz", (NsTimestamptzDumper,), {"oid": tstz.oid}))
    cur.adapters.register_dumper(_JsonText, type("JsonbText", (JsonTextJsonbDumper,), {"oid": jsonb.oid}))
    return cur


def copy_spans(cur: psycopg.Cursor[Any], table: str, spans: Iterable[SpanRow]) -> None:
    """COPY spans into ``table`` (a cursor from copy_cursor; check out_of_range_span first: binary COPY
    would keep only the low bytes of an integer too big for its column)."""
    with cur.copy(_copy_statement(table, SPAN_COLUMNS)) as copy:  # type: ignore[arg-type]
        copy.set_types(list(SPAN_TYPES))
        write = copy.write_row
        # The hot loop: one tuple per span, nothing else.
        for s in spans:
            write((s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns,
                   (s.end_ns - s.start_ns) / 1e6, s.status_code, s.status_message, s.service, s.model,
                   s.provider, s.input_tokens, s.output_tokens, s.cost_usd, s.operation, s.attributes_json,
                   s.resource_json, s.events_json))


def _copy_statement(table: str, columns: tuple[str, ...]) -> str:
    return f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)"


def _text(value: str) -> bytes:
    data = value.encode()
    return _len(len(data)) + data


def _opt_text(value: str | None) -> bytes:
    return _NULL if value is None else _text(value)


def _cached(encode: Callable[[str], bytes]) -> Callable[[str], bytes]:
    """Memoise an encoder of strings that repeat across rows (bounded: cleared when full)."""
    cache: dict[str, bytes] = {}

    def get(value: str) -> bytes:
        found = cache.get(value)
        if found is None:
            if len(cache) >= _CACHE_MAX:
                cache.clear()
            found = cache[value] = encode(value)
        return found

    return get


TurnParts = tuple[TurnRow, bytes, bytes]  # a turn and its encoded columns before / after ``model``
_TurnTail = tuple[bool, str | None, bool, str | None, bool, bool, bool, bool]


class TurnEncoder:
    """Turns → binary COPY payloads. One per writer (its caches are not shared)."""

    def __init__(self) -> None:
        # Two caches of one encoding: the few service names stay cached while session, user and
        # source values churn through the other.
        self._text = _cached(_text)
        self._opt = _cached(_text)
        self._tails: dict[_TurnTail, bytes] = {}

    def turn_parts(self, turns: Iterable[TurnRow]) -> list[TurnParts]:
        """The encoding of each turn but for ``model`` (which may come from the trace's usage): done
        while the database answers the probe that decides it."""
        text, opt, b, tails, parts = self._text, self._opt, _BOOL, self._tails, []
        null, epoch = _NULL, _PG_EPOCH_US
        for t in turns:
            turn_id = t.turn_id.encode()
            trace = turn_id if t.turn_id == t.trace_id else t.trace_id.encode()  # auto turns: the same
            session, user, source, message, response = (
                t.session_id, t.user_id, t.source, t.user_message, t.bot_response)
            # One join: a chain of "+" would copy the growing row (two ~300-byte messages) a dozen times.
            before = b"".join((
                _len(len(turn_id)), turn_id, _int8(8, t.start_ns // 1000 - epoch), _len(len(trace)), trace,
                _text(t.span_id), b[t.auto], null if session is None else opt(session),
                null if user is None else opt(user), null if source is None else opt(source), text(t.service),
                _float8(8, t.latency_s), null if message is None else _text(message),
                null if response is None else _text(response)))
            key = (t.fallback, t.fallback_reason, t.hallucinated, t.hallucination_source, t.prompt_injection,
                   t.blocked, t.rate_limited, t.error)
            after = tails.get(key)
            if after is None:
                if len(tails) >= _CACHE_MAX:
                    tails.clear()
                after = tails[key] = (
                    b[t.fallback] + _opt_text(t.fallback_reason) + b[t.hallucinated]
                    + _opt_text(t.hallucination_source) + b[t.prompt_injection] + b[t.blocked]
                    + b[t.rate_limited] + b[t.error])
            parts.append((t, before, after))
        return parts


def encode_turns(parts: list[TurnParts], usage: Mapping[str, TurnUsage] | None = None) -> bytes:
    """Turns (as turn_parts) → a binary COPY payload for TURN_COLUMNS, or NEW_TURN_COLUMNS when
    ``usage`` is given (by trace id; a trace without an entry has no LLM span: zero tokens, the turn's
    own model)."""
    head = struct.pack(">h", len(TURN_COLUMNS) if usage is None else len(NEW_TURN_COLUMNS))
    out = [_SIGNATURE]
    for t, before, after in parts:
        if usage is None:
            out += (head, before, _opt_text(t.model), after)
            continue
        totals = usage.get(t.trace_id, _NO_USAGE)
        model = t.model if totals[3] is None else totals[3]
        out += (head, before, _opt_text(model), after, _turn_usage(8, totals[0], 8, totals[1], 8, totals[2]))
    out.append(_TRAILER)
    return b"".join(out)


class TraceUsage:
    """What one batch's NEW LLM spans add to their traces: summed tokens and cost, the latest model."""

    __slots__ = ("cost_usd", "input_tokens", "last_ns", "llm_spans", "model", "model_ns", "output_tokens")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.llm_spans = 0
        self.model: str | None = None
        self.model_ns = 0
        self.last_ns = 0


def usage_of(spans: Iterable[SpanRow]) -> dict[str, TraceUsage]:
    """Per trace, the usage of the LLM spans (a token count or a cost present) among ``spans``."""
    usage: dict[str, TraceUsage] = {}
    for s in spans:
        tokens_in, tokens_out, cost = s.input_tokens, s.output_tokens, s.cost_usd
        if tokens_in is None and tokens_out is None and cost is None:
            continue
        u = usage.get(s.trace_id)
        if u is None:
            u = usage[s.trace_id] = TraceUsage()
        u.llm_spans += 1
        if tokens_in is not None:
            u.input_tokens += tokens_in
        if tokens_out is not None:
            u.output_tokens += tokens_out
        if cost is not None:
            u.cost_usd += cost
        if s.model is not None and (u.model is None or s.start_ns > u.model_ns):
            u.model, u.model_ns = s.model, s.start_ns
        if s.start_ns > u.last_ns:
            u.last_ns = s.start_ns
    return usage


def usage_json(usage: dict[str, TraceUsage]) -> str:
    """UPSERT_USAGE's parameter, sorted by trace id (rows locked in one global order)."""
    return orjson.dumps([
        {"t": trace, "i": u.input_tokens, "o": u.output_tokens, "c": u.cost_usd, "n": u.llm_spans,
         "m": u.model, "ma": None if u.model is None else u.model_ns // 1000, "la": u.last_ns // 1000}
        for trace, u in sorted(usage.items())]).decode()


def feedback_json(feedback: Iterable[FeedbackRow]) -> str:
    """The feedback events parameter of pending_feedback.STORE_FEEDBACK."""
    return orjson.dumps([{"turn_id": f.turn_id, "rating": f.rating, "comment": f.comment, "origin": f.origin,
                          "given_us": f.time_ns // 1000, "service": f.service} for f in feedback]).decode()


def copy_in(cur: psycopg.Cursor[Any], table: str, columns: tuple[str, ...], payload: bytes) -> None:
    """Send a binary COPY payload (built by encode_turns) into ``table``."""
    with cur.copy(_copy_statement(table, columns)) as copy:  # type: ignore[arg-type]
        copy.write(payload)


def out_of_range_span(spans: Iterable[SpanRow]) -> str | None:
    """Describe the first span with an integer its smallint/int column cannot hold, else None."""
    for s in spans:
        if s.kind not in _INT2 or s.status_code not in _INT2:
            return f"span {s.trace_id}/{s.span_id}: kind {s.kind} or status_code {s.status_code} out of range"
        if (s.input_tokens is not None and s.input_tokens not in _INT4) or (
                s.output_tokens is not None and s.output_tokens not in _INT4):
            return (f"span {s.trace_id}/{s.span_id}: token count {s.input_tokens}/{s.output_tokens} "
                    "out of the int range")
    return None
