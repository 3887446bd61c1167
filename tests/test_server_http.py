"""OTLP/HTTP receiver and HTTP API against a real processor, real exporters and real Postgres."""

from __future__ import annotations

import gzip
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from layouts import BOTH_LAYOUTS, trace_spans
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from server_support import base_url, count_spans, fetch, running, turn_request

from otel_chatbot.processor.app import Processor

PROTOBUF = {"Content-Type": "application/x-protobuf"}
TESTDATA = Path(__file__).parent / "testdata"


pytestmark = BOTH_LAYOUTS  # the guarantees hold in both span layouts


@pytest.fixture
def processor(database_url: str, span_storage: str) -> Iterator[Processor]:
    with running(database_url, max_body_bytes=64 * 1024, span_storage=span_storage) as proc:
        yield proc


def _sdk_spans(turns: int, session: str) -> list[object]:
    """Spans made by the real OpenTelemetry SDK (what an instrumented app exports)."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "sdk-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(turns):
        with (
            tracer.start_as_current_span(
                "chat.turn",
                attributes={
                    "chat.turn.id": f"t-{uuid.uuid4().hex}",
                    "session.id": session,
                    "input.value": f"q{i}",
                    "output.value": f"a{i}",
                    "chat.fallback": i == 0,
                },
            ),
            tracer.start_as_current_span(
                "llm",
                attributes={
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.usage.input_tokens": 100,
                    "gen_ai.usage.output_tokens": 20,
                },
            ),
        ):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


@pytest.mark.parametrize("compression", [Compression.NoCompression, Compression.Gzip, Compression.Deflate])
def test_real_http_exporter_rows_visible_when_export_returns(
    processor: Processor, database_url: str, compression: Compression
) -> None:
    session = f"s-{uuid.uuid4().hex}"
    spans = _sdk_spans(3, session)
    exporter = OTLPSpanExporter(endpoint=f"{base_url(processor)}/v1/traces", compression=compression)
    try:
        assert exporter.export(spans) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
    finally:
        exporter.shutdown()
    # 200 only after commit: everything is already in Postgres, no waiting.
    assert count_spans(database_url) == 6
    turns = fetch(
        database_url,
        "SELECT session_id, input_tokens, output_tokens, fallback, service "
        "FROM chat_turns ORDER BY fallback DESC",
    )
    assert turns == [(session, 100, 20, True, "sdk-bot")] + [(session, 100, 20, False, "sdk-bot")] * 2


def test_otlp_json_with_hex_ids_is_stored_and_answered_in_json(
    processor: Processor, database_url: str, span_storage: str
) -> None:
    body = (TESTDATA / "otlp" / "traces_openinference.json").read_bytes()
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert response.json() == {} or "partialSuccess" in response.json()
    trace = "5b8efff798038103d269b633813fc60c"
    rows = [(s.trace_id, s.service) for s in trace_spans(database_url, trace, span_storage)]
    assert rows and all(r == (trace, "json-bot") for r in rows)
    assert count_spans(database_url) == len(rows)


def test_protobuf_response_is_an_export_response(processor: Processor, database_url: str) -> None:
    body, traces = turn_request(2)
    response = httpx.post(
        f"{base_url(processor)}/v1/traces",
        content=gzip.compress(body),
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-protobuf"
    ExportTraceServiceResponse.FromString(response.content)  # parses
    assert count_spans(database_url, traces) == 2


def test_retried_request_is_not_duplicated(processor: Processor, database_url: str) -> None:
    body, traces = turn_request(4)
    for _ in range(2):
        assert (
            httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        )
    assert count_spans(database_url, traces) == 4
    assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(4,)]


def test_concurrent_requests_are_all_committed(processor: Processor, database_url: str) -> None:
    requests = [turn_request(50) for _ in range(12)]
    statuses: list[int] = []

    def send(body: bytes) -> None:
        with httpx.Client() as client:
            statuses.append(
                client.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF).status_code
            )

    threads = [threading.Thread(target=send, args=(body,)) for body, _ in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses == [200] * 12
    assert count_spans(database_url) == 600


# --- bad input ---------------------------------------------------------------------------------
def test_garbage_protobuf_is_400_with_a_status_body(processor: Processor, database_url: str) -> None:
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=b"\xff\xff\xff garbage", headers=PROTOBUF
    )
    assert response.status_code == 400
    status = Status.FromString(response.content)
    assert status.code == 3 and "not valid protobuf" in status.message
    # The process stays up and keeps working.
    body, _traces = turn_request(1)
    assert httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    assert count_spans(database_url) == 1


def test_bad_json_is_400_naming_the_problem(processor: Processor) -> None:
    response = httpx.post(
        f"{base_url(processor)}/v1/traces",
        content=b'{"resourceSpans": [',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert "not valid JSON" in response.json()["message"]
    bad_id = (TESTDATA / "otlp" / "traces_bad_trace_id.json").read_bytes()
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=bad_id, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400 and "traceId" in response.json()["message"]


def test_wrong_content_type_is_415(processor: Processor) -> None:
    body, _ = turn_request(1)
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=body, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert "text/plain" in response.json()["message"]
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=body, headers={**PROTOBUF, "Content-Encoding": "br"}
    )
    assert response.status_code == 415 and "Content-Encoding" in Status.FromString(response.content).message


def test_oversized_body_is_413_by_content_length(processor: Processor, database_url: str) -> None:
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=b"\x00" * (64 * 1024 + 1), headers=PROTOBUF
    )
    assert response.status_code == 413
    assert "exceeds the limit of 65536 bytes" in Status.FromString(response.content).message
    assert count_spans(database_url) == 0


def test_oversized_chunked_body_is_413_while_reading(processor: Processor) -> None:
    def chunks() -> Iterator[bytes]:  # no Content-Length: the receiver must count
        for _ in range(20):
            yield b"\x00" * 8192

    response = httpx.post(f"{base_url(processor)}/v1/traces", content=chunks(), headers=PROTOBUF)
    assert response.status_code == 413


def test_gzip_bomb_is_413(processor: Processor, database_url: str) -> None:
    bomb = gzip.compress(b"\x00" * (10 * 1024 * 1024))  # ~10 KB on the wire, 10 MiB inflated
    assert len(bomb) < 64 * 1024
    response = httpx.post(
        f"{base_url(processor)}/v1/traces", content=bomb, headers={**PROTOBUF, "Content-Encoding": "gzip"}
    )
    assert response.status_code == 413
    assert "decompressed body exceeds" in Status.FromString(response.content).message
    truncated = gzip.compress(turn_request(1)[0])[:-10]
    response = httpx.post(
        f"{base_url(processor)}/v1/traces",
        content=truncated,
        headers={**PROTOBUF, "Content-Encoding": "gzip"},
    )
    assert response.status_code == 400
    assert count_spans(database_url) == 0


def test_health_and_ready(processor: Processor) -> None:
    assert httpx.get(f"{base_url(processor)}/healthz").status_code == 200
    ready = httpx.get(f"{base_url(processor)}/readyz")
    assert ready.status_code == 200 and ready.text.strip() == "ready"
    assert httpx.get(f"{base_url(processor)}/v1/traces").status_code == 405


# --- auth --------------------------------------------------------------------------------------
def test_auth_401_without_token_and_200_with_it(database_url: str) -> None:
    with running(database_url, auth_token="s3cret-token") as proc:
        body, _traces = turn_request(1)
        url = f"{base_url(proc)}/v1/traces"
        assert httpx.post(url, content=body, headers=PROTOBUF).status_code == 401
        wrong = httpx.post(url, content=body, headers={**PROTOBUF, "Authorization": "Bearer s3cret-tokeX"})
        assert wrong.status_code == 401 and Status.FromString(wrong.content).code == 16
        assert (
            httpx.post(f"{base_url(proc)}/v1/feedback", json={"turn_id": "x", "rating": "up"}).status_code
            == 401
        )
        assert count_spans(database_url) == 0
        exporter = OTLPSpanExporter(endpoint=url, headers={"Authorization": "Bearer s3cret-token"})
        try:
            assert exporter.export(_sdk_spans(1, "auth")) is SpanExportResult.SUCCESS  # type: ignore[arg-type]
        finally:
            exporter.shutdown()
        assert count_spans(database_url) == 2
        assert httpx.get(f"{base_url(proc)}/healthz").status_code == 200  # probes need no token


# --- logs and feedback -------------------------------------------------------------------------
def test_feedback_log_records_are_stored(processor: Processor, database_url: str) -> None:
    body = (TESTDATA / "otlp" / "logs_feedback.json").read_bytes()
    response = httpx.post(
        f"{base_url(processor)}/v1/logs", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    # turn-1 and turn-2 are not stored: their ratings wait for them (test_server_pending_feedback.py).
    pending = fetch(database_url, "SELECT turn_id, rating, comment, origin FROM pending_feedback ORDER BY 1")
    assert pending == [("turn-1", "down", "wrong answer", "log"), ("turn-2", "up", None, "log")]
    assert fetch(database_url, "SELECT count(*) FROM feedback") == [(0,)]
    expected = json.loads(body)
    assert expected["resourceLogs"]  # the fixture really holds log records


def test_feedback_api(processor: Processor, database_url: str) -> None:
    body, traces = turn_request(1)
    assert httpx.post(f"{base_url(processor)}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    turn_id = f"turn-{traces[0]}"
    url = f"{base_url(processor)}/v1/feedback"

    ok = httpx.post(url, json={"turn_id": turn_id, "rating": "down", "comment": "wrong answer"})
    assert ok.status_code == 200 and ok.json()["stored"] is True
    assert fetch(
        database_url, "SELECT rating, comment, origin FROM feedback WHERE turn_id = %s", (turn_id,)
    ) == [("down", "wrong answer", "api")]
    assert httpx.post(url, json={"turn_id": turn_id, "rating": "up"}).status_code == 200
    assert fetch(database_url, "SELECT rating FROM feedback WHERE turn_id = %s", (turn_id,)) == [("up",)]

    missing = httpx.post(url, json={"turn_id": "no-such-turn", "rating": "up"})
    assert missing.status_code == 202
    assert missing.json() == {"turn_id": "no-such-turn", "rating": "up", "stored": False, "pending": True}
    assert fetch(database_url, "SELECT turn_id FROM pending_feedback") == [("no-such-turn",)]
    bad_rating = httpx.post(url, json={"turn_id": turn_id, "rating": "meh"})
    assert bad_rating.status_code == 400 and "rating" in bad_rating.json()["message"]
    assert httpx.post(url, json={"rating": "up"}).status_code == 400
    assert httpx.post(url, json=["up"]).status_code == 400
    assert httpx.post(url, json={"turn_id": turn_id, "rating": "up", "comment": 5}).status_code == 400
    bad_json = httpx.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "JSON" in bad_json.json()["message"]
    assert httpx.post(url, content=b"turn_id=x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert fetch(database_url, "SELECT count(*) FROM feedback") == [(1,)]


def test_ordinary_log_lines_are_accepted_and_not_stored(processor: Processor, database_url: str) -> None:
    body = {
        "resourceLogs": [
            {
                "scopeLogs": [
                    {
                        "logRecords": [
                            {"timeUnixNano": "1", "body": {"stringValue": "user logged in"}},
                            {
                                "timeUnixNano": "2",
                                "attributes": [
                                    {"key": "chat.turn.id", "value": {"stringValue": "t1"}},
                                    {"key": "chat.feedback.rating", "value": {"stringValue": "meh"}},
                                ],
                            },
                        ]
                    }
                ]
            }
        ]
    }
    response = httpx.post(f"{base_url(processor)}/v1/logs", json=body)
    assert response.status_code == 200
    # The bad rating is reported as a partial success, not a failure of the whole request.
    assert response.json()["partialSuccess"]["rejectedLogRecords"] == 1
    assert fetch(database_url, "SELECT count(*) FROM feedback") == [(0,)]
