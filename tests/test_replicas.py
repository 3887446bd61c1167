"""N processor replicas on one Postgres: what the Collector's load-balancing tier relies on.

Three real `otel-chatbot serve` processes (each its own interpreter, sockets, writer and connection)
receive the same traces concurrently: every trace's spans are spread over all three replicas (the turn
span on one, each LLM child on another), and every span is sent twice: in the original requests over
OTLP/HTTP and at the same time in copies over OTLP/gRPC to another replica, cut differently so each copy
overlaps two originals (a Collector retry after a timeout, or data re-batched and re-routed when the
hash ring moved). The senders retry 429/503 and gRPC UNAVAILABLE /
RESOURCE_EXHAUSTED, as the Collector does. Both span layouts (rows, blocks). Then, in the one real
Postgres: every span once, every turn
once with its trace's token sums, usage counted once per LLM span, sessions once; and the replicas'
metrics summed count every turn and token once.
"""

from __future__ import annotations

import itertools
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import grpc
import httpx
import pytest
from layouts import BOTH_LAYOUTS, span_keys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from server_support import NOW_NS, fetch
from tools import free_port, stop_process, wait_for

pytestmark = [pytest.mark.slow, BOTH_LAYOUTS]

REPLICAS = 3
TRACES = 90
SPANS_PER_REQUEST = 20
SENDERS = 6
PROTOBUF = {"content-type": "application/x-protobuf"}


def _kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass
class TraceCase:
    """One chat turn: a top span (an SDK turn or an auto-detected CHAIN span) and two LLM children."""

    trace_id: bytes
    sdk: bool
    session: str
    spans: list[Span] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0

    @property
    def turn_id(self) -> str:
        return f"turn-{self.trace_id.hex()}" if self.sdk else self.trace_id.hex()


def build_traces(rng: random.Random) -> list[TraceCase]:
    cases: list[TraceCase] = []
    for i in range(TRACES):
        case = TraceCase(os.urandom(16), sdk=i % 3 != 0, session=f"sess-{i % 15}")
        start = NOW_NS + i * 1_000_000
        top_id = os.urandom(8)
        top_attrs = [_kv("session.id", case.session), _kv("input.value", f"question {i}"),
                     _kv("output.value", f"answer {i}")]
        if case.sdk:
            top_attrs.append(_kv("chat.turn.id", case.turn_id))
        else:
            top_attrs.append(_kv("openinference.span.kind", "CHAIN"))
        case.spans.append(Span(trace_id=case.trace_id, span_id=top_id,
                               name="chat.turn" if case.sdk else "chain", kind=Span.SPAN_KIND_SERVER,
                               start_time_unix_nano=start,
                               end_time_unix_nano=start + 900_000_000, attributes=top_attrs))
        for j in range(2):
            prompt, completion = rng.randint(1, 5000), rng.randint(1, 2000)
            case.input_tokens += prompt
            case.output_tokens += completion
            attrs = [_kv("openinference.span.kind", "LLM"), _kv("llm.model_name", "gpt-4o-mini"),
                     _kv("llm.token_count.prompt", prompt), _kv("llm.token_count.completion", completion)]
            if case.sdk:
                attrs.append(_kv("chat.in_turn", case.turn_id))
            child_start = start + (j + 1) * 100_000_000
            case.spans.append(Span(trace_id=case.trace_id, span_id=os.urandom(8), parent_span_id=top_id,
                                   name="ChatOpenAI", kind=Span.SPAN_KIND_CLIENT,
                                   start_time_unix_nano=child_start,
                                   end_time_unix_nano=child_start + 300_000_000, attributes=attrs))
        cases.append(case)
    return cases


def requests_per_replica(cases: list[TraceCase], rng: random.Random,
                         offset: int = 0) -> list[tuple[int, bytes]]:
    """(replica, body) pairs: span k of trace i goes to replica (i + k) % REPLICAS, so every trace is
    split over all replicas; each replica's spans are shuffled (the same way for the same seed) and
    cut into requests, the first one ``offset`` spans short (another cut overlaps two requests)."""
    per_replica: list[list[Span]] = [[] for _ in range(REPLICAS)]
    for i, case in enumerate(cases):
        for k, span in enumerate(case.spans):
            per_replica[(i + k) % REPLICAS].append(span)
    out: list[tuple[int, bytes]] = []
    for replica, spans in enumerate(per_replica):
        rng.shuffle(spans)
        cuts = [0, *range(offset or SPANS_PER_REQUEST, len(spans), SPANS_PER_REQUEST), len(spans)]
        for start, end in itertools.pairwise(cuts):
            request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
                resource={"attributes": [_kv("service.name", "support-bot")]},
                scope_spans=[ScopeSpans(spans=spans[start:end])])])
            out.append((replica, request.SerializeToString()))
    return out


@dataclass(frozen=True)
class Replica:
    http: str
    grpc: str
    metrics: str


class RetryingSender:
    """Posts like the Collector's exporters: 429/503 and UNAVAILABLE/RESOURCE_EXHAUSTED are retried."""

    _RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED)

    def __init__(self, replicas: list[Replica]) -> None:
        self._replicas = replicas
        self._channels = [grpc.insecure_channel(r.grpc) for r in replicas]
        self._lock = threading.Lock()
        self.retries = 0

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def _retried(self) -> None:
        with self._lock:
            self.retries += 1
        time.sleep(0.2)

    def send_http(self, replica: int, body: bytes) -> None:
        url = f"http://{self._replicas[replica].http}/v1/traces"
        with httpx.Client(timeout=60.0) as client:
            for _attempt in range(50):
                response = client.post(url, content=body, headers=PROTOBUF)
                if response.status_code == 200:
                    return
                assert response.status_code in (429, 503), (response.status_code, response.text)
                self._retried()
        raise AssertionError(f"replica {replica} kept refusing the request")

    def send_grpc(self, replica: int, body: bytes) -> None:
        stub = TraceServiceStub(self._channels[replica])
        request = ExportTraceServiceRequest.FromString(body)
        for _attempt in range(50):
            try:
                stub.Export(request, timeout=60.0, compression=grpc.Compression.Gzip)
                return
            except grpc.RpcError as exc:
                assert exc.code() in self._RETRYABLE, (exc.code(), exc.details())
                self._retried()
        raise AssertionError(f"replica {replica} kept refusing the request")


def _serve(database_url: str, replica: Replica, span_storage: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "otel_chatbot.cli", "serve", "--database-url", database_url,
         "--otlp-http", replica.http, "--otlp-grpc", replica.grpc, "--metrics", replica.metrics,
         "--log-level", "warning", "--turn-settle-seconds", "0.5", "--span-storage", span_storage],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.fixture
def replicas(database_url: str, span_storage: str) -> Iterator[list[Replica]]:
    addresses = [Replica(*(f"127.0.0.1:{free_port()}" for _ in range(3))) for _ in range(REPLICAS)]
    procs = [_serve(database_url, r, span_storage) for r in addresses]
    try:
        for replica, proc in zip(addresses, procs, strict=True):
            def ready(replica: Replica = replica, proc: subprocess.Popen[bytes] = proc) -> bool:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else proc.returncode
                try:
                    return httpx.get(f"http://{replica.http}/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False
            wait_for(ready, 60, f"replica {replica.http} ready")
        yield addresses
    finally:
        for proc in procs:
            stop_process(proc)
        for proc in procs:
            if proc.stderr is not None:
                proc.stderr.close()


def test_replicas_write_each_span_and_turn_once(replicas: list[Replica], database_url: str) -> None:
    rng = random.Random(7)
    cases = build_traces(rng)
    requests = requests_per_replica(cases, random.Random(1))
    # The same spans cut differently: each copy overlaps two originals (partly new, partly stored).
    copies = requests_per_replica(cases, random.Random(1), offset=SPANS_PER_REQUEST // 2)
    sender = RetryingSender(replicas)
    # Every span twice: the original over HTTP and, at the same time, a copy over gRPC to the next
    # replica.
    sends = [(sender.send_http, r, body) for r, body in requests]
    sends += [(sender.send_grpc, (r + 1) % REPLICAS, body) for r, body in copies]
    rng.shuffle(sends)
    try:
        with ThreadPoolExecutor(SENDERS) as pool:
            list(pool.map(lambda s: s[0](s[1], s[2]), sends))
    finally:
        sender.close()

    stored = span_keys(database_url)
    assert stored == sorted({(c.trace_id.hex(), s.span_id.hex()) for c in cases for s in c.spans})
    assert len(stored) == TRACES * 3

    turns = fetch(database_url, """
        SELECT trace_id, turn_id, auto, session_id, user_message, bot_response, input_tokens, output_tokens,
               model FROM chat_turns""")
    assert len(turns) == TRACES
    by_trace = {row[0]: row for row in turns}
    assert len(by_trace) == TRACES  # one turn per trace
    for i, case in enumerate(cases):
        row = by_trace[case.trace_id.hex()]
        _trace, turn_id, auto, session, question, answer, tokens_in, tokens_out, model = row
        assert (turn_id, auto, session) == (case.turn_id, not case.sdk, case.session), i
        assert (question, answer) == (f"question {i}", f"answer {i}"), i
        assert (tokens_in, tokens_out, model) == (case.input_tokens, case.output_tokens, "gpt-4o-mini"), i

    usage = fetch(database_url, "SELECT trace_id, input_tokens, output_tokens, llm_spans FROM trace_usage")
    assert sorted(usage) == sorted((c.trace_id.hex(), c.input_tokens, c.output_tokens, 2) for c in cases)
    _wait_settled(database_url)  # sessions are stored, and turns counted, once their turns settle
    sessions = fetch(database_url, "SELECT count(*), count(DISTINCT session_id) FROM sessions")[0]
    assert sessions == (15, 15)
    totals = fetch(database_url, "SELECT sum(input_tokens), sum(output_tokens) FROM chat_turns")[0]
    assert totals == (sum(c.input_tokens for c in cases), sum(c.output_tokens for c in cases))

    # Each replica took its share twice over (its own requests and the neighbour's copies); the
    # replicas' metrics, summed as a dashboard does, count every span, turn and token once.
    for replica in replicas:
        assert _metric_sum([replica], "otel_chatbot_spans_accepted_total") == 2 * TRACES * 3 / REPLICAS
    assert _metric_sum(replicas, "otel_chatbot_spans_committed_total") == TRACES * 3
    assert _metric_sum(replicas, "otel_chatbot_spans_duplicate_total") == TRACES * 3
    _wait_metric(replicas, "chatbot_turns_total", TRACES)
    assert _metric_sum(replicas, "chatbot_tokens_total", type="input") == totals[0]
    assert _metric_sum(replicas, "chatbot_tokens_total", type="output") == totals[1]
    _wait_metric(replicas, "chatbot_sessions_total", 15)


def _wait_settled(database_url: str) -> None:
    """Until every turn is counted (settled: turn_settle_seconds after its last change)."""
    wait_for(lambda: fetch(database_url, "SELECT count(*) FROM chat_turns WHERE counted IS NULL "
                                         "OR settle_at IS NOT NULL") == [(0,)], 60, "the turns to settle")


def _wait_metric(replicas: list[Replica], name: str, expected: float) -> None:
    """Until the summed sample reads ``expected`` (a new series is read at 0 by its first scrape)."""
    wait_for(lambda: _metric_sum(replicas, name) == expected, 30, f"{name} == {expected}")
    assert _metric_sum(replicas, name) == expected


def _metric_sum(replicas: list[Replica], name: str, **labels: str) -> float:
    """Sum of a sample over every replica's /metrics (what a PromQL sum() without by would give)."""
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for replica in replicas:
        # A new series is first exposed at 0 and its increments held until a scrape has read that 0
        # (so Prometheus' increase() sees a first burst): the second scrape shows the counts.
        httpx.get(f"http://{replica.metrics}/metrics", timeout=10)
        text = httpx.get(f"http://{replica.metrics}/metrics", timeout=10).text
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
    return total


def _request(spans: list[Span]) -> bytes:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": [_kv("service.name", "support-bot")]},
        scope_spans=[ScopeSpans(spans=spans)])]).SerializeToString()


def test_children_committed_on_one_replica_before_their_root_on_another(
        replicas: list[Replica], database_url: str) -> None:
    """The hard order for auto-detected turns: each trace's LLM children are committed first (on
    replicas 0 and 1: each child is a turn candidate then), its CHAIN root later on replica 2. The root
    must take the turn over — one turn per trace, the root's identity and messages, the trace's tokens —
    and the replicas' metrics must count each turn once, not once per candidate."""
    rng = random.Random(3)
    cases = [c for c in build_traces(rng) if not c.sdk]
    sender = RetryingSender(replicas)
    try:
        for k in (1, 2):  # first child of every trace on replica 0, second on replica 1
            sender.send_http(k - 1, _request([c.spans[k] for c in cases]))
        assert fetch(database_url, "SELECT count(*) FROM chat_turns") == [(len(cases),)]
        sender.send_grpc(2, _request([c.spans[0] for c in cases]))
    finally:
        sender.close()

    turns = {row[0]: row[1:] for row in fetch(database_url, """
        SELECT trace_id, span_id, user_message, input_tokens, output_tokens FROM chat_turns""")}
    assert len(turns) == len(cases)
    for case in cases:
        i = int(case.spans[0].attributes[1].value.string_value.split()[-1])  # "question N"
        assert turns[case.trace_id.hex()] == (case.spans[0].span_id.hex(), f"question {i}",
                                              case.input_tokens, case.output_tokens)
    _wait_settled(database_url)
    _wait_metric(replicas, "chatbot_turns_total", len(cases))
    assert _metric_sum(replicas, "chatbot_tokens_total", type="input") == sum(c.input_tokens for c in cases)
