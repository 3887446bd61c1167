"""The body of ``POST /v1/outcomes``: a business outcome a backend learnt of after the chat.

``{"session_id": "s-1", "kind": "conversion", "value": 49.0, "label": "purchase"}``, or ``turn_id``
instead of (or with) ``session_id``; ``id`` (optional) makes a retried request count once.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from otel_chatbot.outcome_values import KINDS, MAX_LABEL_CHARS, validate_outcome
from otel_chatbot.records import OutcomeRow

MAX_ID_CHARS = 256
_FIELDS = frozenset(("session_id", "turn_id", "kind", "value", "label", "id", "source"))


class OutcomeRequestError(ValueError):
    """The body is not a valid outcome; the message says which field and why (answered 400)."""


def outcome_row(body: bytes) -> OutcomeRow:
    try:
        data: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise OutcomeRequestError(f"body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise OutcomeRequestError("body must be a JSON object {session_id and/or turn_id, kind, value?, "
                                  "label?, id?}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise OutcomeRequestError(f"unknown field(s) {', '.join(map(repr, unknown))}: expected "
                                  f"{', '.join(sorted(_FIELDS))}")
    session_id = _text(data, "session_id", MAX_ID_CHARS)
    turn_id = _text(data, "turn_id", MAX_ID_CHARS)
    if session_id is None and turn_id is None:
        raise OutcomeRequestError("session_id or turn_id: give at least one (a non-empty string)")
    kind = data.get("kind")
    if kind not in KINDS:
        raise OutcomeRequestError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    problem = validate_outcome(kind, data.get("value"))
    if problem is not None:
        raise OutcomeRequestError(f"value: {problem}")
    value = data.get("value")
    event_id = _text(data, "id", MAX_ID_CHARS)
    return OutcomeRow(kind=str(kind), value=None if value is None else float(value),
                      label=_text(data, "label", MAX_LABEL_CHARS), session_id=session_id, turn_id=turn_id,
                      origin="api", time_ns=time.time_ns(), source=_text(data, "source", MAX_LABEL_CHARS),
                      key=None if event_id is None else f"api:{event_id}")


def _text(data: dict[str, Any], name: str, limit: int) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise OutcomeRequestError(f"{name}: expected a non-empty string of at most {limit} characters")
    return value.strip().replace("\x00", "\ufffd")
