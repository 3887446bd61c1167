"""BatchWriter.write() throughput against the raw COPY ceiling, same rows, same server, same run.

Pre-builds batches of processor records (what normalise produces for OTLP batches of CHAIN+LLM span
pairs with ~1 KB of attributes: one auto turn per trace, session ids from a pool, 1 trace in 64 rated),
writes them through ``BatchWriter.write()`` into a freshly migrated database and counts spans/s.
Then COPYs the stored span rows, pre-built as COPY text, into a plain table (no partitions, no keys)
in commits of the same size: the ceiling. Prints both and the ratio.

    python benchmarks/write.py [--batches 200] [--batch-size 512] [--profile] [--explain]
                               [--settle SECONDS] [--no-versions] [--database-url URL]

--settle is the writers' turn_settle_seconds (default 10, as `serve`): with it above 0 the timed run
ends with each writer's settle() of every turn (what the writer threads do once a second), so the
figure includes counting the turns; 0 counts them inside each write.

--profile prints the top cProfile entries of the writes (Python side); --explain prints
EXPLAIN (ANALYZE, BUFFERS) of the merge statements on one extra batch (PG side).
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import math
import os
import pstats
import random
import statistics
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import psycopg
from ceiling import copy_chunks, stored_span_chunks
from support import drop_database, fresh_database, postgres

from otel_chatbot.records import FeedbackRow, NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store.writer import BatchWriter

MODELS = ("gpt-4o-mini", "gpt-4o", "claude-3-5-haiku")
PRICES = {"gpt-4o-mini": (0.15e-6, 0.6e-6), "gpt-4o": (2.5e-6, 10e-6), "claude-3-5-haiku": (0.8e-6, 4e-6)}


def _text(rng: random.Random, size: int) -> str:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(size // 5)]
    return " ".join(words)[:size]


def build_batch(rng: random.Random, batch_size: int, start_ns: int, versions: bool = True) -> NormalisedBatch:
    """Traces of a CHAIN root (the auto turn) and an LLM child, as normalise would emit them (with
    ``versions``, the turns carry the resource's service.version as their app version)."""
    batch = NormalisedBatch()
    resource = orjson.dumps({"service.name": "bench-bot", "service.version": "1.0"}).decode()
    while len(batch.spans) < batch_size:
        trace = rng.randbytes(16).hex()
        root_id, llm_id = rng.randbytes(8).hex(), rng.randbytes(8).hex()
        session, user = f"session-{rng.randrange(5000)}", f"user-{rng.randrange(2000)}"
        question, answer = _text(rng, 300), _text(rng, 300)
        t0 = start_ns + rng.randrange(10**9)
        model = rng.choice(MODELS)
        tokens_in, tokens_out = rng.randrange(50, 900), rng.randrange(20, 400)
        price_in, price_out = PRICES[model]
        common = {"session.id": session, "user.id": user}
        root_attrs = {**common, "openinference.span.kind": "CHAIN", "input.value": question,
                      "output.value": answer, "chat.source": "website"}
        llm_attrs = {**common, "openinference.span.kind": "LLM", "llm.model_name": model,
                     "llm.provider": "openai", "llm.input_messages.0.message.role": "user",
                     "llm.input_messages.0.message.content": question,
                     "llm.output_messages.0.message.role": "assistant",
                     "llm.output_messages.0.message.content": answer,
                     "llm.token_count.prompt": tokens_in, "llm.token_count.completion": tokens_out}
        batch.spans.append(SpanRow(
            trace_id=trace, span_id=root_id, parent_span_id=None, name="RunnableSequence", kind=1,
            start_ns=t0, end_ns=t0 + 900_000_000, status_code=0, status_message="", service="bench-bot",
            attributes_json=orjson.dumps(root_attrs).decode(), resource_json=resource, events_json="[]"))
        batch.spans.append(SpanRow(
            trace_id=trace, span_id=llm_id, parent_span_id=root_id, name="ChatOpenAI", kind=3,
            start_ns=t0 + 1_000_000, end_ns=t0 + 850_000_000, status_code=0, status_message="",
            service="bench-bot", attributes_json=orjson.dumps(llm_attrs).decode(), resource_json=resource,
            events_json="[]", model=model, provider="openai", input_tokens=tokens_in,
            output_tokens=tokens_out, cost_usd=tokens_in * price_in + tokens_out * price_out,
            operation="chat"))
        batch.turns.append(TurnRow(
            turn_id=trace, trace_id=trace, span_id=root_id, auto=True, session_id=session, user_id=user,
            source="website", service="bench-bot", start_ns=t0, latency_s=0.9, user_message=question,
            bot_response=answer, model=None, app_version="1.0" if versions else None))
        if rng.randrange(64) == 0:
            batch.feedback.append(FeedbackRow(turn_id=trace, rating=rng.choice(("up", "down")),
                                              comment=None, origin="span", time_ns=t0 + 2 * 10**9,
                                              service="bench-bot"))
    del batch.spans[batch_size:]
    return batch


@dataclass
class Run:
    """One measured run: wall seconds, and CPU seconds of this process and of the Postgres backends
    that served it (from /proc; NaN when the server is elsewhere). CPU is the load-independent cost:
    the machine is shared, wall time is not."""

    seconds: float
    client_cpu: float
    server_cpu: float
    rows: int


def _backend_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    return total


def copy_ceiling(url: str, batch_size: int) -> Run:
    """COPY the stored span rows, pre-built as COPY text, into a plain table (no keys, no partitions)
    in commits of batch_size rows."""
    with psycopg.connect(url) as conn:
        chunks = stored_span_chunks(conn, batch_size)
        pids = [conn.info.backend_pid]
        server_cpu, client_cpu = _backend_cpu(pids), time.process_time()
        elapsed = copy_chunks(conn, chunks)
        copied = sum(chunk.count(b"\n") for chunk in chunks)
        run = Run(elapsed, time.process_time() - client_cpu, _backend_cpu(pids) - server_cpu, copied)
        conn.execute("DROP TABLE ceiling_spans")
        conn.commit()
    return run


def write_all(url: str, batches: list[NormalisedBatch], profile: bool = False,
              writers: int = 1, settle: float = 10.0) -> tuple[Run, int, int]:
    """Write every batch through ``writers`` BatchWriters (one thread each, batches dealt round-robin),
    then settle every turn; returns (the run, new spans, turns counted)."""
    pool = [BatchWriter(url, settle_seconds=settle) for _ in range(writers)]
    for w in pool:
        w.start()
    counts = [[0, 0] for _ in pool]
    profiler = cProfile.Profile() if profile and writers == 1 else None

    def write_share(index: int) -> None:
        for batch in batches[index::writers]:
            result = pool[index].write(batch)
            counts[index][0] += len(result.new_spans)
            counts[index][1] += len(result.new_turns)
        if settle > 0:  # every turn final: what the writer threads' periodic settle does over time
            counts[index][1] += len(pool[index].settle(until_ns=time.time_ns() + 10**15).new_turns)

    pids = [w._conn.info.backend_pid for w in pool if w._conn is not None]
    server_cpu, client_cpu = _backend_cpu(pids), time.process_time()
    try:
        started = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        if writers == 1:
            write_share(0)  # in this thread: the profiler sees it
        else:
            threads = [threading.Thread(target=write_share, args=(i,)) for i in range(writers)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        if profiler is not None:
            profiler.disable()
        elapsed = time.perf_counter() - started
        run = Run(elapsed, time.process_time() - client_cpu, _backend_cpu(pids) - server_cpu,
                  sum(len(b.spans) for b in batches))
    finally:
        for w in pool:
            w.shutdown()
    if profiler is not None:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(18)
    return run, sum(c[0] for c in counts), sum(c[1] for c in counts)


def explain(url: str, batch: NormalisedBatch) -> None:
    """EXPLAIN (ANALYZE, BUFFERS) of every statement one write() runs (auto_explain, in this session)."""
    writer = BatchWriter(url)
    writer.start()
    conn: Any = writer._conn
    conn.execute("LOAD 'auto_explain'")
    for setting in ("auto_explain.log_min_duration = 0", "auto_explain.log_analyze = on",
                    "auto_explain.log_buffers = on", "auto_explain.log_nested_statements = on",
                    "client_min_messages = log", "auto_explain.log_level = log"):
        conn.execute(f"SET {setting}")
    conn.commit()
    def show(diag: Any) -> None:  # the plans, without the (long) parameter values
        lines = str(diag.message_primary or "").splitlines()
        print("\n".join(line for line in lines if not line.startswith("Query Parameters")), "\n")

    conn.add_notice_handler(show)
    try:
        writer.write(batch)
    finally:
        writer.shutdown()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=200, help="number of batches (default 200)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per batch (default 512)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="writer run + ceiling run pairs, each on a fresh database (default 3)")
    parser.add_argument("--writers", type=int, default=1, help="concurrent BatchWriters (default 1)")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="writers' turn_settle_seconds (default 10; 0: turns counted inside each write)")
    parser.add_argument("--database-url", help="admin URL of a Postgres to use instead of an embedded one")
    parser.add_argument("--profile", action="store_true", help="cProfile the writes (one writer)")
    parser.add_argument("--explain", action="store_true", help="EXPLAIN ANALYZE one extra batch's statements")
    parser.add_argument("--no-versions", action="store_true",
                        help="turns without an app version: its cost by difference")
    args = parser.parse_args()
    if args.batches < 1 or args.batch_size < 2 or args.rounds < 1 or args.writers < 1:
        parser.error("--batches, --rounds and --writers must be >= 1 and --batch-size >= 2")

    rng = random.Random(7)
    now = time.time_ns()
    batches = [build_batch(rng, args.batch_size, now, not args.no_versions) for _ in range(args.batches + 1)]
    warmup = batches.pop()
    gc.freeze()  # the pre-built rows are not garbage: keep the collector from rescanning them (CPU figures)
    total = sum(len(b.spans) for b in batches)
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    failed = False
    with postgres(args.database_url) as server:
        admin_url = server.admin_url
        for round_no in range(1, args.rounds + 1):
            name, url = fresh_database(admin_url)
            try:
                write_all(url, [warmup], settle=args.settle)  # partitions, caches, plans: not counted
                run, new_spans, new_turns = write_all(url, batches, args.profile, args.writers,
                                                      args.settle)
                if args.explain and round_no == 1:
                    explain(url, build_batch(rng, args.batch_size, now))
                ceiling = copy_ceiling(url, args.batch_size)
            finally:
                drop_database(admin_url, name)
            rate, ceiling_rate = total / run.seconds, ceiling.rows / ceiling.seconds
            ratios.append(rate / ceiling_rate)
            us = [1e6 * (r.client_cpu + r.server_cpu) / r.rows for r in (run, ceiling)]
            cpu_ratios.append(us[1] / us[0])
            py_us, pg_us = 1e6 * run.client_cpu / run.rows, 1e6 * run.server_cpu / run.rows
            print(f"round {round_no}: BatchWriter x{args.writers}: {total} spans in {run.seconds:.2f} s "
                  f"= {rate:,.0f} spans/s ({run.seconds / len(batches) * 1e3:.1f} ms/batch; "
                  f"{new_spans} new spans, {new_turns} new turns); CPU {us[0]:.1f} µs/span "
                  f"({py_us:.1f} Python + {pg_us:.1f} Postgres)", flush=True)
            print(f"         COPY ceiling: {ceiling.rows} rows in {ceiling.seconds:.2f} s = "
                  f"{ceiling_rate:,.0f} rows/s; CPU {us[1]:.1f} µs/row | ratio {rate / ceiling_rate:.2f} "
                  f"(wall), {us[1] / us[0]:.2f} (CPU)", flush=True)
            if new_spans != total:
                print(f"ERROR: expected {total} new spans, got {new_spans}")
                failed = True
    print(f"ratio        : {statistics.median(ratios):.2f} of the raw COPY ceiling by wall time, "
          f"{statistics.median(cpu_ratios):.2f} by CPU per row (medians of {len(ratios)} rounds)")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
