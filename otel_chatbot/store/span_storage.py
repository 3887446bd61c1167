"""Where the writer puts spans: the ``SpanStorage`` seam and its two layouts (``span_storage``).

- ``rows``: one row per span in the partitioned ``spans`` table (every attribute queryable in SQL;
  the primary key (trace_id, span_id, start_time) makes a retried span a conflict).
- ``blocks`` (store/block_storage.py): compressed blocks of spans, a trace index, and rows only for
  LLM calls and error spans; a retried span is recognised through the trace index, under the
  per-trace advisory locks.

Either way ``store()`` runs first in the write transaction and returns the spans stored for the first
time: the writer derives usage (turn parts) and metrics from those only, so a span counts once.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final, Protocol

import psycopg
from psycopg import errors

from otel_chatbot.records import SpanRow
from otel_chatbot.store import merge_sql as q
from otel_chatbot.store.copyrows import copy_spans

LAYOUTS: Final = ("rows", "blocks")
DEFAULT_LAYOUT: Final = "rows"


class SpanStorage(Protocol):
    layout: str
    tables: tuple[str, ...]  # daily-partitioned by span start: the writer creates their partitions

    def store(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], spans: list[SpanRow],
              lock_ids: Collection[str]) -> tuple[list[SpanRow], bool]:
        """Store ``spans`` in the open transaction; returns (the spans new to the store, whether the
        advisory locks of ``lock_ids`` were taken). ``cur`` is a copyrows.copy_cursor."""
        ...


class RowsStorage:
    """One row per span in ``spans``."""

    layout = "rows"
    tables: tuple[str, ...] = ("spans",)

    def store(self, conn: psycopg.Connection[Any], cur: psycopg.Cursor[Any], spans: list[SpanRow],
              lock_ids: Collection[str]) -> tuple[list[SpanRow], bool]:
        if not spans:
            return [], False
        try:
            copy_spans(cur, "spans", spans)
            return spans, False
        except errors.UniqueViolation:
            # Some (usually all) spans are already stored: nothing else was done in this transaction yet.
            conn.rollback()
        copy_spans(cur, q.SPAN_STAGE, spans)
        stored = {(str(tid), str(sid)) for tid, sid in conn.execute(q.INSERT_NEW_SPANS)}
        new_spans: list[SpanRow] = []
        for span in spans:
            key = (span.trace_id, span.span_id)
            if key in stored:
                stored.discard(key)  # a span repeated inside the batch is new once
                new_spans.append(span)
        return new_spans, False


def span_storage(layout: str) -> SpanStorage:
    """The storage of ``layout`` (``rows`` or ``blocks``); ValueError names the choices."""
    if layout == "rows":
        return RowsStorage()
    if layout == "blocks":
        from otel_chatbot.store.block_storage import BlockStorage

        return BlockStorage()
    raise ValueError(f"span_storage: expected one of {', '.join(LAYOUTS)}, got {layout!r}")
