"""Daily range partitions of ``spans``, ``chat_turns`` and the blocks layout's tables: naming,
on-demand creation, listing.

A partition ``<table>_pYYYYMMDD`` holds the UTC day [YYYY-MM-DD, next day). Creation runs in its own
short transaction (before the data transaction) because CREATE … PARTITION OF locks the parent table;
an advisory lock serialises creators across processes, and a duplicate_table error from a creator that
does not take it is still treated as success.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta

import psycopg
from psycopg import errors, sql

# The blocks span layout (migration 0016) partitions its tables the same way.
BLOCK_TABLES = ("span_blocks", "span_traces", "llm_calls", "error_spans")
PARTITIONED_TABLES = ("spans", "chat_turns", *BLOCK_TABLES)
PARTITION_KEYS = {"spans": "start_time", "chat_turns": "started_at",
                  **{table: "start_time" for table in BLOCK_TABLES}}
# Days with a daily partition of their own: [today - PAST_DAYS, today + FUTURE_DAYS]; rows of other
# days (clock skew, replays, hostile timestamps) go to ``<table>_default`` (migration 0013).
WINDOW_PAST_DAYS = 31
WINDOW_FUTURE_DAYS = 1
DAY_NS = 86_400 * 1_000_000_000
_EPOCH_DAY = date(1970, 1, 1)
_LOCK_CLASS = 0x6F74656C
_LOCK_PARTITIONS = 0x70617274
_NAME_RE = re.compile(r"^(?P<table>[a-z_]+)_p(?P<day>\d{8})$")
# Storage parameters of new partitions. A chat turn is rewritten once, when it settles (its counted
# bits): 30% of each page stays free for those versions, so the update is HOT (same page, no index
# entries, only the changed bytes logged) instead of a copy of the row elsewhere (migration 0018). The
# rows of a page settle together, so 30% holds about half of them on a fresh page and three quarters
# once the space freed by the moved ones is reused; half of each page free (50) made every update HOT
# but kept that half empty for good (+43% bytes per turn against 70's +10%; benchmarks/fillfactor.py).
PARTITION_STORAGE = {"chat_turns": sql.SQL(" WITH (fillfactor = 70)")}


def default_partition(table: str) -> str:
    return f"{table}_default"


def in_window(day_number: int, today_number: int) -> bool:
    """Whether the day (days since the epoch) gets a daily partition of its own."""
    return today_number - WINDOW_PAST_DAYS <= day_number <= today_number + WINDOW_FUTURE_DAYS


def count_out_of_window(times_ns: Iterable[int], now_ns: int) -> int:
    today = now_ns // DAY_NS
    return sum(1 for t in times_ns if not in_window(t // DAY_NS, today))


def day_of_ns(time_ns: int) -> date:
    return _EPOCH_DAY + timedelta(days=time_ns // DAY_NS)


def partition_name(table: str, day: date) -> str:
    return f"{table}_p{day:%Y%m%d}"


def partition_bounds(day: date) -> tuple[datetime, datetime]:
    """The [start, end) range of ``day``'s partition (retention drops it once ``end`` is old enough)."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return start, start + timedelta(days=1)


def parse_partition_name(name: str) -> tuple[str, date] | None:
    match = _NAME_RE.match(name)
    if match is None:
        return None
    try:
        return match["table"], datetime.strptime(match["day"], "%Y%m%d").date()
    except ValueError:
        return None


def list_partitions(conn: psycopg.Connection[tuple[object, ...]], table: str) -> list[tuple[str, date]]:
    """Daily partitions attached to ``table``, oldest first (other attached tables are ignored)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = to_regclass(%s)",
        (table,),
    ).fetchall()
    found: list[tuple[str, date]] = []
    for (name,) in rows:
        parsed = parse_partition_name(str(name))
        if parsed is not None and parsed[0] == table:
            found.append((str(name), parsed[1]))
    return sorted(found, key=lambda item: item[1])


def create_partitions(conn: psycopg.Connection[tuple[object, ...]], table: str, days: Iterable[date]) -> None:
    """Create the missing daily partitions of ``table`` for ``days``, committed before returning.

    ``conn`` must not be inside a transaction: this commits.
    """
    if table not in PARTITIONED_TABLES:
        raise ValueError(f"{table!r} is not a partitioned table")
    for day in sorted(set(days)):
        name = partition_name(table, day)
        lower, upper = partition_bounds(day)
        statement = sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({}){}"
        ).format(sql.Identifier(name), sql.Identifier(table), sql.Literal(lower), sql.Literal(upper),
                 PARTITION_STORAGE.get(table, sql.SQL("")))
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _LOCK_PARTITIONS))
                moved = _take_from_default(conn, table, lower, upper)
                conn.execute(statement)
                if moved:
                    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM _moved_rows")
                                 .format(sql.Identifier(table)))
        except (errors.DuplicateTable, errors.UniqueViolation):
            # Another process created it between our check and our CREATE (catalog race).
            pass


def _take_from_default(conn: psycopg.Connection[tuple[object, ...]], table: str, lower: datetime,
                       upper: datetime) -> int:
    """Move the default partition's rows of [lower, upper) into a temporary table (the new partition
    could not be attached while they are there); the caller inserts them back through the parent."""
    default = default_partition(table)
    if conn.execute("SELECT to_regclass(%s)", (default,)).fetchone() in (None, (None,)):
        return 0
    key = sql.Identifier(PARTITION_KEYS[table])
    cur = conn.execute(sql.SQL(
        "CREATE TEMP TABLE _moved_rows ON COMMIT DROP AS "
        "WITH moved AS (DELETE FROM {} WHERE {} >= {} AND {} < {} RETURNING *) SELECT * FROM moved"
    ).format(sql.Identifier(default), key, sql.Literal(lower), key, sql.Literal(upper)))
    return cur.rowcount
