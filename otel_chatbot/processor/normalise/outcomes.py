"""Business outcomes (``chat.outcome`` spans and log records) and what a span adds to its turn
beyond flags: escalation to a human agent and the prompt / app version (pure functions)."""

from __future__ import annotations

from typing import Any

from otel_chatbot import semconv as sc
from otel_chatbot.outcome_values import MAX_LABEL_CHARS, validate_outcome
from otel_chatbot.processor.normalise.plan import flag, keys_value, text_value
from otel_chatbot.records import OutcomeRow, TurnExtras

_MAX_ID_CHARS = 256


def outcome_from_attributes(attributes: dict[str, Any], origin: str, time_ns: int,
                            service: str | None) -> OutcomeRow | None:
    """The outcome a span or log record carries, or None when it is unusable (bad kind or value, no
    session and no turn, an id too long)."""
    kind = attributes.get(sc.CHAT_OUTCOME_KIND)
    kind = kind.strip().lower() if isinstance(kind, str) else kind
    value = attributes.get(sc.CHAT_OUTCOME_VALUE)
    if isinstance(value, str):  # a log body or a collector transform may carry it as text
        try:
            value = float(value)
        except ValueError:
            return None
    if validate_outcome(kind, value) is not None:
        return None
    session_id = keys_value(attributes, sc.SESSION_ALIASES, ())
    turn_id = text_value(attributes.get(sc.CHAT_TURN_ID))
    if session_id is None and turn_id is None:
        return None
    if any(v is not None and len(v) > _MAX_ID_CHARS for v in (session_id, turn_id)):
        return None
    label = text_value(attributes.get(sc.CHAT_OUTCOME_LABEL))
    return OutcomeRow(kind=str(kind), value=None if value is None else float(value),
                      label=label[:MAX_LABEL_CHARS] if label else None, session_id=session_id,
                      turn_id=turn_id, origin=origin, time_ns=time_ns, service=service,
                      source=text_value(attributes.get(sc.CHAT_SOURCE)))


def escalation_of(attributes: dict[str, Any]) -> tuple[bool, str | None]:
    """(escalated, reason) a span states; a reason alone means escalated."""
    reason = text_value(attributes.get(sc.CHAT_ESCALATION_REASON))
    return flag(attributes.get(sc.CHAT_ESCALATED)) or reason is not None, reason


def extras_of(trace_id: str, turn_id: str | None, attributes: dict[str, Any]) -> TurnExtras | None:
    """What a span of a turn adds to it (escalation, prompt / app version), None when nothing."""
    escalated, reason = escalation_of(attributes)
    prompt_version = keys_value(attributes, sc.PROMPT_VERSION_ALIASES, ())
    app_version = keys_value(attributes, sc.APP_VERSION_ALIASES, ())
    if not escalated and prompt_version is None and app_version is None:
        return None
    return TurnExtras(trace_id, turn_id, escalated, reason, prompt_version, app_version)
