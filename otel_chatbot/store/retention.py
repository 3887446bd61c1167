"""Retention: drop whole daily partitions older than N days (no DELETE, no vacuum debt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql

from otel_chatbot.store.partitions import PARTITIONED_TABLES, list_partitions


def purge_older_than(url: str, days: int, *, now: datetime | None = None) -> list[str]:
    """Drop the partitions whose whole day ended more than ``days`` days ago; returns their names.

    A partition is dropped only when every row in it is older than the cutoff (now - days), so
    nothing younger than ``days`` days is ever removed.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    cutoff = (now or datetime.now(UTC)) - timedelta(days=days)
    dropped: list[str] = []
    with psycopg.connect(url, autocommit=True) as conn:
        for table in PARTITIONED_TABLES:
            for name, day in _partitions(conn, table):
                day_end = datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
                if day_end <= cutoff:
                    # One short transaction per partition: the lock on the parent is held briefly.
                    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))
                    dropped.append(name)
    return dropped


def _partitions(conn: psycopg.Connection[Any], table: str) -> list[tuple[str, Any]]:
    return list(list_partitions(conn, table))
