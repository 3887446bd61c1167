"""The rollup job inside ``serve``: store/rollup.py's ``refresh_rollups`` at start and every interval."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from otel_chatbot.store.rollup import RollupRun, refresh_rollups

_log = logging.getLogger(__name__)


class RollupSchedule:
    """A daemon thread running ``refresh_rollups(url)`` at start and every ``interval_s``.

    ``on_run(ok)`` is told how each run ended (the runs/failures metric). A failed run (database down)
    is logged and tried again at the next interval; it never stops the processor. ``shutdown()`` waits
    for a run in progress (each day is rebuilt in its own short transaction) and is safe twice.
    """

    def __init__(self, url: str, *, interval_s: float,
                 on_run: Callable[[bool], None] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._url = url
        self._interval = interval_s
        self._on_run = on_run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # completed runs, for tests and logs
        self.failures = 0  # failed runs (each retried at the next interval)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="otel-chatbot-rollups", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def run_once(self) -> RollupRun:
        run = refresh_rollups(self._url)
        if run.refreshed or run.dropped:
            _log.info("rollups: rebuilt %d day(s), dropped %d; live from %s", len(run.refreshed),
                      len(run.dropped), run.live_from)
        self.runs += 1
        return run

    def _loop(self) -> None:
        while not self._stop.is_set():
            ok = False
            try:
                self.run_once()
                ok = True
            except psycopg.Error as exc:
                _log.warning("rollups: run failed, retrying in %.0f s: %s", self._interval, exc)
            except Exception:  # a bug: keep the processor up, say where
                _log.exception("rollups: run failed")
            if not ok:
                self.failures += 1
            if self._on_run is not None:
                self._on_run(ok)
            self._stop.wait(self._interval)
