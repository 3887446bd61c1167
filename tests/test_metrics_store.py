"""Chat metrics counted from real commits: a batch the Collector retries is counted once."""

from __future__ import annotations

import pytest
import store_factories as f

from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.writer import BatchWriter


def _conversation() -> NormalisedBatch:
    trace = f.trace_id()
    root = f.span(trace, name="chat.turn")
    llm = f.llm_span(trace, parent=root.span_id, input_tokens=120, output_tokens=30, cost_usd=0.002)
    turn = f.turn(trace, sid=root.span_id, auto=False, turn_id="turn-1", fallback=True,
                  fallback_reason="no_answer")
    return NormalisedBatch(spans=[root, llm], turns=[turn], flags=[f.flags_of(turn)],
                           feedback=[f.feedback("turn-1", "down", f.NOW_NS)])


def _value(m: ProcessorMetrics, name: str, **labels: str) -> float | None:
    """The value a scrape reads once an earlier scrape has seen every new series at 0."""
    list(m.registry.collect())
    return m.registry.get_sample_value(name, labels)


def test_a_retried_batch_is_counted_once(writer: BatchWriter) -> None:
    metrics = ProcessorMetrics()
    batch = _conversation()
    metrics.observe_commit(writer.write(batch))
    retried = writer.write(batch)  # the Collector did not see our 200 and sends the batch again
    metrics.observe_commit(retried)
    assert retried.new_spans == [] and retried.new_turns == []
    assert _value(metrics, "chatbot_turns_total", service="bot", source="website") == 1
    fallbacks = {"service": "bot", "source": "website", "reason": "no_answer"}
    assert _value(metrics, "chatbot_fallbacks_total", **fallbacks) == 1
    assert _value(metrics, "chatbot_tokens_total", service="bot", type="input", model="gpt-4o") == 120
    assert _value(metrics, "chatbot_cost_usd_total", service="bot", model="gpt-4o") == pytest.approx(0.002)
    assert _value(metrics, "chatbot_feedback_total", service="bot", rating="down") == 1
    assert _value(metrics, "chatbot_sessions_total", service="bot", source="website") == 1
    assert _value(metrics, "otel_chatbot_spans_committed_total") == 2
    assert _value(metrics, "otel_chatbot_spans_duplicate_total") == 2
