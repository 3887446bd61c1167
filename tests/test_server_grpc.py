"""OTLP/gRPC receiver against a real processor with the real OTel gRPC exporter and real Postgres."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import grpc
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc import LogsServiceStub
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from server_support import count_spans, fetch, running, turn_request

from otel_chatbot.processor.app import Processor

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, max_body_bytes=64 * 1024) as proc:
        yield proc


def _target(processor: Processor) -> str:
    host, port = processor.grpc_address
    return f"{host}:{port}"


def _spans(session: str) -> list[object]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "grpc-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span(
        "chat.turn",
        attributes={
            "chat.turn.id": f"t-{uuid.uuid4().hex}",
            "session.id": session,
            "input.value": "hi",
            "output.value": "hello",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 7,
            "gen_ai.usage.output_tokens": 3,
        },
    ):
        pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def test_real_grpc_exporter_rows_visible_when_export_returns(processor: Processor, database_url: str) -> None:
    session = f"s-{uuid.uuid4().hex}"
    exporter = OTLPSpanExporter(endpoint=_target(processor), insecure=True)
    try:
        assert exporter.export(_spans(session)) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
    finally:
        exporter.shutdown()
    assert fetch(database_url, "SELECT session_id, service, input_tokens FROM chat_turns") == [
        (session, "grpc-bot", 7)
    ]


def test_grpc_gzip_and_standard_stub(processor: Processor, database_url: str) -> None:
    body, traces = turn_request(3)
    with grpc.insecure_channel(_target(processor), compression=grpc.Compression.Gzip) as channel:
        response = TraceServiceStub(channel).Export(ExportTraceServiceRequest.FromString(body), timeout=30)
    assert isinstance(response, ExportTraceServiceResponse)
    assert count_spans(database_url, traces) == 3


def test_grpc_garbage_is_invalid_argument(processor: Processor, database_url: str) -> None:
    with grpc.insecure_channel(_target(processor)) as channel:
        call = channel.unary_unary(
            _EXPORT,
            request_serializer=lambda b: b,
            response_deserializer=ExportTraceServiceResponse.FromString,
        )
        with pytest.raises(grpc.RpcError) as info:
            call(b"\xff\xff\xff garbage", timeout=30)
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "not valid protobuf" in str(info.value.details())
    assert count_spans(database_url) == 0


def test_grpc_oversized_message_is_resource_exhausted(processor: Processor) -> None:
    body, _ = turn_request(400)  # well above the 64 KiB limit
    assert len(body) > 64 * 1024
    with grpc.insecure_channel(_target(processor)) as channel, pytest.raises(grpc.RpcError) as info:
        TraceServiceStub(channel).Export(ExportTraceServiceRequest.FromString(body), timeout=30)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_logs_feedback(processor: Processor, database_url: str) -> None:
    body, traces = turn_request(1)
    with grpc.insecure_channel(_target(processor)) as channel:
        TraceServiceStub(channel).Export(ExportTraceServiceRequest.FromString(body), timeout=30)
        record = LogRecord(
            time_unix_nano=1,
            attributes=[
                KeyValue(key="chat.turn.id", value=AnyValue(string_value=f"turn-{traces[0]}")),
                KeyValue(key="chat.feedback.rating", value=AnyValue(string_value="down")),
            ],
        )
        bad = LogRecord(
            time_unix_nano=1,
            attributes=[
                KeyValue(key="chat.turn.id", value=AnyValue(string_value="x")),
                KeyValue(key="chat.feedback.rating", value=AnyValue(string_value="sideways")),
            ],
        )
        response = LogsServiceStub(channel).Export(
            ExportLogsServiceRequest(
                resource_logs=[ResourceLogs(scope_logs=[ScopeLogs(log_records=[record, bad])])]
            ),
            timeout=30,
        )
    assert response.partial_success.rejected_log_records == 1
    assert fetch(database_url, "SELECT turn_id, rating, origin FROM feedback") == [
        (f"turn-{traces[0]}", "down", "log")
    ]


def test_grpc_auth(database_url: str) -> None:
    with running(database_url, auth_token="grpc-token") as proc:
        target = _target(proc)
        request = ExportTraceServiceRequest.FromString(turn_request(1)[0])
        with grpc.insecure_channel(target) as channel:
            with pytest.raises(grpc.RpcError) as info:
                TraceServiceStub(channel).Export(request, timeout=30)
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
            with pytest.raises(grpc.RpcError) as info:
                TraceServiceStub(channel).Export(
                    request, timeout=30, metadata=[("authorization", "Bearer nope")]
                )
            assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert count_spans(database_url) == 0
        exporter = OTLPSpanExporter(
            endpoint=target, insecure=True, headers={"authorization": "Bearer grpc-token"}
        )
        try:
            assert exporter.export(_spans("auth")) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
        finally:
            exporter.shutdown()
        assert count_spans(database_url) == 1
