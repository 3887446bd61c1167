"""The rollups of closed UTC days (migration 0015): rebuild each closed day whose table changed.

A day is rebuilt from its own partition (or from the DEFAULT partition, for far-off days) in one
transaction: its conversations (``rollup_conversation_days``), its active users (``rollup_user_days``)
and where its turns are (``rollup_turn_index``). Whether a day changed since its last rebuild is told by
Postgres' per-table row counters (inserted + updated + deleted, ``pg_stat_get_tuples_*``), read before
the day's rows are: a change committed after the read raises the counter and is rebuilt at the next run
(counters reach the statistics within about a minute; a statistics reset makes every day differ, which
only costs a rebuild). Days no longer stored (retention dropped them) lose their rollup rows.

Then ``rollup_state.live_from`` becomes today: the window functions read days before it from the
rollups and the rest live. A run that fails leaves ``live_from`` where it was, so no day is read from a
rollup that a run did not finish. One run at a time across processes (an advisory lock; a second
process skips its run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from otel_chatbot.store.partitions import default_partition, list_partitions, partition_bounds

_TABLE: Final = "chat_turns"
_LOCK: Final = (0x6F74656C, 0x726F6C6C)  # (class, key) of the job's session advisory lock

_TODAY = "SELECT (now() AT TIME ZONE 'UTC')::date"
_COUNTERS = """
SELECT c.relname, c.oid, pg_stat_get_tuples_inserted(c.oid) + pg_stat_get_tuples_updated(c.oid)
              + pg_stat_get_tuples_deleted(c.oid)
FROM pg_class c WHERE c.oid = ANY(%s::regclass[])"""
_DEFAULT_DAYS = sql.SQL("""
SELECT DISTINCT (started_at AT TIME ZONE 'UTC')::date FROM {} WHERE started_at < %s""")
_STORED = "SELECT day, source_table, changes FROM rollup_days"

# One day's rows, read through the parent table with literal bounds (pruned to the day's partition).
_CLEAR = (
    "DELETE FROM rollup_conversation_days WHERE day = %(day)s",
    "DELETE FROM rollup_user_days WHERE day = %(day)s",
    "DELETE FROM rollup_turn_index WHERE started_at >= %(start)s AND started_at < %(end)s",
)
_FILL = (
    """
INSERT INTO rollup_conversation_days (session_id, service, day, first_at, last_at, turns, problem_turns,
                                      first_source, first_user, last_turn_id)
SELECT session_id, service, %(day)s, min(started_at), max(started_at), count(*),
       count(*) FILTER (WHERE fallback OR error OR hallucinated OR blocked OR rate_limited),
       (array_agg(COALESCE(source, 'unknown') ORDER BY started_at))[1],
       (array_agg(user_id ORDER BY started_at))[1],
       (array_agg(turn_id ORDER BY started_at DESC))[1]
FROM chat_turns
WHERE started_at >= %(start)s AND started_at < %(end)s AND session_id IS NOT NULL
GROUP BY session_id, service""",
    """
INSERT INTO rollup_user_days (user_id, service, day, source)
SELECT DISTINCT user_id, service, %(day)s, COALESCE(source, 'unknown')
FROM chat_turns
WHERE started_at >= %(start)s AND started_at < %(end)s AND user_id IS NOT NULL""",
    """
INSERT INTO rollup_turn_index (turn_id, started_at)
SELECT DISTINCT turn_id, started_at FROM chat_turns WHERE started_at >= %(start)s AND started_at < %(end)s""",
)
_MARK = """
INSERT INTO rollup_days (day, source_table, changes, refreshed_at)
VALUES (%(day)s, %(table)s, %(changes)s, now())
ON CONFLICT (day) DO UPDATE
SET source_table = excluded.source_table, changes = excluded.changes, refreshed_at = excluded.refreshed_at"""
_FORGET = "DELETE FROM rollup_days WHERE day = %(day)s"
_LIVE_FROM = "UPDATE rollup_state SET live_from = %s"
_ROLLUP_TABLES = ("rollup_conversation_days", "rollup_user_days", "rollup_turn_index")


@dataclass
class RollupRun:
    """What one run did: days rebuilt and days forgotten (no longer stored), oldest first."""

    refreshed: list[date] = field(default_factory=list)
    dropped: list[date] = field(default_factory=list)
    skipped: bool = False  # another process was running the job
    live_from: date | None = None


def refresh_rollups(url: str) -> RollupRun:
    """Rebuild the rollups of the closed days that changed; returns what was done."""
    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", _LOCK).fetchone()
        if not (got and got[0]):
            return RollupRun(skipped=True)
        try:
            return _refresh(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s, %s)", _LOCK)


def _refresh(conn: psycopg.Connection[Any]) -> RollupRun:
    today = _one(conn, _TODAY)
    default = default_partition(_TABLE)
    daily = {day: name for name, day in list_partitions(conn, _TABLE) if day < today}
    # Counters first, rows after: whatever a rebuild misses raises a counter it compares with next time.
    counters = {str(name): (int(oid), int(n))
                for name, oid, n in conn.execute(_COUNTERS, ([*daily.values(), default],))}
    sources: dict[date, str] = dict(daily)
    for (day,) in conn.execute(_DEFAULT_DAYS.format(sql.Identifier(default)),
                               (partition_bounds(today)[0],)):
        sources.setdefault(day, default)
    stored = {day: (int(table), int(changes)) for day, table, changes in conn.execute(_STORED)}
    run = RollupRun()
    for day in sorted(sources):
        fingerprint = counters.get(sources[day])
        if fingerprint is None:  # dropped since it was listed: forgotten at the next run
            continue
        if stored.get(day) != fingerprint:
            _rebuild(conn, day, fingerprint)
            run.refreshed.append(day)
    for day in sorted(set(stored) - set(sources)):
        _forget(conn, day)
        run.dropped.append(day)
    if len(run.refreshed) * 10 > len(stored):
        # Many days at once (the first run, a history imported): statistics now, not when autovacuum
        # gets to it, so that the window functions' lookups are planned as index probes.
        for table in _ROLLUP_TABLES:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(table)))
    conn.execute(_LIVE_FROM, (today,))
    run.live_from = today
    return run


def _rebuild(conn: psycopg.Connection[Any], day: date, fingerprint: tuple[int, int]) -> None:
    start, end = partition_bounds(day)
    params = {"day": day, "start": start, "end": end, "table": fingerprint[0], "changes": fingerprint[1]}
    with conn.transaction():
        for statement in (*_CLEAR, *_FILL, _MARK):
            conn.execute(statement, params)


def _forget(conn: psycopg.Connection[Any], day: date) -> None:
    start, end = partition_bounds(day)
    with conn.transaction():
        for statement in (*_CLEAR, _FORGET):
            conn.execute(statement, {"day": day, "start": start, "end": end})


def drop_rollups_before(conn: psycopg.Connection[Any], cutoff: datetime) -> None:
    """Delete the rollup rows of every day that ended at or before ``cutoff`` (what retention drops)."""
    last = (cutoff - timedelta(days=1)).date()
    params = {"day": last, "end": partition_bounds(last)[1]}
    conn.execute("DELETE FROM rollup_conversation_days WHERE day <= %(day)s", params)
    conn.execute("DELETE FROM rollup_user_days WHERE day <= %(day)s", params)
    conn.execute("DELETE FROM rollup_turn_index WHERE started_at < %(end)s", params)
    conn.execute("DELETE FROM rollup_days WHERE day <= %(day)s", params)


def _one(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]
    assert row is not None
    return row[0]
