"""The demo: the simulated chatbot's traffic mix, argument checks, and a full run into the processor."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otel_chatbot
from otel_chatbot import semconv
from otel_chatbot.demo import run_demo
from otel_chatbot.demo.simulator import Simulator
from otel_chatbot.processor.config import ProcessorConfig


def test_simulator_produces_a_realistic_mix() -> None:
    exporter = InMemorySpanExporter()
    otel_chatbot.instrument("demo-test", exporter=exporter, set_global=False,
                            instrument_libraries=["langchain"])
    try:
        # A turn count, not a time window: the test must not depend on how fast this machine is.
        simulator = Simulator(rate=10_000, seed=7, latency_scale=0.0)
        stats = asyncio.run(simulator.run(600.0, max_turns=300))
        assert otel_chatbot.force_flush()
    finally:
        otel_chatbot.shutdown()
    spans = exporter.get_finished_spans()
    turns = [s for s in spans if s.name == "chat.turn"]
    assert len(turns) == stats.turns == 300
    attrs = [s.attributes or {} for s in turns]
    assert len({a[semconv.SESSION_ID] for a in attrs}) >= 20
    assert len({a[semconv.USER_ID] for a in attrs}) >= 20
    assert len({a[semconv.CHAT_SOURCE] for a in attrs}) >= 4
    models = Counter((s.attributes or {})[semconv.GEN_AI_REQUEST_MODEL]
                     for s in spans if s.name == "chat.usage")
    assert len(models) == 3 and all(count > 0 for count in models.values())
    assert sum(bool(a.get(semconv.CHAT_FALLBACK)) for a in attrs) == stats.fallbacks > 0
    assert sum(bool(a.get(semconv.CHAT_HALLUCINATION)) for a in attrs) == stats.hallucinations > 0
    assert sum(bool(a.get(semconv.CHAT_RATE_LIMITED)) for a in attrs) == stats.rate_limited > 0
    assert sum(bool(a.get(semconv.CHAT_PROMPT_INJECTION)) for a in attrs) == stats.injections > 0
    assert sum(s.status.status_code is StatusCode.ERROR for s in turns) == stats.errors > 0
    blocked = [a for a in attrs if a.get(semconv.CHAT_BLOCKED)]
    assert len(blocked) == stats.blocked and all(a[semconv.CHAT_SOURCE] == "api" for a in blocked)
    ratings = Counter((s.attributes or {})[semconv.CHAT_FEEDBACK_RATING]
                      for s in spans if s.name == "chat.feedback")
    assert ratings["up"] == stats.thumbs_up > 0 and ratings["down"] == stats.thumbs_down > 0
    # LangChain's own spans are there too, stamped with the turn's session.
    llm = [s for s in spans if (s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM"]
    assert llm and all(semconv.SESSION_ID in (s.attributes or {}) for s in llm)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"duration": 0.0, "rate": 5.0}, "duration must be > 0"),
    ({"duration": 5.0, "rate": 0.0}, "rate must be > 0"),
    ({"duration": 5.0, "rate": -1.0}, "rate must be > 0"),
])
def test_run_demo_rejects_bad_arguments_before_starting(tmp_path: Path, kwargs: dict[str, float],
                                                        message: str) -> None:
    config = ProcessorConfig(otlp_http="127.0.0.1:0", otlp_grpc="127.0.0.1:0", metrics="127.0.0.1:0",
                             data_dir=tmp_path)
    with pytest.raises(ValueError, match=message):
        run_demo(config, once=True, out=io.StringIO(), **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "pg").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_run_demo_once_stores_what_it_simulated(database_url: str) -> None:
    out = io.StringIO()
    config = ProcessorConfig(otlp_http="127.0.0.1:0", otlp_grpc="127.0.0.1:0", metrics="127.0.0.1:0",
                             database_url=database_url, migrate=False)
    code = run_demo(config, duration=2.0, rate=100.0, once=True, out=out, seed=3, latency_scale=0.0)
    text = out.getvalue()
    assert code == 0, text
    assert "/metrics" in text and database_url in text
    with psycopg.connect(database_url) as conn:
        turns, sessions, fallbacks, errors, models, tokens = conn.execute(
            "SELECT count(*), count(DISTINCT session_id), count(*) FILTER (WHERE fallback),"
            " count(*) FILTER (WHERE error), count(DISTINCT model), coalesce(sum(input_tokens), 0)"
            " FROM chat_turns").fetchone() or (0, 0, 0, 0, 0, 0)
        feedback = conn.execute("SELECT count(*) FROM feedback").fetchone()
    assert turns >= 100 and sessions >= 20 and fallbacks > 0 and errors > 0 and models == 3 and tokens > 0
    assert feedback is not None and feedback[0] > 0
    assert f"turns {turns}" in text.replace("  ", " ") or str(turns) in text
