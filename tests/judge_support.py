"""Helpers of the LLM-judge tests: store turns (with retrieval spans) and script judge answers."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from llm_server import Reply
from store_factories import span, trace_id, turn

from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.quality.judge import Judge
from otel_chatbot.quality.llm import JudgeClient, RetryPolicy
from otel_chatbot.records import NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store.writer import BatchWriter

HOUR_NS = 3600 * 10**9
# Turns two hours old: inside the default --since 24h and quiet long enough for --level session.
PAST_NS = time.time_ns() - 2 * HOUR_NS
FAST_RETRY = RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05)


def scores(accuracy: float, relevance: float, clarity: float, groundedness: float | None = None,
           rationale: str = "fine") -> dict[str, Any]:
    verdict: dict[str, Any] = {"accuracy": accuracy, "relevance": relevance, "clarity": clarity,
                               "rationale": rationale}
    if groundedness is not None:
        verdict["groundedness"] = groundedness
    return verdict


def retriever_span(trace: str, documents: list[str], start_ns: int, parent: str | None = None) -> SpanRow:
    attributes: dict[str, object] = {"openinference.span.kind": "RETRIEVER"}
    for i, text in enumerate(documents):
        attributes[f"retrieval.documents.{i}.document.content"] = text
        attributes[f"retrieval.documents.{i}.document.id"] = f"doc-{i}"
    return span(trace, parent=parent, start_ns=start_ns + 1000, name="retrieve", attributes=attributes)


def store_turn(writer: BatchWriter, user_message: str, bot_response: str | None = "an answer", *,
               start_ns: int = PAST_NS, session: str | None = "s-1", documents: list[str] | None = None,
               service: str = "bot", source: str = "website", **flags: bool) -> TurnRow:
    """One SDK turn (its root span, a retriever span when ``documents``), committed; returns the row."""
    t = trace_id()
    root = span(t, start_ns=start_ns, name="chat.turn", service=service)
    row = turn(t, sid=root.span_id, auto=False, start_ns=start_ns, session=session, user_message=user_message,
               bot_response=bot_response, service=service, source=source, **flags)
    spans = [root]
    if documents is not None:
        spans.append(retriever_span(t, documents, start_ns, parent=root.span_id))
    writer.write(NormalisedBatch(spans=spans, turns=[row]))
    return row


def make_judge(base_url: str, *, model: str = "gpt-4o-mini", retry: RetryPolicy = FAST_RETRY,
               timeout_s: float = 10.0, threshold: float = 5.0, evaluator: str = "llm-judge") -> Judge:
    client = JudgeClient(model, base_url=base_url, key="test-key", retry=retry, timeout_s=timeout_s)
    return Judge(client, PriceTable.load(), evaluator=evaluator, groundedness_threshold=threshold)


def user_text(body: dict[str, Any]) -> str:
    """The user prompt of a recorded judge request."""
    return str(body["messages"][1]["content"])


def by_user_message(answers: dict[str, dict[str, Any]]) -> Any:
    """A responder answering each judge request with the verdict keyed by a word of its prompt."""
    def respond(body: dict[str, Any]) -> Reply:
        prompt = user_text(body)
        for key, verdict in answers.items():
            if key in prompt:
                return Reply(verdict)
        return Reply.error(400, message=f"test has no answer for prompt {prompt[:80]!r}")
    return respond


class ConcurrencyProbe:
    """A responder that holds each request ``hold_s`` and records how many were in flight at most."""

    def __init__(self, verdict: dict[str, Any], hold_s: float) -> None:
        self.verdict = json.dumps(verdict)
        self.hold_s = hold_s
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.hold_s)
        with self._lock:
            self.in_flight -= 1
        return Reply(self.verdict)
