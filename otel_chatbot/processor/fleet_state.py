"""State shared by the supervisor and its worker processes: a small memory-mapped file of int64 slots.

Layout: ``[scrapes started, scrapes finished, workers wanted, worker 0 state, worker 1 state, …]``.

* The scrape counters let a worker hold a new series' first increment until a scrape of the parent's
  /metrics has read the series at 0 (processor/multiproc_metrics.py): the parent counts a scrape as
  started before it reads the metric files and as finished after.
* A worker state is written by the worker (``READY``/``NOT_READY``, from its own readiness check) and
  reset to ``DOWN`` by the parent as soon as the worker process is gone, so every worker's /readyz can
  answer for the whole set: ready only when all of them are.

One writer per slot (aligned 8-byte stores), so no lock is needed.
"""

from __future__ import annotations

import mmap
import os
import struct
from pathlib import Path
from typing import Final

DOWN: Final = 0
STARTING: Final = 1
READY: Final = 2
NOT_READY: Final = 3

_SLOT = struct.Struct("<q")
_STARTED, _FINISHED, _WANTED, _FIRST_WORKER = 0, 1, 2, 3
STATE_NAMES: Final = {DOWN: "down", STARTING: "starting", READY: "ready", NOT_READY: "not ready"}


class FleetState:
    """The mapped file; ``create()`` in the parent, ``open()`` in a worker; ``close()`` safe twice."""

    def __init__(self, path: Path, workers: int, mapping: mmap.mmap) -> None:
        self.path = path
        self.workers = workers
        self._map: mmap.mmap | None = mapping

    @classmethod
    def create(cls, path: Path, workers: int) -> FleetState:
        size = (_FIRST_WORKER + workers) * _SLOT.size
        with open(path, "wb") as f:
            f.write(b"\0" * size)
        state = cls.open(path)
        state._set(_WANTED, workers)
        state.workers = workers
        return state

    @classmethod
    def open(cls, path: Path) -> FleetState:
        fd = os.open(path, os.O_RDWR)
        try:
            mapping = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        workers = _SLOT.unpack_from(mapping, _WANTED * _SLOT.size)[0]
        return cls(path, int(workers), mapping)

    def close(self) -> None:
        mapping, self._map = self._map, None
        if mapping is not None:
            mapping.close()

    def _get(self, index: int) -> int:
        if self._map is None:
            raise RuntimeError("the fleet state is closed")
        return int(_SLOT.unpack_from(self._map, index * _SLOT.size)[0])

    def _set(self, index: int, value: int) -> None:
        if self._map is None:
            raise RuntimeError("the fleet state is closed")
        _SLOT.pack_into(self._map, index * _SLOT.size, value)

    # --- scrapes (written by the parent) ---------------------------------------------------------
    @property
    def scrapes_started(self) -> int:
        return self._get(_STARTED)

    @property
    def scrapes_finished(self) -> int:
        return self._get(_FINISHED)

    def scrape_started(self) -> int:
        number = self.scrapes_started + 1
        self._set(_STARTED, number)
        return number

    def scrape_finished(self, number: int) -> None:
        self._set(_FINISHED, number)

    # --- workers ---------------------------------------------------------------------------------
    def worker_state(self, index: int) -> int:
        return self._get(_FIRST_WORKER + index)

    def set_worker_state(self, index: int, state: int) -> None:
        if not 0 <= index < self.workers:
            raise IndexError(f"worker {index} of {self.workers}")
        self._set(_FIRST_WORKER + index, state)

    def fleet_readiness(self) -> tuple[bool, str]:
        """(ready, reason) for the whole set: every worker must have reported itself ready."""
        for index in range(self.workers):
            state = self.worker_state(index)
            if state != READY:
                return False, f"worker {index + 1} of {self.workers} is {STATE_NAMES.get(state, state)}"
        return True, "ready"
