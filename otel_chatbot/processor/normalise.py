"""Parsed OTLP requests → rows: spans, chat turns and feedback (pure functions).

Hot path (every span): decode attributes (cache-assisted, see decode.py), one ``orjson.dumps``,
one set-disjointness test to skip spans with no chat/LLM meaning. Everything else — LLM columns,
turn detection, message extraction — runs only for the spans that carry such attributes, and
message extraction only for the one span per turn that needs it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from otel_chatbot import semconv as sc
from otel_chatbot.processor import decode
from otel_chatbot.processor.decode import DecodeError, TracesRequest
from otel_chatbot.processor.model import FeedbackRow, NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.processor.pricing import PriceTable

Redact = Callable[[str], str]
# Searches a parsed message value for text; the int is the nesting depth (bounded).
TextIn = Callable[[Any, int], str | None]

_STATUS_ERROR: Final = 2
_DEFAULT_SERVICE: Final = "unknown_service"

_FLAG_KEYS: Final = (
    sc.CHAT_FALLBACK,
    sc.CHAT_HALLUCINATION,
    sc.CHAT_PROMPT_INJECTION,
    sc.CHAT_BLOCKED,
    sc.CHAT_RATE_LIMITED,
)
_LLM_KEYS: Final = frozenset(
    (
        *sc.MODEL_ALIASES,
        *sc.PROVIDER_ALIASES,
        *sc.INPUT_TOKEN_ALIASES,
        *sc.OUTPUT_TOKEN_ALIASES,
        *sc.TOTAL_TOKEN_ALIASES,
        sc.GEN_AI_OPERATION_NAME,
        sc.OPENINFERENCE_SPAN_KIND,
        "llm.request.type",
    )
)
_TOKEN_KEYS: Final = frozenset((*sc.INPUT_TOKEN_ALIASES, *sc.OUTPUT_TOKEN_ALIASES, *sc.TOTAL_TOKEN_ALIASES))
# Flattened message lists are keyed by index; index 0 is what a span with messages always has.
_INDEXED_CONTENT_KEYS: Final = (
    sc.LEGACY_PROMPT_PREFIX + "0.content",
    sc.LEGACY_COMPLETION_PREFIX + "0.content",
    sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX + "0.message.content",
    sc.OPENINFERENCE_OUTPUT_MESSAGES_PREFIX + "0.message.content",
    sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX + "0.message.role",
)
_CONTENT_KEYS: Final = frozenset(
    (*sc.INPUT_MESSAGE_ALIASES, *sc.OUTPUT_MESSAGE_ALIASES, *_INDEXED_CONTENT_KEYS)
)
# A span with none of these keys has no chat meaning: it is stored and otherwise skipped.
_SEMANTIC_KEYS: Final = frozenset(
    (
        *_LLM_KEYS,
        *_CONTENT_KEYS,
        *sc.SESSION_ALIASES,
        *sc.USER_ALIASES,
        *_FLAG_KEYS,
        sc.CHAT_TURN_ID,
        sc.CHAT_IN_TURN,
        sc.CHAT_SOURCE,
        sc.CHAT_FEEDBACK_RATING,
        "metadata",
    )
)
_SESSION_KEYS: Final = frozenset(sc.SESSION_ALIASES)
_SESSION_METADATA: Final = ("session_id", "conversation_id", "thread_id")
_USER_METADATA: Final = ("user_id",)
# Turn details a member span may add to its turn: flags and their reasons.
_DETAIL_KEYS: Final = frozenset((*_FLAG_KEYS, sc.CHAT_FALLBACK_REASON, sc.CHAT_HALLUCINATION_SOURCE))
_CONTENT_SPAN_KINDS: Final = frozenset({"LLM", "CHAIN", "AGENT"})
_OPERATION_BY_KIND: Final = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
}
_OPERATION_BY_REQUEST_TYPE: Final = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}
_COST_KEYS: Final = ("gen_ai.usage.cost", "llm.cost.total", "llm.usage.cost")
_MESSAGE_KEYS: Final = frozenset(sc.MESSAGE_ATTRIBUTES)
_MESSAGE_PREFIXES: Final = tuple(sc.MESSAGE_ATTRIBUTE_PREFIXES)
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


class _Plan:
    """What a span's attribute *key set* means, worked out once per distinct key set.

    Spans from one instrumentation share their keys, so the per-span work is one cache lookup and
    then only the lookups that can hit (alias lists reduced to the keys actually present).
    """

    __slots__ = (
        "candidate",
        "cost_keys",
        "details",
        "feedback",
        "in_turn",
        "input_keys",
        "llm",
        "metadata",
        "model_keys",
        "output_keys",
        "provider_keys",
        "semantic",
        "tokens",
        "total_keys",
        "turn_id",
    )

    def __init__(self, keys: Iterable[str]) -> None:
        present = frozenset(keys)

        def having(aliases: Iterable[str]) -> tuple[str, ...]:
            return tuple(key for key in aliases if key in present)

        self.semantic = not _SEMANTIC_KEYS.isdisjoint(present)
        self.llm = not _LLM_KEYS.isdisjoint(present)
        self.tokens = not _TOKEN_KEYS.isdisjoint(present)
        self.model_keys = having(sc.MODEL_ALIASES)
        self.provider_keys = having(sc.PROVIDER_ALIASES)
        self.input_keys = having(sc.INPUT_TOKEN_ALIASES)
        self.output_keys = having(sc.OUTPUT_TOKEN_ALIASES)
        self.total_keys = having(sc.TOTAL_TOKEN_ALIASES)
        self.cost_keys = having(_COST_KEYS)
        self.turn_id = sc.CHAT_TURN_ID in present
        self.in_turn = sc.CHAT_IN_TURN in present
        self.feedback = sc.CHAT_FEEDBACK_RATING in present
        self.metadata = "metadata" in present
        # A conversation id or LLM content makes a span an auto-turn candidate (the span kind is
        # checked on the value: only LLM/CHAIN/AGENT count).
        self.candidate = (
            not _SESSION_KEYS.isdisjoint(present) or not _CONTENT_KEYS.isdisjoint(present) or self.tokens
        )
        self.details = not _DETAIL_KEYS.isdisjoint(present)


_PLANS: dict[tuple[str, ...], _Plan] = {}
_PLANS_MAX: Final = 4096


def _plan(keys: tuple[str, ...]) -> _Plan:
    plan = _Plan(keys)
    if len(_PLANS) >= _PLANS_MAX:
        _PLANS.clear()
    _PLANS[keys] = plan
    return plan


ChatSpan = tuple[SpanRow, dict[str, Any], _Plan]


# --- traces ------------------------------------------------------------------------------------
def normalise_traces(
    request: TracesRequest, prices: PriceTable, redact: Redact | None = None
) -> NormalisedBatch:
    """Rows for every span of the request, plus the turns and feedback they carry.

    Raises ``DecodeError`` for content the protobuf parser could not check (bad ids, an attribute
    that is not a valid KeyValue or not UTF-8).
    """
    raw = decode.as_raw_traces(request)
    rows: list[SpanRow] = []
    chat_spans: list[ChatSpan] = []  # spans with chat/LLM attributes
    append_row = rows.append
    append_chat = chat_spans.append
    kv_get = decode.kv_cache_get
    fill_misses = decode.fill_attribute_misses
    dumps = orjson.dumps
    plans_get = _PLANS.get
    for resource_spans in raw.resource_spans:
        resource = decode.decode_attributes(resource_spans.resource.attributes)
        service = resource.get(sc.SERVICE_NAME)
        if not isinstance(service, str) or not service:
            service = _DEFAULT_SERVICE
        service = _clean_text(service)
        resource_json = _json(resource)
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                encoded = span.attributes[:]  # a list: upb's slice is cheaper than iterating the container
                values = list(map(kv_get, encoded))
                if None in values:
                    fill_misses(encoded, values)
                attributes: dict[str, Any] = dict(values)  # type: ignore[arg-type]  # no None left
                trace_id = span.trace_id
                span_id = span.span_id
                if len(trace_id) != 16 or len(span_id) != 8:
                    raise DecodeError(_bad_ids_message(span))
                parent = span.parent_span_id
                status = span.status
                code, message = decode.decode_status(status) if status else (0, "")
                events = span.events
                if redact is not None:
                    _redact_attributes(attributes, redact)
                attributes_json = dumps(attributes).decode()
                if "\\u0000" in attributes_json:
                    attributes_json = _strip_nul_json(attributes_json)
                name = span.name
                if "\x00" in name or "\x00" in message:
                    name, message = name.replace("\x00", "\ufffd"), message.replace("\x00", "\ufffd")
                row = SpanRow(
                    trace_id.hex(),
                    span_id.hex(),
                    parent.hex() if parent else None,
                    name,
                    span.kind,
                    span.start_time_unix_nano,
                    span.end_time_unix_nano,
                    code,
                    message,
                    service,
                    attributes_json,
                    resource_json,
                    _json(decode.decode_events(events)) if events else "[]",
                )
                append_row(row)
                keys = tuple(attributes)
                plan = plans_get(keys) or _plan(keys)
                if plan.semantic:
                    if plan.llm:
                        _fill_llm_columns(row, attributes, prices, plan)
                    append_chat((row, attributes, plan))
    batch = NormalisedBatch(spans=rows)
    if chat_spans:
        _add_turns_and_feedback(batch, chat_spans)
    return batch


def _bad_ids_message(span: Any) -> str:
    name = span.name[:80]
    if len(span.trace_id) != 16:
        return f"span {name!r}: trace_id must be 16 bytes, got {len(span.trace_id)}"
    return f"span {name!r}: span_id must be 8 bytes, got {len(span.span_id)}"


def _json(value: object) -> str:
    text = orjson.dumps(value).decode()
    return _strip_nul_json(text) if "\\u0000" in text else text


def _strip_nul_json(text: str) -> str:
    # Postgres text and jsonb cannot hold U+0000; replace the escaped NUL (not an escaped backslash
    # followed by "u0000") with U+FFFD, the usual stand-in for an unrepresentable character.
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text)


def _clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def _redact_attributes(attributes: dict[str, Any], redact: Redact) -> None:
    for key, value in attributes.items():
        if key in _MESSAGE_KEYS or key.startswith(_MESSAGE_PREFIXES):
            attributes[key] = _redact_value(value, redact)


def _redact_value(value: Any, redact: Redact) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, list):
        return [_redact_value(v, redact) for v in value]
    if isinstance(value, dict):
        return {k: _redact_value(v, redact) for k, v in value.items()}
    return value


# --- LLM columns ---------------------------------------------------------------------------------
def _fill_llm_columns(row: SpanRow, attributes: dict[str, Any], prices: PriceTable, plan: _Plan) -> None:
    # Straight-line lookups in preference order: this runs for every LLM span, so no helper calls
    # on the common path.
    get = attributes.get
    model = None
    for key in plan.model_keys:
        value = get(key)
        if type(value) is str and value:
            model = value if "\x00" not in value else _clean_text(value)
            break
    provider = None
    for key in plan.provider_keys:
        value = get(key)
        if type(value) is str and value:
            provider = _clean_text(value.lower())
            break
    operation = get(sc.GEN_AI_OPERATION_NAME)
    if type(operation) is not str or not operation:
        kind = get(sc.OPENINFERENCE_SPAN_KIND)
        operation = _OPERATION_BY_KIND.get(kind) if type(kind) is str else None
        if operation is None:
            request_type = get("llm.request.type")
            operation = _OPERATION_BY_REQUEST_TYPE.get(request_type) if type(request_type) is str else None
    else:
        operation = _clean_text(operation)
    row.model = model
    row.provider = provider if provider is not None else (prices.provider(model) if model else None)
    row.operation = operation
    if not plan.tokens:
        return
    input_tokens = output_tokens = None
    for key in plan.input_keys:
        value = get(key)
        if value is not None:
            input_tokens = value if type(value) is int and value >= 0 else _count(value)
            if input_tokens is not None:
                break
    for key in plan.output_keys:
        value = get(key)
        if value is not None:
            output_tokens = value if type(value) is int and value >= 0 else _count(value)
            if output_tokens is not None:
                break
    if input_tokens is None or output_tokens is None:
        total = _first_count(attributes, plan.total_keys)
        if total is not None:
            if input_tokens is None and output_tokens is None:
                input_tokens, output_tokens = total, 0  # no split given: count it all as input
            elif input_tokens is None:
                input_tokens = max(total - (output_tokens or 0), 0)
            else:
                output_tokens = max(total - input_tokens, 0)
        if input_tokens is None and output_tokens is None:
            return
    row.input_tokens = input_tokens = input_tokens or 0
    row.output_tokens = output_tokens = output_tokens or 0
    cost = None
    for key in plan.cost_keys:
        value = get(key)
        if value is not None:
            cost = _cost(value)
            if cost is not None:
                break
    row.cost_usd = cost if cost is not None else prices.cost(model, input_tokens, output_tokens)


def _count(value: Any) -> int | None:
    """A token count given as a string, float or (rejected) bool/negative."""
    if isinstance(value, bool):
        return None
    try:
        count = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return count if count >= 0 else None


def _cost(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except (TypeError, ValueError):
        return None
    return cost if cost >= 0 and cost != float("inf") else None


def _first_count(attributes: dict[str, Any], keys: Iterable[str]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            count = value if type(value) is int and value >= 0 else _count(value)
            if count is not None:
                return count
    return None


# --- turns and feedback ----------------------------------------------------------------------
def _add_turns_and_feedback(batch: NormalisedBatch, chat_spans: list[ChatSpan]) -> None:
    by_trace: dict[str, list[ChatSpan]] = {}
    for item in chat_spans:
        row, attributes, plan = item
        if plan.feedback or row.name == sc.CHAT_FEEDBACK_SPAN_NAME:
            feedback = _feedback_from_attributes(attributes, "span", row.start_ns, row.service)
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
    return plan.metadata and _metadata_value(attributes, _SESSION_METADATA) is not None


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
    user_message = user_message_of(attributes)
    if user_message is None:  # the earliest member that has one: the chain's input, not a sub-call's
        for member in members:
            user_message = user_message_of(member[1])
            if user_message is not None:
                break
    bot_response = bot_response_of(attributes)
    if bot_response is None:  # the last member to finish: the final answer
        for member in sorted(members, key=_end_of, reverse=True):
            bot_response = bot_response_of(member[1])
            if bot_response is not None:
                break
    fallback = hallucinated = injection = blocked = rate_limited = False
    fallback_reason = hallucination_source = None
    for member_row, attrs, plan in members:
        if member_row.status_code == _STATUS_ERROR and attrs.get(sc.OPENINFERENCE_SPAN_KIND) == "GUARDRAIL":
            blocked = True  # an OpenInference guardrail that failed stopped the message
        if not plan.details:
            continue
        fallback = fallback or _flag(attrs.get(sc.CHAT_FALLBACK))
        hallucinated = hallucinated or _flag(attrs.get(sc.CHAT_HALLUCINATION))
        injection = injection or _flag(attrs.get(sc.CHAT_PROMPT_INJECTION))
        blocked = blocked or _flag(attrs.get(sc.CHAT_BLOCKED))
        rate_limited = rate_limited or _flag(attrs.get(sc.CHAT_RATE_LIMITED))
        if fallback_reason is None or member_row is row:
            fallback_reason = _text_value(attrs.get(sc.CHAT_FALLBACK_REASON)) or fallback_reason
        if hallucination_source is None or member_row is row:
            source = _text_value(attrs.get(sc.CHAT_HALLUCINATION_SOURCE))
            hallucination_source = source or hallucination_source
    model = row.model
    if model is None:
        model = next((m[0].model for m in members if m[0].model and m[0].input_tokens is not None), None)
    return TurnRow(
        turn_id=_clean_text(turn_id),
        trace_id=row.trace_id,
        span_id=row.span_id,
        auto=auto,
        session_id=_first_of(attributes, context, sc.SESSION_ALIASES, _SESSION_METADATA),
        user_id=_first_of(attributes, context, sc.USER_ALIASES, _USER_METADATA),
        source=_first_of(attributes, context, (sc.CHAT_SOURCE,), ()),
        service=row.service,
        start_ns=row.start_ns,
        latency_s=max(row.end_ns - row.start_ns, 0) / 1e9,
        user_message=_clean_optional(user_message),
        bot_response=_clean_optional(bot_response),
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


def _end_of(item: ChatSpan) -> int:
    return item[0].end_ns


def _text_value(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return _clean_text(str(value))


def _first_of(
    own: dict[str, Any], context: list[ChatSpan], keys: tuple[str, ...], metadata_keys: tuple[str, ...]
) -> str | None:
    """The first value under ``keys``: the turn span's own, else the earliest span of the trace having one."""
    text = _keys_value(own, keys, metadata_keys)
    if text is not None:
        return text
    for _, attrs, _plan in context:
        if attrs is not own:
            text = _keys_value(attrs, keys, metadata_keys)
            if text is not None:
                return text
    return None


def _keys_value(
    attributes: dict[str, Any], keys: tuple[str, ...], metadata_keys: tuple[str, ...]
) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            text = _text_value(value)
            if text is not None:
                return text
    if metadata_keys and "metadata" in attributes:
        return _metadata_value(attributes, metadata_keys)
    return None


def _metadata_value(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """A value from LangChain run metadata, which OpenInference stores as a JSON text in ``metadata``."""
    metadata = attributes.get("metadata")
    if isinstance(metadata, str) and metadata.startswith("{"):
        try:
            metadata = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            return None
    if isinstance(metadata, dict):
        for key in keys:
            value = metadata.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return _clean_text(str(value))
    return None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int | float):
        return value != 0
    return False


def _clean_optional(text: str | None) -> str | None:
    return _clean_text(text) if text is not None else None


def _feedback_from_attributes(
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
    comment = _clean_text(comment) if isinstance(comment, str) and comment else None
    return FeedbackRow(
        turn_id=_clean_text(str(turn_id)),
        rating=rating,
        comment=comment,
        origin=origin,
        time_ns=time_ns,
        service=service,
    )


# --- logs ----------------------------------------------------------------------------------------
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
        service = _clean_text(service) if isinstance(service, str) and service else None
        for scope_logs in resource_logs.scope_logs:
            for record in scope_logs.log_records:
                attributes = decode.key_values_to_dict(record.attributes)
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
                feedback = _feedback_from_attributes(attributes, "log", time_ns, service)
                if feedback is None:
                    batch.invalid_feedback += 1
                    continue
                if redact is not None and feedback.comment:
                    feedback.comment = redact(feedback.comment)
                batch.feedback.append(feedback)
    return batch


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


# --- message text ------------------------------------------------------------------------------
_USER_ROLES: Final = frozenset({"user", "human", "humanmessage", "humanmessagechunk"})
_ASSISTANT_ROLES: Final = frozenset({"assistant", "ai", "aimessage", "aimessagechunk", "model", "bot"})
_INPUT_TEXT_KEYS: Final = (
    "input",
    "question",
    "query",
    "user_input",
    "human_input",
    "message",
    "prompt",
    "text",
    "content",
    "inputs",
)
_OUTPUT_TEXT_KEYS: Final = (
    "output",
    "answer",
    "response",
    "result",
    "output_text",
    "text",
    "content",
    "generation",
    "outputs",
)


def user_message_of(attributes: dict[str, Any]) -> str | None:
    """The end user's text in a span's attributes, from whichever convention carries it."""
    return _message_of(attributes, sc.INPUT_MESSAGE_ALIASES, _user_text_in, sc.LEGACY_PROMPT_PREFIX,
                       sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX, user=True)


def bot_response_of(attributes: dict[str, Any]) -> str | None:
    """The bot's answer in a span's attributes, from whichever convention carries it."""
    return _message_of(attributes, sc.OUTPUT_MESSAGE_ALIASES, _bot_text_in, sc.LEGACY_COMPLETION_PREFIX,
                       sc.OPENINFERENCE_OUTPUT_MESSAGES_PREFIX, user=False)


def _message_of(attributes: dict[str, Any], aliases: tuple[str, ...], text_in: TextIn,
                legacy_prefix: str, openinference_prefix: str, *, user: bool) -> str | None:
    """First text found: whole-message attributes (aliases), then legacy GenAI indexed messages,
    then OpenInference flattened messages."""
    for key in aliases:
        value = attributes.get(key)
        if value is not None and value != "":
            text = _text_of(value, text_in)
            if text:
                return text
    return _indexed_text(attributes, legacy_prefix, ".content", ".role", user=user) or _indexed_text(
        attributes, openinference_prefix, ".message.content", ".message.role", user=user)


def _parse_json_text(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                return orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return value
    return value


def _text_of(value: Any, text_in: TextIn) -> str | None:
    """An attribute's text: plain text as is; JSON (or a structured value) searched with ``text_in``,
    falling back to the raw text when the search finds nothing."""
    parsed = _parse_json_text(value)
    if parsed is value and isinstance(value, str):
        return value
    text = text_in(parsed, 0)
    return text if text is not None else (value if isinstance(value, str) else None)


def _user_text_in(obj: Any, depth: int) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return obj or None
    if isinstance(obj, list):
        return _message_text(obj, _USER_ROLES)
    if isinstance(obj, dict):
        if "messages" in obj:
            text = _message_text(obj["messages"], _USER_ROLES)
            if text is not None:
                return text
        for key in _INPUT_TEXT_KEYS:
            if key in obj:
                text = _user_text_in(obj[key], depth + 1)
                if text is not None:
                    return text
        return _single_text_value(obj)
    return None


def _bot_text_in(obj: Any, depth: int) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return obj or None
    if isinstance(obj, list):
        return _message_text(obj, _ASSISTANT_ROLES)
    if isinstance(obj, dict):
        choices = obj.get("choices")  # an OpenAI chat completion
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            text = _message_content(message) if isinstance(message, dict) else None
            if text is None and isinstance(choice.get("text"), str) and choice["text"]:
                text = choice["text"]
            if text is not None:
                return text
        generations = obj.get("generations")  # a LangChain LLMResult
        if isinstance(generations, list) and generations:
            first = (
                generations[0][0] if isinstance(generations[0], list) and generations[0] else generations[0]
            )
            if isinstance(first, dict):
                text = first.get("text") or _message_content(first.get("message"))
                if isinstance(text, str) and text:
                    return text
        candidates = obj.get("candidates")  # a Gemini response
        if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
            text = _content_text(candidates[0].get("content"))
            if text is not None:
                return text
        if "messages" in obj:
            text = _message_text(obj["messages"], _ASSISTANT_ROLES)
            if text is not None:
                return text
        if obj.get("role") in _ASSISTANT_ROLES or obj.get("type") in ("message", "ai"):
            text = _message_content(obj)
            if text is not None:
                return text
        for key in _OUTPUT_TEXT_KEYS:
            if key in obj:
                text = _bot_text_in(obj[key], depth + 1)
                if text is not None:
                    return text
        return _single_text_value(obj)
    return None


def _single_text_value(obj: dict[str, Any]) -> str | None:
    texts = [v for v in obj.values() if isinstance(v, str) and v]
    return texts[0] if len(texts) == 1 else None


def _flatten_messages(messages: Any) -> list[Any]:
    if not isinstance(messages, list):
        return []
    flat: list[Any] = []
    for m in messages:
        if isinstance(m, list):  # LangChain batches: [[message, ...]]
            flat.extend(m)
        else:
            flat.append(m)
    return flat


def _role(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    role = message.get("role") or message.get("type")
    if (
        role == "constructor"
    ):  # LangChain serialised object: {"lc": 1, "id": [..., "HumanMessage"], "kwargs": …}
        ids = message.get("id")
        role = ids[-1] if isinstance(ids, list) and ids else None
    if role is None and isinstance(message.get("kwargs"), dict):
        role = message["kwargs"].get("type")
    return role.lower() if isinstance(role, str) else None


def _message_content(message: Any) -> str | None:
    if isinstance(message, str):
        return message or None
    if not isinstance(message, dict):
        return None
    # LangChain serialises messages as {"lc": 1, "kwargs": {...}} (dumpd) or {"type": "ai", "data": {...}}
    # (messages_to_dict): the content sits one level down in both.
    for wrapper in ("kwargs", "data"):
        if isinstance(message.get(wrapper), dict):
            message = message[wrapper]
            break
    for key in ("content", "parts", "text"):
        if key in message:
            text = _content_text(message[key])
            if text is not None:
                return text
    return None


def _content_text(content: Any) -> str | None:
    """Text of a message content: a string, or a list of parts ({"type": "text", "text"|"content": …})."""
    if isinstance(content, str):
        return content or None
    if isinstance(content, dict):
        return _message_content(content)
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        joined = "".join(texts) if len(texts) == 1 else "\n".join(texts)
        return joined or None
    return None


def _message_text(messages: Any, roles: frozenset[str]) -> str | None:
    """The newest message with one of ``roles`` (lists are in chat order: the last one is the newest)."""
    flat = _flatten_messages(messages)
    any_role = False
    for message in reversed(flat):
        role = _role(message)
        any_role = any_role or role is not None
        if role in roles:
            text = _message_content(message)
            if text is not None:
                return text
    if not any_role and flat:  # a plain list of texts: the last one is the newest
        return _message_content(flat[-1])
    return None


def _indexed_text(
    attributes: dict[str, Any], prefix: str, content_suffix: str, role_suffix: str, *, user: bool
) -> str | None:
    """Flattened message lists: ``prefix + N + content_suffix``; users → last user, bot → first assistant."""
    if prefix + "0" + content_suffix not in attributes and not any(k.startswith(prefix) for k in attributes):
        return None
    indexed: list[tuple[int, str, str | None]] = []
    for key, value in attributes.items():
        if key.startswith(prefix) and key.endswith(content_suffix):
            index = key[len(prefix) : -len(content_suffix)]
            if index.isdigit() and isinstance(value, str) and value:
                role = attributes.get(prefix + index + role_suffix)
                indexed.append((int(index), value, role.lower() if isinstance(role, str) else None))
    if not indexed:
        return None
    indexed.sort()
    if user:
        users = [text for _, text, role in indexed if role in _USER_ROLES]
        return users[-1] if users else (indexed[-1][1] if all(r is None for _, _, r in indexed) else None)
    answers = [text for _, text, role in indexed if role is None or role in _ASSISTANT_ROLES]
    return answers[0] if answers else None
