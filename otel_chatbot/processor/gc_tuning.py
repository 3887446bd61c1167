"""Garbage-collector settings of a process that serves ingest (``serve``, each ``--workers`` worker).

Ingest allocates a few container objects per span (attribute dicts, rows, tuples) that live until
their batch is committed. With CPython's default thresholds (a young collection every 700 net
allocations) that is a collection every ~100 spans, and as queued batches survive into the older
generations, full collections that walk the whole heap: measured in process on the ingest
benchmark's requests, the collector took ~4.5 us of ~37 us of CPU per span. Nearly all of that
memory is freed by reference counting anyway, so a serving process freezes what its start-up built
(long-lived: left out of every later collection) and collects the young generation every
``YOUNG_THRESHOLD`` net allocations instead. Cyclic garbage is still collected, a little later.
The library never does this on import: an app using the SDK keeps its own settings.
"""

from __future__ import annotations

import gc
from typing import Final

YOUNG_THRESHOLD: Final = 20_000


def tune_for_serving() -> None:
    """Freeze the start-up heap and raise the young-generation threshold (call once started)."""
    gc.collect()  # start-up garbage is freed, not frozen
    gc.freeze()
    _young, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)
