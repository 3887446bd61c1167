"""The LLM judge: evaluate throughput against concurrency, and what the online judge adds to ingest.

1. Stores --turns turns, then runs ``evaluate`` against the local OpenAI-compatible test server whose
   every answer takes --latency-ms (a stand-in for a real judge model), at concurrency 1 and at
   --concurrency, each run under its own evaluator name so both judge every turn. Prints turns/s and
   the speed-up (ideal: the concurrency).
2. The online judge's cost on the writer thread: ``OnlineJudge.offer()`` of the CommitResults of
   batches of --batch-size new turns (sample rate --sample, a queue large enough to take them all, no
   worker running), against ``BatchWriter.write()`` of the same batches. Prints µs per turn of each
   and the ratio.

    python benchmarks/judge.py [--turns 200] [--latency-ms 50] [--concurrency 8] [--sample 0.1]
                               [--batch-size 512] [--database-url ADMIN_URL]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from llm_server import LLMServer, Reply
from support import drop_database, fresh_database, postgres

from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.quality.evaluate import EvaluateOptions, evaluate
from otel_chatbot.quality.judge import Judge
from otel_chatbot.quality.llm import JudgeClient
from otel_chatbot.quality.online import OnlineJudge
from otel_chatbot.records import NormalisedBatch, SpanRow, TurnRow
from otel_chatbot.store.writer import BatchWriter

VERDICT = {"accuracy": 7, "relevance": 8, "clarity": 9, "rationale": "benchmark"}


class _NoMetrics:
    def observe_evaluation(self, dimension: str, score: float) -> None: ...
    def judge_hallucination(self, service: str, source: str | None) -> None: ...
    def judge_dropped(self, n: int) -> None: ...
    def judge_failed(self) -> None: ...


def _batch(n: int, start_ns: int) -> NormalisedBatch:
    spans, turns = [], []
    for i in range(n):
        trace, span = os.urandom(16).hex(), os.urandom(8).hex()
        spans.append(SpanRow(trace, span, None, "chat.turn", 2, start_ns + i, start_ns + i + 10**8, 0, "",
                             "bench", '{"chat.turn.id": "x"}', '{"service.name": "bench"}', "[]"))
        turns.append(TurnRow(f"turn-{trace}", trace, span, False, f"s-{i % 50}", "u", "website", "bench",
                             start_ns + i, 0.1, f"question {i} about the order status",
                             f"answer {i}: it ships tomorrow", None))
    return NormalisedBatch(spans=spans, turns=turns)


def _judge_runs(url: str, args: argparse.Namespace) -> None:
    server = LLMServer().start()
    latency = args.latency_ms / 1000

    def slow(body: dict[str, Any]) -> Reply:
        time.sleep(latency)
        return Reply(VERDICT)

    server.respond_with(slow)
    rates = {}
    try:
        for concurrency in (1, args.concurrency):
            client = JudgeClient("gpt-4o-mini", base_url=server.base_url, key="bench")
            judge = Judge(client, PriceTable.load(), evaluator=f"bench-c{concurrency}")
            summary = evaluate(url, judge, EvaluateOptions(concurrency=concurrency))
            client.close()
            assert summary.judged == args.turns, summary.as_dict()
            rates[concurrency] = summary.judged / summary.seconds
            print(f"evaluate, concurrency {concurrency:>2}: {summary.judged} turns in "
                  f"{summary.seconds:.2f} s = {rates[concurrency]:.1f} turns/s (judge answers in "
                  f"{args.latency_ms:.0f} ms)", flush=True)
    finally:
        server.shutdown()
    print(f"speed-up at concurrency {args.concurrency}: {rates[args.concurrency] / rates[1]:.2f}x "
          f"(ideal {args.concurrency}x)")


def _offer_cost(url: str, args: argparse.Namespace) -> None:
    batches = [_batch(args.batch_size, time.time_ns() - 3600 * 10**9 + k * 10**7) for k in range(10)]
    writer = BatchWriter(url)
    writer.start()
    try:
        writer.write(_batch(args.batch_size, time.time_ns() - 7200 * 10**9))  # warm-up: partitions, plans
        started = time.perf_counter()
        results = [writer.write(b) for b in batches]
        write_s = time.perf_counter() - started
    finally:
        writer.shutdown()
    turns = sum(len(r.new_turns) for r in results)
    client = JudgeClient("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", key="bench")
    online = OnlineJudge(Judge(client, PriceTable.load()), url, _NoMetrics(), sample_rate=args.sample,
                         queue_max=turns + 1)  # not started: measures offer() alone
    started = time.perf_counter()
    for result in results:
        online.offer(result)
    offer_s = time.perf_counter() - started
    online.shutdown()
    write_us, offer_us = 1e6 * write_s / turns, 1e6 * offer_s / turns
    print(f"online judge offer(): {offer_us:.2f} µs per new turn (sample {args.sample}) vs "
          f"BatchWriter.write() {write_us:.1f} µs per turn (with its span): ratio {offer_us / write_us:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sample", type=float, default=0.1)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--database-url", help="admin URL of a Postgres to use instead of an embedded one")
    args = parser.parse_args()
    if args.turns < 1 or args.concurrency < 2 or not 0 < args.sample <= 1 or args.batch_size < 1:
        parser.error("--turns >= 1, --concurrency >= 2, 0 < --sample <= 1, --batch-size >= 1")
    with postgres(args.database_url) as server:
        name, url = fresh_database(server.admin_url)
        try:
            writer = BatchWriter(url)
            writer.start()
            writer.write(_batch(args.turns, time.time_ns() - 3 * 3600 * 10**9))
            writer.shutdown()
            _judge_runs(url, args)
            _offer_cost(url, args)
        finally:
            drop_database(server.admin_url, name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
