"""A processor bug answers 500 / INTERNAL and is logged, through the real HTTP and gRPC receivers.

A bug cannot be produced with valid parts, so each test injects one (monkeypatch of a function the
writer or the receiver calls: the only stand-in in these tests); everything else is real — the
receivers, the pipeline and its writer thread, Postgres.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from server_support import base_url, count_spans, running, turn_request

from otel_chatbot.processor.app import Processor

PROTOBUF = {"Content-Type": "application/x-protobuf"}
_INTERNAL = 13


def _bug(*args: object, **kwargs: object) -> object:
    raise ZeroDivisionError("injected bug")


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url) as processor:
        yield processor


def _grpc_export(processor: Processor, body: bytes) -> grpc.RpcError:
    host, port = processor.grpc_address
    with grpc.insecure_channel(f"{host}:{port}") as channel, pytest.raises(grpc.RpcError) as info:
        TraceServiceStub(channel).Export(ExportTraceServiceRequest.FromString(body), timeout=30)
    return info.value


def test_bug_while_writing_is_500_over_http_and_logged(
    processor: Processor, database_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("otel_chatbot.store.writer.part_deltas", _bug)
    body, traces = turn_request(1)
    with caplog.at_level(logging.ERROR, logger="otel_chatbot.processor.pipeline"):
        response = httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF, timeout=30)
    assert response.status_code == 500
    status = Status.FromString(response.content)
    assert status.code == _INTERNAL
    assert "internal error while writing" in status.message and "injected bug" in status.message
    assert "Retry-After" not in response.headers
    logged = [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], ZeroDivisionError)]
    assert len(logged) == 1
    assert count_spans(database_url, traces) == 0  # the transaction was rolled back
    # The writer thread survived the bug: with it gone, the same request is committed.
    monkeypatch.undo()
    response = httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF, timeout=30)
    assert response.status_code == 200
    assert count_spans(database_url, traces) == 1


def test_bug_while_decoding_is_500_over_http(
    processor: Processor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("otel_chatbot.processor.http_receiver.normalise_traces", _bug)
    body, _ = turn_request(1)
    with caplog.at_level(logging.ERROR, logger="otel_chatbot.processor.http_receiver"):
        response = httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF, timeout=30)
    assert response.status_code == 500
    status = Status.FromString(response.content)
    assert status.code == _INTERNAL
    assert status.message == "internal error while decoding: ZeroDivisionError('injected bug')"
    assert [r.getMessage() for r in caplog.records] == ["internal error while decoding a request"]


def test_bug_while_writing_is_internal_over_grpc(
    processor: Processor, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("otel_chatbot.store.writer.part_deltas", _bug)
    body, traces = turn_request(1)
    error = _grpc_export(processor, body)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert "injected bug" in (error.details() or "")
    assert count_spans(database_url, traces) == 0


def test_bug_while_decoding_is_internal_over_grpc(
    processor: Processor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr("otel_chatbot.processor.grpc_receiver.normalise_traces", _bug)
    body, _ = turn_request(1)
    with caplog.at_level(logging.ERROR, logger="otel_chatbot.processor.grpc_receiver"):
        error = _grpc_export(processor, body)
    assert error.code() == grpc.StatusCode.INTERNAL
    assert error.details() == "internal error while decoding: ZeroDivisionError('injected bug')"
    assert [r.getMessage() for r in caplog.records] == ["internal error while decoding a request"]


def test_database_refusal_stays_400(processor: Processor, database_url: str) -> None:
    """The permanent kind is unchanged: data the database refuses is the client's 400."""
    body, _ = turn_request(1)
    request = ExportTraceServiceRequest.FromString(body)
    request.resource_spans[0].scope_spans[0].spans[0].kind = 70000  # no smallint holds it
    response = httpx.post(f"{base_url(processor)}/v1/traces", content=request.SerializeToString(),
                          headers=PROTOBUF, timeout=30)
    assert response.status_code == 400
    assert "kind 70000" in Status.FromString(response.content).message
