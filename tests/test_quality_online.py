"""The judge inside `serve`: the real processor fed by the real OTLP exporter, judging in the background."""

from __future__ import annotations

import os
import threading
from typing import Any

import httpx
import pytest
from judge_support import scores, user_text
from llm_server import LLMServer, Reply
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from prometheus_client.parser import text_string_to_metric_families
from server_support import fetch, running, wait_until

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.config import ConfigError, load_config
from otel_chatbot.quality.rubric import JUDGE_VERSION

pytestmark = pytest.mark.slow


def _send_turns(processor: Processor, turns: list[dict[str, Any]]) -> None:
    """Export the turns through the OTel SDK's OTLP/HTTP exporter in one batch (flush waits for the 200)."""
    host, port = processor.http_address
    provider = TracerProvider(resource=Resource.create({"service.name": "shop-bot"}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"http://{host}:{port}/v1/traces"),
                                                   max_export_batch_size=512, schedule_delay_millis=60_000))
    tracer = provider.get_tracer("test")
    for t in turns:
        with tracer.start_as_current_span("chat.turn", attributes={
                "chat.turn.id": t["id"], "session.id": "sess-online", "chat.source": "website",
                "input.value": t["user"], "output.value": t["bot"]}):
            if t.get("documents"):
                attributes: dict[str, Any] = {"openinference.span.kind": "RETRIEVER", "chat.in_turn": t["id"]}
                for i, text in enumerate(t["documents"]):
                    attributes[f"retrieval.documents.{i}.document.content"] = text
                with tracer.start_as_current_span("retrieve", attributes=attributes):
                    pass
    assert provider.force_flush(30_000)
    provider.shutdown()


def _metrics(processor: Processor) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get("http://{}:{}/metrics".format(*processor.metrics_address), timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_new_turns_are_judged_in_the_background_with_metrics(database_url: str,
                                                             llm_server: LLMServer) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        prompt = user_text(body)
        if "broken" in prompt:
            return Reply("no JSON here")  # twice: the repair round fails too
        return Reply(scores(2, 7, 8, groundedness=1) if "RETRIEVED DOCUMENT" in prompt else scores(9, 9, 6))

    llm_server.respond_with(respond)
    turn_ids = [f"turn-{os.urandom(4).hex()}" for _ in range(3)]
    with running(database_url, judge_sample_rate=1.0, judge_base_url=llm_server.base_url,
                 judge_model="gpt-4o-mini") as processor:
        _send_turns(processor, [
            {"id": turn_ids[0], "user": "what does shipping cost", "bot": "shipping is always free",
             "documents": ["Shipping costs 5 EUR below 50 EUR."]},
            {"id": turn_ids[1], "user": "hello", "bot": "hi, how can I help?"},
            {"id": turn_ids[2], "user": "broken please", "bot": "?"},
        ])
        wait_until(lambda: fetch(database_url, "SELECT count(*) FROM evaluations") == [(2,)], "two verdicts")
        wait_until(lambda: _metrics(processor).get(
            ("chatbot_evaluation_score_count", (("dimension", "accuracy"),))) == 2.0, "score metric")
        wait_until(lambda: _metrics(processor).get(("otel_chatbot_judge_failures_total", ())) == 1.0,
                   "the failure counted")
        metrics = _metrics(processor)
    stored = fetch(database_url, "SELECT turn_id, judge_version, accuracy, relevance, clarity, groundedness, "
                                 "hallucinated FROM evaluations ORDER BY turn_id")
    assert sorted(stored) == sorted([(turn_ids[0], JUDGE_VERSION, 2.0, 7.0, 8.0, 1.0, True),
                                     (turn_ids[1], JUDGE_VERSION, 9.0, 9.0, 6.0, None, None)])
    assert fetch(database_url, "SELECT hallucinated, hallucination_source FROM chat_turns WHERE turn_id = %s",
                 (turn_ids[0],)) == [(True, "judge")]
    service = (("service", "shop-bot"), ("source", "website"))
    assert metrics[("chatbot_hallucinations_total", service)] == 1.0
    assert metrics[("chatbot_turns_total", service)] == 3.0
    for dimension, expected_sum in (("accuracy", 11.0), ("relevance", 16.0), ("clarity", 14.0)):
        labels = (("dimension", dimension),)
        assert metrics[("chatbot_evaluation_score_count", labels)] == 2.0
        assert metrics[("chatbot_evaluation_score_sum", labels)] == expected_sum
    grounded = (("dimension", "groundedness"),)
    assert metrics[("chatbot_evaluation_score_count", grounded)] == 1.0
    assert metrics[("chatbot_evaluation_score_bucket", (*grounded, ("le", "1.0")))] == 1.0
    assert metrics[("otel_chatbot_judge_dropped_total", ())] == 0.0
    assert metrics[("otel_chatbot_judge_failures_total", ())] == 1.0
    assert len([r for r in llm_server.chat_requests() if "broken" in user_text(r.body)]) == 2


def test_a_full_judge_queue_drops_and_counts_without_slowing_ingest(database_url: str,
                                                                    llm_server: LLMServer) -> None:
    release = threading.Event()

    def held(body: dict[str, Any]) -> Reply:
        release.wait(30)
        return Reply(scores(5, 5, 5))

    llm_server.respond_with(held)
    with running(database_url, judge_sample_rate=1.0, judge_base_url=llm_server.base_url,
                 judge_queue_max=1) as processor:
        try:
            # Two turns, one at a time, occupy the two judge workers (the server holds their calls)…
            for i in range(2):
                _send_turns(processor, [{"id": f"busy-{i}", "user": "q", "bot": "a"}])
                wait_until(lambda i=i: len(llm_server.chat_requests()) == i + 1, "a worker busy")
            # …so of the next five, one waits in the queue (max 1) and four are dropped.
            _send_turns(processor, [{"id": f"more-{i}", "user": "q", "bot": "a"} for i in range(5)])
            assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(7,)]  # ingest unaffected
            # Turns reach the judge when they settle (turn_settle_seconds after their commit).
            wait_until(lambda: _metrics(processor).get(("otel_chatbot_judge_dropped_total", ())) == 4.0,
                       "four turns dropped")
        finally:
            release.set()
        wait_until(lambda: fetch(database_url, "SELECT count(*) FROM evaluations") == [(3,)],
                   "three verdicts")
    assert len(llm_server.chat_requests()) == 3


def test_online_judge_settings_are_validated(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from server_support import make_processor

    with pytest.raises(ConfigError,
                       match=r"judge_sample_rate: expected a fraction between 0 and 1, got 1\.5"):
        make_processor(database_url, judge_sample_rate="1.5")
    with pytest.raises(ConfigError, match="judge_base_url: expected an http"):
        make_processor(database_url, judge_sample_rate="0.5", judge_base_url="localhost:8000")
    with pytest.raises(ConfigError, match="judge_queue_max: expected an integer >= 1, got 0"):
        make_processor(database_url, judge_queue_max="0")
    # Environment and config-file keys, like every setting.
    config = load_config({}, {"OTEL_CHATBOT_JUDGE_SAMPLE_RATE": "0.25",
                              "OTEL_CHATBOT_JUDGE_MODEL": "gpt-4.1-mini"}, None)
    assert (config.judge_sample_rate, config.judge_model, config.judge_queue_max) == (
        0.25, "gpt-4.1-mini", 1000)
    for name in ("OTEL_CHATBOT_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    # No endpoint of its own and no key: serve refuses to start, naming what to set.
    processor = make_processor(database_url, judge_sample_rate="0.5")
    with pytest.raises(ConfigError, match="judge_sample_rate: no API key for the judge: set "
                                          "OTEL_CHATBOT_JUDGE_API_KEY or OPENAI_API_KEY"):
        processor.start()
    processor.shutdown()
