"""End-to-end ingest: OTLP/HTTP protobuf → durable spans, per span layout and worker count, in one run.

Starts an embedded Postgres (fsync and synchronous_commit on) and, for each span layout (``rows``,
``blocks``) and worker count, ``otel-chatbot serve --span-storage L --workers N`` (a separate process
tree, so CPU and peak RSS can be read), with every feature on (turns, token sums, feedback, settle).
Sends pre-encoded batches of LLM-like spans (OpenInference attributes, ~300-byte messages, a turn per
trace, a few feedback spans) from several keep-alive connections, fresh spans each run, and counts
spans/s from the first request to the last 200 (200 means committed). Then, in each run: CPU per span
of the processor processes and of Postgres, bytes stored per span (the layout's span tables, and every
table written), the time to fetch a whole trace with the layout's reader, the peak RSS of all
processor processes together, and the latency from the end of a turn's last span in an app (the real
OTel SDK exporting each span as it ends) until the turn is in chat_turns.

The raw COPY ceiling does not depend on our schema: the first run's request bodies, decoded into one
row per span (trace id, span id, parent id, name, kind, start, end, service, attributes as jsonb) and
pre-encoded as binary COPY before the clock starts, then COPYed into a plain logged table, one commit
per request. Every figure is printed in one table at the end, with the load average.

    python benchmarks/ingest.py [--batches 200] [--batch-size 512] [--connections 4] [--workers 1,2]
                                [--layouts rows,blocks]
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil
import psycopg
from ceiling import copy_ceiling_rows, request_copy_rows
from ingest_measures import (
    SPAN_TABLES,
    cpu_seconds,
    fetch_times_ms,
    postgres_cpu_seconds,
    rss,
    stored_spans,
    table_bytes,
    trace_ids_of,
    turn_latency_ms,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from support import postgres

WORDS = ("refund", "order", "shipping", "account", "password", "invoice", "delivery", "warranty", "upgrade",
         "cancel", "subscription", "address", "payment", "card", "tracking", "return", "exchange")


def _text(rng: random.Random, size: int) -> str:
    out: list[str] = []
    length = 0
    while length < size:
        word = rng.choice(WORDS)
        out.append(word)
        length += len(word) + 1
    return " ".join(out)


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def build_request(rng: random.Random, batch_size: int, start_ns: int) -> bytes:
    """One OTLP request: traces of a CHAIN root (the turn) and an LLM child; 1 in 64 a feedback span."""
    spans: list[Span] = []
    while len(spans) < batch_size:
        trace_id = rng.randbytes(16)
        root_id, llm_id = rng.randbytes(8), rng.randbytes(8)
        session = f"session-{rng.randrange(5000)}"
        question, answer = _text(rng, 300), _text(rng, 300)
        t0 = start_ns + rng.randrange(10**9)
        model = rng.choice(("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku"))
        common = [_kv("session.id", session), _kv("user.id", f"user-{rng.randrange(2000)}")]
        root = Span(trace_id=trace_id, span_id=root_id, name="RunnableSequence", kind=Span.SPAN_KIND_INTERNAL,
                    start_time_unix_nano=t0, end_time_unix_nano=t0 + 900_000_000,
                    attributes=[*common, _kv("openinference.span.kind", "CHAIN"),
                                _kv("input.value", question), _kv("output.value", answer),
                                _kv("chat.source", "website")])
        llm = Span(trace_id=trace_id, span_id=llm_id, parent_span_id=root_id, name="ChatOpenAI",
                   kind=Span.SPAN_KIND_CLIENT, start_time_unix_nano=t0 + 1_000_000,
                   end_time_unix_nano=t0 + 850_000_000,
                   attributes=[*common, _kv("openinference.span.kind", "LLM"), _kv("llm.model_name", model),
                               _kv("llm.provider", "openai"),
                               _kv("llm.input_messages.0.message.role", "user"),
                               _kv("llm.input_messages.0.message.content", question),
                               _kv("llm.output_messages.0.message.role", "assistant"),
                               _kv("llm.output_messages.0.message.content", answer),
                               _kv("llm.token_count.prompt", rng.randrange(50, 900)),
                               _kv("llm.token_count.completion", rng.randrange(20, 400)),
                               _kv("llm.token_count.total", 1000)])
        spans += [root, llm]
        if rng.randrange(64) == 0:
            spans.append(Span(trace_id=rng.randbytes(16), span_id=rng.randbytes(8), name="chat.feedback",
                              start_time_unix_nano=t0 + 2 * 10**9, end_time_unix_nano=t0 + 2 * 10**9,
                              attributes=[_kv("chat.turn.id", trace_id.hex()),
                                          _kv("chat.feedback.rating", rng.choice(("up", "down")))]))
    del spans[batch_size:]
    resource = [_kv("service.name", "bench-bot"), _kv("service.version", "1.0")]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource={"attributes": resource}, scope_spans=[ScopeSpans(spans=spans)])])
    return request.SerializeToString()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"otel-chatbot serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("processor did not become ready")


def send_all(port: int, bodies: list[bytes], connections: int) -> tuple[float, int]:
    """POST every body until 200 (429/503 retried after a short pause); returns (seconds, retries)."""
    cursor = iter(range(len(bodies)))
    lock = threading.Lock()
    retries = [0]
    errors: list[str] = []

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                index = next(cursor, None)
            if index is None:
                break
            while True:
                conn.request("POST", "/v1/traces", bodies[index], {"Content-Type": "application/x-protobuf"})
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    break
                if resp.status in (429, 503):
                    with lock:
                        retries[0] += 1
                    time.sleep(0.02)
                    continue
                errors.append(f"HTTP {resp.status}")
                return
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise SystemExit(f"requests failed: {errors[:3]}")
    return elapsed, retries[0]


@dataclass
class Run:
    layout: str
    workers: int
    elapsed: float
    retries: int
    stored: int
    peak_rss: int
    processor_cpu: float
    postgres_cpu: float | None
    per_process: list[float]  # CPU seconds of each processor process, largest first (the balance)
    span_bytes: int = 0  # growth of the layout's span tables
    all_bytes: int = 0  # growth of every table a write touches
    fetch_ms: tuple[float, float] = (0.0, 0.0)  # median, p95
    turn_ms: tuple[float, float] = (0.0, 0.0)  # median, p95


def run_once(url: str, tmp: str, bodies: list[bytes], args: argparse.Namespace, layout: str, workers: int,
             warmup: bytes) -> Run:
    """Serve with ``workers`` processes and ``layout``, send every body, measure; stopped after."""
    port = _free_port()
    cmd = [sys.executable, "-m", "otel_chatbot.cli", "serve", "--database-url", url,
           "--otlp-http", f"127.0.0.1:{port}", "--otlp-grpc", "127.0.0.1:0",
           "--metrics", "127.0.0.1:0", "--workers", str(workers), "--span-storage", layout,
           "--log-level", "warning", *args.serve_arg]
    proc = subprocess.Popen(cmd, env={**os.environ, "OTEL_CHATBOT_DATA_DIR": str(Path(tmp) / "data")})
    peak_rss = 0
    stop = threading.Event()

    def watch_rss() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            try:
                peak_rss = max(peak_rss, rss(proc.pid))
            except psutil.Error:
                return
            time.sleep(0.05)

    try:
        _wait_ready(port, proc)
        watcher = threading.Thread(target=watch_rss, daemon=True)
        watcher.start()
        # warm-up: one request per connection, not counted
        send_all(port, [warmup] * args.connections, args.connections)
        with psycopg.connect(url) as conn:
            before, sizes_before = stored_spans(conn), table_bytes(conn)
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "250",
                                         "--output", f"{args.profile}.{layout}.{workers}",
                                         "--pid", str(proc.pid), "--subprocesses"])
            time.sleep(1.0)  # let py-spy attach
        cpu_before = cpu_seconds(proc.pid), postgres_cpu_seconds(Path(tmp) / "pg")
        elapsed, retries = send_all(port, bodies, args.connections)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiler.wait(timeout=60)
        cpu_after = cpu_seconds(proc.pid), postgres_cpu_seconds(Path(tmp) / "pg")
        stop.set()
        watcher.join()
        with psycopg.connect(url) as conn:
            stored, sizes_after = stored_spans(conn) - before, table_bytes(conn)
        turn_ms = turn_latency_ms(url, port)  # on the idle server, after the load
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    pg_cpu = None
    if cpu_before[1] is not None and cpu_after[1] is not None:
        pg_cpu = cpu_after[1] - cpu_before[1]
    per_process = sorted((cpu - cpu_before[0].get(pid, 0.0) for pid, cpu in cpu_after[0].items()),
                         reverse=True)
    grown = {t: sizes_after[t] - sizes_before[t] for t in sizes_after}
    fetch = fetch_times_ms(url, layout, trace_ids_of(bodies[len(bodies) // 2]))
    return Run(layout, workers, elapsed, retries, stored, peak_rss, sum(per_process), pg_cpu, per_process,
               sum(grown[t] for t in SPAN_TABLES[layout]), sum(grown.values()), fetch, turn_ms)


def _counts(text: str, what: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--{what}: expected numbers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--{what}: expected numbers >= 1 like 1,2, got {text!r}")
    return counts


def _layouts(text: str) -> list[str]:
    layouts = [part.strip() for part in text.split(",") if part.strip()]
    if not layouts or any(layout not in SPAN_TABLES for layout in layouts):
        raise SystemExit(f"--layouts: expected rows and/or blocks, e.g. rows,blocks, got {text!r}")
    return layouts


def report(runs: list[Run], ceiling: float, ceiling_rows: int, total: int, batch_size: int) -> None:
    print(f"load average : {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min) after the runs; "
          f"{os.cpu_count()} CPUs")
    print(f"COPY ceiling : {ceiling:,.0f} rows/s ({ceiling_rows} pre-encoded span rows, binary COPY into a "
          f"plain logged table, {batch_size}-row commits)")
    rows_first = {r.workers: r for r in runs if r.layout == "rows"}
    head = (f"{'layout':<7}{'workers':>8}{'spans/s':>10}{'x ceil':>8}{'x rows':>8}{'proc us':>9}{'pg us':>8}"
            f"{'B/span':>8}{'B/span all':>11}{'fetch ms':>13}{'RSS MiB':>9}{'turn ms':>13}")
    print(head)
    print("-" * len(head))
    for r in runs:
        rate = total / r.elapsed
        base = rows_first.get(r.workers)
        vs_rows = f"{rate / (total / base.elapsed):.2f}" if base is not None else "-"
        pg = f"{r.postgres_cpu / total * 1e6:.1f}" if r.postgres_cpu is not None else "n/a"
        print(f"{r.layout:<7}{r.workers:>8}{rate:>10,.0f}{rate / ceiling:>8.2f}{vs_rows:>8}"
              f"{r.processor_cpu / total * 1e6:>9.1f}{pg:>8}{r.span_bytes / total:>8.0f}"
              f"{r.all_bytes / total:>11.0f}{f'{r.fetch_ms[0]:.2f}/{r.fetch_ms[1]:.2f}':>13}"
              f"{r.peak_rss / 2**20:>9.0f}{f'{r.turn_ms[0]:.1f}/{r.turn_ms[1]:.1f}':>13}")
    print("x ceil: of the COPY ceiling; x rows: of the rows layout with as many workers; proc/pg us: CPU "
          "microseconds per span of the processor processes / of Postgres; B/span: bytes on disk per span "
          "of the layout's span tables / of every table written; fetch ms: one whole trace with the "
          "layout's reader, median/p95; turn ms: a turn's last span ended in the app → the turn in "
          "chat_turns, median/p95 (idle server)")
    for r in runs:
        if len(r.per_process) > 1:
            print(f"{r.layout} workers={r.workers}: CPU by process "
                  f"{', '.join(f'{c:.2f} s' for c in r.per_process)}; {r.retries} retried requests")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help="number of OTLP requests (default 200)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--workers", default="1,2", metavar="N[,N...]",
                        help="serve --workers of the runs, e.g. 1,2 (default 1,2)")
    parser.add_argument("--layouts", default="rows,blocks", metavar="L[,L...]",
                        help="span layouts of the runs, alternating within each worker count (default "
                             "rows,blocks)")
    parser.add_argument("--database-url", help="use this Postgres instead of an embedded one")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the processor with py-spy (pip install py-spy) while the requests run "
                             "and write collapsed stacks to FILE.<layout>.<workers>")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for `serve`")
    args = parser.parse_args()
    layouts = _layouts(args.layouts)
    plan = [(layout, workers) for workers in _counts(args.workers, "workers") for layout in layouts]

    now = time.time_ns()
    total = args.batches * args.batch_size
    warmup = build_request(random.Random(1), args.batch_size, now)
    runs: list[Run] = []
    ceiling_payloads: list[bytes] = []
    ceiling_rows = 0
    with postgres(args.database_url) as server:
        url, tmp = server.admin_url, str(server.scratch)
        for run, (layout, workers) in enumerate(plan):
            rng = random.Random(7 + run)  # new trace ids each run: every span is new
            print(f"building {args.batches} requests of {args.batch_size} spans ...", flush=True)
            bodies = [build_request(rng, args.batch_size, now) for _ in range(args.batches)]
            if not ceiling_payloads:  # the ceiling's rows, encoded before any clock starts
                for body in bodies:
                    payload, rows = request_copy_rows(body)
                    ceiling_payloads.append(payload)
                    ceiling_rows += rows
            print(f"  {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB per request; "
                  f"serve --span-storage {layout} --workers {workers}", flush=True)
            runs.append(run_once(url, tmp, bodies, args, layout, workers, warmup))
            del bodies
        with psycopg.connect(url) as conn:
            ceiling_s = copy_ceiling_rows(conn, ceiling_payloads)

    report(runs, ceiling_rows / ceiling_s, ceiling_rows, total, args.batch_size)
    failed = False
    for r in runs:
        if r.stored != total:
            print(f"ERROR: {r.layout} workers={r.workers}: expected {total} new spans, found {r.stored}",
                  file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
