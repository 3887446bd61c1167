"""Helpers of the server tests: start a real Processor, build OTLP requests, read rows back."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from tools import wait_for

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.config import load_config

NOW_NS = time.time_ns()


def make_processor(database_url: str | None, **settings: object) -> Processor:
    flags: dict[str, object] = {
        "otlp_http": "127.0.0.1:0",
        "otlp_grpc": "127.0.0.1:0",
        "metrics": "127.0.0.1:0",
        "database_url": database_url,
        # Short, so tests reading chat metrics wait little; still through the periodic settle.
        "turn_settle_seconds": 0.2,
    }
    flags.update(settings)
    return Processor(load_config(flags, {}, None))


@contextmanager
def running(database_url: str | None, **settings: object) -> Iterator[Processor]:
    processor = make_processor(database_url, **settings)
    processor.start()
    try:
        yield processor
    finally:
        processor.shutdown()


def base_url(processor: Processor) -> str:
    host, port = processor.http_address
    return f"http://{host}:{port}"


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def turn_request(
    count: int, *, session: str = "sess-1", service: str = "test-bot"
) -> tuple[bytes, list[str]]:
    """An OTLP protobuf body of ``count`` SDK turns (one span each); returns (body, trace ids hex)."""
    spans: list[Span] = []
    traces: list[str] = []
    for i in range(count):
        trace_id = os.urandom(16)
        traces.append(trace_id.hex())
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=os.urandom(8),
                name="chat.turn",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=NOW_NS + i,
                end_time_unix_nano=NOW_NS + i + 250_000_000,
                attributes=[
                    _kv("chat.turn.id", f"turn-{trace_id.hex()}"),
                    _kv("session.id", session),
                    _kv("input.value", f"question {i}"),
                    _kv("output.value", f"answer {i}"),
                    _kv("gen_ai.request.model", "gpt-4o-mini"),
                    _kv("gen_ai.usage.input_tokens", 10),
                    _kv("gen_ai.usage.output_tokens", 5),
                ],
            )
        )
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [_kv("service.name", service)]}, scope_spans=[ScopeSpans(spans=spans)]
            )
        ]
    )
    return request.SerializeToString(), traces


def count_spans(url: str, traces: Sequence[str] | None = None) -> int:
    """Stored spans (of ``traces``), whichever span layout stored them."""
    with psycopg.connect(url) as conn:
        if traces is None:
            row = conn.execute("SELECT count(*) FROM stored_span_ids").fetchone()
        else:
            row = conn.execute(
                "SELECT count(*) FROM stored_span_ids WHERE trace_id = ANY(%s)", (list(traces),)
            ).fetchone()
    assert row is not None
    return int(row[0])


def fetch(url: str, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        return list(conn.execute(query, params).fetchall())  # type: ignore[arg-type]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll ``predicate``; the timeout is only a safety net against hanging, not a measured threshold."""
    wait_for(predicate, timeout, what, interval=0.02)


@contextmanager
def writer_blocked(url: str) -> Iterator[None]:
    """Hold an exclusive lock on the span tables (``spans``, and ``span_traces`` which the blocks layout
    reads first) so the writer's first span statement waits until the block ends."""
    conn = psycopg.connect(url)
    try:
        conn.execute("LOCK TABLE spans, span_traces IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()
