"""Retention inside ``serve``: drop partitions older than ``retention_days`` now and then every hour."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from otel_chatbot.store.retention import purge_older_than

_log = logging.getLogger(__name__)


class RetentionSchedule:
    """A daemon thread running ``purge_older_than(url, days)`` at start and every ``interval_s``.

    A failed run (database down) is logged and tried again at the next interval; it never stops the
    processor. ``shutdown()`` waits for a run in progress (each drop is a short transaction) and is
    safe twice.
    """

    def __init__(self, url: str, days: int, *, interval_s: float = 3600.0,
                 on_dropped: Callable[[list[str]], None] | None = None) -> None:
        if days < 1:
            raise ValueError(f"days must be >= 1, got {days}")
        self._url = url
        self._days = days
        self._interval = interval_s
        self._on_dropped = on_dropped
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # completed runs, for tests and logs
        self.failures = 0  # failed runs (each retried at the next interval)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="otel-chatbot-retention", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def run_once(self) -> list[str]:
        dropped = purge_older_than(self._url, self._days)
        if dropped:
            _log.info("retention: dropped %d partition(s) older than %d day(s): %s", len(dropped),
                      self._days, ", ".join(dropped))
        if self._on_dropped is not None:
            self._on_dropped(dropped)
        self.runs += 1
        return dropped

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except psycopg.Error as exc:
                self.failures += 1
                _log.warning("retention: run failed, retrying in %.0f s: %s", self._interval, exc)
            except Exception:  # a bug: keep the processor up, say where
                self.failures += 1
                _log.exception("retention: run failed")
            self._stop.wait(self._interval)
