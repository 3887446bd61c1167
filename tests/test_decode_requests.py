"""parse_traces / parse_logs: OTLP protobuf and OTLP/JSON bodies, good and bad."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue, KeyValueList
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from otel_chatbot.processor import decode
from otel_chatbot.processor.decode import JSON, PROTOBUF, DecodeError, UnsupportedContentType
from otel_chatbot.processor.normalise import normalise_logs, normalise_traces
from otel_chatbot.processor.pricing import PriceTable

DATA = Path(__file__).parent / "testdata" / "otlp"
PRICES = PriceTable.load()


def _sdk_request() -> Any:
    """Spans made by the real OTel SDK, encoded by the real OTLP exporter's encoder."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    llm_attributes = {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.output_tokens": 5,
        "chat.in_turn": "t-1",
        "weights": [0.5, 1.5],
        "flags": [True, False],
        "note": "naïve café ✓",
    }
    with (
        tracer.start_as_current_span("chat.turn", attributes={"chat.turn.id": "t-1", "session.id": "s-1"}),
        tracer.start_as_current_span("llm", attributes=llm_attributes) as llm,
    ):
        llm.add_event("retry", {"attempt": 2})
        llm.set_status(Status(StatusCode.ERROR, "upstream 503"))
    provider.shutdown()
    return encode_spans(exporter.get_finished_spans())


def test_protobuf_from_the_real_exporter_round_trips() -> None:
    request = _sdk_request()
    parsed = decode.parse_traces(request.SerializeToString(), PROTOBUF)
    assert decode.count_spans(parsed) == 2
    batch = normalise_traces(parsed, PRICES)
    by_name = {row.name: row for row in batch.spans}
    llm, turn = by_name["llm"], by_name["chat.turn"]
    assert llm.parent_span_id == turn.span_id and turn.parent_span_id is None
    assert len(llm.trace_id) == 32 and llm.trace_id == llm.trace_id.lower() and len(llm.span_id) == 16
    assert llm.service == "sdk-bot" and json.loads(llm.resource_json)["service.name"] == "sdk-bot"
    attributes = json.loads(llm.attributes_json)
    assert attributes["weights"] == [0.5, 1.5] and attributes["flags"] == [True, False]
    assert attributes["note"] == "naïve café ✓" and attributes["gen_ai.usage.input_tokens"] == 10
    assert (llm.status_code, llm.status_message) == (2, "upstream 503")
    events = json.loads(llm.events_json)
    assert events[0]["name"] == "retry" and events[0]["attributes"] == {"attempt": 2}
    assert llm.end_ns > llm.start_ns > 0
    assert [t.turn_id for t in batch.turns] == ["t-1"]


def test_standard_message_and_raw_parse_give_the_same_rows() -> None:
    request = _sdk_request()
    from_raw = normalise_traces(decode.parse_traces(request.SerializeToString(), PROTOBUF), PRICES)
    from_standard = normalise_traces(request, PRICES)  # what a gRPC servicer hands over
    assert from_raw.spans == from_standard.spans
    assert from_raw.turns == from_standard.turns


def test_json_with_hex_ids_decodes_like_protobuf() -> None:
    request = decode.parse_traces(
        (DATA / "traces_openinference.json").read_bytes(), "application/json; charset=utf-8"
    )
    assert isinstance(request, ExportTraceServiceRequest)
    batch = normalise_traces(request, PRICES)
    root, llm = batch.spans
    assert root.trace_id == "5b8efff798038103d269b633813fc60c" and root.span_id == "eee19b7ec3c1b174"
    assert llm.parent_span_id == "eee19b7ec3c1b174" and llm.kind == 3  # enum given by name
    assert root.start_ns == 1_700_000_000_000_000_000 and root.end_ns == 1_700_000_001_500_000_000
    attributes = json.loads(root.attributes_json)
    assert attributes["retries"] == 3 and attributes["tags"] == ["a", 2]  # int64 as string → int
    assert json.loads(llm.events_json)[0]["attributes"] == {"n": 1.5}
    assert (llm.input_tokens, llm.output_tokens) == (1000, 500) and llm.model == "gpt-4o-mini-2024-07-18"
    assert batch.turns[0].user_message == "Where is my parcel?"
    assert batch.turns[0].bot_response == "It ships tomorrow."
    # The same request as protobuf yields identical rows.
    again = normalise_traces(decode.parse_traces(request.SerializeToString(), PROTOBUF), PRICES)
    assert again.spans == batch.spans


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        (
            "traces_bad_trace_id.json",
            "resourceSpans[0].scopeSpans[0].spans[0].traceId must be 32 hex characters, got 'not-hex-at-all'",
        ),
        (
            "traces_base64_span_id.json",
            "resourceSpans[0].scopeSpans[0].spans[0].spanId must be 16 hex characters, got 'AQIDBAUGBwg='",
        ),
    ],
)
def test_json_bad_ids_are_named(fixture: str, message: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode.parse_traces((DATA / fixture).read_bytes(), JSON)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "body is not valid JSON"),
        (b"[1, 2]", "body must be a JSON object, got an array"),
        (b'{"resourceSpans": {"x": 1}}', "resourceSpans must be a JSON array, got an object"),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "0102030405060708"}]}]}]}',
            "spans[0].traceId is missing",
        ),
        (
            b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "5b8efff798038103d269b633813fc60c", '
            b'"spanId": "0102030405060708", "startTimeUnixNano": "soon"}]}]}]}',
            "not a valid OTLP/JSON request",
        ),
    ],
)
def test_bad_json_bodies(body: bytes, fragment: str) -> None:
    with pytest.raises(DecodeError) as raised:
        decode.parse_traces(body, JSON)
    assert fragment in str(raised.value)


def test_malformed_protobuf_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="body is not valid protobuf ExportTraceServiceRequest") as raised:
        decode.parse_traces(b"\x0a\xff\xff\xff\xff\x0f garbage", PROTOBUF)
    # Said in the client's terms: no internal message type, and what to check.
    assert "otel_chatbot" not in str(raised.value) and "Error parsing" not in str(raised.value)
    assert "truncated, corrupt or not OTLP/protobuf" in str(raised.value)
    with pytest.raises(DecodeError, match="body is not valid protobuf ExportLogsServiceRequest") as raised:
        decode.parse_logs(b"\x0a\x05ab", PROTOBUF)
    assert "opentelemetry.proto" not in str(raised.value)


def test_attribute_that_is_not_valid_protobuf_is_caught_at_normalise() -> None:
    # The raw parse leaves attributes encoded, so their damage surfaces in normalise_traces.
    request = decode.RawTracesRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "x"
    span.attributes.append(b"\x0a\x05ab")  # key length 5, only 2 bytes follow
    with pytest.raises(DecodeError, match="not a valid KeyValue"):
        normalise_traces(request, PRICES)
    span.attributes[0] = b"\x0a\x01k\x12\x04\x0a\x02\xc3\x28"  # string value with invalid UTF-8
    with pytest.raises(DecodeError, match="UTF-8"):
        normalise_traces(request, PRICES)


@pytest.mark.parametrize(
    ("trace_id", "span_id", "fragment"),
    [
        (b"", b"\x02" * 8, "trace_id must be 16 bytes, got 0"),
        (b"\x01" * 16, b"\x02" * 4, "span_id must be 8 bytes, got 4"),
    ],
)
def test_protobuf_bad_id_lengths(trace_id: bytes, span_id: bytes, fragment: str) -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = trace_id, span_id, "bad"
    parsed = decode.parse_traces(request.SerializeToString(), PROTOBUF)
    with pytest.raises(DecodeError, match=fragment):
        normalise_traces(parsed, PRICES)


@pytest.mark.parametrize("content_type", [PROTOBUF, JSON])
def test_empty_requests(content_type: str) -> None:
    # An empty protobuf message encodes as zero bytes; in JSON it is an empty object.
    body = b"" if content_type == PROTOBUF else b"{}"
    traces = decode.parse_traces(body, content_type)
    assert decode.count_spans(traces) == 0
    batch = normalise_traces(traces, PRICES)
    assert (batch.spans, batch.turns, batch.feedback, len(batch)) == ([], [], [], 0)
    logs = decode.parse_logs(body, content_type)
    assert normalise_logs(logs).feedback == []


@pytest.mark.parametrize("body", [b"", b"  \n"])
def test_an_empty_json_body_is_refused(body: bytes) -> None:
    for parse in (decode.parse_traces, decode.parse_logs):
        with pytest.raises(DecodeError, match=r"body is empty: expected an OTLP/JSON object"):
            parse(body, JSON)


def test_unsupported_content_type() -> None:
    with pytest.raises(UnsupportedContentType, match="unsupported content type 'text/plain'"):
        decode.parse_traces(b"hello", "text/plain")
    with pytest.raises(UnsupportedContentType):
        decode.parse_logs(b"hello", "application/xml")


def test_logs_json_with_hex_ids() -> None:
    request = decode.parse_logs((DATA / "logs_feedback.json").read_bytes(), JSON)
    assert isinstance(request, ExportLogsServiceRequest)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.trace_id.hex() == "5b8efff798038103d269b633813fc60c" and record.span_id == b""
    with pytest.raises(DecodeError, match=r"logRecords\[0\].traceId must be 32 hex characters"):
        decode.parse_logs(b'{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "abc"}]}]}]}', JSON)


def _kv(key: str, value: Any) -> bytes:
    return KeyValue(key=key, value=value).SerializeToString()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (AnyValue(string_value="short"), "short"),
        (AnyValue(string_value="x" * 300), "x" * 300),  # two-byte length varints
        (AnyValue(string_value="é" * 9000), "é" * 9000),  # three-byte varints: the slow path
        (AnyValue(string_value=""), ""),
        (AnyValue(int_value=-7), -7),
        (AnyValue(int_value=2**62), 2**62),
        (AnyValue(bool_value=True), True),
        (AnyValue(double_value=2.5), 2.5),
        (AnyValue(bytes_value=b"\x00\xff"), base64.b64encode(b"\x00\xff").decode()),
        (
            AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1), AnyValue(string_value="a")])),
            [1, "a"],
        ),
        (
            AnyValue(kvlist_value=KeyValueList(values=[KeyValue(key="k", value=AnyValue(bool_value=False))])),
            {"k": False},
        ),
        (AnyValue(), None),
    ],
)
def test_attribute_values_decode_like_the_protobuf_runtime(value: Any, expected: Any) -> None:
    encoded = _kv("some.key", value)
    assert decode.decode_key_value(encoded) == ("some.key", expected)
    # Through the cache-assisted path twice (miss, then hit) the result is the same.
    for _ in range(2):
        assert decode.decode_attributes([encoded, _kv("other", AnyValue(string_value="v"))]) == {
            "some.key": expected,
            "other": "v",
        }


def test_attributes_json_drops_nul_characters() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = b"\x01" * 16, b"\x02" * 8, "a\x00b"
    span.attributes.extend(
        [
            KeyValue(key="input.value", value=AnyValue(string_value="nul\x00here")),
            KeyValue(key="literal", value=AnyValue(string_value="\\u0000 stays")),
        ]
    )
    row = normalise_traces(request, PRICES).spans[0]
    assert "\x00" not in row.name
    attributes = orjson.loads(row.attributes_json)
    assert attributes["input.value"] == "nul\ufffdhere" and attributes["literal"] == "\\u0000 stays"
