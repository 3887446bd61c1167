"""Request bodies in flight share one byte budget across OTLP/HTTP and OTLP/gRPC: beyond it, requests
are refused at once as retryable (429 + Retry-After / RESOURCE_EXHAUSTED + RetryInfo), and nothing
accepted is lost."""

from __future__ import annotations

import threading

import grpc
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from load_support import post_traces
from server_support import base_url, count_spans, running, turn_request, wait_until, writer_blocked

from otel_chatbot.processor.inflight import InflightBytes

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def test_budget_refuses_beyond_its_limit_and_takes_one_oversized_request_alone() -> None:
    budget = InflightBytes(1000)
    assert budget.try_acquire(5000)  # nothing in flight: a single large request still goes through
    assert not budget.try_acquire(1)
    budget.release(5000)
    assert budget.try_acquire(600) and budget.try_acquire(400) and not budget.try_acquire(1)
    assert budget.used == 1000
    assert "max_inflight_bytes=1000" in budget.refusal(1)


def test_requests_beyond_the_inflight_budget_are_refused_retryably(database_url: str) -> None:
    first, first_traces = turn_request(3000)
    second, second_traces = turn_request(3000)
    limit = len(first) + len(first) // 2  # room for one request, not two
    with running(database_url, max_inflight_bytes=limit) as processor:
        url = base_url(processor)
        answers: list[tuple[int, str | None]] = []
        with writer_blocked(database_url):
            sender = threading.Thread(target=lambda: answers.append(post_traces(url, first)))
            sender.start()
            wait_until(lambda: processor.pipeline.pending_spans == 3000, "the first request queued")
            # The first request is held (waiting for its commit): the second does not fit.
            assert post_traces(url, second) == (429, "1")
            host, port = processor.grpc_address
            with grpc.insecure_channel(f"{host}:{port}") as channel:
                call = channel.unary_unary(_EXPORT, request_serializer=lambda b: b,
                                           response_deserializer=lambda b: b)
                try:
                    call(second, timeout=30)
                    raise AssertionError("the gRPC export beyond the budget was accepted")
                except grpc.RpcError as exc:
                    assert exc.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                    trailers = dict(exc.trailing_metadata() or ())
                    retry = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
                    assert retry.retry_delay.seconds == 1
        sender.join(60)
        assert answers == [(200, None)]
        assert post_traces(url, second) == (200, None)  # the retry fits once the first is answered
        assert count_spans(database_url, first_traces + second_traces) == 6000
