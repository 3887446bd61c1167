"""Retention inside serve: old partitions are dropped at start and again on schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from server_support import fetch, running, wait_until
from store_factories import DAY_NS, NOW_NS, span, trace_id, turn

from otel_chatbot.processor.config import ConfigError, load_config
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.partitions import BLOCK_TABLES
from otel_chatbot.store.retention_schedule import RetentionSchedule
from otel_chatbot.store.writer import BatchWriter

# The daily-partitioned span tables of each layout (the default layout here: the fixture's).
SPAN_TABLES = {"rows": ("spans",), "blocks": BLOCK_TABLES}


def _day(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y%m%d")


def _write(url: str, span_storage: str, *start_ns: int) -> list[str]:
    writer = BatchWriter(url, span_storage=span_storage)
    writer.start()
    try:
        traces = [trace_id() for _ in start_ns]
        pairs = list(zip(traces, start_ns, strict=True))
        writer.write(NormalisedBatch(spans=[span(t, start_ns=ns) for t, ns in pairs],
                                     turns=[turn(t, start_ns=ns) for t, ns in pairs]))
        return traces
    finally:
        writer.shutdown()


def _partitions(url: str) -> list[str]:
    """The daily partitions (the DEFAULT partitions for far-off days always exist and are not listed)."""
    return sorted(r[0] for r in fetch(url, "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON "
                                           "c.oid = i.inhrelid JOIN pg_class p ON p.oid = i.inhparent "
                                           "WHERE p.relname = ANY(%s) "
                                           "AND c.relname NOT LIKE '%%\\_default'",
                                      (["spans", "chat_turns", *BLOCK_TABLES],)))


def test_serve_drops_partitions_older_than_retention_days(database_url: str, span_storage: str) -> None:
    old, recent = NOW_NS - 10 * DAY_NS, NOW_NS - 1 * DAY_NS
    _old_trace, recent_trace, today_trace = _write(database_url, span_storage, old, recent, NOW_NS)
    tables = (*SPAN_TABLES[span_storage], "chat_turns")
    assert len(_partitions(database_url)) == 3 * len(tables)
    with running(database_url, retention_days=3, span_storage=span_storage) as processor:
        schedule = processor.retention
        assert schedule is not None
        wait_until(lambda: schedule.runs >= 1, "the first retention run")
        assert _partitions(database_url) == sorted(
            f"{table}_p{_day(ns)}" for table in tables for ns in (recent, NOW_NS))
        assert sorted(r[0] for r in fetch(database_url, "SELECT trace_id FROM chat_turns")) == \
            sorted([recent_trace, today_trace])
    # Off by default: nothing is dropped, and no schedule runs.
    _write(database_url, span_storage, old)
    with running(database_url, span_storage=span_storage) as processor:
        assert processor.retention is None
    assert f"{tables[0]}_p{_day(old)}" in _partitions(database_url)


def test_the_schedule_runs_again_and_stops_cleanly(database_url: str, span_storage: str) -> None:
    dropped: list[list[str]] = []
    schedule = RetentionSchedule(database_url, 3, interval_s=0.05, on_dropped=dropped.append)
    schedule.start()
    try:
        wait_until(lambda: schedule.runs >= 1, "the first run")
        _write(database_url, span_storage, NOW_NS - 20 * DAY_NS)  # arrives late, after the first run
        day = _day(NOW_NS - 20 * DAY_NS)
        expected = sorted(f"{t}_p{day}" for t in (*SPAN_TABLES[span_storage], "chat_turns"))
        # The writer creates the day's span and chat_turns partitions one after the other: a run may
        # fall between them and drop them in several runs.
        wait_until(lambda: sorted(t for d in dropped for t in d) == expected, "later runs to drop it")
        assert sorted(t for d in dropped for t in d) == expected
    finally:
        schedule.shutdown()
        schedule.shutdown()  # safe twice
    runs = schedule.runs
    assert fetch(database_url, "SELECT 1") == [(1,)] and schedule.runs == runs  # stopped


def test_a_run_against_a_database_that_is_gone_is_retried_not_fatal() -> None:
    schedule = RetentionSchedule("postgresql://postgres@/postgres?host=/nonexistent-otel-chatbot", 3,
                                 interval_s=0.05)
    schedule.start()
    try:
        wait_until(lambda: schedule.failures >= 3, "three failed attempts")
        assert schedule.runs == 0
    finally:
        schedule.shutdown()


def test_retention_days_is_checked() -> None:
    with pytest.raises(ConfigError, match="retention_days: expected a number of days >= 0"):
        load_config({"database_url": "postgresql://x@/y", "retention_days": "-1"}, {}, None)
    with pytest.raises(ConfigError, match="retention_days: expected an integer"):
        load_config({"database_url": "postgresql://x@/y", "retention_days": "a week"}, {}, None)
    with pytest.raises(ValueError, match="days must be >= 1"):
        RetentionSchedule("postgresql://x@/y", 0)
