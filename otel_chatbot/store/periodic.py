"""A job that ``serve`` runs in a daemon thread at start and then every interval (retention, rollups).

A failed run (database down) is logged and tried again at the next interval; it never stops the
processor. ``shutdown()`` waits for a run in progress (the jobs work in short transactions) and is
safe twice. Subclasses say what a run is (``run_once``) and may hear how each run ended (``ended``).
"""

from __future__ import annotations

import logging
import threading

import psycopg

_log = logging.getLogger(__name__)


class PeriodicJob:
    """Runs ``run_once()`` at start and every ``interval_s`` until ``shutdown()``."""

    name = "job"  # in log lines and the thread's name

    def __init__(self, *, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.runs = 0  # completed runs, for tests and logs
        self.failures = 0  # failed runs (each retried at the next interval)

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"otel-chatbot-{self.name}", daemon=True)
        self._thread.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def run_once(self) -> object:
        raise NotImplementedError

    def ended(self, ok: bool) -> None:
        """Told after each run whether it succeeded (e.g. for a runs/failures metric)."""

    def _loop(self) -> None:
        while not self._stop.is_set():
            ok = False
            try:
                self.run_once()
                self.runs += 1
                ok = True
            except psycopg.Error as exc:
                _log.warning("%s: run failed, retrying in %.0f s: %s", self.name, self._interval, exc)
            except Exception:  # a bug: keep the processor up, say where
                _log.exception("%s: run failed", self.name)
            if not ok:
                self.failures += 1
            self.ended(ok)
            self._stop.wait(self._interval)
