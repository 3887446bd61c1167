"""OTLP request bodies → protobuf messages, the fast attribute decoding normalise.py uses, and the
export responses both receivers send.

Speed note: with the upb protobuf runtime every field access on a parsed message builds a Python
wrapper, and an attribute (KeyValue → AnyValue → oneof) costs about a microsecond that way. So
protobuf trace bodies are parsed into ``RawTracesRequest``: a message with the same field names and
numbers as ``ExportTraceServiceRequest`` except that span/resource ``attributes``, span ``events``
and ``status`` stay encoded (``bytes``). normalise.py decodes an attribute list with one C-level
cache lookup per entry; only entries never seen before (message texts, new ids) are decoded in
Python. Standard ``ExportTraceServiceRequest`` messages (OTLP/JSON, gRPC) are accepted too.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, Final

import orjson
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError as _ProtobufDecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsPartialSuccess,
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from otel_chatbot.processor import otlp_json

PROTOBUF: Final = "application/x-protobuf"
JSON: Final = "application/json"
_PROTOBUF_TYPES: Final = frozenset({PROTOBUF, "application/protobuf", "application/vnd.google.protobuf"})

# A parsed trace request: RawTracesRequest (protobuf bodies) or ExportTraceServiceRequest.
TracesRequest = Any


class DecodeError(ValueError):
    """The body cannot be decoded; the message says what is wrong (→ HTTP 400 / INVALID_ARGUMENT)."""


class UnsupportedContentType(DecodeError):
    """Neither OTLP/protobuf nor OTLP/JSON (→ HTTP 415)."""


# --- the raw message types -----------------------------------------------------------------
def _raw_traces_request_type() -> Any:
    f = descriptor_pb2.FieldDescriptorProto
    file = descriptor_pb2.FileDescriptorProto(
        name="otel_chatbot/raw_trace.proto", package="otel_chatbot.raw", syntax="proto3"
    )

    def message(name: str, *fields: tuple[str, int, int, bool, str]) -> None:
        m = file.message_type.add(name=name)
        for field_name, number, kind, repeated, type_name in fields:
            fd = m.field.add(
                name=field_name,
                number=number,
                type=kind,  # type: ignore[arg-type]
                label=f.LABEL_REPEATED if repeated else f.LABEL_OPTIONAL,
            )
            if type_name:
                fd.type_name = ".otel_chatbot.raw." + type_name

    by, st, msg = f.TYPE_BYTES, f.TYPE_STRING, f.TYPE_MESSAGE
    # Field numbers are those of opentelemetry/proto/trace/v1/trace.proto; fields we never read
    # (trace_state, flags, dropped counts, links, scope) are left out and skipped by the parser.
    message(
        "Span",
        ("trace_id", 1, by, False, ""),
        ("span_id", 2, by, False, ""),
        ("parent_span_id", 4, by, False, ""),
        ("name", 5, st, False, ""),
        ("kind", 6, f.TYPE_INT32, False, ""),
        ("start_time_unix_nano", 7, f.TYPE_FIXED64, False, ""),
        ("end_time_unix_nano", 8, f.TYPE_FIXED64, False, ""),
        ("attributes", 9, by, True, ""),
        ("events", 11, by, True, ""),
        ("status", 15, by, False, ""),
    )
    message("Resource", ("attributes", 1, by, True, ""))
    message("ScopeSpans", ("spans", 2, msg, True, "Span"))
    message(
        "ResourceSpans", ("resource", 1, msg, False, "Resource"), ("scope_spans", 2, msg, True, "ScopeSpans")
    )
    message("ExportTraceServiceRequest", ("resource_spans", 1, msg, True, "ResourceSpans"))
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(
        pool.FindMessageTypeByName("otel_chatbot.raw.ExportTraceServiceRequest")
    )


RawTracesRequest = _raw_traces_request_type()


# --- request parsing -------------------------------------------------------------------------
def media_type(content_type: str) -> str:
    """The media type of a ``Content-Type`` header: parameters (``; charset=…``) dropped, lowercased."""
    return content_type.split(";", 1)[0].strip().lower()


def is_protobuf(content_type: str) -> bool:
    return media_type(content_type) in _PROTOBUF_TYPES


def parse_traces(body: bytes, content_type: str) -> TracesRequest:
    """Parse an OTLP trace export body (already gunzipped).

    Protobuf bodies give a ``RawTracesRequest`` (same field names as ``ExportTraceServiceRequest``;
    attributes left encoded, see the module docstring); JSON bodies give an ``ExportTraceServiceRequest``.
    Either goes to ``normalise_traces``; ``count_spans`` counts either.
    """
    return _parse(body, content_type, RawTracesRequest, "ExportTraceServiceRequest",
                  otlp_json.traces_from_json)


def parse_logs(body: bytes, content_type: str) -> Any:
    """Parse an OTLP logs export body (already gunzipped) into an ``ExportLogsServiceRequest``."""
    return _parse(body, content_type, ExportLogsServiceRequest, "ExportLogsServiceRequest",
                  otlp_json.logs_from_json)


def _parse(body: bytes, content_type: str, protobuf_type: Any, message_name: str,
           from_json: Callable[[object], Any]) -> Any:
    """One OTLP body by its content type: protobuf into ``protobuf_type``, JSON through ``from_json``."""
    media = media_type(content_type)
    if media in _PROTOBUF_TYPES:
        request = protobuf_type()
        try:
            request.ParseFromString(body)
        except _ProtobufDecodeError:
            # The runtime's text names our internal parse type and adds nothing the client can act on.
            raise DecodeError(f"body is not valid protobuf {message_name}: truncated, corrupt or not "
                              f"OTLP/protobuf (is it gzip without Content-Encoding: gzip, or JSON sent "
                              f"as {PROTOBUF}?)") from None
        return request
    if media == JSON:
        try:
            return from_json(_load_json(body))
        except ValueError as exc:
            raise DecodeError(str(exc)) from None
    raise UnsupportedContentType(f"unsupported content type {content_type!r}: expected {PROTOBUF} or {JSON}")


def _load_json(body: bytes) -> object:
    if not body.strip():
        raise DecodeError("body is empty: expected an OTLP/JSON object (an empty export is {})")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"body is not valid JSON: {exc}") from None


def as_raw_traces(request: TracesRequest) -> Any:
    """The ``RawTracesRequest`` view of a parsed request (re-encodes a standard message)."""
    if isinstance(request, RawTracesRequest):
        return request
    if isinstance(request, ExportTraceServiceRequest):
        return RawTracesRequest.FromString(request.SerializeToString())
    raise TypeError(f"expected an ExportTraceServiceRequest, got {type(request).__name__}")


def count_spans(request: TracesRequest) -> int:
    """Number of spans in a parsed trace request (either message type)."""
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


# --- attribute values --------------------------------------------------------------------------
_KV_CACHE: dict[bytes, tuple[str, Any]] = {}
_KV_CACHE_MAX: Final = 1 << 16
_CACHEABLE_BYTES: Final = 200  # ids, names, model names, counts: values that repeat across spans
_IMMUTABLE: Final = frozenset({str, int, float, bool, type(None)})
kv_cache_get = _KV_CACHE.get
# Header (key and lengths) of a long string attribute → (key, length of the whole entry).
_LONG_HEADERS: dict[bytes, tuple[str, int]] = {}
_LONG_HEADERS_MAX: Final = 4096


def decode_attributes(raw: Sequence[bytes]) -> dict[str, Any]:
    """Encoded KeyValue list → ``{key: value}`` (values as in ``any_value_to_python``; last key wins)."""
    raw = raw[:]  # upb containers: slicing to a list is cheaper than iterating them
    values = list(map(kv_cache_get, raw))
    if None in values:
        fill_attribute_misses(raw, values)
    return dict(values)  # type: ignore[arg-type]  # no None left


def fill_attribute_misses(raw: Sequence[bytes], values: list[Any]) -> None:
    """Decode the entries of ``raw`` whose slot in ``values`` is None (cache misses), in place."""
    cache = _KV_CACHE
    if len(cache) > _KV_CACHE_MAX:
        cache.clear()  # a crude bound: unique values (request ids…) must not grow it forever
    headers = _LONG_HEADERS
    i = -1
    for _ in range(values.count(None)):
        i = values.index(None, i + 1)
        encoded = raw[i]
        n = len(encoded)
        # Inlined fast path of decode_key_value for long string values (messages): those are the
        # misses of nearly every LLM span, as they never repeat. Their headers (key, two-byte lengths)
        # do: a header seen before gives the key and the length the whole entry must have.
        if n > _CACHEABLE_BYTES:
            header = encoded[: encoded[1] + 8]
            known = headers.get(header)
            if known is not None and known[1] == n:
                try:
                    values[i] = (known[0], encoded[len(header) :].decode())
                except UnicodeDecodeError as exc:
                    raise DecodeError(f"attribute is not valid UTF-8: {exc}") from None
                continue
        if n > _CACHEABLE_BYTES and encoded[0] == 0x0A and encoded[1] < 0x80:
            p = 2 + encoded[1]
            if encoded[p] == 0x12 and encoded[p + 1] >= 0x80 and encoded[p + 2] < 0x80:
                q = p + 3
                if q + ((encoded[p + 1] & 0x7F) | (encoded[p + 2] << 7)) == n and encoded[q] == 0x0A:
                    slen = encoded[q + 1]
                    if (
                        slen >= 0x80
                        and encoded[q + 2] < 0x80
                        and q + 3 + ((slen & 0x7F) | (encoded[q + 2] << 7)) == n
                    ):
                        try:
                            key = encoded[2:p].decode()
                            values[i] = (key, encoded[q + 3 :].decode())
                        except UnicodeDecodeError as exc:
                            raise DecodeError(f"attribute is not valid UTF-8: {exc}") from None
                        if len(headers) >= _LONG_HEADERS_MAX:
                            headers.clear()
                        headers[encoded[: q + 3]] = (key, n)
                        continue
        kv = decode_key_value(encoded)
        values[i] = kv
        if n <= _CACHEABLE_BYTES and type(kv[1]) in _IMMUTABLE:
            cache[encoded] = kv


def decode_key_value(encoded: bytes) -> tuple[str, Any]:
    """One encoded ``KeyValue`` → (key, value).

    Fast path for the common shape (key field, then an AnyValue holding only a string, lengths
    below 16 KiB); anything else goes through the protobuf runtime.
    """
    n = len(encoded)
    try:
        if n >= 4 and encoded[0] == 0x0A and encoded[1] < 0x80:
            p = 2 + encoded[1]  # end of the key
            if p + 2 <= n and encoded[p] == 0x12:
                vlen = encoded[p + 1]
                q = p + 2
                if vlen >= 0x80 and q < n and encoded[q] < 0x80:
                    vlen = (vlen & 0x7F) | (encoded[q] << 7)
                    q += 1
                if (vlen < 0x80 or q > p + 2) and q + vlen == n and vlen >= 2 and encoded[q] == 0x0A:
                    slen = encoded[q + 1]
                    r = q + 2
                    if slen >= 0x80 and r < n and encoded[r] < 0x80:
                        slen = (slen & 0x7F) | (encoded[r] << 7)
                        r += 1
                    if (slen < 0x80 or r > q + 2) and r + slen == n:
                        return encoded[2:p].decode(), encoded[r:].decode()
    except UnicodeDecodeError as exc:
        raise DecodeError(f"attribute is not valid UTF-8: {exc}") from None
    try:
        kv = KeyValue.FromString(encoded)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"span attribute is not a valid KeyValue: {exc}") from None
    return kv.key, any_value_to_python(kv.value)


def any_value_to_python(value: Any) -> Any:
    """AnyValue → JSON-ready Python: arrays → lists, kvlists → dicts, bytes → base64 text."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [any_value_to_python(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return {kv.key: any_value_to_python(kv.value) for kv in value.kvlist_value.values}
    if which == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return None


def key_values_to_dict(key_values: Any) -> dict[str, Any]:
    """A decoded repeated KeyValue field (standard messages: logs, resources) → dict."""
    return {kv.key: any_value_to_python(kv.value) for kv in key_values}


_STATUS_CACHE: dict[bytes, tuple[int, str]] = {}


def decode_status(encoded: bytes) -> tuple[int, str]:
    """Encoded ``Status`` → (code, message); UNSET is (0, "")."""
    cached = _STATUS_CACHE.get(encoded)
    if cached is not None:
        return cached
    try:
        status = Status.FromString(encoded)
    except _ProtobufDecodeError as exc:
        raise DecodeError(f"span status is not a valid Status: {exc}") from None
    result = (int(status.code), status.message)
    if len(encoded) <= _CACHEABLE_BYTES and len(_STATUS_CACHE) < 4096:
        _STATUS_CACHE[encoded] = result
    return result


def decode_events(encoded: Sequence[bytes]) -> list[dict[str, Any]]:
    """Encoded span events → ``[{"name", "time_unix_nano", "attributes"}]``."""
    events = []
    for raw in encoded:
        try:
            event = Span.Event.FromString(raw)
        except _ProtobufDecodeError as exc:
            raise DecodeError(f"span event is not a valid Span.Event: {exc}") from None
        events.append(
            {
                "name": event.name,
                "time_unix_nano": event.time_unix_nano,
                "attributes": key_values_to_dict(event.attributes),
            }
        )
    return events


# --- export responses ------------------------------------------------------------------------
# Unusable feedback (rating not up/down, no turn id) is reported as a partial success, not a
# rejection: the rest of the request is stored, so the Collector must not retry it.
def traces_response(invalid_feedback: int, invalid_outcomes: int = 0) -> ExportTraceServiceResponse:
    """The answer to a trace export whose batch dropped ``invalid_feedback`` feedback spans and
    ``invalid_outcomes`` outcome spans."""
    if not invalid_feedback and not invalid_outcomes:
        return ExportTraceServiceResponse()
    # The spans themselves are stored (rejected_spans=0); only their feedback or outcome was ignored.
    return ExportTraceServiceResponse(partial_success=ExportTracePartialSuccess(
        rejected_spans=0, error_message=_ignored_message(invalid_feedback, invalid_outcomes, "span")))


def logs_response(invalid_feedback: int, invalid_outcomes: int = 0) -> ExportLogsServiceResponse:
    """The answer to a logs export whose batch dropped ``invalid_feedback`` feedback records and
    ``invalid_outcomes`` outcome records."""
    if not invalid_feedback and not invalid_outcomes:
        return ExportLogsServiceResponse()
    return ExportLogsServiceResponse(partial_success=ExportLogsPartialSuccess(
        rejected_log_records=invalid_feedback + invalid_outcomes,
        error_message=_ignored_message(invalid_feedback, invalid_outcomes, "record")))


def _ignored_message(feedback: int, outcomes: int, what: str) -> str:
    parts = []
    if feedback:
        parts.append(f"{feedback} feedback {what}(s) ignored: chat.feedback.rating must be 'up' or 'down' "
                     "and chat.turn.id must be set")
    if outcomes:
        parts.append(f"{outcomes} outcome {what}(s) ignored: chat.outcome.kind must be conversion, lead, "
                     "csat or nps with a valid chat.outcome.value, and session.id or chat.turn.id must be "
                     "set")
    return "; ".join(parts)
