"""The collector settings a serving process takes (processor/gc_tuning.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from otel_chatbot.processor.gc_tuning import YOUNG_THRESHOLD, tune_for_serving


@pytest.fixture
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_serving_freezes_the_startup_heap_and_raises_only_the_young_threshold(restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    started = [object(), {"built": "at start"}]  # stands for what start-up built
    tune_for_serving()
    assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0
    assert not any(o is started for o in gc.get_objects())  # frozen objects are in no generation
    assert started[1] == {"built": "at start"}


def test_cyclic_garbage_is_still_collected_after_tuning(restored_gc: None) -> None:
    tune_for_serving()

    class Node:
        def __init__(self) -> None:
            self.other: Node | None = None

    a, b = Node(), Node()
    a.other, b.other = b, a
    del a, b
    assert gc.collect() >= 2  # the two nodes of the cycle (and their __dict__s)
