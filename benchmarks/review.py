"""Review page response times as the stored data grows: the same pages at N and 10 N turns.

Seeds a freshly migrated database with N turns of the last 7 days (sessions of 5 turns, one LLM span
each; 2% thumbs down, 3% judged with one score in 10 below 5, 1% hallucinated, 4% fallback), starts
the processor on it and times each page over HTTP (median of --repeat requests); then adds 9 N more
turns and times again. Prints milliseconds at both sizes and the ratio: a page whose time grows
with the window's size shows a ratio near 10, one that reads a bounded number of rows stays near 1.

    python benchmarks/review.py [--turns 20000] [--repeat 7] [--database-url ADMIN_URL]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid

import httpx
import psycopg
from support import drop_database, fresh_database, postgres

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.config import load_config
from otel_chatbot.records import FeedbackRow, NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store.writer import BatchWriter

WEEK_NS = 7 * 86_400 * 10**9
SESSION_TURNS = 5
BATCH_TURNS = 2_000
PAGES = ("/ui/", "/ui/turns", "/ui/turns?flag=fallback", "/ui/turns?service=help-bot&rating=down",
         "/ui/turns?problems=1")


def _batch(rng: random.Random, turns: int, now_ns: int) -> tuple[NormalisedBatch, list[tuple[object, ...]]]:
    """``turns`` turns in sessions of SESSION_TURNS, their LLM spans, feedback and judge rows."""
    batch, judged = NormalisedBatch(), []
    session, start = "", 0
    for i in range(turns):
        if i % SESSION_TURNS == 0:
            session, start = uuid.uuid4().hex, now_ns - rng.randrange(WEEK_NS - 3600 * 10**9)
        trace, root, turn_id = os.urandom(16).hex(), os.urandom(8).hex(), uuid.uuid4().hex
        t0 = start + (i % SESSION_TURNS) * 30 * 10**9
        roll = rng.random()
        batch.turns.append(TurnRow(
            turn_id=turn_id, trace_id=trace, span_id=root, auto=False, session_id=session,
            user_id=f"user-{rng.randrange(5000)}", source=rng.choice(("website", "whatsapp", "slack")),
            service=rng.choice(("shop-bot", "help-bot")), start_ns=t0, latency_s=0.8,
            user_message="where is my order " + str(rng.randrange(10**6)), bot_response="it ships tomorrow",
            model="gpt-4o-mini", hallucinated=roll < 0.01, fallback=0.01 <= roll < 0.05))
        batch.spans.append(SpanRow(
            trace_id=trace, span_id=os.urandom(8).hex(), parent_span_id=root, name="ChatOpenAI", kind=1,
            start_ns=t0 + 10**6, end_ns=t0 + 7 * 10**8, status_code=0, status_message="", service="shop-bot",
            attributes_json="{}", resource_json="{}", events_json="[]", model="gpt-4o-mini",
            provider="openai", input_tokens=120, output_tokens=40, cost_usd=0.0001, operation="chat"))
        if rng.random() < 0.02:
            batch.feedback.append(FeedbackRow(turn_id, "down", "wrong", "api", t0 + 10**9, "shop-bot"))
        if rng.random() < 0.03:
            low = rng.random() < 0.1
            judged.append((turn_id, 3.0 if low else 8.0, 8.0, 8.0, 8.0))
    return batch, judged


def seed(url: str, turns: int, rng: random.Random, now_ns: int) -> None:
    writer = BatchWriter(url)
    writer.start()
    try:
        for done in range(0, turns, BATCH_TURNS):
            batch, judged = _batch(rng, min(BATCH_TURNS, turns - done), now_ns)
            writer.write(batch)
            with psycopg.connect(url) as conn:
                conn.cursor().executemany(
                    "INSERT INTO evaluations (turn_id, evaluator, judge_version, accuracy, relevance, "
                    "clarity, groundedness) VALUES (%s, 'judge', 'v1', %s, %s, %s, %s)", judged)
    finally:
        writer.shutdown()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE")


def time_pages(base: str, pages: list[str], repeat: int) -> dict[str, float]:
    """Median milliseconds per page (one unmeasured request first)."""
    out: dict[str, float] = {}
    with httpx.Client(base_url=base, timeout=120) as client:
        for page in pages:
            if client.get(page).status_code != 200:
                raise SystemExit(f"{page}: HTTP {client.get(page).status_code}")
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                client.get(page).raise_for_status()
                samples.append((time.perf_counter() - t0) * 1e3)
            out[page] = statistics.median(samples)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=20_000, help="turns at the first size (default 20000)")
    parser.add_argument("--repeat", type=int, default=7, help="timed requests per page (default 7)")
    parser.add_argument("--database-url", help="admin URL of a Postgres to use instead of an embedded one")
    args = parser.parse_args()
    if args.turns < SESSION_TURNS or args.repeat < 1:
        parser.error(f"--turns must be >= {SESSION_TURNS} and --repeat >= 1")
    rng, now_ns = random.Random(11), time.time_ns()
    with postgres(args.database_url) as server:
        name, url = fresh_database(server.admin_url)
        try:
            results = []
            for size in (args.turns, 10 * args.turns):
                have = results[-1][0] if results else 0
                t0 = time.perf_counter()
                seed(url, size - have, rng, now_ns)
                print(f"seeded {size - have} turns in {time.perf_counter() - t0:.1f} s", flush=True)
                with psycopg.connect(url) as conn:
                    row = conn.execute(
                        "SELECT turn_id FROM chat_turns ORDER BY started_at DESC LIMIT 1").fetchone()
                assert row is not None
                pages = [*PAGES, f"/ui/turn/{row[0]}"]
                processor = Processor(load_config({"otlp_http": "127.0.0.1:0", "otlp_grpc": "127.0.0.1:0",
                                                   "metrics": "127.0.0.1:0", "database_url": url}, {}, None))
                processor.start()
                try:
                    host, port = processor.http_address
                    results.append((size, time_pages(f"http://{host}:{port}", pages, args.repeat)))
                finally:
                    processor.shutdown()
        finally:
            drop_database(server.admin_url, name)
    (small, first), (large, second) = results
    print(f"\n{'page':<42} {small:>9} turns {large:>9} turns   ratio")
    for (page, a), b in zip(first.items(), second.values(), strict=True):
        label = "/ui/turn/<newest turn>" if page.startswith("/ui/turn/") else page
        print(f"{label:<42} {a:>12.1f} ms {b:>12.1f} ms   {b / a:5.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
