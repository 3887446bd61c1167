"""Overload at three times capacity: one real `otel-chatbot serve` (one process), its capacity
measured first with closed-loop senders, then offered over three times that from four sender
processes (two OTLP/HTTP, two OTLP/gRPC, raw clients on real sockets). Every refusal is retryable with
a retry hint, memory stays bounded, accepted throughput stays near capacity, and every acknowledged
span is stored exactly once (trace ids compared).

To make 3x offerable on a shared 2-core machine the database is throttled on purpose: a statement
trigger on ``chat_turns`` sleeps ``THROTTLE_S`` per write (a slow disk or a busy server), so capacity
is a few thousand spans/s and the senders need little CPU. ``benchmarks/overload.py`` measures the
unthrottled case too.
"""

from __future__ import annotations

import os
import threading

import psycopg
from load_support import Serve, stored_span_counts
from overload_support import closed_loop, open_loop
from server_support import wait_until

THROTTLE_S = 0.6
WRITE_BATCH_SPANS = 1000
SPANS_PER_REQUEST = 200  # few requests per span: the senders need little CPU
OFFERED_X = 3.5  # the schedule; the rate really sent (over the time spent sending) must reach 3x
RSS_LIMIT_MIB = 250  # the processor's peak resident memory (measured 70-110 MiB: docs/architecture.md)
ACCEPTED_MIN = 0.7  # accepted spans/s under overload, as a fraction of capacity
_RETRYABLE = {"http 429", "http 503", "grpc RESOURCE_EXHAUSTED", "grpc UNAVAILABLE"}
_ACCEPTED = {"http 200", "grpc OK"}

THROTTLE_SQL = """
CREATE FUNCTION test_throttle() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_sleep(%s);
    RETURN NULL;
END $$;
CREATE TRIGGER test_throttle BEFORE INSERT ON chat_turns FOR EACH STATEMENT EXECUTE FUNCTION test_throttle();
"""


def _sample_rss(serve: Serve, stop: threading.Event) -> None:
    while not stop.wait(0.1):
        serve.sample_rss()


def _ready(serve: Serve) -> bool:
    import urllib.request

    with urllib.request.urlopen(serve.url + "/readyz", timeout=5) as response:
        return bool(response.status == 200)


def test_overload_at_three_times_capacity(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute(THROTTLE_SQL.replace("%s", repr(THROTTLE_S)))
    serve = Serve(database_url, "--workers", "1", "--write-batch-spans", str(WRITE_BATCH_SPANS),
                  "--queue-max-spans", str(2 * WRITE_BATCH_SPANS), "--max-inflight-bytes", "2MiB")
    serve.start()
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(serve, stop), daemon=True)
    sampler.start()
    try:
        wait_until(lambda: _ready(serve), "ready")
        # 10 senders x 200 spans: a full group being written and one waiting, never more than the queue
        # takes (2,000 spans), so capacity is measured with full groups and without refusals.
        base, base_s = closed_loop(serve.port, serve.grpc_target, senders=10, seconds=6.0,
                                   spans=SPANS_PER_REQUEST)
        capacity = len(base.acknowledged) / base_s
        load, send_s, load_s = open_loop(serve.port, serve.grpc_target, rate_spans=OFFERED_X * capacity,
                                 seconds=10.0, spans=SPANS_PER_REQUEST, threads=8)
        serve.sample_rss()
    finally:
        stop.set()
        sampler.join(5)
        serve.stop()
    offered, accepted = load.sent_spans / send_s, len(load.acknowledged) / load_s
    refusals = {s: n for s, n in load.statuses.items() if s not in _ACCEPTED}
    print(f"capacity {capacity:,.0f} spans/s (closed loop, 10 senders, {dict(base.statuses)}); offered "
          f"{offered:,.0f} spans/s = {offered / capacity:.2f}x ({load.late} requests sent late), accepted "
          f"{accepted:,.0f} spans/s = {accepted / capacity:.2f} of capacity; answers {dict(load.statuses)}; "
          f"retry hints {dict(load.retry_hints)}; peak RSS {serve.peak_rss / 2**20:.0f} MiB; load average "
          f"{os.getloadavg()[0]:.1f}")
    assert set(base.statuses) <= _ACCEPTED  # capacity was measured without refusals
    assert offered >= 3.0 * capacity
    assert refusals and set(refusals) <= _RETRYABLE
    assert "None" not in load.retry_hints  # every refusal says when to retry
    assert accepted >= ACCEPTED_MIN * capacity
    assert serve.peak_rss < RSS_LIMIT_MIB * 2**20
    acknowledged = base.acknowledged + load.acknowledged
    stored = stored_span_counts(database_url)
    assert len(set(acknowledged)) == len(acknowledged)
    assert sorted(t for t, _ in stored) == sorted(acknowledged)  # nothing refused was stored either
    assert set(stored.values()) == {1}
