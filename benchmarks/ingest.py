"""End-to-end ingest throughput: OTLP/HTTP protobuf → committed rows, against the raw COPY ceiling.

Starts an embedded Postgres and ``otel-chatbot serve`` (a separate process, so its peak RSS can be
read), sends pre-encoded batches of LLM-like spans (OpenInference attributes, ~300-byte messages,
a turn per trace, token sums, a few feedback spans) from several keep-alive connections, and counts
spans/s from the first request to the last 200 (200 means committed). Then, on the same server and
the same rows, measures the raw COPY ceiling: the stored rows, pre-built as COPY text, copied into a
plain table (no partitions, no keys) in commits of the same size. Prints both and the ratio.

With ``--workers 1,2`` the processor runs once per worker count (``serve --workers N``, fresh spans each
time, one Postgres) and the figures of every run are printed side by side: spans/s, CPU per span of
the processor processes (supervisor and workers) and of Postgres, the peak RSS of all of them together.

    python benchmarks/ingest.py [--batches 200] [--batch-size 512] [--connections 4] [--workers 1,2]
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
from ceiling import copy_chunks, stored_span_chunks
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


def _tree(pid: int) -> list[psutil.Process]:
    """The serve process and its worker processes (serve --workers N)."""
    parent = psutil.Process(pid)
    return [parent, *parent.children(recursive=True)]


def _cpu_seconds(pid: int) -> dict[int, float]:
    """CPU time of each processor process: the serve process and its live workers."""
    out: dict[int, float] = {}
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        out[process.pid] = times.user + times.system
    return out


def _rss(pid: int) -> int:
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.Error:
            continue
    return total


def _postgres_cpu_seconds(data_dir: Path) -> float | None:
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


def copy_ceiling(url: str, batch_size: int) -> tuple[float, int]:
    """COPY the stored span rows, pre-built as COPY text, into a plain table in commits of batch_size rows."""
    with psycopg.connect(url) as conn:
        chunks = stored_span_chunks(conn, batch_size)
        rows = sum(chunk.count(b"\n") for chunk in chunks)
        elapsed = copy_chunks(conn, chunks)
        conn.execute("DROP TABLE ceiling_spans")
        conn.commit()
    return elapsed, rows


@dataclass
class Run:
    workers: int
    elapsed: float
    retries: int
    stored: int
    peak_rss: int
    processor_cpu: float
    postgres_cpu: float | None
    per_process: list[float]  # CPU seconds of each processor process, largest first (the balance)


def run_once(url: str, tmp: str, bodies: list[bytes], args: argparse.Namespace, workers: int,
             warmup: bytes) -> Run:
    """Serve with ``workers`` processes, send every body, measure; the serve process is stopped after."""
    port = _free_port()
    cmd = [sys.executable, "-m", "otel_chatbot.cli", "serve", "--database-url", url,
           "--otlp-http", f"127.0.0.1:{port}", "--otlp-grpc", "127.0.0.1:0",
           "--metrics", "127.0.0.1:0", "--workers", str(workers), *args.serve_arg]
    proc = subprocess.Popen(cmd, env={**os.environ, "OTEL_CHATBOT_DATA_DIR": str(Path(tmp) / "data")})
    peak_rss = 0
    stop = threading.Event()

    def watch_rss() -> None:
        nonlocal peak_rss
        while not stop.is_set():
            try:
                peak_rss = max(peak_rss, _rss(proc.pid))
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
            before = conn.execute("SELECT count(*) FROM spans").fetchone()
        profiler = None
        if args.profile:
            profiler = subprocess.Popen(["py-spy", "record", "--format", "raw", "--rate", "250",
                                         "--output", args.profile, "--pid", str(proc.pid), "--subprocesses"])
            time.sleep(1.0)  # let py-spy attach
        cpu_before = _cpu_seconds(proc.pid), _postgres_cpu_seconds(Path(tmp) / "pg")
        elapsed, retries = send_all(port, bodies, args.connections)
        if profiler is not None:
            profiler.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            profiler.wait(timeout=60)
        cpu_after = _cpu_seconds(proc.pid), _postgres_cpu_seconds(Path(tmp) / "pg")
        stop.set()
        watcher.join()
        with psycopg.connect(url) as conn:
            after = conn.execute("SELECT count(*) FROM spans").fetchone()
        stored = (after[0] if after else 0) - (before[0] if before else 0)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    pg_cpu = None
    if cpu_before[1] is not None and cpu_after[1] is not None:
        pg_cpu = cpu_after[1] - cpu_before[1]
    per_process = sorted((cpu - cpu_before[0].get(pid, 0.0) for pid, cpu in cpu_after[0].items()),
                         reverse=True)
    return Run(workers, elapsed, retries, stored, peak_rss, sum(per_process), pg_cpu, per_process)


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--workers: expected numbers like 1,2, got {text!r}") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--workers: expected numbers >= 1 like 1,2, got {text!r}")
    return counts


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help="number of OTLP requests (default 200)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent keep-alive connections")
    parser.add_argument("--workers", default="1", metavar="N[,N...]",
                        help="serve --workers for each run, e.g. 1,2 (default 1)")
    parser.add_argument("--database-url", help="use this Postgres instead of an embedded one")
    parser.add_argument("--profile", metavar="FILE",
                        help="sample the processor with py-spy (pip install py-spy) while the requests run "
                             "and write collapsed stacks to FILE")
    parser.add_argument("--serve-arg", action="append", default=[], help="extra argument for `serve`")
    args = parser.parse_args()
    counts = _worker_counts(args.workers)

    now = time.time_ns()
    total = args.batches * args.batch_size
    warmup = build_request(random.Random(1), args.batch_size, now)
    runs: list[Run] = []
    with postgres(args.database_url) as server:
        url, tmp = server.admin_url, str(server.scratch)
        for run, workers in enumerate(counts):
            rng = random.Random(7 + run)  # new trace ids each run: every span is new
            print(f"building {args.batches} requests of {args.batch_size} spans ...", flush=True)
            bodies = [build_request(rng, args.batch_size, now) for _ in range(args.batches)]
            print(f"  {sum(map(len, bodies)) / len(bodies) / 1024:.0f} KiB per request; "
                  f"serve --workers {workers}", flush=True)
            runs.append(run_once(url, tmp, bodies, args, workers, warmup))
            del bodies
        with psycopg.connect(url) as conn:
            turns = conn.execute("SELECT count(*), sum(input_tokens) FROM chat_turns").fetchone()
        ceiling_s, ceiling_rows = copy_ceiling(url, args.batch_size)

    ceiling = ceiling_rows / ceiling_s
    print(f"load average : {' '.join(f'{v:.2f}' for v in os.getloadavg())} (1, 5, 15 min) after the runs")
    print(f"COPY ceiling : {ceiling_rows} rows in {ceiling_s:.2f} s = {ceiling:,.0f} rows/s "
          f"(plain table, {args.batch_size}-row commits)")
    if turns:
        print(f"stored       : {turns[0]} turns, {turns[1]} input tokens summed (all runs)")
    failed = False
    first = total / runs[0].elapsed
    for r in runs:
        e2e = total / r.elapsed
        print(f"workers={r.workers:<2}   : {total} spans in {r.elapsed:.2f} s = {e2e:,.0f} spans/s durable "
              f"({e2e / ceiling:.2f} of the COPY ceiling, x{e2e / first:.2f} of workers={runs[0].workers}; "
              f"{r.stored} new rows, {r.retries} retried requests)")
        print(f"               peak RSS {r.peak_rss / 2**20:.0f} MiB (all processor processes); CPU "
              f"processor {r.processor_cpu:.2f} s = {r.processor_cpu / total * 1e6:.1f} us/span", end="")
        if r.postgres_cpu is not None:
            print(f", Postgres {r.postgres_cpu:.2f} s = {r.postgres_cpu / total * 1e6:.1f} us/span")
        else:
            print(" (Postgres CPU not measurable: external server)")
        if len(r.per_process) > 1:
            print(f"               CPU by process: {', '.join(f'{c:.2f} s' for c in r.per_process)}")
        if r.stored != total:
            print(f"ERROR: workers={r.workers}: expected {total} new rows, found {r.stored}", file=sys.stderr)
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
