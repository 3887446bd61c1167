"""How a batch's turns meet the turns already stored (pure functions of the writer)."""

from __future__ import annotations

from dataclasses import replace

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


def fold_auto_turns(turns: list[TurnRow]) -> list[TurnRow]:
    """One auto candidate per trace: batches coalesced by the processor may carry several.

    The first in identity order gives identity; its missing fields come from the others and flags are
    OR-ed, mirroring the merge with a stored auto turn.
    """
    folded: dict[str, TurnRow] = {}
    for turn in turns:
        if not turn.auto:
            continue
        seen = folded.get(turn.trace_id)
        folded[turn.trace_id] = turn if seen is None else _merge_turns(seen, turn)
    return list(folded.values())


def identity_order(turn: TurnRow) -> tuple[int, float, str]:
    """Which of two auto candidates of a trace gives the turn its identity: the earlier start, then the
    longer span (the enclosing one), then the smaller span id. MERGE_AUTO_TURNS compares the same."""
    return turn.start_ns // 1000, -turn.latency_s, turn.span_id


def _merge_turns(a: TurnRow, b: TurnRow) -> TurnRow:
    first, second = (b, a) if identity_order(b) < identity_order(a) else (a, b)
    # Identity (start, span, service, latency, error) from the first; descriptive fields from the first
    # that has them; flags OR-ed (the writer counts them into the trace's parts).
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
        escalated=first.escalated or second.escalated,
        escalation_reason=first.escalation_reason or second.escalation_reason,
        prompt_version=first.prompt_version or second.prompt_version,
        app_version=first.app_version or second.app_version,
    )


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
