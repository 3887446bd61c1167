"""``record_feedback``: a thumbs up/down on a turn, sent through the same OTLP pipeline as spans."""

from __future__ import annotations

from typing import Any

from opentelemetry.context import Context

from otel_chatbot import semconv
from otel_chatbot.sdk.tracing import tracer as _tracer

__all__ = ["record_feedback"]


def record_feedback(turn_id: str, rating: str, comment: str | None = None, *,
                    session_id: str | None = None, user_id: str | None = None) -> None:
    """Record ``rating`` ("up" or "down") for the turn ``turn_id`` as a ``chat.feedback`` span.

    An invalid rating or an empty turn id is a programming error and raises ``ValueError``; the
    latest feedback for a turn wins in the processor.
    """
    if not isinstance(turn_id, str) or not turn_id:
        raise ValueError(f"record_feedback: turn_id must be a non-empty string, got {turn_id!r}")
    if rating not in semconv.FEEDBACK_RATINGS:
        raise ValueError(f"record_feedback: rating must be one of {semconv.FEEDBACK_RATINGS}, got {rating!r}")
    attributes: dict[str, Any] = {semconv.CHAT_TURN_ID: turn_id, semconv.CHAT_FEEDBACK_RATING: rating}
    if comment:
        attributes[semconv.CHAT_FEEDBACK_COMMENT] = comment
    if session_id:
        attributes[semconv.SESSION_ID] = session_id
    if user_id:
        attributes[semconv.USER_ID] = user_id
    # A root span of its own: feedback usually arrives long after the turn, from another request.
    span = _tracer().start_span(semconv.CHAT_FEEDBACK_SPAN_NAME, context=Context(), attributes=attributes)
    span.end()
