"""Nothing acknowledged is lost: real `otel-chatbot serve` processes under load from several senders,
killed, stopped and restarted; every span the server acknowledged is stored exactly once."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from load_support import Senders, Serve, post_traces, stored_span_counts, wait_exit
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from server_support import turn_request


def _trace_counts(url: str) -> dict[str, int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT trace_id, count(*) FROM stored_span_ids GROUP BY 1").fetchall()
    return {str(t): int(n) for t, n in rows}


def _assert_each_once(stored: Mapping[Any, int], acknowledged: Sequence[object]) -> None:
    assert len(set(acknowledged)) == len(acknowledged)
    missing = [k for k in acknowledged if k not in stored]
    assert missing == []
    assert {k: n for k, n in stored.items() if n != 1} == {}


def test_sigterm_under_load_commits_what_it_acknowledged_and_exits_0_in_time(database_url: str) -> None:
    shutdown_timeout = 5.0
    serve = Serve(database_url, "--shutdown-timeout", str(shutdown_timeout))
    serve.start()

    def send(_worker: int, _n: int) -> list[tuple[str, str]]:
        body, traces = turn_request(200)
        status, _ = post_traces(serve.url, body)
        return [(t, "") for t in traces] if status == 200 else []

    try:
        with Senders(send, threads=4) as senders:
            time.sleep(3.0)
            assert serve.proc is not None
            serve.signal(signal.SIGTERM)
            rc, took = wait_exit(serve.proc, shutdown_timeout + 10)
            time.sleep(0.3)
        # Intake is closed: nothing answers on the port any more.
        assert post_traces(serve.url, turn_request(1)[0]) == (0, None)
    finally:
        serve.stop()
    print(f"SIGTERM under load: exit {rc} after {took:.2f} s (shutdown_timeout {shutdown_timeout}); "
          f"{len(senders.acknowledged)} spans acknowledged, {senders.refused} requests refused")
    assert rc == 0
    assert took < shutdown_timeout + 1.0  # the deadline plus interpreter exit
    assert len(senders.acknowledged) > 0
    _assert_each_once(_trace_counts(database_url), [t for t, _ in senders.acknowledged])


class _Recording(SpanExporter):
    """The real OTLP/HTTP exporter (with its own retries); remembers the spans it reported exported."""

    def __init__(self, endpoint: str) -> None:
        self.inner = OTLPSpanExporter(endpoint=endpoint, timeout=30)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return self.inner.export(spans)

    def shutdown(self) -> None:
        self.inner.shutdown()


def test_sigkill_three_times_under_load_loses_no_acknowledged_span(database_url: str) -> None:
    serve = Serve(database_url, "--shutdown-timeout", "5")
    serve.start()
    exporter = _Recording(serve.url + "/v1/traces")
    collected: dict[int, list[ReadableSpan]] = {}

    class Collect(SimpleSpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            collected.setdefault(threading.get_ident(), []).append(span)

    provider = TracerProvider()
    provider.add_span_processor(Collect(exporter))
    tracer = provider.get_tracer("load")

    def send(_worker: int, n: int) -> list[tuple[str, str]]:
        collected.pop(threading.get_ident(), None)
        for i in range(100):
            with tracer.start_as_current_span(f"op-{n}-{i}", attributes={"session.id": f"s-{n}"}):
                pass
        spans = collected.pop(threading.get_ident(), [])
        if exporter.export(spans) is not SpanExportResult.SUCCESS:
            return []
        return [(format(s.context.trace_id, "032x"), format(s.context.span_id, "016x")) for s in spans]

    kills = 0
    try:
        with Senders(send, threads=3) as senders:
            for _ in range(3):
                time.sleep(2.0)
                serve.kill()
                kills += 1
                time.sleep(0.5)  # the exporter meets a closed port and retries with backoff
                serve.start()
            time.sleep(2.0)
    finally:
        serve.stop()
        exporter.shutdown()
    stored = stored_span_counts(database_url)
    print(f"SIGKILL x{kills} under load (real OTLP/HTTP exporter, 3 threads): "
          f"{len(senders.acknowledged)} spans acknowledged, {len(stored)} stored, "
          f"{senders.refused} exports failed")
    assert kills == 3
    assert len(senders.acknowledged) > 0
    _assert_each_once(stored, senders.acknowledged)
    assert senders.refused == 0  # the exporter's retries span every restart
