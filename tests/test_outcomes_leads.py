"""Lead outcomes end to end: recorded by the SDK and POST /v1/outcomes into the real processor, counted
in ``chatbot_leads_total{service, source, goal}`` (read by scraping /metrics over HTTP, never as a
conversion), and in business_outcomes_daily's lead columns (migration 0019)."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from server_support import base_url, fetch, running, wait_until

import otel_chatbot
from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, max_body_bytes=4096) as proc:
        yield proc


def scrape(proc: Processor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every chat outcome sample of one scrape of /metrics over HTTP, keyed (name, sorted labels)."""
    host, port = proc.metrics_address
    body = urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body) for s in family.samples
            if s.name in ("chatbot_leads_total", "chatbot_conversions_total")}


def export_turn(proc: Processor, turn_id: str, session_id: str, source: str) -> None:
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(proc)}/v1/traces")))
    with provider.get_tracer("t").start_as_current_span("chat.turn", attributes={
            "chat.turn.id": turn_id, "session.id": session_id, "chat.source": source, "input.value": "hi",
            "output.value": "hello"}):
        pass
    provider.shutdown()


def _labels(source: str, goal: str) -> tuple[tuple[str, str], ...]:
    return (("goal", goal), ("service", "shop-bot"), ("source", source))


def test_leads_are_counted_by_goal_and_apart_from_conversions(processor: Processor,
                                                              database_url: str) -> None:
    export_turn(processor, "t-1", "s-1", "website")
    export_turn(processor, "t-2", "s-2", "whatsapp")
    export_turn(processor, "t-3", "s-3", "website")
    url = f"{base_url(processor)}/v1/outcomes"
    for body in ({"session_id": "s-1", "kind": "lead", "label": "demo_request", "id": "crm-1"},
                 {"session_id": "s-1", "kind": "lead", "label": "demo_request", "id": "crm-1"},  # a retry
                 {"session_id": "s-2", "kind": "lead", "label": "newsletter", "value": 5},
                 {"session_id": "s-2", "kind": "conversion", "label": "purchase", "value": 49}):
        assert httpx.post(url, json=body).status_code == 200
    # A lead naming a turn not stored yet waits (202) and counts when the turn arrives.
    assert httpx.post(url, json={"turn_id": "t-4", "kind": "lead"}).status_code == 202
    host, port = processor.http_address
    otel_chatbot.instrument("shop-bot", endpoint=f"http://{host}:{port}", protocol="http/protobuf",
                            set_global=False, instrument_libraries=False)
    try:
        otel_chatbot.record_outcome("s-3", "lead", label="demo_request")
        assert otel_chatbot.force_flush(30_000)
    finally:
        otel_chatbot.shutdown()
    export_turn(processor, "t-4", "s-4", "website")

    expected = {
        ("chatbot_leads_total", _labels("website", "demo_request")): 2.0,
        ("chatbot_leads_total", _labels("whatsapp", "newsletter")): 1.0,
        ("chatbot_leads_total", _labels("website", "unknown")): 1.0,
        ("chatbot_conversions_total", _labels("whatsapp", "purchase")): 1.0,
    }
    seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def counted() -> bool:
        nonlocal seen
        seen = scrape(processor)  # a new series reads 0 on its first scrape, its count on the next
        return seen == expected

    with contextlib.suppress(AssertionError, TimeoutError):
        wait_until(counted, "lead and conversion counts", 15)
    assert seen == expected
    assert fetch(database_url, "SELECT kind, label, session_id, origin, source FROM outcomes "
                               "ORDER BY kind, session_id") == [
        ("conversion", "purchase", "s-2", "api", "whatsapp"),
        ("lead", "demo_request", "s-1", "api", "website"),
        ("lead", "newsletter", "s-2", "api", "whatsapp"),
        ("lead", "demo_request", "s-3", "span", "website"),
        ("lead", None, "s-4", "api", "website")]
    today = datetime.now(UTC).date()
    assert fetch(database_url, "SELECT day, source, conversations, converted_conversations, conversion_rate, "
                               "lead_conversations, lead_rate FROM business_outcomes_daily "
                               "ORDER BY source") == [
        (today, "website", 3, 0, 0.0, 3, 1.0),
        (today, "whatsapp", 1, 1, 1.0, 1, 1.0)]


def test_bad_lead_outcomes_are_refused_and_not_counted(processor: Processor, database_url: str) -> None:
    export_turn(processor, "t-1", "s-1", "website")
    url = f"{base_url(processor)}/v1/outcomes"
    cases = [
        ({"session_id": "s-1", "kind": "lead", "value": -1},
         "value: lead value must be between 0 and inf, got -1"),
        ({"session_id": "s-1", "kind": "lead", "value": "5"},
         "value: value must be a finite number, got '5'"),
        ({"session_id": "s-1", "kind": "leads"},
         "kind: expected one of conversion, lead, csat, nps, got 'leads'"),
        ({"session_id": "s-1", "kind": "lead", "label": "x" * 129},
         "label: expected a non-empty string of at most 128 characters"),
    ]
    for body, message in cases:
        response = httpx.post(url, json=body)
        assert response.status_code == 400, response.text
        assert message in response.text
    assert fetch(database_url, "SELECT count(*) FROM outcomes") == [(0,)]
    scrape(processor)
    assert scrape(processor) == {}
