"""Retention: drop whole daily partitions older than N days (no DELETE, no vacuum debt), of every
partitioned table: spans or the blocks layout's tables (span_blocks, span_traces, llm_calls,
error_spans), and chat_turns."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
from psycopg import sql

from otel_chatbot.store.partitions import (
    PARTITION_KEYS,
    PARTITIONED_TABLES,
    default_partition,
    list_partitions,
    partition_bounds,
)
from otel_chatbot.store.rollup import drop_rollups_before


def purge_older_than(url: str, days: int, *, now: datetime | None = None) -> list[str]:
    """Drop the partitions whose whole day ended more than ``days`` days ago; returns their names.

    A partition is dropped only when every row in it is older than the cutoff (now - days), so
    nothing younger than ``days`` days is ever removed. The per-trace usage totals of traces whose
    last span lies in the dropped days go too, and the settle reminders of the turns removed.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    dropped: list[str] = []
    dropped_until: datetime | None = None
    with psycopg.connect(url, autocommit=True) as conn:
        for table in PARTITIONED_TABLES:
            for name, day in list_partitions(conn, table):
                _, day_end = partition_bounds(day)
                if day_end <= cutoff:
                    # One short transaction per partition: the lock on the parent is held briefly.
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                    dropped.append(name)
                    dropped_until = max(dropped_until or day_end, day_end)
            # Rows of far-off days live in the default partition: deleted, not dropped.
            default = default_partition(table)
            if conn.execute("SELECT to_regclass(%s)", (default,)).fetchone() in (None, (None,)):
                continue  # a table of a later migration than this database's schema
            key = sql.Identifier(PARTITION_KEYS[table])
            conn.execute(sql.SQL("DELETE FROM {} WHERE {} < %s").format(sql.Identifier(default), key),
                         (cutoff,))
        if dropped_until is not None:
            conn.execute("DELETE FROM turn_parts WHERE last_span_at < %s", (dropped_until,))
            drop_rollups_before(conn, dropped_until)
        # Settle reminders of the turns that went (the settle would drop them too, one by one).
        conn.execute("DELETE FROM unsettled_turns u WHERE started_at < %s AND NOT EXISTS ("
                     "SELECT FROM chat_turns c WHERE c.turn_id = u.turn_id AND c.started_at = u.started_at)",
                     (cutoff,))
    return dropped
