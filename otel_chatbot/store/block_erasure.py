"""Erasure in the blocks span layout: remove whole traces from the stored blocks.

A block holds the spans of many traces, often of other users. So a block holding an erased trace is
rewritten without that trace's spans (decompressed, filtered line by line, compressed again, updated
in place; it keeps its key, the hash of its body as first stored), and deleted when nothing is left;
the trace's index, LLM-call and error-span rows are deleted. The caller holds the transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, LiteralString

import psycopg

from otel_chatbot.store.span_blocks import block_span_rows, rewrite_block

_BLOCKS_OF = """
SELECT block_id, start_time, body FROM span_blocks
WHERE (block_id, start_time) IN (
    SELECT block_id, start_time FROM span_traces WHERE trace_id = ANY(%(traces)s))
FOR UPDATE"""
_DELETES: tuple[tuple[str, LiteralString], ...] = (
    ("span_traces", "DELETE FROM span_traces WHERE trace_id = ANY(%(traces)s)"),
    ("llm_calls", "DELETE FROM llm_calls WHERE trace_id = ANY(%(traces)s)"),
    ("error_spans", "DELETE FROM error_spans WHERE trace_id = ANY(%(traces)s)"),
)


def erase_traces(conn: psycopg.Connection[Any], traces: Sequence[str]) -> dict[str, int]:
    """Remove every span of ``traces`` from the blocks layout; rows changed per table."""
    counts = {"span_blocks": 0, "span_traces": 0, "llm_calls": 0, "error_spans": 0}
    if not traces:
        return counts
    params = {"traces": list(traces)}
    erased = set(traces)
    for block_id, start_time, body in conn.execute(_BLOCKS_OF, params).fetchall():
        keep = [line for trace, _span, line in block_span_rows(bytes(body)) if trace not in erased]
        key = (block_id, start_time)
        if keep:
            new_body, raw_bytes = rewrite_block(bytes(body), keep)
            conn.execute("UPDATE span_blocks SET body = %s, span_count = %s, raw_bytes = %s "
                         "WHERE block_id = %s AND start_time = %s", (new_body, len(keep), raw_bytes, *key))
        else:
            conn.execute("DELETE FROM span_blocks WHERE block_id = %s AND start_time = %s", key)
        counts["span_blocks"] += 1
    for table, delete in _DELETES:
        counts[table] = conn.execute(delete, params).rowcount
    return counts
