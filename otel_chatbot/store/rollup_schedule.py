"""The rollup job inside ``serve``: store/rollup.py's ``refresh_rollups`` at start and every interval."""

from __future__ import annotations

import logging
from collections.abc import Callable

from otel_chatbot.store.periodic import PeriodicJob
from otel_chatbot.store.rollup import RollupRun, refresh_rollups

_log = logging.getLogger(__name__)


class RollupSchedule(PeriodicJob):
    """``refresh_rollups(url)`` at start and every ``interval_s`` (store/periodic.py); ``on_run(ok)``
    is told how each run ended (the runs/failures metric)."""

    name = "rollups"

    def __init__(self, url: str, *, interval_s: float,
                 on_run: Callable[[bool], None] | None = None) -> None:
        super().__init__(interval_s=interval_s)
        self._url = url
        self._on_run = on_run

    def run_once(self) -> RollupRun:
        run = refresh_rollups(self._url)
        if run.refreshed or run.dropped:
            _log.info("rollups: rebuilt %d day(s), dropped %d; live from %s", len(run.refreshed),
                      len(run.dropped), run.live_from)
        return run

    def ended(self, ok: bool) -> None:
        if self._on_run is not None:
            self._on_run(ok)
