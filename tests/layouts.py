"""Running tests in both span layouts, and reading stored spans whichever layout holds them."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest

from otel_chatbot.store.span_blocks import StoredSpan, block_spans, decompress
from otel_chatbot.store.trace_fetch import span_reader

# A module that must hold in both span layouts sets ``pytestmark = BOTH_LAYOUTS``: its tests that use
# the ``span_storage`` fixture of conftest (or the ``writer`` built with it) run once per layout.
BOTH_LAYOUTS = pytest.mark.both_layouts


def span_keys(url: str, traces: Sequence[str] | None = None) -> list[tuple[str, str]]:
    """(trace_id, span_id) of every stored span, sorted, duplicates kept (the view over both layouts)."""
    with psycopg.connect(url) as conn:
        if traces is None:
            rows = conn.execute("SELECT trace_id, span_id FROM stored_span_ids").fetchall()
        else:
            rows = conn.execute("SELECT trace_id, span_id FROM stored_span_ids WHERE trace_id = ANY(%s)",
                                (list(traces),)).fetchall()
    return sorted((str(t), str(s)) for t, s in rows)


def trace_spans(url: str, trace_id: str, layout: str = "blocks") -> list[StoredSpan]:
    """The stored spans of a trace through the store's reader (either layout)."""
    with psycopg.connect(url) as conn:
        return span_reader(layout).trace(conn, trace_id)


def stored_block_texts(url: str) -> list[str]:
    """Every stored span block, decompressed, as text: what a scan of the raw storage would see."""
    with psycopg.connect(url) as conn:
        bodies = [bytes(b) for (b,) in conn.execute("SELECT body FROM span_blocks").fetchall()]
    for body in bodies:
        block_spans(body)  # each must also parse as a block
    return [decompress(body).decode() for body in bodies]
