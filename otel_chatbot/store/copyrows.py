"""Binary COPY of the processor's records: column lists, row tuples and two small dumpers.

Binary COPY is the fastest path measured here (about 1.3 times text COPY of the same rows into the
partitioned table). Two values need help to stay cheap: times arrive as Unix nanoseconds and go out
as timestamptz microseconds since 2000-01-01 (one integer operation, no datetime objects), and JSON
arrives already serialised, so it is sent as jsonb's binary form (version byte + text) as it is.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import psycopg
from psycopg.adapt import Buffer, Dumper
from psycopg.pq import Format

from otel_chatbot.processor.model import FeedbackRow, SpanRow, TurnRow

_PG_EPOCH_US = 946_684_800 * 1_000_000  # 2000-01-01T00:00:00Z in Unix microseconds
_pack_int8 = struct.Struct(">q").pack


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


SPAN_COLUMNS = ("trace_id", "span_id", "parent_span_id", "name", "kind", "start_time", "end_time",
                "duration_ms", "status_code", "status_message", "service", "model", "provider",
                "input_tokens", "output_tokens", "cost_usd", "operation", "attributes", "resource", "events")
SPAN_TYPES = ("text", "text", "text", "text", "int2", "timestamptz", "timestamptz", "float8", "int2", "text",
              "text", "text", "text", "int4", "int4", "float8", "text", "jsonb", "jsonb", "jsonb")

TURN_COLUMNS = ("turn_id", "started_at", "trace_id", "span_id", "auto", "session_id", "user_id", "source",
                "service", "latency_seconds", "user_message", "bot_response", "model", "fallback",
                "fallback_reason", "hallucinated", "hallucination_source", "prompt_injection", "blocked",
                "rate_limited", "error")
TURN_TYPES = ("text", "timestamptz", "text", "text", "bool", "text", "text", "text", "text", "float8", "text",
              "text", "text", "bool", "text", "bool", "text", "bool", "bool", "bool", "bool")

FEEDBACK_COLUMNS = ("turn_id", "rating", "comment", "origin", "given_at", "service")
FEEDBACK_TYPES = ("text", "text", "text", "text", "timestamptz", "text")


_INT2 = range(-(2**15), 2**15)
_INT4 = range(-(2**31), 2**31)


def out_of_range_span(spans: Iterable[SpanRow]) -> str | None:
    """Describe the first span with an integer its smallint/int column cannot hold, else None.

    Binary COPY would silently keep only the low bytes of such a value, so the writer checks first.
    """
    for s in spans:
        if s.kind not in _INT2 or s.status_code not in _INT2:
            return f"span {s.trace_id}/{s.span_id}: kind {s.kind} or status_code {s.status_code} out of range"
        if (s.input_tokens is not None and s.input_tokens not in _INT4) or (
                s.output_tokens is not None and s.output_tokens not in _INT4):
            return (f"span {s.trace_id}/{s.span_id}: token count {s.input_tokens}/{s.output_tokens} "
                    "out of the int range")
    return None


def copy_spans(cur: psycopg.Cursor[Any], table: str, spans: Iterable[SpanRow]) -> None:
    statement = f"COPY {table} ({', '.join(SPAN_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with cur.copy(statement) as copy:  # type: ignore[arg-type]
        copy.set_types(list(SPAN_TYPES))
        write = copy.write_row
        # The hot loop: one tuple per span, nothing else.
        for s in spans:
            write((s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns, s.end_ns,
                   (s.end_ns - s.start_ns) / 1e6, s.status_code, s.status_message, s.service, s.model,
                   s.provider, s.input_tokens, s.output_tokens, s.cost_usd, s.operation, s.attributes_json,
                   s.resource_json, s.events_json))


def copy_turns(cur: psycopg.Cursor[Any], table: str, turns: Iterable[TurnRow]) -> None:
    statement = f"COPY {table} ({', '.join(TURN_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with cur.copy(statement) as copy:  # type: ignore[arg-type]
        copy.set_types(list(TURN_TYPES))
        write = copy.write_row
        for t in turns:
            write((t.turn_id, t.start_ns, t.trace_id, t.span_id, t.auto, t.session_id, t.user_id, t.source,
                   t.service, t.latency_s, t.user_message, t.bot_response, t.model, t.fallback,
                   t.fallback_reason, t.hallucinated, t.hallucination_source, t.prompt_injection, t.blocked,
                   t.rate_limited, t.error))


def copy_feedback(cur: psycopg.Cursor[Any], table: str, feedback: Iterable[FeedbackRow]) -> None:
    statement = f"COPY {table} ({', '.join(FEEDBACK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
    with cur.copy(statement) as copy:  # type: ignore[arg-type]
        copy.set_types(list(FEEDBACK_TYPES))
        for f in feedback:
            copy.write_row((f.turn_id, f.rating, f.comment, f.origin, f.time_ns, f.service))
