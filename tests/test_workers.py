"""``otel-chatbot serve --workers 2``: real processes, real exporters, a real embedded Postgres.

One supervisor with two worker processes on shared ports (SO_REUSEPORT) takes traces from the real
OTLP/HTTP and OTLP/gRPC exporters; every span is stored once and the parent's /metrics sums the workers
exactly, with a new series first exposed at 0 (the first-burst rule). A SIGKILLed worker is restarted
(log line, restart counter), /readyz says not ready while it is down, and every request answered 200
is in the database once. SIGTERM drains and exits 0 within shutdown_timeout; bad settings exit 2.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families
from server_support import count_spans, fetch, turn_request, wait_until, writer_blocked

from otel_chatbot.cli import main
from otel_chatbot.store.embedded import EmbeddedPostgres

pytestmark = pytest.mark.slow

PROTOBUF = {"Content-Type": "application/x-protobuf"}
EXPORTERS = 6  # per protocol: each its own connection, so the kernel spreads them over the workers
SPANS_PER_EXPORT = 5
EXPORTS = 4  # per exporter


@dataclass
class Fleet:
    proc: subprocess.Popen[str]
    api: str
    grpc: str
    metrics: str
    database_url: str
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)

    def log(self) -> str:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def sample(self, name: str, **labels: str) -> float | None:
        text = httpx.get(self.metrics, timeout=10).text
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
        return None

    def ready(self) -> tuple[int, str]:
        response = httpx.get(f"{self.api}/readyz", timeout=5)
        return response.status_code, response.text.strip()


def _start(args: list[str]) -> Fleet:
    # Settle 0: turns are counted at commit, so the metric assertions need not wait out the settle.
    cmd = [sys.executable, "-m", "otel_chatbot.cli", "serve", "--workers", "2", "--otlp-http", "127.0.0.1:0",
           "--otlp-grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0", "--turn-settle-seconds", "0", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: list(map(lines.put, stderr)), daemon=True).start()
    seen: list[str] = []

    def banner() -> re.Match[str] | None:
        assert proc.poll() is None, "".join(seen)
        while not lines.empty():
            seen.append(lines.get())
        return next((m for m in (re.search(r"OTLP/HTTP (http://\S+)  OTLP/gRPC (\S+)  metrics (http://\S+)",
                                           line) for line in seen) if m), None)

    match = None
    deadline = time.monotonic() + 120
    while match is None and time.monotonic() < deadline:
        match = banner()
        time.sleep(0.05)
    assert match is not None, "".join(seen)
    fleet = Fleet(proc, match.group(1), match.group(2), match.group(3), "", seen, lines)
    assert "(2 workers)" in fleet.log()
    return fleet


def _stop(fleet: Fleet) -> None:
    if fleet.proc.poll() is None:
        fleet.proc.kill()
        fleet.proc.wait(30)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    data_dir = tmp_path_factory.mktemp("workers")
    fleet = _start(["--data-dir", str(data_dir), "--shutdown-timeout", "10"])
    try:
        # The parent started the embedded Postgres; this reuses it (and will not stop it).
        fleet.database_url = EmbeddedPostgres(Path(data_dir) / "postgres").start()
        wait_until(lambda: fleet.ready()[0] == 200, "both workers ready")
        yield fleet
        fleet.proc.send_signal(signal.SIGTERM)
        assert fleet.proc.wait(60) == 0, fleet.log()
    finally:
        _stop(fleet)


def _spans(service: str, count: int) -> list[ReadableSpan]:
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("test")
    for i in range(count):
        with tracer.start_as_current_span("chat.turn", attributes={
                "chat.turn.id": f"{service}-{os.urandom(8).hex()}", "session.id": f"s-{i}",
                "input.value": "hi", "output.value": "hello", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 7, "gen_ai.usage.output_tokens": 3}):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())


def _released(fleet: Fleet, name: str, expected: float, **labels: str) -> None:
    """Scrape until the held first increments show (a scrape has read the zeros, the workers released)."""
    wait_until(lambda: fleet.sample(name, **labels) == expected, f"{name}{labels} == {expected}", timeout=30)


def test_real_exporters_every_span_once_and_metrics_summed_across_workers(fleet: Fleet) -> None:
    before = count_spans(fleet.database_url)
    exported: list[str] = []
    lock = threading.Lock()

    def send(protocol: str, endpoint: str, service: str) -> None:
        exporter: HttpExporter | GrpcExporter = (HttpExporter(endpoint=endpoint) if protocol == "http"
                                                 else GrpcExporter(endpoint=endpoint, insecure=True))
        try:
            for _ in range(EXPORTS):
                spans = _spans(service, SPANS_PER_EXPORT)
                assert exporter.export(spans) is SpanExportResult.SUCCESS
                with lock:
                    exported.extend(format(s.context.trace_id, "032x") for s in spans)
        finally:
            exporter.shutdown()

    threads = [threading.Thread(target=send, args=("http", f"{fleet.api}/v1/traces", "http-bot"))
               for _ in range(EXPORTERS)]
    threads += [threading.Thread(target=send, args=("grpc", fleet.grpc, "grpc-bot"))
                for _ in range(EXPORTERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    per_protocol = EXPORTERS * EXPORTS * SPANS_PER_EXPORT
    assert len(exported) == len(set(exported)) == 2 * per_protocol
    assert count_spans(fleet.database_url) - before == 2 * per_protocol
    assert count_spans(fleet.database_url, exported) == 2 * per_protocol
    rows = fetch(fleet.database_url, "SELECT service, count(*), sum(input_tokens) FROM chat_turns "
                                     "WHERE service IN ('http-bot', 'grpc-bot') GROUP BY service ORDER BY 1")
    tokens = 7 * per_protocol
    assert rows == [("grpc-bot", per_protocol, tokens), ("http-bot", per_protocol, tokens)]

    # Self-metrics (prometheus_client, file-backed in each worker) summed by the parent.
    assert fleet.sample("otel_chatbot_spans_accepted_total", transport="http") == per_protocol
    assert fleet.sample("otel_chatbot_spans_accepted_total", transport="grpc") == per_protocol
    assert fleet.sample("otel_chatbot_spans_committed_total") == 2 * per_protocol + before
    assert fleet.sample("otel_chatbot_queue_spans") == 0
    # Chat metrics (the workers' dict families, mirrored into the files).
    _released(fleet, "chatbot_turns_total", per_protocol, service="http-bot", source="unknown")
    _released(fleet, "chatbot_turns_total", per_protocol, service="grpc-bot", source="unknown")
    assert fleet.sample("chatbot_tokens_total", service="grpc-bot", type="input", model="gpt-4o-mini") == \
        7 * per_protocol
    assert fleet.sample("chatbot_turn_duration_seconds_count", service="http-bot", source="unknown") == \
        per_protocol
    assert fleet.sample("otel_chatbot_workers_ready") == 2
    assert fleet.sample("otel_chatbot_worker_restarts_total") == 0


def test_new_series_first_exposed_at_zero_then_counted(fleet: Fleet) -> None:
    """The first-burst rule across processes: a burst for a new service shows 0 on the first scrape
    after it is acknowledged, its count on a later one (so increase() sees all of it)."""
    assert fleet.sample("chatbot_turns_total", service="burst-bot", source="unknown") is None
    for _ in range(2):  # two requests: with two workers, each may hold part of the burst
        body, _traces = turn_request(4, service="burst-bot")
        response = httpx.post(f"{fleet.api}/v1/traces", content=body, headers=PROTOBUF, timeout=30)
        assert response.status_code == 200
    assert fleet.sample("chatbot_turns_total", service="burst-bot", source="unknown") == 0.0
    _released(fleet, "chatbot_turns_total", 8.0, service="burst-bot", source="unknown")


def _worker_pid(fleet: Fleet, index: int) -> int:
    found = re.findall(rf"worker {index} (?:listening|restarted) \(pid (\d+)\)", fleet.log())
    assert found, fleet.log()
    return int(found[-1])


def test_sigkilled_worker_restarted_nothing_acknowledged_lost(fleet: Fleet) -> None:
    acknowledged: list[str] = []
    stop = threading.Event()

    def sender() -> None:
        # A new connection per request (the kernel picks a worker per connection); retry what was not
        # acknowledged, as an exporter does.
        while not stop.is_set():
            body, traces = turn_request(3, service="kill-bot")
            while not stop.is_set():
                try:
                    r = httpx.post(f"{fleet.api}/v1/traces", content=body, headers=PROTOBUF, timeout=30)
                except httpx.HTTPError:
                    time.sleep(0.05)
                    continue
                if r.status_code == 200:
                    acknowledged.extend(traces)
                    break
                assert r.status_code in (429, 503) and "Retry-After" in r.headers, (r.status_code, r.text)
                time.sleep(0.05)

    restarts = fleet.sample("otel_chatbot_worker_restarts_total")
    assert restarts == 0
    pid = _worker_pid(fleet, 1)
    threads = [threading.Thread(target=sender) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acknowledged) >= 30, "traffic to flow")
        os.kill(pid, signal.SIGKILL)
        # Not ready while worker 1 is down (any worker answers /readyz for the set).
        wait_until(lambda: fleet.ready() == (503, "worker 1 of 2 is down") or
                   fleet.ready()[1] == "worker 1 of 2 is starting", "readiness to say worker 1 is down",
                   timeout=10)
        wait_until(lambda: f"worker 1 (pid {pid}) died (killed by SIGKILL); restarting it" in fleet.log(),
                   "the restart log line")
        wait_until(lambda: fleet.ready() == (200, "ready"), "both workers ready again")
        assert _worker_pid(fleet, 1) != pid
        acked_at_restart = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= acked_at_restart + 30, "traffic after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert fleet.sample("otel_chatbot_worker_restarts_total") == 1
    assert fleet.sample("otel_chatbot_workers_ready") == 2
    # Every acknowledged span is stored, once.
    assert len(set(acknowledged)) == len(acknowledged)
    stored = fetch(fleet.database_url, "SELECT trace_id, count(*) FROM stored_span_ids "
                                       "WHERE trace_id = ANY(%s) GROUP BY trace_id", (acknowledged,))
    assert len(stored) == len(acknowledged) and {n for _t, n in stored} == {1}


def test_sigterm_exits_0_within_shutdown_timeout(database_url: str) -> None:
    """A worker that cannot drain (its writer is blocked throughout) is stopped at the deadline: the
    whole set exits 0 within shutdown_timeout, and a request is never answered 200 without its commit."""
    timeout = 6.0
    fleet = _start(["--database-url", database_url, "--shutdown-timeout", str(timeout)])
    try:
        wait_until(lambda: fleet.ready()[0] == 200, "both workers ready")
        body, traces = turn_request(3)
        status: list[int] = []

        def post() -> None:
            try:
                status.append(httpx.post(f"{fleet.api}/v1/traces", content=body, headers=PROTOBUF,
                                         timeout=60).status_code)
            except httpx.HTTPError:
                status.append(0)  # connection closed by the killed worker: not acknowledged

        with writer_blocked(database_url):
            sender = threading.Thread(target=post)
            sender.start()
            wait_until(lambda: fleet.sample("otel_chatbot_queue_spans") == 3, "the request to queue")
            started = time.monotonic()
            fleet.proc.send_signal(signal.SIGTERM)
            assert fleet.proc.wait(timeout + 10) == 0, fleet.log()
            elapsed = time.monotonic() - started
        sender.join(60)
        assert elapsed <= timeout + 2.0, elapsed
        assert "received SIGTERM: draining" in fleet.log()
        assert status != [200] or count_spans(database_url, traces) == 3
    finally:
        _stop(fleet)


@pytest.mark.parametrize(("key", "reuse_port"), [
    ("otlp_http", False), ("otlp_grpc", False), ("metrics", False), ("otlp_http", True), ("otlp_grpc", True)])
def test_port_in_use_exits_2_naming_the_key(key: str, reuse_port: bool, database_url: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Also a port whose holder set SO_REUSEPORT (another server with workers): never shared by accident."""
    with socket.socket() as taken:
        if reuse_port:
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        addresses = {"otlp_http": "127.0.0.1:0", "otlp_grpc": "127.0.0.1:0", "metrics": "127.0.0.1:0"}
        addresses[key] = f"127.0.0.1:{port}"
        argv = ["serve", "--workers", "2", "--database-url", database_url]
        for name, address in addresses.items():
            argv += ["--" + name.replace("_", "-"), address]
        before = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
        assert main(argv) == 2
        assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") == before  # not left for later programs
    err = capsys.readouterr().err
    assert f"otel-chatbot: error: {key}: cannot listen on 127.0.0.1:{port}" in err
    assert "--" + key.replace("_", "-") in err


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--workers", "0"], {}, "workers: expected an integer >= 1, got 0"),
    (["--workers", "two"], {}, "workers: expected an integer, got 'two'"),
    (["--workers", "65"], {}, "workers: at most 64, got 65"),
    ([], {"OTEL_CHATBOT_WORKERS": "-1"}, "workers: expected an integer >= 1, got -1"),
])
def test_bad_workers_exits_2_naming_the_key(argv: list[str], env: dict[str, str], message: str,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve", *argv]) == 2
    assert f"otel-chatbot: error: {message}" in capsys.readouterr().err


def test_queue_bounded_per_worker_refusals_carry_retry_after(database_url: str) -> None:
    """Each worker holds at most queue_max_spans: with the writer blocked, one 3-span request fits a
    worker's queue of 4 and the rest are refused with 429 + Retry-After; the queued ones commit later."""
    fleet = _start(["--database-url", database_url, "--queue-max-spans", "4"])
    try:
        wait_until(lambda: fleet.ready()[0] == 200, "both workers ready")
        answers: list[tuple[int, str | None, list[str]]] = []
        lock = threading.Lock()

        def post() -> None:
            body, traces = turn_request(3, service="bounded-bot")
            r = httpx.post(f"{fleet.api}/v1/traces", content=body, headers=PROTOBUF, timeout=60)
            with lock:
                answers.append((r.status_code, r.headers.get("Retry-After"), traces))

        senders = [threading.Thread(target=post) for _ in range(6)]
        with writer_blocked(database_url):
            for t in senders:
                t.start()
            # Each request is either queued (waiting for its commit) or refused at once.
            wait_until(lambda: len(answers) + (fleet.sample("otel_chatbot_queue_spans") or 0) / 3 == 6,
                       "every request queued or refused")
            queued = fleet.sample("otel_chatbot_queue_spans")
            assert queued in (3, 6)  # one request per worker that got any: never more than 4 spans each
            refused = list(answers)
            assert len(refused) == 6 - queued / 3
            assert all(status == 429 and retry_after is not None for status, retry_after, _t in refused)
        for t in senders:
            t.join(60)
        accepted = [traces for status, _r, traces in answers if status == 200]
        assert len(accepted) == queued / 3
        assert count_spans(database_url, [t for traces in accepted for t in traces]) == queued
        assert fleet.sample("otel_chatbot_spans_refused_total", transport="http", reason="queue_full") == \
            3 * len(refused)
    finally:
        fleet.proc.send_signal(signal.SIGTERM)
        fleet.proc.wait(60)
        _stop(fleet)
