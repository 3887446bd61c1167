"""The chat metric families behind ProcessorMetrics: label caps and first-increment holding.

A chat series is born at 0 and its increments are held until a scrape has read that 0 (``touch``,
``add``, ``release``), so Prometheus' ``increase()`` sees a first burst; ``ChatCollector`` exposes the
families under one lock. Kept apart from the metric declarations (metrics.py) because the multiprocess
mirror (multiproc_metrics.py) works on the same families.
"""

from __future__ import annotations

import threading
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Final, cast

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

OTHER: Final = "other"

Labels = tuple[str, ...]
# prometheus_client formats bucket bounds this way (3.0 -> "3.0"); the rules match le exactly.
le_text = cast(Callable[[float], str], floatToGoString)


class LabelCap:
    """Admits the first ``cap`` distinct values of one label; later ones fold into ``other``."""

    __slots__ = ("cap", "seen")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.seen: set[str] = set()

    def admit(self, value: str) -> bool:
        if value in self.seen or value == OTHER:
            return True
        if len(self.seen) < self.cap:
            self.seen.add(value)
            return True
        return False


class CounterFamily:
    """A labelled counter whose samples are plain floats, updated by the owner under its lock."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[Labels, float] = {}  # what a scrape reads
        # Series born since the last scrape: exposed at 0, their increments held here until a scrape
        # has read that 0 (see the module docstring).
        self.held: dict[Labels, float] = {}

    def add(self, labels: Labels, amount: float) -> None:
        if labels in self.held:
            self.held[labels] += amount
        elif labels in self.values:
            self.values[labels] += amount
        else:
            self.values[labels] = 0.0
            self.held[labels] = amount

    def touch(self, labels: Labels) -> None:
        """Expose the series at 0 (a turn series' flag counters exist as soon as it does)."""
        if labels not in self.values:
            self.values[labels] = 0.0
            self.held[labels] = 0.0

    def release(self) -> None:
        """A scrape has read the held series at 0: their increments become visible to the next one."""
        for labels, amount in self.held.items():
            self.values[labels] += amount
        self.held.clear()

    def metric(self, values: Iterable[tuple[Labels, float]]) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in values:
            family.add_metric(list(labels), value)
        return family


class HistogramFamily:
    """A labelled histogram fed with pre-bucketed counts (one merge per label set per batch)."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str],
                 buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.bounds = tuple(float(b) for b in buckets)
        self._les = [le_text(b) for b in self.bounds] + ["+Inf"]
        # per label set: [count in bucket 0 … count in +Inf bucket, sum]
        self.values: dict[Labels, list[float]] = {}
        self.held: dict[Labels, list[float]] = {}  # as CounterFamily.held

    def cell_of(self, values: Sequence[float], scale: float = 1.0) -> list[float]:
        """Bucket counts and sum of ``values * scale`` (sorting once beats one bisect per value)."""
        ordered = sorted(values)
        cell: list[float] = []
        below = 0
        for bound in self.bounds:
            upto = bisect_right(ordered, bound / scale)  # le is inclusive
            cell.append(upto - below)
            below = upto
        cell.append(len(ordered) - below)
        cell.append(sum(ordered) * scale)
        return cell

    def merge(self, labels: Labels, cell: list[float]) -> None:
        mine = self.held.get(labels)
        if mine is None:
            mine = self.values.get(labels)
        if mine is None:
            self.values[labels] = [0.0] * len(cell)
            self.held[labels] = list(cell)
            return
        for i, v in enumerate(cell):
            mine[i] += v

    def release(self) -> None:
        for labels, cell in self.held.items():
            mine = self.values[labels]
            for i, v in enumerate(cell):
                mine[i] += v
        self.held.clear()

    def metric(self, values: Iterable[tuple[Labels, list[float]]]) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, cell in values:
            cumulative = 0.0
            buckets = []
            for le, count in zip(self._les, cell[:-1], strict=True):
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(list(labels), buckets, cell[-1])
        return family


class ChatCollector(Collector):
    """Exposes the dict-backed families; a snapshot is taken under the owner's lock."""

    def __init__(self, lock: threading.Lock,
                 families: Sequence[CounterFamily | HistogramFamily]) -> None:
        self._lock = lock
        self._families = families

    def describe(self) -> Iterator[Metric]:
        for family in self._families:
            yield family.metric(())

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = [(f, [(k, list(v) if isinstance(v, list) else v) for k, v in f.values.items()])
                        for f in self._families]
            for family in self._families:
                family.release()  # this scrape reads the new series at 0; the next one reads more
        for family, values in snapshot:
            yield family.metric(values)  # type: ignore[arg-type]
