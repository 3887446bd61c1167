"""The daily partitions a writer knows exist, so that a write creates only the missing ones."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import psycopg

from otel_chatbot.store.partitions import DAY_NS, create_partitions, day_of_ns, in_window, list_partitions


class PartitionCache:
    """Days (since the epoch) with a partition, per table; filled from the catalog at connect."""

    def __init__(self, tables: Iterable[str]) -> None:
        self._days: dict[str, set[int]] = {table: set() for table in tables}

    def load(self, conn: psycopg.Connection[Any]) -> None:
        """Read the existing partitions (inside the caller's transaction)."""
        self._days = {table: {(day - day_of_ns(0)).days for _, day in list_partitions(conn, table)}
                      for table in self._days}

    def ensure(self, conn: psycopg.Connection[Any], table: str, times_ns: Iterable[int]) -> None:
        """Create the partitions of ``table`` for the days of ``times_ns`` that lack one (committed
        in their own transactions: call before the data transaction starts)."""
        self.ensure_days(conn, table, {t // DAY_NS for t in times_ns})

    def ensure_days(self, conn: psycopg.Connection[Any], table: str, days: Iterable[int]) -> None:
        """``ensure`` for days (since the epoch) already known: a write's spans go to several tables,
        and their days are worked out once, not once per table."""
        today = time.time_ns() // DAY_NS
        # Days outside the window get no table of their own: their rows go to the default partition.
        missing = {d for d in days if in_window(d, today)} - self._days[table]
        if missing:
            create_partitions(conn, table, [day_of_ns(d * DAY_NS) for d in missing])
            self._days[table] |= missing

    def forget(self) -> None:
        """After retention dropped a day we had cached: ask the catalog again on the next miss."""
        for days in self._days.values():
            days.clear()
