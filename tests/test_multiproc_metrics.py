"""The multiprocess metrics of ``serve --workers N``, step by step in one process.

Two WorkerMetrics write real client_python multiprocess files into a temporary directory (as two
worker processes do; the value class is the one prometheus_client uses when PROMETHEUS_MULTIPROC_DIR
is set at import), and the parent's SupervisorCollector reads and sums them. The end-to-end version
with real processes is tests/test_workers.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, values
from test_metrics import _span, _turn

from otel_chatbot.processor.fleet_state import DOWN, NOT_READY, READY, FleetState
from otel_chatbot.processor.multiproc_metrics import SupervisorCollector, WorkerMetrics
from otel_chatbot.records import CommitResult


@pytest.fixture
def fleet(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FleetState]:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    state = FleetState.create(tmp_path / "fleet.state", 2)
    yield state
    state.close()


def _workers(fleet: FleetState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[WorkerMetrics]:
    """Two workers with their own files: each gets its own process identifier."""
    out = []
    for pid in (1001, 1002):
        monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue(lambda pid=pid: pid))
        out.append(WorkerMetrics(FleetState.open(fleet.path)))
    return out


def _scrape(collector: SupervisorCollector, name: str, **labels: str) -> float | None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry.get_sample_value(name, labels)


def _commit(turns: int, service: str = "support") -> CommitResult:
    return CommitResult(new_turns=[_turn(i, service=service) for i in range(turns)],
                        new_spans=[_span(i, service=service) for i in range(turns)])


def test_sums_workers_and_holds_first_increments_until_a_scrape_read_zero(
        fleet: FleetState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = _workers(fleet, tmp_path, monkeypatch)
    parent = SupervisorCollector(str(tmp_path), fleet)
    turns = {"service": "support", "source": "website"}

    a.observe_commit(_commit(3))
    b.observe_commit(_commit(5))
    # Self-metrics are plain file-backed counters: summed at once.
    assert _scrape(parent, "otel_chatbot_spans_committed_total") == 8
    # The chat series was born at 0 in both workers; this scrape read the 0 (and the one above did).
    assert _scrape(parent, "chatbot_turns_total", **turns) == 0
    a.sync()
    b.sync()
    assert _scrape(parent, "chatbot_turns_total", **turns) == 8
    assert _scrape(parent, "chatbot_turn_duration_seconds_count", **turns) == 8
    assert _scrape(parent, "chatbot_turn_duration_seconds_bucket", le="1.0", **turns) == 8
    assert _scrape(parent, "chatbot_tokens_total", service="support", type="input", model="gpt-4o") == 800
    # Known series count at once.
    a.observe_commit(_commit(2))
    assert _scrape(parent, "chatbot_turns_total", **turns) == 10


def test_series_born_after_a_scrape_started_waits_for_the_next_one(
        fleet: FleetState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scrape that started before the 0 was written may not have read it: it does not release."""
    (a, _b) = _workers(fleet, tmp_path, monkeypatch)
    number = fleet.scrape_started()  # a scrape in progress: it read the files already
    a.observe_commit(_commit(4, service="late"))
    fleet.scrape_finished(number)
    a.sync()
    parent = SupervisorCollector(str(tmp_path), fleet)
    labels = {"service": "late", "source": "website"}
    assert _scrape(parent, "chatbot_turns_total", **labels) == 0  # the first scrape that read the 0
    a.sync()
    assert _scrape(parent, "chatbot_turns_total", **labels) == 4


def test_dead_worker_counts_stay_and_its_queue_leaves(
        fleet: FleetState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from prometheus_client.multiprocess import mark_process_dead

    a, b = _workers(fleet, tmp_path, monkeypatch)
    parent = SupervisorCollector(str(tmp_path), fleet)
    a.observe_commit(_commit(3))
    b.observe_commit(_commit(2))
    a.set_queue_depth(7)
    b.set_queue_depth(5)
    assert _scrape(parent, "otel_chatbot_queue_spans") == 12
    mark_process_dead(1001, str(tmp_path))  # worker a is gone
    assert _scrape(parent, "otel_chatbot_queue_spans") == 5
    assert _scrape(parent, "otel_chatbot_spans_committed_total") == 5


def test_fleet_readiness_needs_every_worker(fleet: FleetState) -> None:
    assert fleet.fleet_readiness() == (False, "worker 1 of 2 is down")
    fleet.set_worker_state(0, READY)
    fleet.set_worker_state(1, NOT_READY)
    assert fleet.fleet_readiness() == (False, "worker 2 of 2 is not ready")
    other = FleetState.open(fleet.path)  # what a worker process sees
    other.set_worker_state(1, READY)
    assert fleet.fleet_readiness() == (True, "ready")
    fleet.set_worker_state(0, DOWN)
    assert other.fleet_readiness() == (False, "worker 1 of 2 is down")
    with pytest.raises(IndexError):
        other.set_worker_state(2, READY)
    other.close()
    other.close()  # safe twice
