"""Per-trace/turn advisory locks of the write transaction: which ids, hashed to how many slots.

Trace/turn ids hash into ``LOCK_SLOTS`` advisory-lock slots, so one transaction holds at most this
many locks whatever the batch size: one lock per id exhausted a stock lock table (64 per transaction x
connections) at ~8,000 traces and failed the batch on every retry. Writers serialise only on shared
slots; the slots are locked in sorted order in one statement (merge_sql.LOCK_IDS), so writers never
deadlock.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterable

from otel_chatbot.records import NormalisedBatch, TurnRow
from otel_chatbot.store import outcomes, pending_feedback

LOCK_CLASS = 0x6F746964  # advisory lock namespace of trace/turn ids ("otid")
LOCK_SLOTS = 1024


def lock_key(value: str) -> int:
    return zlib.crc32(value.encode()) % LOCK_SLOTS


def lock_params(ids: Iterable[str]) -> tuple[int, str]:
    """The parameters of merge_sql.LOCK_IDS for ``ids``: the sorted slots as an int4[] literal."""
    keys = sorted({lock_key(i) for i in ids})
    return LOCK_CLASS, "{" + ",".join(map(str, keys)) + "}"


def write_lock_ids(turns: list[TurnRow], batch: NormalisedBatch,
                   part_traces: Collection[str] = ()) -> set[str]:
    """The trace and turn ids whose advisory locks a write holds: the traces of its turns and parts,
    the turns its feedback and outcomes name, and those pending feedback may wait for."""
    return {t.trace_id for t in turns}.union(part_traces, [f.turn_id for f in batch.feedback],
                                             pending_feedback.lock_ids(turns),
                                             outcomes.lock_ids(batch.outcomes))
