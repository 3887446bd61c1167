"""Chat turns and feedback from a batch's chat spans (spans with chat/LLM attributes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from otel_chatbot import semconv as sc
from otel_chatbot.processor.normalise.plan import (
    SESSION_METADATA,
    ChatSpan,
    clean_optional,
    clean_text,
    flag,
    keys_value,
    metadata_value,
    text_value,
)
from otel_chatbot.processor.normalise.text import bot_response_of, user_message_of
from otel_chatbot.records import FeedbackRow, NormalisedBatch, SpanRow, TurnRow

_STATUS_ERROR: Final = 2
_USER_METADATA: Final = ("user_id",)
_CONTENT_SPAN_KINDS: Final = frozenset({"LLM", "CHAIN", "AGENT"})


def add_turns_and_feedback(batch: NormalisedBatch, chat_spans: list[ChatSpan]) -> None:
    by_trace: dict[str, list[ChatSpan]] = {}
    for item in chat_spans:
        row, attributes, plan = item
        if plan.feedback or row.name == sc.CHAT_FEEDBACK_SPAN_NAME:
            feedback = feedback_from_attributes(attributes, "span", row.start_ns, row.service)
            if feedback is None:
                batch.invalid_feedback += 1
            else:
                batch.feedback.append(feedback)
            continue
        members = by_trace.get(row.trace_id)
        if members is None:
            by_trace[row.trace_id] = [item]
        else:
            members.append(item)
    parents: dict[str, str | None] | None = None
    for members in by_trace.values():
        if len(members) > 1:
            members.sort(key=_start_of)
        sdk_turns = [item for item in members if item[2].turn_id]
        if sdk_turns:
            for turn_row, attributes, _ in sdk_turns:
                turn_id = str(attributes[sc.CHAT_TURN_ID])
                belongs = [m for m in members if m[0] is turn_row or _in_turn(m, turn_id, len(sdk_turns))]
                batch.turns.append(_turn(turn_row, attributes, turn_id, False, belongs, members))
            continue
        auto_members = [m for m in members if not m[2].in_turn]
        candidates = [m for m in auto_members if _is_candidate(m)]
        if not candidates:
            continue
        if len(candidates) == 1:
            top = candidates[0]
        else:
            if parents is None:
                parents = {r.span_id: r.parent_span_id for r in batch.spans}
            top = _top_most(candidates, parents)
        batch.turns.append(_turn(top[0], top[1], top[0].trace_id, True, auto_members, auto_members))


def _in_turn(item: ChatSpan, turn_id: str, sdk_turns_in_trace: int) -> bool:
    owner = item[1].get(sc.CHAT_IN_TURN)
    if owner is not None:
        return str(owner) == turn_id
    return sdk_turns_in_trace == 1  # unstamped spans of a one-turn trace belong to that turn


def _is_candidate(item: ChatSpan) -> bool:
    plan = item[2]
    if plan.candidate:
        return True
    attributes = item[1]
    if attributes.get(sc.OPENINFERENCE_SPAN_KIND) in _CONTENT_SPAN_KINDS:
        return True
    return plan.metadata and metadata_value(attributes, SESSION_METADATA) is not None


def _top_most(candidates: list[ChatSpan], parents: dict[str, str | None]) -> ChatSpan:
    """The candidate with no other candidate above it (through the batch's parent links); ties → earliest.

    ``candidates`` are in start order.
    """
    ids = {item[0].span_id for item in candidates}
    for item in candidates:
        parent = item[0].parent_span_id
        steps = 0
        while parent is not None and parent not in ids and steps < 10_000:  # bound: cyclic garbage
            parent = parents.get(parent)
            steps += 1
        if parent is None or parent not in ids:
            return item
    return candidates[0]


def _turn(
    row: SpanRow,
    attributes: dict[str, Any],
    turn_id: str,
    auto: bool,
    members: list[ChatSpan],
    context: list[ChatSpan],
) -> TurnRow:
    """A turn from its span; what the span lacks comes from its members, then the trace.

    ``members`` and ``context`` are in start order.
    """
    # The earliest member's input (the chain's, not a sub-call's); the last member to finish's answer.
    user_message = _turn_text(user_message_of, attributes, members)
    bot_response = _turn_text(bot_response_of, attributes, sorted(members, key=_end_of, reverse=True))
    fallback = hallucinated = injection = blocked = rate_limited = False
    fallback_reason = hallucination_source = None
    for member_row, attrs, plan in members:
        if member_row.status_code == _STATUS_ERROR and attrs.get(sc.OPENINFERENCE_SPAN_KIND) == "GUARDRAIL":
            blocked = True  # an OpenInference guardrail that failed stopped the message
        if not plan.details:
            continue
        fallback = fallback or flag(attrs.get(sc.CHAT_FALLBACK))
        hallucinated = hallucinated or flag(attrs.get(sc.CHAT_HALLUCINATION))
        injection = injection or flag(attrs.get(sc.CHAT_PROMPT_INJECTION))
        blocked = blocked or flag(attrs.get(sc.CHAT_BLOCKED))
        rate_limited = rate_limited or flag(attrs.get(sc.CHAT_RATE_LIMITED))
        if fallback_reason is None or member_row is row:
            fallback_reason = text_value(attrs.get(sc.CHAT_FALLBACK_REASON)) or fallback_reason
        if hallucination_source is None or member_row is row:
            source = text_value(attrs.get(sc.CHAT_HALLUCINATION_SOURCE))
            hallucination_source = source or hallucination_source
    model = row.model
    if model is None:
        model = next((m[0].model for m in members if m[0].model and m[0].input_tokens is not None), None)
    return TurnRow(
        turn_id=clean_text(turn_id),
        trace_id=row.trace_id,
        span_id=row.span_id,
        auto=auto,
        session_id=_first_of(attributes, context, sc.SESSION_ALIASES, SESSION_METADATA),
        user_id=_first_of(attributes, context, sc.USER_ALIASES, _USER_METADATA),
        source=_first_of(attributes, context, (sc.CHAT_SOURCE,), ()),
        service=row.service,
        start_ns=row.start_ns,
        latency_s=max(row.end_ns - row.start_ns, 0) / 1e9,
        user_message=clean_optional(user_message),
        bot_response=clean_optional(bot_response),
        model=model,
        fallback=fallback,
        fallback_reason=fallback_reason,
        hallucinated=hallucinated,
        hallucination_source=hallucination_source,
        prompt_injection=injection,
        blocked=blocked,
        rate_limited=rate_limited,
        error=row.status_code == _STATUS_ERROR,
    )


def _start_of(item: ChatSpan) -> int:
    return item[0].start_ns


def _turn_text(text_of: Callable[[dict[str, Any], bool], str | None], own: dict[str, Any],
               members: list[ChatSpan]) -> str | None:
    """The turn span's text, else the first member's; recognised text anywhere before raw JSON.

    Frameworks whose top span holds a JSON of their own shape (Haystack's pipeline output holds
    reprs of its message objects) keep the plain text on the LLM span below: that wins over the raw
    JSON, which is kept only when no span has better.
    """
    for raw in (False, True):
        text = text_of(own, raw)
        if text is not None:
            return text
        for member in members:
            if member[1] is not own:
                text = text_of(member[1], raw)
                if text is not None:
                    return text
    return None


def _end_of(item: ChatSpan) -> int:
    return item[0].end_ns


def _first_of(
    own: dict[str, Any], context: list[ChatSpan], keys: tuple[str, ...], metadata_keys: tuple[str, ...]
) -> str | None:
    """The first value under ``keys``: the turn span's own, else the earliest span of the trace having one."""
    text = keys_value(own, keys, metadata_keys)
    if text is not None:
        return text
    for _, attrs, _plan in context:
        if attrs is not own:
            text = keys_value(attrs, keys, metadata_keys)
            if text is not None:
                return text
    return None



def feedback_from_attributes(
    attributes: dict[str, Any], origin: str, time_ns: int, service: str | None
) -> FeedbackRow | None:
    turn_id = attributes.get(sc.CHAT_TURN_ID)
    rating = attributes.get(sc.CHAT_FEEDBACK_RATING)
    if turn_id is None or str(turn_id).strip() == "" or not isinstance(rating, str):
        return None
    rating = rating.strip().lower()
    if rating not in sc.FEEDBACK_RATINGS:
        return None
    comment = attributes.get(sc.CHAT_FEEDBACK_COMMENT)
    comment = clean_text(comment) if isinstance(comment, str) and comment else None
    return FeedbackRow(
        turn_id=clean_text(str(turn_id)),
        rating=rating,
        comment=comment,
        origin=origin,
        time_ns=time_ns,
        service=service,
    )
