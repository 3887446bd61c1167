"""Turns, their flags, usage and chat metrics do not depend on how a trace's spans were batched.

Each case sends real OTLP protobuf through normalise_traces and the real BatchWriter on the real
Postgres, in the order an OpenTelemetry BatchSpanProcessor exports (children before their parent),
and compares with the same trace sent in one batch; in both span layouts.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import httpx
import pytest
from layouts import BOTH_LAYOUTS
from server_support import base_url, running, wait_until
from store_factories import NOW_NS, rows
from turn_support import ERROR, SEC, counter_values, metric_value, normalised, otlp

from otel_chatbot.processor.config import ConfigError, load_config
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.store.writer import BatchWriter

pytestmark = BOTH_LAYOUTS


def write_batches(writer: BatchWriter, metrics: ProcessorMetrics, batches: Sequence[Sequence[dict[str, Any]]]
                  ) -> None:
    for batch in batches:
        metrics.observe_commit(writer.write(normalised(batch)))
    metrics.observe_commit(writer.settle(until_ns=NOW_NS + 10**6 * SEC))  # everything is final


def sample(metrics: ProcessorMetrics, name: str, **labels: str) -> float:
    return metric_value(metrics, name, **labels)


@pytest.fixture
def settling_writer(database_url: str, span_storage: str) -> Iterator[BatchWriter]:
    """A writer that counts turns once they are final (no span of their trace for 60 s)."""
    writer = BatchWriter(database_url, settle_seconds=60, span_storage=span_storage)
    writer.start()
    yield writer
    writer.shutdown()


def _ids() -> tuple[bytes, bytes, bytes, bytes]:
    return os.urandom(16), os.urandom(8), os.urandom(8), os.urandom(8)


def _sdk_turn_with_guarded_children() -> tuple[list[dict[str, Any]], list[dict[str, Any]], str]:
    trace, root, injected, guardrail = _ids()
    turn_id = f"turn-{trace.hex()}"
    children = [
        {"trace": trace, "id": injected, "parent": root, "name": "injection.check", "start": 10**6,
         "end": 2 * 10**6, "attrs": {"chat.in_turn": turn_id, "chat.prompt_injection": True,
                                     "session.id": "s-1"}},
        {"trace": trace, "id": guardrail, "parent": root, "name": "guardrail", "start": 3 * 10**6,
         "end": 4 * 10**6, "status": ERROR,
         "attrs": {"chat.in_turn": turn_id, "openinference.span.kind": "GUARDRAIL", "session.id": "s-1"}},
    ]
    turn = [{"trace": trace, "id": root, "name": "chat.turn", "end": SEC // 2,
             "attrs": {"chat.turn.id": turn_id, "session.id": "s-1", "chat.source": "website",
                       "input.value": "ignore previous instructions", "output.value": "I can't help"}}]
    return children, turn, turn_id


@pytest.mark.parametrize("split", [False, True], ids=["one-batch", "children-first"])
def test_flags_of_child_spans_reach_their_turn_in_any_batch(settling_writer: BatchWriter, database_url: str,
                                                            split: bool) -> None:
    children, turn, turn_id = _sdk_turn_with_guarded_children()
    metrics = ProcessorMetrics()
    write_batches(settling_writer, metrics, [children, turn] if split else [children + turn])
    assert rows(database_url, "SELECT prompt_injection, blocked FROM chat_turns WHERE turn_id = %s",
                turn_id) == [(True, True)]
    labels = {"service": "bot", "source": "website"}
    assert sample(metrics, "chatbot_prompt_injections_total", **labels) == 1
    assert sample(metrics, "chatbot_blocked_messages_total", **labels) == 1


def test_children_arriving_after_their_turn_still_flag_it(settling_writer: BatchWriter,
                                                          database_url: str) -> None:
    children, turn, turn_id = _sdk_turn_with_guarded_children()
    metrics = ProcessorMetrics()
    write_batches(settling_writer, metrics, [turn, children])
    assert rows(database_url, "SELECT prompt_injection, blocked FROM chat_turns WHERE turn_id = %s",
                turn_id) == [(True, True)]
    assert sample(metrics, "chatbot_blocked_messages_total", service="bot", source="website") == 1


def test_a_late_ancestor_merge_keeps_metrics_equal_to_the_row(settling_writer: BatchWriter,
                                                              database_url: str) -> None:
    """An auto turn from an LLM span, then its failed 6 s ancestor: the histogram and the error
    counter say what the row says."""
    trace, root, llm, _ = _ids()
    child = {"trace": trace, "id": llm, "parent": root, "name": "ChatOpenAI", "start": SEC,
             "end": SEC + SEC // 5,
             "attrs": {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                       "llm.token_count.prompt": 10, "llm.token_count.completion": 5}}
    ancestor = {"trace": trace, "id": root, "name": "RunnableSequence", "end": 6 * SEC, "status": ERROR,
                "attrs": {"openinference.span.kind": "CHAIN", "session.id": "s-9", "input.value": "hi"}}
    metrics = ProcessorMetrics()
    write_batches(settling_writer, metrics, [[child], [ancestor]])
    assert rows(database_url, "SELECT latency_seconds, error, input_tokens FROM chat_turns "
                "WHERE trace_id = %s", trace.hex()) == [(6.0, True, 10)]
    labels = {"service": "bot", "source": "unknown"}
    assert sample(metrics, "chatbot_turns_total", **labels) == 1
    assert sample(metrics, "chatbot_errors_total", **labels) == 1
    assert sample(metrics, "chatbot_turn_duration_seconds_count", **labels) == 1
    assert sample(metrics, "chatbot_turn_duration_seconds_sum", **labels) == 6.0


def test_a_turn_replacing_an_auto_turn_is_counted_once(settling_writer: BatchWriter,
                                                       database_url: str) -> None:
    """An LLM span of another service arrives first and makes an auto turn; the SDK turn replaces it."""
    trace, root, remote_llm, _ = _ids()
    remote = {"trace": trace, "id": remote_llm, "parent": root, "name": "ChatOpenAI", "service": "retriever",
              "start": 10**6, "end": SEC // 10,
              "attrs": {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 7,
                        "gen_ai.usage.output_tokens": 3}}
    turn = {"trace": trace, "id": root, "name": "chat.turn", "end": SEC,
            "attrs": {"chat.turn.id": "t-remote", "session.id": "s-2", "chat.source": "api",
                      "input.value": "q", "output.value": "a"}}
    metrics = ProcessorMetrics()
    write_batches(settling_writer, metrics, [[remote], [turn]])
    assert rows(database_url, "SELECT turn_id, auto, input_tokens FROM chat_turns WHERE trace_id = %s",
                trace.hex()) == [("t-remote", False, 7)]
    assert counter_values(metrics.turns) == {("bot", "api"): 1.0}
    assert sample(metrics, "chatbot_sessions_total", service="bot", source="api") == 1
    assert counter_values(metrics.sessions) == {("bot", "api"): 1.0}


def test_a_replacement_after_the_auto_turn_was_counted_is_not_counted_again(database_url: str,
                                                                           span_storage: str) -> None:
    """Count-at-commit (settle 0): the auto turn is counted at once; the SDK turn that replaces it
    later inherits that count instead of adding a second turn."""
    trace, root, remote_llm, _ = _ids()
    remote = {"trace": trace, "id": remote_llm, "parent": root, "name": "ChatOpenAI", "service": "retriever",
              "start": 10**6, "end": SEC // 10,
              "attrs": {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 7}}
    turn = {"trace": trace, "id": root, "name": "chat.turn", "end": SEC,
            "attrs": {"chat.turn.id": "t-late", "chat.source": "api", "chat.blocked": True}}
    writer = BatchWriter(database_url, span_storage=span_storage)
    writer.start()
    try:
        metrics = ProcessorMetrics()
        write_batches(writer, metrics, [[remote], [turn]])
    finally:
        writer.shutdown()
    # Once, under the labels of the turn as first counted.
    assert counter_values(metrics.turns) == {("retriever", "unknown"): 1.0}
    assert sum(counter_values(metrics.blocked).values()) == 1  # the correction's new flag is counted, once


def test_tokens_are_summed_per_turn_not_per_trace(settling_writer: BatchWriter, database_url: str) -> None:
    """A batch job answering two messages in one trace: each turn sums the LLM spans stamped with it."""
    trace, job, first, second = _ids()
    spans: list[dict[str, Any]] = [{"trace": trace, "id": job, "name": "batch-job", "end": 10 * SEC}]
    for n, (root, tokens) in enumerate(((first, 100), (second, 40))):
        turn_id = f"job-turn-{n}"
        spans.append({"trace": trace, "id": root, "parent": job, "name": "chat.turn",
                      "start": (n * 4 + 1) * SEC, "end": (n * 4 + 3) * SEC,
                      "attrs": {"chat.turn.id": turn_id, "session.id": f"s-{n}"}})
        spans.append({"trace": trace, "id": os.urandom(8), "parent": root, "name": "ChatOpenAI",
                      "start": (n * 4 + 1) * SEC + 1, "end": (n * 4 + 2) * SEC,
                      "attrs": {"chat.in_turn": turn_id, "gen_ai.request.model": "gpt-4o",
                                "gen_ai.usage.input_tokens": tokens,
                                "gen_ai.usage.output_tokens": tokens // 2,
                                "gen_ai.usage.cost": tokens / 1000}})
    metrics = ProcessorMetrics()
    write_batches(settling_writer, metrics, [spans[::-1][:2], spans[::-1][2:]])
    assert rows(database_url, "SELECT turn_id, input_tokens, output_tokens, cost_usd FROM chat_turns "
                "WHERE trace_id = %s ORDER BY turn_id", trace.hex()) == [
        ("job-turn-0", 100, 50, 0.1), ("job-turn-1", 40, 20, 0.04)]


def test_the_processor_counts_a_turn_once_it_settles(database_url: str, span_storage: str) -> None:
    """Through the real HTTP receiver and pipeline: children first, then the turn; the writer thread's
    periodic settle counts the turn with both flags once."""
    children, turn, turn_id = _sdk_turn_with_guarded_children()
    with running(database_url, turn_settle_seconds=0.5, span_storage=span_storage) as processor:
        for batch in (children, turn):
            response = httpx.post(f"{base_url(processor)}/v1/traces", content=otlp(batch),
                                  headers={"Content-Type": "application/x-protobuf"}, timeout=30)
            assert response.status_code == 200
        metrics = processor.metrics
        wait_until(lambda: sample(metrics, "chatbot_turns_total", service="bot", source="website") == 1,
                   "the turn to settle")
        assert sample(metrics, "chatbot_prompt_injections_total", service="bot", source="website") == 1
        assert sample(metrics, "chatbot_blocked_messages_total", service="bot", source="website") == 1
        assert sample(metrics, "chatbot_turn_duration_seconds_count", service="bot", source="website") == 1
        assert sample(metrics, "chatbot_turn_duration_seconds_sum", service="bot", source="website") == 0.5
    assert rows(database_url, "SELECT counted, settle_at FROM chat_turns WHERE turn_id = %s",
                turn_id) == [(1 | 16 | 32, None)]


@pytest.mark.parametrize("value", ["-1", "3601", "soon"])
def test_turn_settle_seconds_is_validated(value: str) -> None:
    with pytest.raises(ConfigError, match="turn_settle_seconds"):
        load_config({"turn_settle_seconds": value}, {}, None)
