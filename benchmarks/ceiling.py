"""The raw COPY ceilings of the benchmarks.

``request_copy_rows`` / ``copy_ceiling_rows``: independent of our schema — the request bodies decoded
into plain span rows before the clock starts, then a timed binary COPY into a plain logged table.
``stored_span_chunks`` / ``copy_chunks``: the rows of our ``spans`` table copied again (benchmarks/write.py).
"""

from __future__ import annotations

import json
import struct
import time
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


def stored_span_chunks(conn: psycopg.Connection[Any], batch_size: int) -> list[bytes]:
    """Every row of ``spans`` as COPY text, in chunks of ``batch_size`` whole rows; creates the empty
    plain table ``ceiling_spans`` (same columns, no keys, no partitions) to copy them into."""
    conn.execute("DROP TABLE IF EXISTS ceiling_spans")
    conn.execute("CREATE TABLE ceiling_spans (LIKE spans INCLUDING DEFAULTS)")
    conn.commit()
    buffer = bytearray()
    with conn.cursor().copy("COPY (SELECT * FROM spans) TO STDOUT") as copy:
        for data in copy:
            buffer += data
    conn.commit()
    # The copy iterator yields buffers that may split rows: rebuild whole-row chunks.
    lines = bytes(buffer).splitlines(keepends=True)
    return [b"".join(lines[i:i + batch_size]) for i in range(0, len(lines), batch_size)]


def copy_chunks(conn: psycopg.Connection[Any], chunks: list[bytes]) -> float:
    """The ceiling run: COPY ``chunks`` into ``ceiling_spans``, one commit each; returns the wall seconds."""
    started = time.perf_counter()
    for chunk in chunks:
        with conn.cursor().copy("COPY ceiling_spans FROM STDIN") as copy:
            copy.write(chunk)
        conn.commit()
    return time.perf_counter() - started


# --- the schema-independent ceiling --------------------------------------------------------------
# One row per span of the benchmark's request bodies, with the columns any span store keeps (trace id,
# span id, parent id, name, kind, start, end, service, attributes as jsonb), decoded with the standard
# OTLP protobuf classes and pre-encoded as binary COPY before the clock starts. Timed: the COPY of those
# bytes into a plain logged table (no keys, no indexes, no partitions), one commit per request.
CEILING_TABLE = """
CREATE TABLE ceiling_rows (
    trace_id text, span_id text, parent_span_id text, name text, kind smallint,
    start_time timestamptz, end_time timestamptz, service text, attributes jsonb
)"""
_PG_EPOCH_US = 946_684_800 * 1_000_000
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)


def _any_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, which) if which else None


def _field(data: bytes) -> bytes:
    return struct.pack(">i", len(data)) + data


def request_copy_rows(body: bytes) -> tuple[bytes, int]:
    """One OTLP protobuf request → (binary COPY payload of its span rows, rows)."""
    request = ExportTraceServiceRequest.FromString(body)
    out = [_SIGNATURE]
    rows = 0
    null = struct.pack(">i", -1)
    for rs in request.resource_spans:
        service = next((kv.value.string_value for kv in rs.resource.attributes if kv.key == "service.name"),
                       "unknown_service").encode()
        for ss in rs.scope_spans:
            for s in ss.spans:
                attributes = json.dumps({kv.key: _any_value(kv.value) for kv in s.attributes}).encode()
                out += (struct.pack(">h", 9), _field(s.trace_id.hex().encode()),
                        _field(s.span_id.hex().encode()),
                        _field(s.parent_span_id.hex().encode()) if s.parent_span_id else null,
                        _field(s.name.encode()), _field(struct.pack(">h", s.kind)),
                        _field(struct.pack(">q", s.start_time_unix_nano // 1000 - _PG_EPOCH_US)),
                        _field(struct.pack(">q", s.end_time_unix_nano // 1000 - _PG_EPOCH_US)),
                        _field(service), _field(b"\x01" + attributes))
                rows += 1
    out.append(struct.pack(">h", -1))
    return b"".join(out), rows


def copy_ceiling_rows(conn: psycopg.Connection[Any], payloads: list[bytes]) -> float:
    """The timed part: each pre-encoded payload COPYed (binary) and committed; returns the seconds."""
    conn.execute("DROP TABLE IF EXISTS ceiling_rows")
    conn.execute(CEILING_TABLE)
    conn.commit()
    started = time.perf_counter()
    for payload in payloads:
        with conn.cursor().copy("COPY ceiling_rows FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(payload)
        conn.commit()
    elapsed = time.perf_counter() - started
    conn.execute("DROP TABLE ceiling_rows")
    conn.commit()
    return elapsed
