"""SETTLE_TURNS rows → the turns and sessions the metrics count (pure function of the writer)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otel_chatbot.records import CommitResult, TurnRow

# Bits of chat_turns.counted (migration 0011): what the metrics have counted for a turn.
TURN, ERROR, FALLBACK, HALLUCINATED, PROMPT_INJECTION, BLOCKED, RATE_LIMITED = (1 << i for i in range(7))


def add_settled(rows: Sequence[tuple[Any, ...]], result: CommitResult) -> int:
    """Add SETTLE_TURNS ``rows`` to ``result``: a turn never counted before → ``new_turns`` with its
    stored values; one counted before → ``corrected_turns`` with only its flags not counted yet (none:
    nothing to add); a first-seen session → ``new_sessions``. Returns the number of reminders the
    statement took (fewer than its limit: none is left due, unless a writer held the turn)."""
    taken = 0
    for row in rows:
        if row[0] == "session":
            result.new_sessions.append((str(row[1]), str(row[8]), None if row[7] is None else str(row[7])))
            continue
        if row[0] == "taken":
            taken += int(row[14])
            continue
        (_, turn_id, trace_id, span_id, auto, session_id, user_id, source, service, started_us, latency,
         model, fallback_reason, hallucination_source, bits, before, user_message, bot_response, escalated,
         escalation_reason, prompt_version, app_version) = row
        first = before is None
        count = int(bits) if first else int(bits) & ~int(before)
        if not first and not count:
            continue
        turn = TurnRow(
            turn_id=str(turn_id), trace_id=str(trace_id), span_id=str(span_id), auto=bool(auto),
            session_id=session_id, user_id=user_id, source=source, service=str(service),
            start_ns=int(started_us) * 1000, latency_s=float(latency), user_message=user_message,
            bot_response=bot_response,
            model=model, fallback=bool(count & FALLBACK), fallback_reason=fallback_reason,
            hallucinated=bool(count & HALLUCINATED), hallucination_source=hallucination_source,
            prompt_injection=bool(count & PROMPT_INJECTION), blocked=bool(count & BLOCKED),
            rate_limited=bool(count & RATE_LIMITED), error=bool(count & ERROR),
            # Escalation is counted with the turn's first count (a later one: store/outcomes.py).
            escalated=first and bool(escalated), escalation_reason=escalation_reason,
            prompt_version=prompt_version, app_version=app_version)
        (result.new_turns if first else result.corrected_turns).append(turn)
    return taken
