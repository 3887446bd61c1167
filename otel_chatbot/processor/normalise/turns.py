"""Chat turns and feedback from a batch's chat spans (spans with chat/LLM attributes)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from otel_chatbot import semconv as sc
from otel_chatbot.processor.normalise.outcomes import escalation_of, extras_of, outcome_from_attributes
from otel_chatbot.processor.normalise.plan import (
    SESSION_METADATA,
    ChatSpan,
    Plan,
    clean_optional,
    clean_text,
    flag,
    keys_value,
    metadata_value,
    text_value,
)
from otel_chatbot.processor.normalise.text import bot_response_of, user_message_of
from otel_chatbot.records import FeedbackRow, FlagRow, NormalisedBatch, SpanRow, TurnRow

_STATUS_ERROR: Final = 2
_USER_METADATA: Final = ("user_id",)
_CONTENT_SPAN_KINDS: Final = frozenset({"LLM", "CHAIN", "AGENT"})


def add_turns_and_feedback(batch: NormalisedBatch, chat_spans: list[ChatSpan]) -> None:
    by_trace: dict[str, list[ChatSpan]] = {}
    with_extras: list[ChatSpan] = []
    for item in chat_spans:
        row, attributes, plan = item
        if plan.outcome or row.name == sc.CHAT_OUTCOME_SPAN_NAME:
            outcome = outcome_from_attributes(attributes, "span", row.start_ns, row.service)
            if outcome is None:
                batch.invalid_outcomes += 1
            else:
                outcome.key = f"span:{row.trace_id}:{row.span_id}"
                batch.outcomes.append(outcome)
            continue
        if plan.extras:
            with_extras.append(item)
        if plan.feedback or row.name == sc.CHAT_FEEDBACK_SPAN_NAME:
            feedback = feedback_from_attributes(attributes, "span", row.start_ns, row.service)
            if feedback is None:
                batch.invalid_feedback += 1
            else:
                batch.feedback.append(feedback)
            continue
        if plan.turn_id or plan.in_turn:
            row.turn_scope = _scope_of(attributes)
        if plan.details or row.status_code == _STATUS_ERROR:
            flags = _flags_of(row, attributes, plan)
            if flags is not None:
                batch.flags.append(flags)
        members = by_trace.get(row.trace_id)
        if members is None:
            by_trace[row.trace_id] = [item]
        else:
            members.append(item)
    parents: dict[str, str | None] | None = None
    for members in by_trace.values():
        if len(members) > 1:
            members.sort(key=_identity_order)
        sdk_turns = [item for item in members if item[2].turn_id]
        if sdk_turns:
            sole = len({item[0].turn_scope for item in sdk_turns}) == 1
            for turn_row, attributes, plan in sdk_turns:
                scope = turn_row.turn_scope
                # Messages and model may come from unstamped spans of a one-turn trace too; flags only from
                # the turn's own scope (the writer adds the trace's unstamped flags when the turn is alone).
                belongs = [m for m in members if m[0].turn_scope == scope or (sole and m[0].turn_scope == "")]
                own = [m for m in members if m[0].turn_scope == scope]
                batch.turns.append(_turn(turn_row, attributes, plan, scope, False, belongs, members, own))
            continue
        auto_members = [m for m in members if not m[0].turn_scope]
        candidates = [m for m in auto_members if _is_candidate(m)]
        if not candidates:
            continue
        if len(candidates) == 1:
            top = candidates[0]
        else:
            if parents is None:
                parents = {r.span_id: r.parent_span_id for r in batch.spans}
            top = _top_most(candidates, parents)
        batch.turns.append(_turn(top[0], top[1], top[2], top[0].trace_id, True, auto_members, auto_members,
                                 auto_members))
    _add_turn_extras(batch, with_extras)


def _add_turn_extras(batch: NormalisedBatch, with_extras: list[ChatSpan]) -> None:
    """Escalation and versions of spans whose turn is not in this batch (it came in an earlier one):
    they update the stored turn. A batch's own turns carry theirs in their columns."""
    traces = {t.trace_id for t in batch.turns}
    turn_ids = {t.turn_id for t in batch.turns}
    for row, attributes, _plan in with_extras:
        owner = attributes.get(sc.CHAT_TURN_ID, attributes.get(sc.CHAT_IN_TURN))
        owner_id = None if owner is None else clean_text(str(owner))
        if owner_id in turn_ids or (owner_id is None and row.trace_id in traces):
            continue  # read into its turn above
        extras = extras_of(row.trace_id, owner_id, attributes)
        if extras is not None:
            batch.turn_extras.append(extras)


def _scope_of(attributes: dict[str, Any]) -> str:
    """The turn a span belongs to: its own chat.turn.id (a nested turn is its own), else chat.in_turn."""
    owner = attributes.get(sc.CHAT_TURN_ID)
    if owner is None:
        owner = attributes.get(sc.CHAT_IN_TURN)
    return clean_text(str(owner)) if owner is not None else ""


def _identity_order(item: ChatSpan) -> tuple[int, int, str]:
    """Earliest start first; on a tie the longer span (the enclosing one), then the span id. The writer
    merges auto candidates of later batches by the same order."""
    row = item[0]
    return row.start_ns // 1000, -max(row.end_ns - row.start_ns, 0), row.span_id


def _flags_of(row: SpanRow, attributes: dict[str, Any], plan: Plan) -> FlagRow | None:
    """The turn flags a span raises, or None when it raises none and names no reason."""
    get = attributes.get
    # An OpenInference guardrail that failed stopped the message.
    guardrail = row.status_code == _STATUS_ERROR and get(sc.OPENINFERENCE_SPAN_KIND) == "GUARDRAIL"
    if not plan.details:
        return FlagRow(row.trace_id, row.turn_scope, row.start_ns, blocked=True) if guardrail else None
    flags = FlagRow(
        row.trace_id, row.turn_scope, row.start_ns,
        fallback=flag(get(sc.CHAT_FALLBACK)), fallback_reason=text_value(get(sc.CHAT_FALLBACK_REASON)),
        hallucinated=flag(get(sc.CHAT_HALLUCINATION)),
        hallucination_source=text_value(get(sc.CHAT_HALLUCINATION_SOURCE)),
        prompt_injection=flag(get(sc.CHAT_PROMPT_INJECTION)), blocked=guardrail or flag(get(sc.CHAT_BLOCKED)),
        rate_limited=flag(get(sc.CHAT_RATE_LIMITED)))
    if not (flags.fallback or flags.hallucinated or flags.prompt_injection or flags.blocked
            or flags.rate_limited or flags.fallback_reason or flags.hallucination_source):
        return None
    return flags


def _is_candidate(item: ChatSpan) -> bool:
    plan = item[2]
    if plan.candidate:
        return True
    attributes = item[1]
    if attributes.get(sc.OPENINFERENCE_SPAN_KIND) in _CONTENT_SPAN_KINDS:
        return True
    return plan.metadata and metadata_value(attributes, SESSION_METADATA) is not None


def _top_most(candidates: list[ChatSpan], parents: dict[str, str | None]) -> ChatSpan:
    """The candidate with no other candidate above it (through the batch's parent links); ties → the
    first in identity order (``candidates`` are sorted by it). Across batches the writer can only
    compare starts: with skewed clocks there, the earlier-starting candidate wins.
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
    turn_plan: Plan,
    turn_id: str,
    auto: bool,
    members: list[ChatSpan],
    context: list[ChatSpan],
    flag_members: list[ChatSpan],
) -> TurnRow:
    """A turn from its span; what the span lacks comes from its members, then the trace; its flags
    from ``flag_members`` (the spans of its own scope).

    ``members`` and ``context`` are in start order.
    """
    # The earliest member's input (the chain's, not a sub-call's); the last member to finish's answer.
    user_message = _turn_text(user_message_of, attributes, members)
    bot_response = _turn_text(bot_response_of, attributes, sorted(members, key=_end_of, reverse=True))
    fallback = hallucinated = injection = blocked = rate_limited = False
    fallback_reason = hallucination_source = None
    reason_key = source_key = (0, "")
    for member_row, attrs, plan in flag_members:
        if not plan.details and member_row.status_code != _STATUS_ERROR:
            continue
        flags = _flags_of(member_row, attrs, plan)
        if flags is None:
            continue
        fallback |= flags.fallback
        hallucinated |= flags.hallucinated
        injection |= flags.prompt_injection
        blocked |= flags.blocked
        rate_limited |= flags.rate_limited
        # The earliest span naming a reason (then the smaller text): what the store keeps too.
        at = member_row.start_ns // 1000
        if flags.fallback_reason and (fallback_reason is None or (at, flags.fallback_reason) < reason_key):
            fallback_reason, reason_key = flags.fallback_reason, (at, flags.fallback_reason)
        source = flags.hallucination_source
        if source and (hallucination_source is None or (at, source) < source_key):
            hallucination_source, source_key = source, (at, source)
    model = row.model
    if model is None:
        model = next((m[0].model for m in members if m[0].model and m[0].input_tokens is not None), None)
    # Escalation and prompt version keys are rare: the plans say which spans have any.
    escalated, escalation_reason, prompt_version = False, None, None
    if turn_plan.extras:
        escalated, escalation_reason = escalation_of(attributes)
        prompt_version = keys_value(attributes, sc.PROMPT_VERSION_ALIASES, ())
    for _member_row, attrs, member_plan in members:
        if member_plan.extras and attrs is not attributes:
            member_escalated, member_reason = escalation_of(attrs)
            escalated = escalated or member_escalated
            escalation_reason = escalation_reason or member_reason
            prompt_version = prompt_version or keys_value(attrs, sc.PROMPT_VERSION_ALIASES, ())
    return TurnRow(
        turn_id=turn_id if not auto else clean_text(turn_id),
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
        escalated=escalated,
        escalation_reason=escalation_reason,
        prompt_version=prompt_version,
        app_version=_first_of(attributes, members, sc.APP_VERSION_ALIASES, ()),
    )


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
    value = own.get(keys[0])
    if type(value) is str and value and "\x00" not in value:  # the common case: keys_value's answer too
        return value
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
