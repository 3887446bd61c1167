"""Property: however a trace's spans are batched, ordered, repeated or spread over two processor
replicas, the stored turns and the chat metrics end as when the whole trace arrives in one batch.

Hypothesis generates traces of SDK turns (with chat.in_turn children: LLM calls, OpenInference
guardrails, flag spans, retrievals; sometimes an unstamped LLM span of another service), auto turns
(an OpenInference chain above LLM calls, guardrails and flag spans, sometimes under an HTTP span) and
feedback spans. Each example is written twice on the real Postgres through normalise and the real
BatchWriter: once in one batch by one writer, once split, shuffled, with duplicates, by two writers
running at the same time (two replicas, each with its own metrics). After a final settle, tables
(the stored span ids included) and summed metric values must be equal. Everything runs once per span
layout (rows, blocks).

The CI run is derandomized with a bounded number of examples; OTEL_CHATBOT_PROPERTY_EXAMPLES raises it
for a longer run (the figure of the last long run is in docs/metrics.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql
from psycopg.rows import dict_row
from store_factories import NOW_NS
from turn_support import ERROR, SEC, chat_metric_values, normalised

from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.store.span_storage import LAYOUTS
from otel_chatbot.store.writer import BatchWriter

EXAMPLES = int(os.environ.get("OTEL_CHATBOT_PROPERTY_EXAMPLES", "60"))
FINAL = NOW_NS + 10**6 * SEC  # a settle "far in the future": every turn is final
MS = 10**6

Span = dict[str, Any]  # as turn_support.otlp takes it, with symbolic ids until materialised


# --- generation ------------------------------------------------------------------------------------
@st.composite
def _children(draw: st.DrawFn, start: int, end: int, stamp: dict[str, Any]) -> list[Span]:
    """0-4 children inside [start, end], each an LLM call, guardrail, flag span or retrieval."""
    out: list[Span] = []
    for _ in range(draw(st.integers(0, 4))):
        s = draw(st.integers(start + 1, end - 2))
        e = draw(st.integers(s + 1, end - 1))
        kind = draw(st.sampled_from(["llm", "llm", "guardrail", "flags", "retrieval"]))
        attrs: dict[str, Any] = dict(stamp)
        status = 0
        if kind == "llm":
            attrs.update({"gen_ai.request.model": draw(st.sampled_from(["gpt-4o", "gpt-4o-mini"])),
                          "gen_ai.usage.input_tokens": draw(st.integers(0, 500)),
                          "gen_ai.usage.output_tokens": draw(st.integers(0, 200))})
            if draw(st.booleans()):
                attrs["gen_ai.usage.cost"] = draw(st.sampled_from([0.001, 0.0125, 0.3]))
        elif kind == "guardrail":
            attrs["openinference.span.kind"] = "GUARDRAIL"
            status = draw(st.sampled_from([0, ERROR]))
        elif kind == "flags":
            for key in ("chat.prompt_injection", "chat.hallucination", "chat.rate_limited", "chat.fallback"):
                attrs[key] = draw(st.booleans())
            if draw(st.booleans()):
                attrs["chat.fallback.reason"] = draw(st.sampled_from(["no_answer", "handoff"]))
            if draw(st.booleans()):
                attrs["chat.hallucination.source"] = draw(st.sampled_from(["app", "judge"]))
        else:
            attrs["openinference.span.kind"] = "RETRIEVER"
        out.append({"name": kind, "start": s, "end": e, "status": status, "attrs": attrs})
    return out


@st.composite
def _sdk_trace(draw: st.DrawFn, base: int) -> list[Span]:
    spans: list[Span] = []
    turns = draw(st.integers(1, 2))
    for k in range(turns):
        start = base + k * 20 * SEC + draw(st.integers(0, 5)) * MS
        end = start + draw(st.integers(50, 8000)) * MS
        attrs: dict[str, Any] = {"chat.turn.id": ("turn", k), "session.id": ("session", k),
                                 "chat.source": draw(st.sampled_from(["website", "slack"])),
                                 "input.value": f"question {k}", "output.value": f"answer {k}"}
        if draw(st.booleans()):
            attrs.update({"chat.fallback": True, "chat.fallback.reason": "low_confidence"})
        if draw(st.integers(0, 3)) == 0:  # a lone LLM call that is the turn itself
            attrs.update({"gen_ai.request.model": "gpt-4o", "gen_ai.usage.input_tokens": 11,
                          "gen_ai.usage.output_tokens": 7})
        turn: Span = {"name": "chat.turn", "start": start, "end": end, "attrs": attrs, "key": ("turn", k),
                      "status": draw(st.sampled_from([0, ERROR]))}
        spans.append(turn)
        stamp = {"chat.in_turn": ("turn", k), "session.id": ("session", k)}
        for child in draw(_children(start, end, stamp)):
            child["parent"] = ("turn", k)
            spans.append(child)
        if draw(st.integers(0, 2)) == 0:  # feedback on this turn, in a trace of its own
            spans.append({"name": "chat.feedback", "start": end + SEC, "end": end + SEC + MS,
                          "own_trace": True, "attrs": {"chat.turn.id": ("turn", k),
                                    "chat.feedback.rating": draw(st.sampled_from(["up", "down"]))}})
    if draw(st.integers(0, 2)) == 0:  # an LLM call of another service, not stamped with the turn
        s = base + draw(st.integers(1, 40)) * MS
        spans.append({"name": "ChatOpenAI", "service": "retriever", "parent": ("turn", 0), "start": s,
                      "end": s + 30 * MS, "attrs": {"gen_ai.request.model": "gpt-4o-mini",
                                                    "gen_ai.usage.input_tokens": draw(st.integers(1, 99)),
                                                    "gen_ai.usage.output_tokens": 3,
                                                    "chat.prompt_injection": draw(st.booleans())}})
    return spans


@st.composite
def _auto_trace(draw: st.DrawFn, base: int) -> list[Span]:
    spans: list[Span] = []
    start = base + 10 * MS
    end = start + draw(st.integers(100, 9000)) * MS
    parent = None
    if draw(st.booleans()):  # an HTTP server span above the chain: no chat meaning
        spans.append({"name": "POST /chat", "start": base, "end": end + 10 * MS, "key": ("http",),
                      "attrs": {"http.request.method": "POST"}, "status": draw(st.sampled_from([0, ERROR]))})
        parent = ("http",)
    chain_attrs: dict[str, Any] = {"openinference.span.kind": "CHAIN", "session.id": ("session", 0),
                                   "input.value": "user question", "output.value": "bot answer"}
    if draw(st.booleans()):
        chain_attrs["user.id"] = "user-1"
    spans.append({"name": "RunnableSequence", "start": start, "end": end, "parent": parent, "key": ("chain",),
                  "status": draw(st.sampled_from([0, ERROR])), "attrs": chain_attrs})
    llm_start = start + draw(st.integers(1, 50)) * MS
    llm_end = llm_start + draw(st.integers(20, 90)) * MS
    spans.append({"name": "ChatOpenAI", "start": llm_start, "end": llm_end, "parent": ("chain",),
                  "key": ("llm",), "status": draw(st.sampled_from([0, ERROR])),
                  "attrs": {"openinference.span.kind": "LLM", "llm.model_name": "gpt-4o",
                            "llm.token_count.prompt": draw(st.integers(1, 900)),
                            "llm.token_count.completion": draw(st.integers(0, 300))}})
    for child in draw(_children(start, end, {})):
        child["parent"] = ("chain",)
        spans.append(child)
    return spans


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Span], list[list[int]], list[int]]:
    """(spans, batches as indices into spans — some repeated —, the replica of each batch)."""
    spans: list[Span] = []
    for t in range(draw(st.integers(1, 3))):
        base = t * 100 * SEC
        trace = draw(_sdk_trace(base)) if draw(st.booleans()) else draw(_auto_trace(base))
        for n, span in enumerate(trace):
            span["trace"] = ("feedback", t, n) if span.pop("own_trace", False) else ("trace", t)
            span["id"] = (t, span.pop("key", n))
            if span.get("parent") is not None:
                span["parent"] = (t, span["parent"])
            span["attrs"] = {k: (t, *v) if isinstance(v, tuple) else v for k, v in span["attrs"].items()}
        spans.extend(trace)
    order = list(range(len(spans)))
    how = draw(st.sampled_from(["shuffled", "children first", "parents first"]))
    if how == "shuffled":
        order = draw(st.permutations(order))
    else:  # BatchSpanProcessor order (children end first) or its reverse
        order.sort(key=lambda i: spans[i]["end"], reverse=how == "parents first")
    repeats = draw(st.lists(st.sampled_from(order), max_size=3))  # the Collector retrying parts
    arrivals = order + repeats
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(arrivals) - 1)), max_size=5)))
    batches = [arrivals[a:b] for a, b in zip([0, *cuts], [*cuts, len(arrivals)], strict=True)]
    batches = [b for b in batches if b]
    replicas = [draw(st.integers(0, 1)) for _ in batches]
    return spans, batches, replicas


# --- running ---------------------------------------------------------------------------------------
def _materialise(spans: list[Span], nonce: bytes) -> list[Span]:
    """Concrete ids: trace/span ids bytes, turn and session ids text, unique to this example."""
    tag = nonce.hex()

    def text(value: tuple[Any, ...]) -> str:
        return "-".join(map(str, (value[1], tag, value[0], *value[2:])))

    def span_id(value: tuple[Any, ...]) -> bytes:
        return (abs(hash((tag, value))) % 2**64).to_bytes(8, "big")

    out = []
    for s in spans:
        t = s["trace"]
        c = dict(s)
        c["trace"] = nonce[:13] + bytes([0 if t[0] == "trace" else 1, t[1], t[2] if len(t) > 2 else 0])
        c["id"] = span_id(s["id"])
        c["parent"] = span_id(s["parent"]) if s.get("parent") is not None else None
        c["attrs"] = {k: text(v) if isinstance(v, tuple) else v for k, v in s["attrs"].items()}
        out.append(c)
    return out


Tables = dict[str, list[dict[str, Any]]]


def _tables(url: str, tag: str) -> Tables:
    like = f"%{tag}%"
    queries = {
        "chat_turns": (
            "SELECT turn_id, trace_id, span_id, auto, session_id, user_id, source, service, started_at, "
            "latency_seconds, user_message, bot_response, model, input_tokens, output_tokens, "
            "round(cost_usd::numeric, 9) AS cost_usd, fallback, fallback_reason, hallucinated, "
            "hallucination_source, prompt_injection, blocked, rate_limited, error, counted, settle_at "
            "FROM chat_turns WHERE trace_id LIKE %s ORDER BY turn_id", tag[:26] + "%"),
        "feedback": ("SELECT turn_id, rating, comment, origin, given_at, service FROM feedback "
                     "WHERE turn_id LIKE %s ORDER BY turn_id", like),
        "sessions": ("SELECT session_id, service, source, first_seen FROM sessions "
                     "WHERE session_id LIKE %s ORDER BY 1, 2", like),
        # Every trace of the example starts with the first 13 bytes of its nonce.
        "spans": ("SELECT trace_id, span_id FROM stored_span_ids WHERE trace_id LIKE %s ORDER BY 1, 2",
                  tag[:26] + "%"),
    }
    out: Tables = {}
    with psycopg.connect(url, row_factory=dict_row) as conn:
        for table, (query, param) in queries.items():
            out[table] = conn.execute(query, (param,)).fetchall()  # type: ignore[arg-type]
    return out


def _differences(expected: Tables, got: Tables) -> list[str]:
    """Readable differences: table, row, column, one-batch value, split value."""
    out = []
    for table, rows in expected.items():
        if len(rows) != len(got[table]):
            out.append(f"{table}: {len(rows)} rows in one batch, {len(got[table])} split: {got[table]}")
            continue
        for i, (want, have) in enumerate(zip(rows, got[table], strict=True)):
            out += [f"{table}[{i}].{k}: {want[k]!r} != {have[k]!r}" for k in want if want[k] != have[k]]
    return out


class _Replica:
    """A processor replica: a writer (kept across examples) and the metrics of one example."""

    def __init__(self, url: str, span_storage: str) -> None:
        self.writer_url = url
        self.writer = BatchWriter(url, settle_seconds=60, span_storage=span_storage)
        self.writer.start()
        self.metrics = ProcessorMetrics()

    def run(self, batches: Sequence[list[Span]], errors: list[BaseException]) -> None:
        try:
            for batch in batches:
                self.metrics.observe_commit(self.writer.write(normalised(batch)))
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    def settle(self) -> None:
        self.metrics.observe_commit(self.writer.settle(until_ns=FINAL))


@pytest.fixture(scope="module", params=LAYOUTS)
def replicas(request: pytest.FixtureRequest, pg_admin_url: str,
             _migrated_template: str) -> Iterator[tuple[_Replica, _Replica, _Replica]]:
    """The one-batch reference replica on a database of its own, and two replicas sharing another;
    once per span layout."""
    head = pg_admin_url.partition("?")[0].rsplit("/", 1)[0]
    query = pg_admin_url.partition("?")[2]
    names = [f"prop_{os.urandom(6).hex()}" for _ in range(2)]
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        for name in names:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(_migrated_template)))
    reference_url, split_url = (f"{head}/{n}" + (f"?{query}" if query else "") for n in names)
    made = (_Replica(reference_url, request.param), _Replica(split_url, request.param),
            _Replica(split_url, request.param))
    try:
        yield made
    finally:
        for replica in made:
            replica.writer.shutdown()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            for name in names:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@settings(max_examples=EXAMPLES, derandomize=EXAMPLES <= 100, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(scenario=scenarios())
def test_any_batching_ends_as_one_batch(replicas: tuple[_Replica, _Replica, _Replica], scenario: tuple[
        list[Span], list[list[int]], list[int]]) -> None:
    symbolic, batches, sent_to = scenario
    nonce = os.urandom(16)
    spans = _materialise(symbolic, nonce)
    reference, *two = replicas
    for replica in replicas:
        replica.metrics = ProcessorMetrics()

    errors: list[BaseException] = []
    reference.run([spans], errors)
    threads = [threading.Thread(target=two[r].run, args=(
        [[spans[i] for i in b] for b, to in zip(batches, sent_to, strict=True) if to == r], errors))
        for r in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for replica in replicas:
        replica.settle()
    assert errors == []

    tag = nonce.hex()
    expected, got = _tables(reference.writer_url, tag), _tables(two[0].writer_url, tag)
    assert _differences(expected, got) == []
    want = chat_metric_values(reference.metrics)
    have = chat_metric_values(*(r.metrics for r in two))
    assert have == pytest.approx(want, rel=1e-9)
    # Each turn counted once: the turn counter is the number of stored turns.
    turns_counted = sum(v for (name, _, _), v in have.items() if name == "chatbot_turns_total")
    assert turns_counted == len(got["chat_turns"])
