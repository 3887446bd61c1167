"""The rollup job inside serve: a run at start, runs counted in /metrics, failures retried."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from rollup_support import closed_days, generate
from server_support import fetch, running, wait_until

from otel_chatbot.processor.config import ConfigError, load_config
from otel_chatbot.store.rollup_schedule import RollupSchedule


def _runs(registry: CollectorRegistry, result: str) -> float:
    line = f'otel_chatbot_rollup_runs_total{{result="{result}"}} '
    text = generate_latest(registry).decode()
    return float(next(s for s in text.splitlines() if s.startswith(line)).split()[-1])


def test_serve_rolls_up_the_closed_days_at_start(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        history = generate(conn)
        closed = set(closed_days(conn, history))
    with running(database_url) as processor:
        registry = processor.metrics.registry
        wait_until(lambda: _runs(registry, "ok") >= 1, "the first rollup run")
        assert _runs(registry, "failed") == 0
    assert {r[0] for r in fetch(database_url, "SELECT day FROM rollup_days")} == closed
    assert fetch(database_url, "SELECT live_from FROM rollup_state") == [(history.today,)]
    # Off: no run.
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE rollup_days")
    with running(database_url, rollup_interval=0) as processor:
        assert _runs(processor.metrics.registry, "ok") == 0
    assert fetch(database_url, "SELECT count(*) FROM rollup_days") == [(0,)]


def test_a_failed_run_is_counted_and_retried() -> None:
    outcomes: list[bool] = []
    schedule = RollupSchedule("postgresql://postgres@/postgres?host=/nonexistent-otel-chatbot",
                              interval_s=0.05, on_run=outcomes.append)
    schedule.start()
    try:
        wait_until(lambda: schedule.failures >= 3, "three failed attempts")
        assert schedule.runs == 0 and outcomes[:3] == [False, False, False]
    finally:
        schedule.shutdown()
        schedule.shutdown()  # safe twice


def test_runs_again_after_an_interval(database_url: str) -> None:
    outcomes: list[bool] = []
    schedule = RollupSchedule(database_url, interval_s=0.05, on_run=outcomes.append)
    schedule.start()
    try:
        wait_until(lambda: schedule.runs >= 3, "three runs")
    finally:
        schedule.shutdown()
    assert all(outcomes) and schedule.failures == 0
    today = datetime.now(UTC).date()
    live_from = fetch(database_url, "SELECT live_from FROM rollup_state")
    assert live_from in ([(today,)], [(today + timedelta(1),)])  # midnight may pass


def test_rollup_interval_is_checked() -> None:
    with pytest.raises(ConfigError, match=r"rollup_interval: expected 0 \(off\) to 86400 seconds"):
        load_config({"database_url": "postgresql://x@/y", "rollup_interval": "-1"}, {}, None)
    with pytest.raises(ConfigError, match="rollup_interval"):
        load_config({"database_url": "postgresql://x@/y", "rollup_interval": "soon"}, {}, None)
    with pytest.raises(ValueError, match="interval_s must be > 0"):
        RollupSchedule("postgresql://x@/y", interval_s=0)
