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
from otel_chatbot.store.parts import TurnValues

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
                "rate_limited", "error", "escalated", "escalation_reason", "prompt_version", "app_version")
NEW_TURN_COLUMNS = (*TURN_COLUMNS, "input_tokens", "output_tokens", "cost_usd", "settle_at")

_float8 = struct.Struct(">id").pack
_int8 = struct.Struct(">iq").pack
_turn_usage = struct.Struct(">iqiqidiq").pack
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
            # An end before the start (a client clock stepping back) is stored as duration 0.
            end_ns = s.end_ns if s.end_ns >= s.start_ns else s.start_ns
            write((s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, end_ns,
                   (end_ns - s.start_ns) / 1e6, s.status_code, s.status_message, s.service, s.model,
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


TurnParts = tuple[TurnRow, bytes]  # a turn and its encoded columns before ``model``
_TurnTail = tuple[bool, str | None, bool, str | None, bool, bool, bool, bool]


class TurnEncoder:
    """Turns → binary COPY payloads. One per writer (its caches are not shared)."""

    def __init__(self) -> None:
        # Two caches of one encoding: the few service names stay cached while session, user and
        # source values churn through the other.
        self._text = _cached(_text)
        self._opt = _cached(_text)
        self._tails: dict[_TurnTail, bytes] = {}
        self._extras: dict[tuple[bool, str | None, str | None, str | None], bytes] = {}

    def turn_parts(self, turns: Iterable[TurnRow]) -> list[TurnParts]:
        """The encoding of each turn up to ``model`` (model, flags and usage may come from the turn's
        parts): done while the database answers the probe that decides them."""
        text, opt, b, parts = self._text, self._opt, _BOOL, []
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
            parts.append((t, before))
        return parts

    def tail(self, v: TurnRow | TurnValues, error: bool) -> bytes:
        """The flag columns after ``model`` (few distinct combinations: cached)."""
        key = (v.fallback, v.fallback_reason, v.hallucinated, v.hallucination_source, v.prompt_injection,
               v.blocked, v.rate_limited, error)
        after = self._tails.get(key)
        if after is None:
            if len(self._tails) >= _CACHE_MAX:
                self._tails.clear()
            b = _BOOL
            after = self._tails[key] = (
                b[v.fallback] + _opt_text(v.fallback_reason) + b[v.hallucinated]
                + _opt_text(v.hallucination_source) + b[v.prompt_injection] + b[v.blocked]
                + b[v.rate_limited] + b[error])
        return after

    def extras(self, t: TurnRow) -> bytes:
        """Escalation and prompt / app version, the turn's own (few distinct combinations: cached)."""
        key = (t.escalated, t.escalation_reason, t.prompt_version, t.app_version)
        found = self._extras.get(key)
        if found is None:
            if len(self._extras) >= _CACHE_MAX:
                self._extras.clear()
            found = self._extras[key] = (_BOOL[t.escalated] + _opt_text(t.escalation_reason)
                                         + _opt_text(t.prompt_version) + _opt_text(t.app_version))
        return found

    def encode(self, parts: list[TurnParts], values: Mapping[int, TurnValues] | None = None,
               settle_us: int = 0) -> bytes:
        """Turns (as turn_parts) → a binary COPY payload for TURN_COLUMNS (the turns' own values, for
        the staging table), or NEW_TURN_COLUMNS when ``values`` (by id(turn)) give model, flags and
        usage from the turns' parts; ``settle_us`` is their settle_at (Unix µs)."""
        head = struct.pack(">h", len(TURN_COLUMNS) if values is None else len(NEW_TURN_COLUMNS))
        out = [_SIGNATURE]
        settle = settle_us - _PG_EPOCH_US
        for t, before in parts:
            if values is None:
                out += (head, before, _opt_text(t.model), self.tail(t, t.error), self.extras(t))
                continue
            v = values[id(t)]
            out += (head, before, _opt_text(v.model), self.tail(v, t.error), self.extras(t),
                    _turn_usage(8, v.input_tokens, 8, v.output_tokens, 8, v.cost_usd, 8, settle))
        out.append(_TRAILER)
        return b"".join(out)


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
