"""The body of ``POST /v1/feedback``: ``{"turn_id": "…", "rating": "up"|"down", "comment": "…"?}``."""

from __future__ import annotations

import time
from typing import Any

import orjson

from otel_chatbot import semconv as sc
from otel_chatbot.processor.normalise import Redact
from otel_chatbot.records import FeedbackRow

MAX_TURN_ID = 256
MAX_COMMENT = 10_000


class FeedbackRequestError(ValueError):
    """The body is not valid feedback; the message says which field and why (answered 400)."""


def feedback_row(body: bytes, redact: Redact | None) -> FeedbackRow:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise FeedbackRequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FeedbackRequestError("body must be a JSON object {turn_id, rating, comment?}")
    turn_id, rating, comment = data.get("turn_id"), data.get("rating"), data.get("comment")
    if not isinstance(turn_id, str) or not turn_id.strip() or len(turn_id) > MAX_TURN_ID:
        raise FeedbackRequestError(f"turn_id: expected a non-empty string of at most {MAX_TURN_ID} "
                                   "characters")
    if rating not in sc.FEEDBACK_RATINGS:
        raise FeedbackRequestError(f"rating: expected 'up' or 'down', got {rating!r}")
    if comment is not None and (not isinstance(comment, str) or len(comment) > MAX_COMMENT):
        raise FeedbackRequestError(f"comment: expected a string of at most {MAX_COMMENT} characters")
    if comment is not None:
        comment = comment.replace("\x00", "")
        if redact is not None:
            comment = redact(comment)
    return FeedbackRow(turn_id.strip(), rating, comment or None, "api", time.time_ns())
