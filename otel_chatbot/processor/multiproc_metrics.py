"""Prometheus metrics across worker processes (``serve --workers N``), on client_python's multiprocess mode.

Each worker writes its samples to per-process memory-mapped files in ``PROMETHEUS_MULTIPROC_DIR`` (set by
the supervisor before a worker starts, so prometheus_client picks its file-backed values at import); the
parent serves the metrics port and sums the files of every worker, live or dead, on each scrape. A
dead worker's counter files stay, so a sum never goes down when a worker is replaced; its gauge files
(``livesum``: the queue depth) go with ``mark_process_dead``.

* The self-metrics are prometheus_client metrics: file-backed as they are.
* The chat families (processor/metrics.py) are plain dicts, counted per batch for speed; a worker
  mirrors them into the files after each commit and on a short tick (:class:`WorkerMetrics`).
* First increments: a chat series is born at 0 and its first increments are held until a scrape has
  read that 0 (module docstring of processor/metrics.py). Here the scrape happens in another process,
  so the worker stamps each new series with the number of scrapes *started* once its 0 is in the file,
  and releases the held increments when a scrape with a higher number has *finished* (FleetState).
"""

from __future__ import annotations

import glob
import os
import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from otel_chatbot.processor.fleet_state import READY, FleetState
from otel_chatbot.processor.metric_families import CounterFamily, HistogramFamily, le_text
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.records import CommitResult

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
SYNC_INTERVAL_S = 0.1


def _file_value_class() -> Any:
    from prometheus_client import values

    if not getattr(values.ValueClass, "_multiprocess", False):
        raise RuntimeError(f"{MULTIPROC_ENV} must be set before prometheus_client is imported")
    return values.ValueClass


class WorkerMetrics(ProcessorMetrics):
    """ProcessorMetrics whose chat families are mirrored into the multiprocess files.

    ``start()`` runs the tick that releases held first increments after the parent's scrapes and
    mirrors what the online judge adds between commits; ``shutdown()`` syncs a last time.
    """

    def __init__(self, fleet: FleetState, label_cap: int = 50) -> None:
        super().__init__(CollectorRegistry(), label_cap=label_cap)
        self._value_class = _file_value_class()
        self._fleet = fleet
        self._files: dict[tuple[int, tuple[str, ...], int], Any] = {}  # (family, labels, cell) -> value
        self._mirrored: dict[tuple[int, tuple[str, ...]], float | list[float]] = {}
        self._stamps: list[dict[tuple[str, ...], int]] = [{} for _ in self.chat_families]
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._tick, name="otel-chatbot-metrics-sync", daemon=True)
            self._thread.start()

    def shutdown(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)
        self.sync()

    def _tick(self) -> None:
        while not self._stop.wait(SYNC_INTERVAL_S):
            self.sync()

    def observe_commit(self, result: CommitResult) -> None:
        super().observe_commit(result)
        self.sync()  # counted in the files before the request is answered, as in one process

    def sync(self) -> None:
        """Release held increments a finished scrape allows, write changed series, stamp new ones."""
        with self._lock:
            finished = self._fleet.scrapes_finished
            for family, stamps in zip(self.chat_families, self._stamps, strict=True):
                ready = [labels for labels, stamp in stamps.items() if stamp < finished]
                for labels in ready:
                    del stamps[labels]
                    _release_one(family, labels)
            for index, family in enumerate(self.chat_families):
                for labels, value in family.values.items():
                    self._mirror(index, family, labels, value)
            started = self._fleet.scrapes_started  # read after the zeros are in the files
            for family, stamps in zip(self.chat_families, self._stamps, strict=True):
                for labels in family.held:
                    stamps.setdefault(labels, started)

    def _mirror(self, index: int, family: CounterFamily | HistogramFamily, labels: tuple[str, ...],
               value: float | list[float]) -> None:
        key = (index, labels)
        before = self._mirrored.get(key)
        if before == value:
            return
        if isinstance(value, list):
            for cell, count in enumerate(value):
                if before is None or not isinstance(before, list) or before[cell] != count:
                    self._file_value(index, family, labels, cell).set(count)
            self._mirrored[key] = list(value)
        else:
            self._file_value(index, family, labels, 0).set(value)
            self._mirrored[key] = value

    def _file_value(self, index: int, family: CounterFamily | HistogramFamily, labels: tuple[str, ...],
                    cell: int) -> Any:
        key = (index, labels, cell)
        value = self._files.get(key)
        if value is None:
            value = self._files[key] = self._new_file_value(family, labels, cell)
        return value

    def _new_file_value(self, family: CounterFamily | HistogramFamily, labels: tuple[str, ...],
                        cell: int) -> Any:
        names, help_text = family.labelnames, family.documentation
        if isinstance(family, CounterFamily):
            base = family.name.removesuffix("_total")
            return self._value_class("counter", base, base + "_total", names, labels, help_text)
        if cell == len(family.bounds) + 1:
            return self._value_class("histogram", family.name, family.name + "_sum", names, labels, help_text)
        le = le_text(family.bounds[cell]) if cell < len(family.bounds) else "+Inf"
        return self._value_class("histogram", family.name, family.name + "_bucket", (*names, "le"),
                                 (*labels, le), help_text)


def _release_one(family: CounterFamily | HistogramFamily, labels: tuple[str, ...]) -> None:
    """Make one held series' increments visible (the per-series form of ``family.release()``)."""
    if isinstance(family, CounterFamily):
        family.values[labels] += family.held.pop(labels, 0.0)
        return
    held = family.held.pop(labels, None)
    if held is not None:
        mine = family.values[labels]
        for i, v in enumerate(held):
            mine[i] += v


class SupervisorCollector(Collector):
    """The parent's /metrics: every worker's files summed, plus the supervisor's own series.

    Scrapes are serialised and numbered in the fleet state (see the module docstring)."""

    def __init__(self, directory: str, fleet: FleetState) -> None:
        self._directory = directory
        self._fleet = fleet
        self._lock = threading.Lock()
        self.restarts = 0
        self.running = 0

    def describe(self) -> Iterator[Metric]:
        return iter(())  # collected on demand only: reading the files at registration would count a scrape

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            number = self._fleet.scrape_started()
            files = glob.glob(os.path.join(self._directory, "*.db"))
            merged = list(MultiProcessCollector.merge(files, accumulate=True))  # type: ignore[no-untyped-call]
            self._fleet.scrape_finished(number)
        yield from merged
        yield CounterMetricFamily("otel_chatbot_worker_restarts_total",
                                  "Worker processes restarted by the supervisor after they died.",
                                  value=self.restarts)
        yield GaugeMetricFamily("otel_chatbot_workers", "Worker processes wanted by --workers.",
                                value=self._fleet.workers)
        ready = sum(1 for i in range(self._fleet.workers) if self._fleet.worker_state(i) == READY)
        yield GaugeMetricFamily("otel_chatbot_workers_ready", "Worker processes running and ready.",
                                value=ready)
