"""The blocks span layout's writer side: spans → compressed blocks, trace index, LLM-call and error rows.

In the write transaction, before anything else:
  0. The spans are grouped into blocks and compressed as if all were new, before any lock is taken.
  1. Pipelined: the advisory locks of every trace and turn the batch touches (the writer's whole lock
     set, sorted, in one statement), then the trace index rows already stored for the batch's traces
     on the batch's days (usually none).
  2. The spans whose (trace, span) id the index does not list are new; the others are retries, however
     the Collector regrouped them into requests. Under the locks no other writer or replica can be
     storing the same trace at the same time, and READ COMMITTED lets step 1's probe see every
     transaction that held a lock before us.
  3. The blocks (store/span_blocks.py; rebuilt from the new spans only after a retry) are COPYed
     (binary) with their trace index rows, one row per LLM call, one row per error span.
Usage and flags of the turns come from the new spans only, as in the rows layout (the writer's parts).
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any, Final

import orjson
import psycopg

from otel_chatbot.records import SpanRow
from otel_chatbot.store import merge_sql as q
from otel_chatbot.store.locks import lock_params
from otel_chatbot.store.params import text_array
from otel_chatbot.store.partitions import BLOCK_TABLES, DAY_NS
from otel_chatbot.store.span_blocks import (
    BLOCK_MAX_SPANS,
    BlockEncoder,
    EncodedBlock,
    pack_span_ids,
    unpack_span_ids,
)

# The index rows of this batch's traces on its days: one index probe per trace and day partition,
# forced by LATERAL … OFFSET 0 (as merge_sql.PROBE_TURNS: a young partition has no statistics yet).
PROBE_TRACES = """
SELECT k.trace_id, t.span_ids
FROM unnest(%(traces)s::text[]) AS k(trace_id)
CROSS JOIN LATERAL (
    SELECT span_ids FROM span_traces
    WHERE trace_id = k.trace_id AND start_time >= %(lo)s AND start_time < %(hi)s OFFSET 0
) t"""

BLOCK_COLUMNS: Final = ("block_id", "start_time", "span_count", "raw_bytes", "body")
BLOCK_TYPES: Final = ("bytea", "timestamptz", "int4", "int4", "bytea")
TRACE_COLUMNS: Final = ("trace_id", "start_time", "block_id", "span_ids", "user_ids")
TRACE_TYPES: Final = ("text", "timestamptz", "bytea", "bytea", "jsonb")
LLM_COLUMNS: Final = ("trace_id", "span_id", "parent_span_id", "turn_scope", "name", "service", "start_time",
                      "duration_ms", "status_code", "model", "provider", "operation", "input_tokens",
                      "output_tokens", "cost_usd")
LLM_TYPES: Final = ("text", "text", "text", "text", "text", "text", "timestamptz", "float8", "int2", "text",
                    "text", "text", "int4", "int4", "float8")
ERROR_COLUMNS: Final = ("trace_id", "span_id", "parent_span_id", "name", "service", "start_time",
                        "duration_ms", "status_message")
ERROR_TYPES: Final = ("text", "text", "text", "text", "text", "timestamptz", "float8", "text")
_STATUS_ERROR: Final = 2


_COPY_BLOCKS: Final = f"COPY span_blocks ({', '.join(BLOCK_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TRACES: Final = f"COPY span_traces ({', '.join(TRACE_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_LLM: Final = f"COPY llm_calls ({', '.join(LLM_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_ERRORS: Final = f"COPY error_spans ({', '.join(ERROR_COLUMNS)}) FROM STDIN (FORMAT BINARY)"


class BlockStorage:
    """Spans as compressed blocks (one instance per writer: the block encoder is not thread-safe)."""

    layout = "blocks"
    tables: tuple[str, ...] = BLOCK_TABLES

    def __init__(self, max_spans: int = BLOCK_MAX_SPANS) -> None:
        self._encoder = BlockEncoder()
        self._max_spans = max_spans

    def store(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], spans: list[SpanRow],
              lock_ids: Collection[str]) -> tuple[list[SpanRow], bool]:
        if not spans:
            return [], False
        # Encoded and compressed before the locks, as if every span were new (the common case): the
        # other writers wait on these locks, so they are held only for the COPYs and the turn work.
        candidates = new_spans(spans, {})
        blocks = self.blocks(candidates)
        traces = {s.trace_id: None for s in candidates}  # ordered, unique
        days = {s.start_ns // DAY_NS for s in candidates}
        window = {"traces": text_array(traces), "lo": _day_start(min(days)), "hi": _day_start(max(days) + 1)}
        with conn.pipeline():
            conn.execute(q.LOCK_IDS, lock_params(traces.keys() | set(lock_ids)))
            probe = conn.execute(PROBE_TRACES, window)
        stored: dict[str, set[str]] = {}
        for trace, packed in probe.fetchall():
            stored.setdefault(str(trace), set()).update(unpack_span_ids(bytes(packed)))
        new = candidates
        if stored:  # a retry: only the spans not stored yet, in blocks of their own
            new = new_spans(candidates, stored)
            blocks = self.blocks(new)
        if new:
            self._copy(cur, new, blocks)
        return new, True

    def blocks(self, spans: list[SpanRow]) -> list[EncodedBlock]:
        """``spans`` grouped into blocks: by UTC day, a trace's spans together, at most max_spans
        each (a trace with more spans than that stays whole)."""
        by_day: dict[int, dict[str, list[SpanRow]]] = {}
        for s in spans:
            by_day.setdefault(s.start_ns // DAY_NS, {}).setdefault(s.trace_id, []).append(s)
        out: list[EncodedBlock] = []
        for by_trace in by_day.values():
            chunk: list[SpanRow] = []
            for trace_spans in by_trace.values():
                if chunk and len(chunk) + len(trace_spans) > self._max_spans:
                    out.append(self._encoder.encode(chunk))
                    chunk = []
                chunk.extend(trace_spans)
            if chunk:
                out.append(self._encoder.encode(chunk))
        return out

    def _copy(self, cur: psycopg.Cursor[Any], spans: list[SpanRow], blocks: list[EncodedBlock]) -> None:
        with cur.copy(_COPY_BLOCKS) as copy:  # type: ignore[arg-type]
            copy.set_types(list(BLOCK_TYPES))
            for b in blocks:
                copy.write_row((b.block_id, b.start_ns, len(b.spans), b.raw_bytes, b.body))
        with cur.copy(_COPY_TRACES) as copy:  # type: ignore[arg-type]
            copy.set_types(list(TRACE_TYPES))
            for b in blocks:
                for row in trace_index_rows(b):
                    copy.write_row(row)
        llm = [s for s in spans if s.model is not None or s.input_tokens is not None
               or s.output_tokens is not None]
        if llm:
            with cur.copy(_COPY_LLM) as copy:  # type: ignore[arg-type]
                copy.set_types(list(LLM_TYPES))
                write = copy.write_row
                for s in llm:
                    end_ns = max(s.end_ns, s.start_ns)
                    write((s.trace_id, s.span_id, s.parent_span_id, s.turn_scope, s.name, s.service,
                           s.start_ns, (end_ns - s.start_ns) / 1e6, s.status_code, s.model, s.provider,
                           s.operation, s.input_tokens, s.output_tokens, s.cost_usd))
        failed = [s for s in spans if s.status_code == _STATUS_ERROR]
        if failed:
            with cur.copy(_COPY_ERRORS) as copy:  # type: ignore[arg-type]
                copy.set_types(list(ERROR_TYPES))
                for s in failed:
                    end_ns = max(s.end_ns, s.start_ns)
                    copy.write_row((s.trace_id, s.span_id, s.parent_span_id, s.name, s.service, s.start_ns,
                                    (end_ns - s.start_ns) / 1e6, s.status_message))


def new_spans(spans: list[SpanRow], stored: dict[str, set[str]]) -> list[SpanRow]:
    """The spans not in ``stored`` (span ids by trace), each (trace, span) id once."""
    seen: set[tuple[str, str]] = set()
    out: list[SpanRow] = []
    for s in spans:
        key = (s.trace_id, s.span_id)
        if key in seen:
            continue
        seen.add(key)
        known = stored.get(s.trace_id)
        if known is None or s.span_id not in known:
            out.append(s)
    return out


def trace_index_rows(block: EncodedBlock) -> list[tuple[str, int, bytes, bytes, str | None]]:
    """One span_traces row per trace of ``block``: its span ids and the user ids its spans carry (a
    JSON array: dumped as jsonb text, much cheaper than a text[] array)."""
    ids: dict[str, list[str]] = {}
    users: dict[str, set[str]] = {}
    for s in block.spans:
        ids.setdefault(s.trace_id, []).append(s.span_id)
        if s.user_id is not None:
            users.setdefault(s.trace_id, set()).add(s.user_id)
    return [(trace, block.start_ns, block.block_id, pack_span_ids(span_ids),
             orjson.dumps(sorted(users[trace])).decode() if trace in users else None)
            for trace, span_ids in ids.items()]


def _day_start(day: int) -> datetime:
    return datetime.fromtimestamp(day * 86_400, UTC)

