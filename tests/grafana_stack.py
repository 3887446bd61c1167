"""A running stack for the dashboard query tests: processor, real Prometheus and Postgres with data.

Data comes the way it does in production: the demo's simulated chatbot (SDK + LangChain) and OTLP
requests of older conversations go through the processor into Postgres and /metrics; Prometheus
scrapes it every second with the shipped rules loaded. The processor's online LLM judge scores every
new turn through a local OpenAI-compatible server (tests/llm_server.py), which stores evaluations and
feeds chatbot_evaluation_score. What no command produces here is inserted as real rows: two
failure-cluster runs and CSAT outcomes. A burst of concurrent requests against a one-span queue makes
the processor refuse some, so the refusal series exist.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import yaml
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from tools import PROMETHEUS_DIR, wait_for

from otel_chatbot.demo import DEMO_SERVICE
from otel_chatbot.demo.simulator import Simulator
from otel_chatbot.processor.app import Processor
from otel_chatbot.sdk.tracing import force_flush, instrument
from otel_chatbot.sdk.tracing import shutdown as sdk_shutdown

SCRAPE_S = 1.0
# What the scripted judge answers for every turn (no retrieved documents: no groundedness score);
# clarity is under the ChatbotJudgeScoresLow target of 6.
JUDGE_SCORES = {"accuracy": 7.0, "relevance": 8.0, "clarity": 4.0}
# Failure clusters of two `failures` runs: (cluster_id, label, size, previous size).
CLUSTERS_BEFORE = ((0, "refund double charge", 3, None), (1, "order tracking", 6, None))
CLUSTERS_LATEST = ((0, "refund double charge", 9, 3), (1, "order tracking", 5, 6),
                   (2, "password reset", 7, None))


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


@dataclass(frozen=True)
class PastTurn:
    session: str
    user: str
    source: str
    at: datetime
    fallback: bool = False
    error: bool = False


def past_conversations(now: datetime) -> list[PastTurn]:
    """Older conversations: every demo user yesterday (so today's users are returning), and some from
    two hours ago; every third one ends on a fallback or an error (abandoned)."""
    turns: list[PastTurn] = []
    channels = ("website", "whatsapp", "slack", "api", "instagram")
    for i in range(250):
        start = now - timedelta(days=1, minutes=i)
        session, user, source = f"past-{i:04d}", f"user-{i:04d}", channels[i % len(channels)]
        turns.append(PastTurn(session, user, source, start))
        turns.append(PastTurn(session, user, source, start + timedelta(seconds=40), fallback=i % 3 == 0))
    for i in range(12):
        start = now - timedelta(hours=2, minutes=i)
        session, user, source = f"recent-{i:04d}", f"user-{i:04d}", channels[i % len(channels)]
        for n in range(3):
            last = n == 2
            turns.append(PastTurn(session, user, source, start + timedelta(seconds=30 * n),
                                  error=last and i % 2 == 0, fallback=last and i % 2 == 1))
    return turns


def otlp_request(turns: list[PastTurn]) -> bytes:
    error, ok = Status.STATUS_CODE_ERROR, Status.STATUS_CODE_OK
    spans = []
    for turn in turns:
        start_ns = int(turn.at.timestamp() * 1e9)
        attributes = [_kv("chat.turn.id", "turn-" + os.urandom(8).hex()), _kv("session.id", turn.session),
                      _kv("user.id", turn.user), _kv("chat.source", turn.source),
                      _kv("input.value", "Where is my order?"),
                      _kv("output.value", "Sorry, I don't know." if turn.fallback else "It ships today.")]
        if turn.fallback:
            attributes += [_kv("chat.fallback", True), _kv("chat.fallback.reason", "no_answer")]
        spans.append(Span(trace_id=os.urandom(16), span_id=os.urandom(8), name="chat.turn",
                          kind=Span.SPAN_KIND_SERVER, start_time_unix_nano=start_ns,
                          end_time_unix_nano=start_ns + 800_000_000, attributes=attributes,
                          status=Status(code=error if turn.error else ok)))
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[_kv("service.name", DEMO_SERVICE)]),
        scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString()


def post_otlp(base: str, body: bytes) -> int:
    request = urllib.request.Request(f"{base}/v1/traces", data=body, method="POST",
                                     headers={"Content-Type": "application/x-protobuf"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def write_prometheus_config(path: Path, metrics: tuple[str, int]) -> None:
    """The shipped prometheus.yml and rules (unchanged), scraping the test processor every second."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval=f"{SCRAPE_S:g}s", evaluation_interval=f"{SCRAPE_S:g}s")
    config["rule_files"] = [str(PROMETHEUS_DIR / rule) for rule in config["rule_files"]]
    config.pop("alerting", None)
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "otel-chatbot")
    job["static_configs"][0]["targets"] = [f"{metrics[0]}:{metrics[1]}"]
    config["scrape_configs"] = [job]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def prometheus_api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}/api/v1/{path}?" + urllib.parse.urlencode(params)
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            import json

            return json.load(response)
    except urllib.error.HTTPError as exc:
        raise AssertionError(f"Prometheus refused {params}: {exc.read().decode()}") from None


def run_demo_traffic(processor: Processor, seconds: float, rate: float, seed: int) -> None:
    host, port = processor.http_address
    warnings.filterwarnings("ignore", message=r"Calling \.text\(\) as a method is deprecated")
    instrument(DEMO_SERVICE, endpoint=f"http://{host}:{port}", instrument_libraries=["langchain"],
               set_global=False)
    try:
        asyncio.run(Simulator(rate, seed=seed, latency_scale=0.05).run(seconds))
        assert force_flush(60_000), "the demo's spans were not all delivered"
    finally:
        sdk_shutdown()


def insert_quality_rows(conn: psycopg.Connection[Any], now: datetime) -> None:
    """Two failure-cluster runs and CSAT outcomes, as the quality loop stores them."""
    for run, (clusters, window_end) in enumerate(((CLUSTERS_BEFORE, now - timedelta(hours=1)),
                                                  (CLUSTERS_LATEST, now - timedelta(minutes=5))), start=1):
        conn.execute("INSERT INTO failure_cluster_runs (run_id, window_start, window_end, embedder,"
                     " problem_turns) VALUES (%s, %s, %s, 'tfidf', %s)",
                     (run, window_end - timedelta(hours=1), window_end, sum(c[2] for c in clusters)))
        total = sum(c[2] for c in clusters)
        for cluster_id, label, size, previous in clusters:
            conn.execute("INSERT INTO failure_clusters (run_id, cluster_id, label, representative_message,"
                         " size, share, previous_size, trend) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                         (run, cluster_id, label, f"example of {label}", size, size / total, previous,
                          None if previous is None else size / previous))
    sessions = [r[0] for r in conn.execute(
        "SELECT DISTINCT session_id FROM chat_turns WHERE session_id LIKE 'sess-%%' ORDER BY 1 LIMIT 5")]
    for i, session in enumerate(sessions):
        conn.execute("INSERT INTO outcomes (session_id, kind, value, origin, recorded_at)"
                     " VALUES (%s, 'csat', %s, 'api', now())", (session, 3 + i % 3))
    conn.commit()


def refuse_some(processor: Processor, senders: int = 12) -> int:
    """Concurrent requests against the one-span queue: returns how many were answered 429."""
    host, port = processor.http_address
    base = f"http://{host}:{port}"
    now = datetime.now(UTC)
    bodies = [otlp_request([PastTurn(f"burst-{i}", f"user-{i:04d}", "api", now - timedelta(seconds=i))
                            for _ in range(20)]) for i in range(senders)]
    barrier = threading.Barrier(senders)
    codes: list[int] = []

    def send(body: bytes) -> None:
        barrier.wait()
        codes.append(post_otlp(base, body))

    threads = [threading.Thread(target=send, args=(b,)) for b in bodies]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return codes.count(429)


def wait_judged(database_url: str) -> int:
    """Until the online judge has stored a verdict for every turn it took (the count stops moving)."""
    last = [-1]

    def settled() -> int | None:
        with psycopg.connect(database_url) as conn:
            row = conn.execute("SELECT count(*) FROM evaluations").fetchone()
        count = int(row[0]) if row else 0
        done = count if count and count == last[0] else None
        last[0] = count
        return done

    return wait_for(settled, 120, "the online judge to finish", interval=2.0)


def wait_scraped(port: int, expected_turns: int, judged: int) -> None:
    """Until Prometheus has the processor's final turn and judge counts, the pending alert and the
    refusal ratio."""
    def value(query: str) -> float | None:
        result = prometheus_api(port, "query", query=query)["data"]["result"]
        return float(result[0]["value"][1]) if result else None

    def caught_up() -> bool:
        return (value("sum(chatbot_turns_total)") == expected_turns
                and value('chatbot_evaluation_score_count{dimension="accuracy"}') == judged
                and value("count(ALERTS)") is not None
                and value("count(instance:otel_chatbot_spans_refused:ratio_rate10m)") is not None)

    wait_for(caught_up, 60, f"Prometheus to scrape {expected_turns} turns, {judged} verdicts, an alert "
             "and refusals")
    time.sleep(3 * SCRAPE_S)  # a few more scrapes so every rate window holds two samples
