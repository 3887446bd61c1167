"""How a batch's turns meet the turns already stored (pure functions of the writer)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from otel_chatbot.records import FeedbackRow, TurnRow

StoredTurns = dict[str, list[tuple[str, int, bool]]]  # trace id → [(turn_id, started_us, auto)]


def plan_turns(sdk_turns: list[TurnRow], auto_turns: list[TurnRow],
               stored: StoredTurns) -> tuple[list[TurnRow], list[TurnRow], set[str]]:
    """Split a batch's turns by what is stored for their traces (``stored``: trace → [(turn_id,
    started_us, auto)], read under the traces' advisory locks).

    Returns (fresh, merge, displaced): turns to insert as they are; auto candidates whose trace already
    has its auto turn (merged by MERGE_AUTO_TURNS); traces whose stored auto turn a new SDK turn displaces.
    A stored SDK turn re-sent is skipped, as is an auto candidate of a trace with an SDK turn.
    """
    fresh: list[TurnRow] = []
    merge: list[TurnRow] = []
    displaced: set[str] = set()
    for turn in sdk_turns:
        rows = stored.get(turn.trace_id, ())
        start_us = turn.start_ns // 1000
        if any(turn_id == turn.turn_id and started == start_us for turn_id, started, _ in rows):
            continue  # a retry: already stored
        fresh.append(turn)
        if any(auto for _, _, auto in rows):
            displaced.add(turn.trace_id)
    sdk_traces = {t.trace_id for t in sdk_turns}
    for turn in auto_turns:
        if turn.trace_id in sdk_traces:
            continue
        stored_rows = stored.get(turn.trace_id)
        if not stored_rows:
            fresh.append(turn)
        elif all(auto for _, _, auto in stored_rows):
            merge.append(turn)
    return fresh, merge, displaced


def unique_sdk_turns(turns: list[TurnRow]) -> list[TurnRow]:
    """SDK turns, once per primary key (a span repeated inside a batch makes its turn twice)."""
    unique: dict[tuple[str, int], TurnRow] = {}
    for turn in turns:
        if not turn.auto:
            unique.setdefault((turn.turn_id, turn.start_ns // 1000), turn)
    return list(unique.values())


def unknown_sessions(turns: list[TurnRow], known: dict[tuple[str, str], None]) -> list[dict[str, Any]]:
    """UPSERT_SESSIONS rows of the sessions not known to be stored, sorted: the earliest start of their
    turns in the batch and the source of the earliest turn that has one."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for turn in sorted((t for t in turns if t.session_id is not None), key=_start_ns):
        key = (turn.session_id or "", turn.service)
        if key in known:
            continue
        row = found.get(key)
        if row is None:
            found[key] = {"session_id": key[0], "service": key[1], "source": turn.source,
                          "first_us": turn.start_ns // 1000}
        elif row["source"] is None:
            row["source"] = turn.source
    return [found[k] for k in sorted(found)]


def _start_ns(turn: TurnRow) -> int:
    return turn.start_ns


def fold_auto_turns(turns: list[TurnRow]) -> list[TurnRow]:
    """One auto candidate per trace: batches coalesced by the processor may carry several.

    The earliest-starting candidate gives identity; its missing fields come from the later ones and
    flags are OR-ed, mirroring the merge with a stored auto turn.
    """
    folded: dict[str, TurnRow] = {}
    for turn in turns:
        if not turn.auto:
            continue
        seen = folded.get(turn.trace_id)
        folded[turn.trace_id] = turn if seen is None else _merge_turns(seen, turn)
    return list(folded.values())


def _merge_turns(a: TurnRow, b: TurnRow) -> TurnRow:
    first, second = (b, a) if b.start_ns < a.start_ns else (a, b)
    return replace(
        first,
        session_id=first.session_id or second.session_id, user_id=first.user_id or second.user_id,
        source=first.source or second.source, user_message=first.user_message or second.user_message,
        bot_response=first.bot_response or second.bot_response, model=first.model or second.model,
        fallback_reason=first.fallback_reason or second.fallback_reason,
        hallucination_source=first.hallucination_source or second.hallucination_source,
        fallback=first.fallback or second.fallback, hallucinated=first.hallucinated or second.hallucinated,
        prompt_injection=first.prompt_injection or second.prompt_injection,
        blocked=first.blocked or second.blocked, rate_limited=first.rate_limited or second.rate_limited,
        error=first.error or second.error,
    )


def pick_turns(turns: list[TurnRow], turn_ids: list[str]) -> list[TurnRow]:
    if not turn_ids:
        return []
    wanted = set(turn_ids)
    picked: dict[str, TurnRow] = {}
    for turn in turns:
        if turn.turn_id in wanted:
            seen = picked.get(turn.turn_id)
            if seen is None or turn.start_ns < seen.start_ns:
                picked[turn.turn_id] = turn  # several auto candidates of one trace: the earliest
    return list(picked.values())


def pick_feedback(feedback: list[FeedbackRow], turn_ids: list[str]) -> list[FeedbackRow]:
    if not turn_ids:
        return []
    wanted = set(turn_ids)
    latest: dict[str, FeedbackRow] = {}
    for row in feedback:
        if row.turn_id in wanted:
            seen = latest.get(row.turn_id)
            if seen is None or row.time_ns >= seen.time_ns:
                latest[row.turn_id] = row
    return list(latest.values())
