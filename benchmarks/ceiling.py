"""The raw COPY ceiling shared by the benchmarks: the stored span rows as pre-built COPY text."""

from __future__ import annotations

import time
from typing import Any

import psycopg


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
