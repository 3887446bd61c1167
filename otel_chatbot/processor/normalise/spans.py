"""Parsed OTLP trace requests → span rows (the hot path), handing chat spans on to turns.

Hot path (every span): decode attributes (cache-assisted, see decode.py), one ``orjson.dumps``,
one set-disjointness test to skip spans with no chat/LLM meaning. Everything else — LLM columns,
turn detection, message extraction — runs only for the spans that carry such attributes, and
message extraction only for the one span per turn that needs it.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from otel_chatbot import semconv as sc
from otel_chatbot.processor import decode
from otel_chatbot.processor.decode import DecodeError, TracesRequest
from otel_chatbot.processor.normalise import vercel_ai
from otel_chatbot.processor.normalise.llm import fill_llm_columns
from otel_chatbot.processor.normalise.plan import PLANS, ChatSpan, Redact, clean_text, new_plan
from otel_chatbot.processor.normalise.turns import add_turns_and_feedback
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch, SpanRow

_DEFAULT_SERVICE: Final = "unknown_service"
_MESSAGE_KEYS: Final = frozenset(sc.MESSAGE_ATTRIBUTES)
_MESSAGE_PREFIXES: Final = tuple(sc.MESSAGE_ATTRIBUTE_PREFIXES)
_NUL_ESCAPE = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


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
    plans_get = PLANS.get
    for resource_spans in raw.resource_spans:
        resource = decode.decode_attributes(resource_spans.resource.attributes)
        service = resource.get(sc.SERVICE_NAME)
        if not isinstance(service, str) or not service:
            service = _DEFAULT_SERVICE
        service = clean_text(service)
        app_version = resource.get(sc.SERVICE_VERSION)  # the turns' app version (stored per turn)
        app_version = app_version if isinstance(app_version, str) and app_version else None
        resource_json = json_text(resource)
        resource_user = _user_of(resource, sc.USER_ALIASES)
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
                    attributes_json = _strip_nuljson_text(attributes_json)
                if vercel_ai.OPERATION_ID in attributes:  # stored as received, read as GenAI/OpenInference
                    attributes = vercel_ai.chat_attributes(attributes)
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
                    json_text(decode.decode_events(events)) if events else "[]",
                )
                append_row(row)
                keys = tuple(attributes)
                plan = plans_get(keys) or new_plan(keys)
                if plan.user_keys:
                    row.user_id = _user_of(attributes, plan.user_keys) or resource_user
                elif resource_user is not None:
                    row.user_id = resource_user
                if plan.semantic:
                    if app_version is not None:  # read as the span's own (already serialised without it)
                        attributes.setdefault(sc.SERVICE_VERSION, app_version)
                    if plan.llm:
                        fill_llm_columns(row, attributes, prices, plan)
                    append_chat((row, attributes, plan))
    batch = NormalisedBatch(spans=rows)
    if chat_spans:
        add_turns_and_feedback(batch, chat_spans)
    return batch


def _user_of(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """The first end-user id among ``keys`` (what erasure looks for: a top-level attribute)."""
    for key in keys:
        value = attributes.get(key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return clean_text(str(value))
    return None


def _bad_ids_message(span: Any) -> str:
    name = span.name[:80]
    if len(span.trace_id) != 16:
        return f"span {name!r}: trace_id must be 16 bytes, got {len(span.trace_id)}"
    return f"span {name!r}: span_id must be 8 bytes, got {len(span.span_id)}"


def json_text(value: object) -> str:
    text = orjson.dumps(value).decode()
    return _strip_nuljson_text(text) if "\\u0000" in text else text


def _strip_nuljson_text(text: str) -> str:
    # Postgres text and jsonb cannot hold U+0000; replace the escaped NUL (not an escaped backslash
    # followed by "u0000") with U+FFFD, the usual stand-in for an unrepresentable character.
    return _NUL_ESCAPE.sub(r"\1\\ufffd", text)


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
