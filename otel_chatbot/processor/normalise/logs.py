"""Parsed OTLP log requests → feedback and outcome rows."""

from __future__ import annotations

import hashlib
import time
from typing import Any

import orjson

from otel_chatbot import semconv as sc
from otel_chatbot.processor import decode
from otel_chatbot.processor.normalise.outcomes import outcome_from_attributes
from otel_chatbot.processor.normalise.plan import Redact, clean_text
from otel_chatbot.processor.normalise.turns import feedback_from_attributes
from otel_chatbot.records import NormalisedBatch


def normalise_logs(request: Any, redact: Redact | None = None) -> NormalisedBatch:
    """Feedback rows from log records carrying ``chat.turn.id`` and ``chat.feedback.rating``.

    The two keys may be attributes or, for records whose event name is ``chat.feedback``, entries of
    a map body. Records with neither key are ignored; records with a missing turn id or a rating
    other than up/down are counted in ``invalid_feedback``.
    """
    batch = NormalisedBatch()
    for resource_logs in request.resource_logs:
        resource = decode.key_values_to_dict(resource_logs.resource.attributes)
        service = resource.get(sc.SERVICE_NAME)
        service = clean_text(service) if isinstance(service, str) and service else None
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = decode.key_values_to_dict(record.attributes)
                if _is_outcome(record, attributes):
                    _add_outcome(batch, record, attributes, service)
                    continue
                is_event = (
                    record.event_name == sc.CHAT_FEEDBACK_SPAN_NAME
                    or attributes.get("event.name") == sc.CHAT_FEEDBACK_SPAN_NAME
                )
                if is_event and record.HasField("body"):
                    body = decode.any_value_to_python(record.body)
                    if isinstance(body, str) and body.startswith("{"):
                        try:
                            body = orjson.loads(body)
                        except orjson.JSONDecodeError:
                            body = None
                    if isinstance(body, dict):
                        attributes = {**_feedback_body_keys(body), **attributes}
                if not is_event and sc.CHAT_FEEDBACK_RATING not in attributes:
                    continue  # an ordinary log line
                time_ns = record.time_unix_nano or record.observed_time_unix_nano or time.time_ns()
                feedback = feedback_from_attributes(attributes, "log", time_ns, service)
                if feedback is None:
                    batch.invalid_feedback += 1
                    continue
                if redact is not None and feedback.comment:
                    feedback.comment = redact(feedback.comment)
                batch.feedback.append(feedback)
    return batch


def _is_outcome(record: Any, attributes: dict[str, Any]) -> bool:
    return (sc.CHAT_OUTCOME_KIND in attributes or record.event_name == sc.CHAT_OUTCOME_SPAN_NAME
            or attributes.get("event.name") == sc.CHAT_OUTCOME_SPAN_NAME)


def _add_outcome(batch: NormalisedBatch, record: Any, attributes: dict[str, Any],
                 service: str | None) -> None:
    """An outcome log record: attributes, or a map body with our names or short ones (kind, value…)."""
    if record.HasField("body"):
        body = decode.any_value_to_python(record.body)
        if isinstance(body, str) and body.startswith("{"):
            try:
                body = orjson.loads(body)
            except orjson.JSONDecodeError:
                body = None
        if isinstance(body, dict):
            short = {"kind": sc.CHAT_OUTCOME_KIND, "value": sc.CHAT_OUTCOME_VALUE,
                     "label": sc.CHAT_OUTCOME_LABEL, "session_id": sc.SESSION_ID, "turn_id": sc.CHAT_TURN_ID}
            attributes = {**{short.get(str(k), str(k)): v for k, v in body.items()}, **attributes}
    time_ns = record.time_unix_nano or record.observed_time_unix_nano or time.time_ns()
    outcome = outcome_from_attributes(attributes, "log", time_ns, service)
    if outcome is None:
        batch.invalid_outcomes += 1
    else:
        # Log records have no id: their content and time identify a retried one.
        identity = orjson.dumps([outcome.kind, outcome.value, outcome.label, outcome.session_id,
                                 outcome.turn_id, time_ns, service])
        outcome.key = "log:" + hashlib.blake2b(identity, digest_size=16).hexdigest()
        batch.outcomes.append(outcome)


def _feedback_body_keys(body: dict[str, Any]) -> dict[str, Any]:
    # Bodies may use our attribute names or short ones ({"turn_id", "rating", "comment"}).
    out = dict(body)
    for short, full in (
        ("turn_id", sc.CHAT_TURN_ID),
        ("rating", sc.CHAT_FEEDBACK_RATING),
        ("comment", sc.CHAT_FEEDBACK_COMMENT),
    ):
        if short in body and full not in body:
            out[full] = body[short]
    return out
