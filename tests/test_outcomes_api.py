"""POST /v1/outcomes on the real processor: stored by session (200), pending for a turn not stored yet
(202, attached and counted when the turn arrives), retries with an id stored once, bad requests refused
with a message and nothing kept; outcome log records over OTLP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource as ResourcePb
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from server_support import base_url, fetch, running

from otel_chatbot.processor.app import Processor

JSON_HEADERS = {"Content-Type": "application/json"}
OUTCOME_COLUMNS = "kind, value, label, session_id, turn_id, origin, service, source, pending"


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, max_body_bytes=4096) as proc:
        yield proc


def metric(proc: Processor, name: str, **labels: str) -> float | None:
    list(proc.metrics.registry.collect())  # a first scrape reads each new series at 0
    return proc.metrics.registry.get_sample_value(name, labels)


def export_turn(proc: Processor, turn_id: str, session_id: str, source: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(proc)}/v1/traces")))
    with provider.get_tracer("t").start_as_current_span("chat.turn", attributes={
            "chat.turn.id": turn_id, "session.id": session_id, "chat.source": source, "input.value": "hi",
            "output.value": "hello"}):
        pass
    provider.shutdown()


def test_outcome_by_session_is_200_and_counted_under_the_sessions_service_and_source(
        processor: Processor, database_url: str) -> None:
    export_turn(processor, "t-1", "s-1", "whatsapp")
    url = f"{base_url(processor)}/v1/outcomes"
    response = httpx.post(url, json={"session_id": "s-1", "kind": "conversion", "value": 120.5,
                                     "label": "booking", "id": "order-77"})
    assert response.status_code == 200, response.text
    assert response.json() == {"session_id": "s-1", "turn_id": None, "kind": "conversion", "stored": True,
                               "pending": False}
    retried = httpx.post(url, json={"session_id": "s-1", "kind": "conversion", "value": 120.5,
                                    "label": "booking", "id": "order-77"})
    assert retried.status_code == 200
    assert httpx.post(url, json={"session_id": "s-1", "kind": "csat", "value": 2}).status_code == 200
    # A session the processor never saw: stored all the same (a conversion after a chat kept elsewhere).
    assert httpx.post(url, json={"session_id": "s-unknown", "kind": "lead"}).status_code == 200
    assert fetch(database_url, f"SELECT {OUTCOME_COLUMNS} FROM outcomes ORDER BY kind") == [
        ("conversion", 120.5, "booking", "s-1", None, "api", "shop-bot", "whatsapp", False),
        ("csat", 2.0, None, "s-1", None, "api", "shop-bot", "whatsapp", False),
        ("lead", None, None, "s-unknown", None, "api", None, None, False)]
    assert metric(processor, "chatbot_conversions_total", service="shop-bot", source="whatsapp",
                  goal="booking") == 1
    assert metric(processor, "chatbot_csat_score_sum", service="shop-bot") == 2


def test_outcome_for_a_turn_not_stored_yet_is_202_then_attached_when_the_turn_arrives(
        processor: Processor, database_url: str) -> None:
    url = f"{base_url(processor)}/v1/outcomes"
    early = httpx.post(url, json={"turn_id": "t-late", "kind": "conversion", "label": "signup"})
    assert early.status_code == 202, early.text
    assert early.json() == {"session_id": None, "turn_id": "t-late", "kind": "conversion", "stored": False,
                            "pending": True}
    assert fetch(database_url, f"SELECT {OUTCOME_COLUMNS} FROM outcomes") == [
        ("conversion", None, "signup", None, "t-late", "api", None, None, True)]
    assert metric(processor, "otel_chatbot_outcomes_pending_total") == 1
    assert metric(processor, "chatbot_conversions_total", service="shop-bot", source="website",
                  goal="signup") is None

    export_turn(processor, "t-late", "s-5", "website")
    assert fetch(database_url, f"SELECT {OUTCOME_COLUMNS} FROM outcomes") == [
        ("conversion", None, "signup", "s-5", "t-late", "api", "shop-bot", "website", False)]
    assert metric(processor, "chatbot_conversions_total", service="shop-bot", source="website",
                  goal="signup") == 1
    # Now that the turn is stored, an outcome naming it is 200 and takes its session.
    later = httpx.post(url, json={"turn_id": "t-late", "kind": "nps", "value": 10})
    assert later.status_code == 200
    assert fetch(database_url, "SELECT session_id, service FROM outcomes WHERE kind = 'nps'") == [
        ("s-5", "shop-bot")]


def test_malformed_invalid_oversized_and_unauthorised_outcomes_are_refused_and_nothing_is_kept(
        database_url: str) -> None:
    with running(database_url, max_body_bytes=4096, auth_token="s3cret") as proc:
        url = f"{base_url(proc)}/v1/outcomes"
        auth = {"Authorization": "Bearer s3cret"}
        good = {"session_id": "s", "kind": "conversion"}
        cases = [
            (httpx.post(url, json=good), 401, "bearer token"),
            (httpx.post(url, json=good, headers={"Authorization": "Bearer no"}), 401, "bearer token"),
            (httpx.post(url, content=b"x" * 5000, headers={**auth, **JSON_HEADERS}),
             413, "exceeds the limit"),
            (httpx.post(url, content=b"{oops", headers={**auth, **JSON_HEADERS}), 400, "not valid JSON"),
            (httpx.post(url, json=["conversion"], headers=auth), 400, "JSON object"),
            (httpx.post(url, json={"session_id": "s", "kind": "refund"}, headers=auth), 400, "kind"),
            (httpx.post(url, json={"kind": "conversion"}, headers=auth), 400, "session_id or turn_id"),
            (httpx.post(url, json={"session_id": "s", "kind": "csat"}, headers=auth),
             400, "csat needs a value"),
            (httpx.post(url, json={"session_id": "s", "kind": "csat", "value": 7}, headers=auth),
             400, "between 1 and 5"),
            (httpx.post(url, json={"session_id": "s", "kind": "nps", "value": 7.5}, headers=auth),
             400, "whole number"),
            (httpx.post(url, json={"session_id": "s", "kind": "conversion", "value": "49"}, headers=auth),
             400, "finite number"),
            (httpx.post(url, json={"session_id": "s" * 257, "kind": "lead"}, headers=auth),
             400, "session_id"),
            (httpx.post(url, json={**good, "amount": 3}, headers=auth), 400, "unknown field"),
            (httpx.post(url, content=b"kind=conversion", headers={**auth, "Content-Type": "text/plain"}),
             415, "application/json"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, response.text
            assert message in response.json()["message"], response.text
        assert fetch(database_url, "SELECT count(*) FROM outcomes") == [(0,)]
        assert httpx.post(url, json=good, headers=auth).status_code == 200  # and the endpoint still works
        assert fetch(database_url, "SELECT count(*) FROM outcomes") == [(1,)]


def _value(value: str | float) -> AnyValue:
    return AnyValue(string_value=value) if isinstance(value, str) else AnyValue(double_value=value)


def test_outcome_log_records_are_stored_once_per_record_and_bad_ones_dropped(processor: Processor,
                                                                             database_url: str) -> None:
    body = KeyValueList(values=[KeyValue(key="session_id", value=_value("s-7")),
                                KeyValue(key="kind", value=_value("nps")),
                                KeyValue(key="value", value=_value(6.0))])
    records = [
        LogRecord(time_unix_nano=1_700_000_000_000_000_000, event_name="chat.outcome",
                  body=AnyValue(kvlist_value=body)),
        LogRecord(time_unix_nano=1_700_000_000_000_000_001, attributes=[
            KeyValue(key="chat.outcome.kind", value=_value("conversion")),
            KeyValue(key="chat.outcome.label", value=_value("demo-booked")),
            KeyValue(key="session.id", value=_value("s-7"))]),
        LogRecord(time_unix_nano=1_700_000_000_000_000_002, attributes=[  # NPS 11: dropped
            KeyValue(key="chat.outcome.kind", value=_value("nps")), KeyValue(key="chat.outcome.value",
                                                                           value=_value(11.0)),
            KeyValue(key="session.id", value=_value("s-7"))]),
        LogRecord(body=AnyValue(string_value="an ordinary log line")),
    ]
    request = ExportLogsServiceRequest(resource_logs=[ResourceLogs(
        resource=ResourcePb(attributes=[KeyValue(key="service.name", value=_value("crm"))]),
        scope_logs=[ScopeLogs(log_records=records)])])
    for _ in range(2):  # the Collector retries the request: stored once
        response = httpx.post(f"{base_url(processor)}/v1/logs", content=request.SerializeToString(),
                              headers={"Content-Type": "application/x-protobuf"})
        assert response.status_code == 200
        answer = ExportLogsServiceResponse.FromString(response.content)  # the bad one is reported
        assert answer.partial_success.rejected_log_records == 1
        assert answer.partial_success.error_message.startswith("1 outcome record(s) ignored: ")
    assert fetch(database_url, f"SELECT {OUTCOME_COLUMNS} FROM outcomes ORDER BY kind") == [
        ("conversion", None, "demo-booked", "s-7", None, "log", "crm", None, False),
        ("nps", 6.0, None, "s-7", None, "log", "crm", None, False)]
    assert metric(processor, "chatbot_conversions_total", service="crm", source="unknown",
                  goal="demo-booked") == 1
    assert metric(processor, "chatbot_nps_score_count", service="crm") == 1
