"""Business outcomes, escalations and prompt/app versions end to end: the SDK's real OTLP exporter and
OpenTelemetry SDK apps into the real processor, checked in Postgres and in the Prometheus metrics."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from server_support import base_url, fetch, running, wait_until

import otel_chatbot
from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, migrate=False) as proc:
        yield proc


def metric(proc: Processor, name: str, **labels: str) -> float | None:
    """What a scrape reads once an earlier scrape has seen each new chat series at 0."""
    list(proc.metrics.registry.collect())
    return proc.metrics.registry.get_sample_value(name, labels)


def settled(proc: Processor, name: str, expected: float, **labels: str) -> float | None:
    """The sample once turns are counted (they are when they settle, turn_settle_seconds after their
    last change): waits for ``expected``, then returns what a scrape reads (the caller asserts it)."""
    with contextlib.suppress(AssertionError, TimeoutError):  # the caller's assertion shows the value
        wait_until(lambda: metric(proc, name, **labels) == expected, f"{name}{labels} == {expected}", 15)
    return metric(proc, name, **labels)


def app(proc: Processor, resource: dict[str, str]) -> TracerProvider:
    """An OpenTelemetry SDK app exporting each span at once over OTLP/HTTP to the processor."""
    provider = TracerProvider(resource=Resource.create(resource))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(proc)}/v1/traces")))
    return provider


def test_sdk_outcomes_escalation_and_versions_reach_rows_and_metrics(processor: Processor,
                                                                      database_url: str) -> None:
    host, port = processor.http_address
    otel_chatbot.instrument("shop-bot", service_version="2.1.0", endpoint=f"http://{host}:{port}",
                            protocol="http/protobuf", set_global=False, instrument_libraries=False)
    try:
        with otel_chatbot.chat_turn(session_id="s-1", user_id="u-1", source="website", user_message="price?",
                                    prompt_version="v2") as first:
            first.set_response("It is 49 EUR.")
        with otel_chatbot.chat_turn(session_id="s-1", user_id="u-1", source="website",
                                    user_message="I want a refund", prompt_version="v2") as second:
            second.mark_escalated("billing")
            second.set_response("A colleague will take over.")
        assert otel_chatbot.force_flush(30_000)  # the turns first: outcomes take their session's source
        otel_chatbot.record_outcome("s-1", "conversion", 49.0, label="purchase")
        otel_chatbot.record_outcome("s-1", "csat", 4)
        otel_chatbot.record_outcome(turn_id=second.id, kind="nps", value=9)
        assert otel_chatbot.force_flush(30_000)
    finally:
        otel_chatbot.shutdown()

    assert fetch(database_url, "SELECT turn_id, escalated, escalation_reason, prompt_version, app_version"
                               " FROM chat_turns ORDER BY started_at") == [
        (first.id, False, None, "v2", "2.1.0"), (second.id, True, "billing", "v2", "2.1.0")]
    assert fetch(database_url, "SELECT kind, value, label, session_id, turn_id, origin, service, source,"
                               " pending FROM outcomes ORDER BY kind") == [
        ("conversion", 49.0, "purchase", "s-1", None, "span", "shop-bot", "website", False),
        ("csat", 4.0, None, "s-1", None, "span", "shop-bot", "website", False),
        ("nps", 9.0, None, "s-1", second.id, "span", "shop-bot", "website", False)]
    # The outcome spans are outcomes, not turns.
    assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(2,)]

    assert settled(processor, "chatbot_conversions_total", 1, service="shop-bot", source="website",
                  goal="purchase") == 1
    assert settled(processor, "chatbot_escalations_total", 1, service="shop-bot", source="website",
                  reason="billing") == 1
    assert settled(processor, "chatbot_csat_score_count", 1, service="shop-bot") == 1
    assert settled(processor, "chatbot_csat_score_sum", 4, service="shop-bot") == 4
    assert settled(processor, "chatbot_csat_score_bucket", 0, service="shop-bot", le="3.0") == 0
    assert settled(processor, "chatbot_csat_score_bucket", 1, service="shop-bot", le="4.0") == 1
    assert settled(processor, "chatbot_nps_score_sum", 9, service="shop-bot") == 9
    assert settled(processor, "chatbot_turns_by_version_total", 2, service="shop-bot", prompt_version="v2",
                  app_version="2.1.0") == 2
    assert settled(processor, "chatbot_turns_total", 2, service="shop-bot", source="website") == 2


def test_versions_from_openinference_attribute_and_resource_service_version(processor: Processor,
                                                                            database_url: str) -> None:
    # An app without our SDK: an OpenInference chain with an LLM span naming the prompt template version.
    provider = app(processor, {"service.name": "faq-bot", "service.version": "7.3"})
    tracer = provider.get_tracer("openinference")
    chain_attributes: dict[str, Any] = {"openinference.span.kind": "CHAIN", "session.id": "s-9",
                                        "input.value": "hours?", "output.value": "9 to 5"}
    llm_attributes: dict[str, Any] = {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                      "llm.prompt_template.version": "faq-2024-06", "llm.token_count.prompt": 10,
                      "llm.token_count.completion": 5}
    with (tracer.start_as_current_span("chain", attributes=chain_attributes) as chain,
          tracer.start_as_current_span("llm", attributes=llm_attributes)):
        pass
    trace_id = format(chain.get_span_context().trace_id, "032x")
    # A second app whose resource has no version: the column stays empty.
    other = app(processor, {"service.name": "plain-bot"})
    with other.get_tracer("t").start_as_current_span("chat.turn", attributes={
            "chat.turn.id": "t-plain", "session.id": "s-10", "input.value": "hi", "output.value": "hello"}):
        pass
    provider.shutdown()
    other.shutdown()
    assert fetch(database_url, "SELECT turn_id, service, prompt_version, app_version, auto FROM chat_turns"
                               " ORDER BY service") == [
        (trace_id, "faq-bot", "faq-2024-06", "7.3", True), ("t-plain", "plain-bot", None, None, False)]
    assert settled(processor, "chatbot_turns_by_version_total", 1, service="faq-bot",
                  prompt_version="faq-2024-06", app_version="7.3") == 1
    # Turns without any version are not in the by-version counter.
    assert metric(processor, "chatbot_turns_by_version_total", service="plain-bot", prompt_version="unknown",
                  app_version="unknown") is None


def test_escalation_on_a_span_arriving_after_its_turn_updates_it_and_counts_once(processor: Processor,
                                                                                database_url: str) -> None:
    provider = app(processor, {"service.name": "shop-bot"})
    tracer = provider.get_tracer("t")
    turn_id = f"t-{uuid.uuid4().hex}"
    with tracer.start_as_current_span("chat.turn", attributes={
            "chat.turn.id": turn_id, "session.id": "s-2", "chat.source": "whatsapp", "input.value": "help",
            "output.value": "one moment"}):
        pass
    assert fetch(database_url, "SELECT escalated FROM chat_turns") == [(False,)]
    # Counted (settled) first: the late escalation must then be counted by itself, once.
    assert settled(processor, "chatbot_turns_total", 1, service="shop-bot", source="whatsapp") == 1
    for _ in range(2):  # a handoff tool span of the turn, reported late, then again
        with tracer.start_as_current_span("handoff", attributes={
                "chat.in_turn": turn_id, "chat.escalated": True, "chat.escalation.reason": "angry"}):
            pass
    provider.shutdown()
    assert fetch(database_url, "SELECT escalated, escalation_reason FROM chat_turns") == [(True, "angry")]
    assert settled(processor, "chatbot_escalations_total", 1, service="shop-bot", source="whatsapp",
                  reason="angry") == 1
    assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(1,)]
    time.sleep(1.5)  # a few settle rounds later: still once
    assert metric(processor, "chatbot_escalations_total", service="shop-bot", source="whatsapp",
                  reason="angry") == 1
    assert metric(processor, "chatbot_turns_total", service="shop-bot", source="whatsapp") == 1
