"""Overload: one `otel-chatbot serve --workers 1` offered several times its capacity.

Starts an embedded Postgres and the processor (a separate process, so its peak RSS can be read),
measures capacity with closed-loop senders (each sends its next request when the last is answered;
enough of them that a full group always waits for the writer, never more than the queue takes), then
offers ``--offered-x`` times that from sender processes (half OTLP/HTTP, half OTLP/gRPC, raw clients,
fixed schedule: see tests/overload_support.py). Prints capacity, offered and accepted spans/s, their
ratios, answers by status, retry hints, peak RSS, load average, and whether every acknowledged span
was stored exactly once.

``--throttle-ms N`` adds a statement trigger on chat_turns that sleeps N ms per write (a slow
database), which lowers capacity so that the offered multiple is reachable on a small machine; 0 (the
default) measures the processor as it is, where the senders compete with it for the same cores.

    python benchmarks/overload.py [--throttle-ms 600] [--offered-x 3.5] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

import psutil
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from load_support import Serve, stored_span_counts
from overload_support import closed_loop, open_loop
from support import postgres

from otel_chatbot.store.migrate import migrate

_THROTTLE = """
CREATE FUNCTION bench_throttle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN PERFORM pg_sleep({seconds}); RETURN NULL; END $$;
CREATE TRIGGER bench_throttle BEFORE INSERT ON chat_turns
    FOR EACH STATEMENT EXECUTE FUNCTION bench_throttle();
"""
_ACCEPTED = {"http 200", "grpc OK"}


def _cpu(serve: Serve) -> float:
    """CPU seconds (user + system) of the processor process so far."""
    assert serve.proc is not None
    times = psutil.Process(serve.proc.pid).cpu_times()
    return float(times.user + times.system)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--throttle-ms", type=int, default=0, help="sleep per write in Postgres (default 0)")
    parser.add_argument("--offered-x", type=float, default=3.5, help="offered / capacity (default 3.5)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the overload (default 10)")
    parser.add_argument("--capacity-seconds", type=float, default=6.0, help="capacity run (default 6)")
    parser.add_argument("--spans", type=int, default=200, help="spans per request (default 200)")
    parser.add_argument("--write-batch-spans", type=int, default=1000, help="serve setting (default 1000)")
    parser.add_argument("--processes", type=int, default=4, help="sender processes (default 4)")
    parser.add_argument("--threads", type=int, default=16, help="threads per sender process (default 16)")
    args = parser.parse_args()
    queue = 2 * args.write_batch_spans
    senders = queue // args.spans  # a group being written and one waiting, never a refusal

    with postgres(prefix="otel-chatbot-overload-") as pg:
        url = pg.admin_url
        serve: Serve | None = None
        try:
            migrate(url)
            if args.throttle_ms:
                with psycopg.connect(url) as conn:
                    conn.execute(_THROTTLE.format(seconds=args.throttle_ms / 1000))
            serve = Serve(url, "--workers", "1", "--write-batch-spans", str(args.write_batch_spans),
                          "--queue-max-spans", str(queue), "--max-inflight-bytes", "4MiB")
            serve.start()
            stop = threading.Event()

            def sample() -> None:
                assert serve is not None
                while not stop.wait(0.1):
                    serve.sample_rss()

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cpu_start = _cpu(serve)
            base, base_s = closed_loop(serve.port, serve.grpc_target, senders=senders,
                                       seconds=args.capacity_seconds, spans=args.spans)
            capacity = len(base.acknowledged) / base_s
            cpu_base = _cpu(serve) - cpu_start
            print(f"capacity : {capacity:,.0f} spans/s ({senders} closed-loop senders, {args.spans} spans "
                  f"per request, answers {dict(base.statuses)}), peak RSS so far "
                  f"{serve.peak_rss / 2**20:.0f} MiB", flush=True)
            cpu_start = _cpu(serve)
            load, send_s, load_s = open_loop(serve.port, serve.grpc_target,
                                             rate_spans=args.offered_x * capacity, seconds=args.seconds,
                                             spans=args.spans, processes=args.processes, threads=args.threads)
            cpu_load = _cpu(serve) - cpu_start
            stop.set()
            sampler.join(5)
            serve.sample_rss()
            stored = stored_span_counts(url)
        finally:
            if serve is not None:
                serve.stop()

    offered, accepted = load.sent_spans / send_s, len(load.acknowledged) / load_s
    acknowledged = base.acknowledged + load.acknowledged
    exact = sorted(t for t, _ in stored) == sorted(acknowledged) and set(stored.values()) <= {1}
    refused = sum(n for s, n in load.statuses.items() if s not in _ACCEPTED)
    print(f"offered  : {offered:,.0f} spans/s = {offered / capacity:.2f}x capacity "
          f"({args.processes} processes x {args.threads} threads, {load.late} requests sent >50 ms late)")
    print(f"accepted : {accepted:,.0f} spans/s = {accepted / capacity:.2f} of capacity")
    answers = sum(load.statuses.values())
    print(f"answers  : {dict(sorted(load.statuses.items()))} ({refused} refused of {answers})")
    print(f"retry    : hints {dict(load.retry_hints)} (seconds; 'None' = a refusal without one)")
    per_span = cpu_base / len(base.acknowledged) * 1e6
    per_span_load = cpu_load / max(1, len(load.acknowledged)) * 1e6
    print(f"processor: {cpu_base / base_s:.2f} cores at capacity, {per_span:.0f} µs CPU per accepted span; "
          f"under overload {cpu_load / load_s:.2f} cores, {per_span_load:.0f} µs per accepted span")
    print(f"memory   : peak RSS {serve.peak_rss / 2**20:.0f} MiB (queue_max_spans {queue}, "
          "max_inflight_bytes 4MiB)")
    print(f"stored   : {len(stored)} spans, {len(acknowledged)} acknowledged, exactly once: {exact}")
    print(f"machine  : load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs, "
          f"throttle {args.throttle_ms} ms per write")
    return 0 if exact else 1


if __name__ == "__main__":
    raise SystemExit(main())
