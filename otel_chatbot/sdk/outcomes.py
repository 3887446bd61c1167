"""``record_outcome``: a business outcome of a conversation (conversion, lead, CSAT, NPS).

Sent as a ``chat.outcome`` span through the same OTLP pipeline as everything else, so an app needs
no second endpoint; a backend that learns of a purchase later can also ``POST /v1/outcomes``.
"""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context

from otel_chatbot import semconv
from otel_chatbot.outcome_values import validate_outcome
from otel_chatbot.sdk.tracing import tracer as _tracer

__all__ = ["record_outcome", "validate_outcome"]


def record_outcome(session_id: str | None = None, kind: str = "conversion", value: float | None = None, *,
                   turn_id: str | None = None, label: str | None = None) -> None:
    """Record that ``session_id`` (or the turn ``turn_id``) led to ``kind``: "conversion" (signed up,
    booked, bought; ``value`` an optional amount), "lead" (optional score), "csat" (1-5) or "nps" (0-10).

    A bad kind or value, or neither a session nor a turn, is a programming error: ``ValueError``.
    """
    if not session_id and not turn_id:
        raise ValueError("record_outcome: give session_id or turn_id")
    problem = validate_outcome(kind, value)
    if problem is not None:
        raise ValueError(f"record_outcome: {problem}")
    attributes: dict[str, Any] = {semconv.CHAT_OUTCOME_KIND: kind}
    if value is not None:
        attributes[semconv.CHAT_OUTCOME_VALUE] = float(value)
    if label:
        attributes[semconv.CHAT_OUTCOME_LABEL] = label
    if session_id:
        attributes[semconv.SESSION_ID] = session_id
    if turn_id:
        attributes[semconv.CHAT_TURN_ID] = turn_id
    # A root span of its own: outcomes are known after the conversation, from another request.
    span = _tracer().start_span(semconv.CHAT_OUTCOME_SPAN_NAME, context=Context(), attributes=attributes)
    span.end()
