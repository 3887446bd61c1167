"""Back-pressure, database outages, readiness and restarts, with the real pipeline and real Postgres.

No sleeps or timing thresholds: the writer is held still with a real table lock, and states are
awaited by polling with a generous safety timeout.
"""

from __future__ import annotations

import threading
from pathlib import Path

import grpc
import httpx
import psycopg
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub
from server_support import (
    base_url,
    count_spans,
    fetch,
    make_processor,
    running,
    turn_request,
    wait_until,
    writer_blocked,
)
from store_factories import span, trace_id

from otel_chatbot.errors import QueueFull, Unavailable
from otel_chatbot.processor.pipeline import Pipeline
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.migrate import migrate
from otel_chatbot.store.writer import BatchWriter

PROTOBUF = {"Content-Type": "application/x-protobuf"}


class _Metrics:
    """Records the pipeline's metric calls (the real ProcessorMetrics is exercised by the server tests)."""

    def __init__(self) -> None:
        self.accepted = 0
        self.refused: dict[str, int] = {}
        self.commits = 0
        self.depths: list[int] = []

    def observe_commit(self, result: object) -> None:
        self.commits += 1

    def spans_accepted(self, n: int, transport: str) -> None:
        self.accepted += n

    def spans_refused(self, n: int, transport: str, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + n

    def set_queue_depth(self, spans: int) -> None:
        self.depths.append(spans)

    def observe_write(self, seconds: float, spans: int) -> None:
        pass

    def database_error(self) -> None:
        pass


def _batch(n: int) -> NormalisedBatch:
    trace = trace_id()
    return NormalisedBatch(spans=[span(trace) for _ in range(n)])


def test_pipeline_group_commits_and_refuses_when_full(database_url: str) -> None:
    metrics = _Metrics()
    pipeline = Pipeline(BatchWriter(database_url), metrics, queue_max_spans=30, write_batch_spans=1000)
    pipeline.start()
    try:
        with writer_blocked(database_url):
            first = pipeline.submit(_batch(10), "test")
            second = pipeline.submit(_batch(10), "test")
            third = pipeline.submit(_batch(10), "test")
            with pytest.raises(QueueFull) as info:
                pipeline.submit(_batch(1), "test")
            assert info.value.retry_after >= 1 and "queue full" in str(info.value)
            assert not first.done() and not third.done()  # nothing answered before commit
        results = [f.result(timeout=60) for f in (first, second, third)]
        assert count_spans(database_url) == 30
        # Three requests queued behind one blocked write: at most two commits served them (group commit).
        assert len({id(r) for r in results}) <= 2 and metrics.commits <= 2
        assert metrics.accepted == 30 and metrics.refused == {"queue_full": 1}
        assert metrics.depths[-1] == 0 and max(metrics.depths) == 30
    finally:
        pipeline.shutdown()
        pipeline.shutdown()  # safe twice
    with pytest.raises(Unavailable):
        pipeline.submit(_batch(1), "test")


def test_shutdown_drains_what_is_queued(database_url: str) -> None:
    pipeline = Pipeline(BatchWriter(database_url), _Metrics(), queue_max_spans=1000)
    pipeline.start()
    with writer_blocked(database_url):
        futures = [pipeline.submit(_batch(5), "test") for _ in range(4)]
        pipeline.close_intake()
        with pytest.raises(Unavailable):
            pipeline.submit(_batch(1), "test")
        stopper = threading.Thread(target=pipeline.shutdown, args=(60.0,))
        stopper.start()
    stopper.join()
    assert all(f.result(timeout=0).span_count >= 5 for f in futures)
    assert count_spans(database_url) == 20


def test_http_queue_full_is_429_with_retry_after_and_nothing_lost(database_url: str) -> None:
    body_a, traces_a = turn_request(100)
    body_b, traces_b = turn_request(100)
    body_c, traces_c = turn_request(100)
    with running(database_url, queue_max_spans=200) as proc:
        url = f"{base_url(proc)}/v1/traces"
        statuses: list[int] = []

        def send(body: bytes) -> None:
            statuses.append(httpx.post(url, content=body, headers=PROTOBUF, timeout=120).status_code)

        with writer_blocked(database_url):
            senders = [threading.Thread(target=send, args=(b,)) for b in (body_a, body_b)]
            for t in senders:
                t.start()
            wait_until(lambda: proc.pipeline.pending_spans == 200, "both requests to be queued")
            refused = httpx.post(url, content=body_c, headers=PROTOBUF)
            assert refused.status_code == 429
            assert int(refused.headers["Retry-After"]) >= 1
            grpc_host, grpc_port = proc.grpc_address
            with (
                grpc.insecure_channel(f"{grpc_host}:{grpc_port}") as channel,
                pytest.raises(grpc.RpcError) as info,
            ):
                TraceServiceStub(channel).Export(ExportTraceServiceRequest.FromString(body_c), timeout=30)
            assert info.value.code() is grpc.StatusCode.UNAVAILABLE
            trailers = dict(info.value.trailing_metadata())
            assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay.seconds >= 1
        for t in senders:
            t.join()
        assert statuses == [200, 200]
        assert count_spans(database_url, traces_a + traces_b) == 200
        assert count_spans(database_url, traces_c) == 0
        metrics = httpx.get("http://{}:{}/metrics".format(*proc.metrics_address)).text
        assert 'otel_chatbot_spans_refused_total{reason="queue_full",transport="http"} 100.0' in metrics
        assert 'otel_chatbot_spans_accepted_total{transport="http"} 200.0' in metrics


def test_database_down_is_503_then_recovers(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    server = EmbeddedPostgres(data_dir)
    url = server.start()
    try:
        with running(url) as proc:
            api = base_url(proc)
            body, traces = turn_request(5)
            assert httpx.post(f"{api}/v1/traces", content=body, headers=PROTOBUF).status_code == 200

            server.shutdown()  # the database goes away
            body2, traces2 = turn_request(5)
            failed = httpx.post(f"{api}/v1/traces", content=body2, headers=PROTOBUF)
            assert failed.status_code == 503 and failed.headers.get("Retry-After")
            not_ready = httpx.get(f"{api}/readyz", timeout=30)
            assert not_ready.status_code == 503 and "database" in not_ready.text
            # While down, requests are refused at once (no queueing into a dead database).
            assert httpx.post(f"{api}/v1/traces", content=body2, headers=PROTOBUF).status_code == 503
            assert httpx.get(f"{api}/healthz").status_code == 200  # alive, just not ready

            server = EmbeddedPostgres(data_dir)
            assert server.start() == url
            wait_until(lambda: httpx.get(f"{api}/readyz", timeout=30).status_code == 200, "readiness")
            assert httpx.post(f"{api}/v1/traces", content=body2, headers=PROTOBUF).status_code == 200
            assert count_spans(url, traces + traces2) == 10
    finally:
        server.shutdown()


def test_readyz_before_migration(fresh_database_url: str) -> None:
    with running(fresh_database_url, migrate=False) as proc:
        api = base_url(proc)
        response = httpx.get(f"{api}/readyz", timeout=30)
        assert response.status_code == 503
        assert "schema is at version None" in response.text and "otel-chatbot migrate" in response.text
        body, traces = turn_request(2)
        assert httpx.post(f"{api}/v1/traces", content=body, headers=PROTOBUF).status_code == 503

        migrate(fresh_database_url)
        wait_until(
            lambda: httpx.get(f"{api}/readyz", timeout=30).status_code == 200, "readiness after migrate"
        )
        assert httpx.post(f"{api}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
        assert count_spans(fresh_database_url, traces) == 2


def test_restart_on_existing_data_dir(tmp_path: Path) -> None:
    body, traces = turn_request(3)
    with running(None, data_dir=str(tmp_path / "data")) as proc:
        first_url = proc.database_url
        assert httpx.post(f"{base_url(proc)}/v1/traces", content=body, headers=PROTOBUF).status_code == 200
    # Stopped cleanly: the server is gone.
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(first_url, connect_timeout=5).close()

    body2, traces2 = turn_request(2)
    with running(None, data_dir=str(tmp_path / "data")) as proc:
        assert proc.database_url == first_url
        assert httpx.get(f"{base_url(proc)}/readyz", timeout=30).status_code == 200
        assert httpx.post(f"{base_url(proc)}/v1/traces", content=body2, headers=PROTOBUF).status_code == 200
        assert count_spans(proc.database_url, traces + traces2) == 5
        assert fetch(proc.database_url, "SELECT count(*) FROM schema_migrations")[0][0] >= 1


def test_processor_start_and_shutdown_are_safe_twice(database_url: str) -> None:
    proc = make_processor(database_url)
    proc.start()
    proc.start()
    address = proc.http_address
    proc.shutdown()
    proc.shutdown()
    with pytest.raises(httpx.ConnectError):
        httpx.get("http://{}:{}/healthz".format(*address))


def test_two_writers_commit_everything_once(database_url: str) -> None:
    requests = [turn_request(40) for _ in range(10)]
    with running(database_url, writers=2) as proc:
        url = f"{base_url(proc)}/v1/traces"
        statuses: list[int] = []

        def send(body: bytes) -> None:
            for _ in range(2):  # every request twice: a retried batch must not duplicate
                statuses.append(httpx.post(url, content=body, headers=PROTOBUF, timeout=120).status_code)

        threads = [threading.Thread(target=send, args=(body,)) for body, _ in requests]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert statuses == [200] * 20
    assert count_spans(database_url) == 400
    assert fetch(database_url, "SELECT count(*), count(DISTINCT turn_id) FROM chat_turns") == [(400, 400)]
