"""What benchmarks/ingest.py measures besides throughput: CPU and RSS of the processes, bytes stored,
trace fetch time, turn latency."""

from __future__ import annotations

import statistics
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import psycopg
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_chatbot.store.trace_fetch import BlocksReader, RowsReader, SpanReader

# The tables each layout writes its spans to, and every table a write touches.
SPAN_TABLES = {"rows": ("spans",), "blocks": ("span_blocks", "span_traces", "llm_calls", "error_spans")}
ALL_TABLES = ("spans", "span_blocks", "span_traces", "llm_calls", "error_spans", "chat_turns", "turn_parts",
              "sessions", "feedback", "pending_feedback")


def table_bytes(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """Bytes on disk of each table (heap, TOAST, indexes, summed over its partitions)."""
    out = {}
    for table in ALL_TABLES:
        row = conn.execute(
            "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(%s::regclass)) "
            "FROM pg_partition_tree(%s::regclass)", (table, table)).fetchone()
        out[table] = int(row[0]) if row and row[0] is not None else 0
    return out


def stored_spans(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM stored_span_ids").fetchone()
    return int(row[0]) if row else 0


def trace_ids_of(body: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(body)
    return sorted({s.trace_id.hex() for rs in request.resource_spans for ss in rs.scope_spans
                   for s in ss.spans})


def fetch_times_ms(url: str, layout: str, trace_ids: list[str]) -> tuple[float, float]:
    """(median, p95) milliseconds of fetching a whole trace with the layout's own reader, warm cache."""
    reader: SpanReader = BlocksReader() if layout == "blocks" else RowsReader()
    times = []
    with psycopg.connect(url) as conn:
        for trace in trace_ids:
            started = time.perf_counter()
            spans = reader.trace(conn, trace)
            times.append((time.perf_counter() - started) * 1e3)
            if not spans:
                raise SystemExit(f"trace {trace} not found with the {layout} reader")
    return statistics.median(times), _p95(times)


def turn_latency_ms(url: str, port: int, turns: int = 20) -> tuple[float, float]:
    """(median, p95) ms from the end of a turn's last span in the app (the real OTel SDK exporting over
    OTLP/HTTP as each span ends) until the turn is visible in chat_turns."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": "latency-bot"}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces")))
    tracer = provider.get_tracer("ingest-benchmark")
    times = []
    with psycopg.connect(url, autocommit=True) as conn:
        for _ in range(turns):
            turn_id = str(uuid.uuid4())
            with tracer.start_as_current_span("chat.turn", attributes={
                    "chat.turn.id": turn_id, "session.id": "latency", "input.value": "where is my order?",
                    "output.value": "on its way"}):
                with tracer.start_as_current_span("ChatOpenAI", attributes={
                        "chat.in_turn": turn_id, "openinference.span.kind": "LLM",
                        "llm.model_name": "gpt-4o-mini", "llm.token_count.prompt": 20,
                        "llm.token_count.completion": 5}):
                    pass
                sent = time.perf_counter()  # the turn span ends (and is exported) as the block closes
            while conn.execute("SELECT 1 FROM chat_turns WHERE turn_id = %s", (turn_id,)).fetchone() is None:
                time.sleep(0.001)
            times.append((time.perf_counter() - sent) * 1e3)
    provider.shutdown()
    return statistics.median(times), _p95(times)


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def _tree(pid: int) -> list[psutil.Process]:
    """The serve process and its worker processes (serve --workers N)."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time of each processor process: the serve process and its live workers."""
    out: dict[int, float] = {}
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        out[process.pid] = times.user + times.system
    return out


def rss(pid: int) -> int:
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def postgres_cpu_seconds(data_dir: Path) -> float | None:
    """CPU time of the embedded server's processes (postmaster and backends); None if unknown."""
    pid_file = data_dir / "postmaster.pid"
    if not pid_file.exists():
        return None
    try:
        postmaster = psutil.Process(int(pid_file.read_text().split()[0]))
        total = 0.0
        for process in [postmaster, *postmaster.children(recursive=True)]:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        return total
    except (psutil.Error, ValueError, PermissionError):
        return None
