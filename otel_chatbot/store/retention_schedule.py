"""Retention inside ``serve``: drop partitions older than ``retention_days`` now and then every hour."""

from __future__ import annotations

import logging
from collections.abc import Callable

from otel_chatbot.store.periodic import PeriodicJob
from otel_chatbot.store.retention import purge_older_than

_log = logging.getLogger(__name__)


class RetentionSchedule(PeriodicJob):
    """``purge_older_than(url, days)`` at start and every ``interval_s`` (store/periodic.py)."""

    name = "retention"

    def __init__(self, url: str, days: int, *, interval_s: float = 3600.0,
                 on_dropped: Callable[[list[str]], None] | None = None) -> None:
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        super().__init__(interval_s=interval_s)
        self._url = url
        self._days = days
        self._on_dropped = on_dropped

    def run_once(self) -> list[str]:
        dropped = purge_older_than(self._url, self._days)
        if dropped:
            _log.info("retention: dropped %d partition(s) older than %d day(s): %s", len(dropped),
                      self._days, ", ".join(dropped))
        if self._on_dropped is not None:
            self._on_dropped(dropped)
        return dropped
