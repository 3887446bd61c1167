"""Bytes on disk per stored span and per chat turn, in either span layout: what sizing Postgres (and
retention) rests on.

Starts an embedded Postgres and ``otel-chatbot serve``, sends the ingest benchmark's traffic (a CHAIN
turn span and an LLM child per trace, ~300-byte messages, OpenInference attributes, 1 in 64 with
feedback), waits until every turn is settled (counted: its row rewritten once), then measures every
table the processor writes with pg_total_relation_size (heap, TOAST and indexes, summed over daily
partitions) after VACUUM, and divides by its rows. Prints bytes per span, per turn and per trace, and
what a day of traffic takes at a few turn rates.

    python benchmarks/storage.py [--batches 100] [--batch-size 512] [--span-storage blocks|rows]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time

import psycopg
from ingest import _free_port, _wait_ready, build_request, send_all
from support import postgres

# The span tables of each layout (--span-storage), then the others.
SPAN_TABLES = {"rows": ("spans",), "blocks": ("span_blocks", "span_traces", "llm_calls", "error_spans")}
OTHER_TABLES = ("chat_turns", "turn_parts", "sessions", "feedback")
# What a dashboard panel over a time range does: aggregate every turn in it (no index helps).
PANEL_QUERY = """
SELECT date_trunc('hour', started_at) AS hour, count(*), avg(latency_seconds),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds), sum(input_tokens + output_tokens),
       avg(fallback::int)
FROM chat_turns GROUP BY 1 ORDER BY 1"""


def table_bytes(conn: psycopg.Connection[tuple[object, ...]], table: str) -> tuple[int, int]:
    """(bytes with indexes and TOAST over every partition, rows) of ``table``."""
    size = conn.execute(
        # A plain table has no partition tree (the sum is NULL): then its own size.
        "SELECT coalesce(sum(pg_total_relation_size(relid)), pg_total_relation_size(%s::regclass))"
        " FROM pg_partition_tree(%s::regclass)", (table, table)).fetchone()
    rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert size is not None and rows is not None
    return int(str(size[0])), int(str(rows[0]))


def _wait_settled(url: str, timeout_s: float = 120.0) -> None:
    """Until serve's writers have settled every turn (turn_settle_seconds after its last change)."""
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM chat_turns WHERE settle_at IS NOT NULL").fetchone()
            if row == (0,):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"{row} turns still unsettled after {timeout_s:.0f} s")
            time.sleep(0.5)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=100, help="number of OTLP requests (default 100)")
    parser.add_argument("--batch-size", type=int, default=512, help="spans per request (default 512)")
    parser.add_argument("--span-storage", choices=tuple(SPAN_TABLES), default="blocks",
                        help="span layout of serve (default blocks)")
    args = parser.parse_args()
    tables = (*SPAN_TABLES[args.span_storage], *OTHER_TABLES)

    rng = random.Random(11)
    now = time.time_ns()
    bodies = [build_request(rng, args.batch_size, now) for _ in range(args.batches)]
    wire = sum(map(len, bodies)) / (args.batches * args.batch_size)

    with postgres(prefix="otel-chatbot-storage-") as server:
        url, tmp = server.admin_url, server.scratch
        port = _free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "otel_chatbot.cli", "serve", "--database-url", url,
             "--otlp-http", f"127.0.0.1:{port}", "--otlp-grpc", "127.0.0.1:0",
             "--metrics", "127.0.0.1:0", "--span-storage", args.span_storage],
            env={**os.environ, "OTEL_CHATBOT_DATA_DIR": str(tmp / "data")})
        try:
            _wait_ready(port, proc)
            send_all(port, bodies, 4)
            _wait_settled(url)  # the rows as they stay: counted, each rewritten once by its settle
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE")
            sizes = {t: table_bytes(conn, t) for t in tables}
            stored = conn.execute("SELECT count(*) FROM stored_span_ids").fetchone()
            conn.execute(PANEL_QUERY)  # warm the cache: dashboards read hot pages
            runs = []
            for _ in range(5):
                t0 = time.perf_counter()
                conn.execute(PANEL_QUERY).fetchall()
                runs.append(time.perf_counter() - t0)
            panel_s = sorted(runs)[len(runs) // 2]

    spans = int(str(stored[0])) if stored else 0
    spans_bytes = sum(sizes[t][0] for t in SPAN_TABLES[args.span_storage])
    turns_bytes, turns = sizes["chat_turns"]
    print(f"traffic      : {spans} spans, {turns} turns ({spans / turns:.2f} spans per turn), "
          f"{wire:.0f} bytes per span on the wire (OTLP protobuf, uncompressed)")
    for table, (size, rows) in sizes.items():
        per_row = f"{size / rows:,.0f} bytes/row" if rows else "empty"
        print(f"{table:<13}: {size / 2**20:8.1f} MiB  {rows:>7} rows  {per_row}")
    per_turn = sum(size for size, _ in sizes.values()) / turns
    print(f"per span     : {spans_bytes / spans:,.0f} bytes ({args.span_storage} layout: "
          f"{', '.join(SPAN_TABLES[args.span_storage])} with their indexes)")
    print(f"per turn     : {turns_bytes / turns:,.0f} bytes (chat_turns row with its indexes)")
    print(f"per trace    : {per_turn:,.0f} bytes in all tables ({spans / turns:.2f} spans + a turn + usage, "
          f"sessions, feedback)")
    turns_per_s = turns / panel_s
    print(f"panel query  : {panel_s * 1000:.0f} ms over {turns} turns (median of 5) = "
          f"{turns_per_s:,.0f} turns/s aggregated by one backend")
    for rate in (1, 10, 100):
        day = rate * 86400
        print(f"at {rate:>3} turns/s: {per_turn * day / 2**30:,.1f} GiB per day, "
              f"{per_turn * day * 30 / 2**30:,.0f} GiB for 30 days of retention; a 24-hour panel "
              f"aggregates {day:,} turns in ~{day / turns_per_s:,.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
