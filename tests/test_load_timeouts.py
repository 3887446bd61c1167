"""Deadlines: a statement stuck on a lock held by another connection is cancelled after
``statement_timeout`` and its requests are answered retryable; a request waits for its commit at most
``request_timeout``; SIGTERM keeps ``shutdown_timeout`` even with a write and an API lookup stuck.
Real `otel-chatbot serve` processes (or a real Processor), real Postgres, real sockets."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator

import grpc
import psycopg
from load_support import Serve, export_grpc, post, post_traces, stored_span_counts, wait_exit
from server_support import base_url, count_spans, running, turn_request, wait_until

# Generous bounds that still tell the deadline apart from "never" / from the other timeout: on the
# shared 2-core test machine a 1 s timeout was answered in 1.0-2.6 s.
ANSWER_WITHIN_S = 8.0


@contextlib.contextmanager
def _locked(url: str, *tables: str) -> Iterator[None]:
    """Another connection holds ACCESS EXCLUSIVE locks on ``tables`` (what a migration or a manual
    LOCK TABLE does): every statement of the processor touching them waits."""
    conn = psycopg.connect(url)
    try:
        for table in tables:
            conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


def _timed(call: Callable[[], object]) -> tuple[object, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def _in_threads(*calls: Callable[[], object]) -> list[tuple[object, float]]:
    answers: list[tuple[object, float] | None] = [None] * len(calls)

    def run(i: int) -> None:
        answers[i] = _timed(calls[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_stuck_statement_is_answered_retryable_after_statement_timeout(database_url: str) -> None:
    serve = Serve(database_url, "--statement-timeout", "1", "--request-timeout", "60")
    serve.start()
    # Every worker is up (a worker starting while the tables are locked would wait for the lock).
    wait_until(lambda: _get(serve.url + "/readyz") == 200, "every worker ready")
    http_body, http_traces = turn_request(50)
    grpc_body, grpc_traces = turn_request(50)
    feedback = b'{"turn_id": "turn-x", "rating": "down"}'
    try:
        with grpc.insecure_channel(serve.grpc_target) as channel:
            with _locked(database_url, "spans", "span_traces", "chat_turns"):
                answers = _in_threads(lambda: post_traces(serve.url, http_body),
                                      lambda: export_grpc(channel, grpc_body),
                                      lambda: post(serve.url + "/v1/feedback", feedback, "application/json"))
                health = _get(serve.url + "/healthz")  # the lock is still held
            (http, http_s), (rpc, rpc_s), (fb, fb_s) = answers
            print(f"lock held, statement_timeout 1 s: traces {http} after {http_s:.2f} s, gRPC {rpc} after "
                  f"{rpc_s:.2f} s, feedback {fb} after {fb_s:.2f} s; /healthz {health}")
            assert http == (503, "5") and http_s < ANSWER_WITHIN_S
            assert rpc == ("UNAVAILABLE", 5) and rpc_s < ANSWER_WITHIN_S
            assert fb == (503, "5") and fb_s < ANSWER_WITHIN_S  # the API pool's lookup was cancelled too
            assert health == 200
            # The lock is gone: the processor is ready again and the retries are stored, once each.
            wait_until(lambda: _get(serve.url + "/readyz") == 200, "ready again")
            assert post_traces(serve.url, http_body) == (200, None)
            assert export_grpc(channel, grpc_body) == ("OK", None)
            assert post(serve.url + "/v1/feedback", feedback, "application/json") == (202, None)
    finally:
        serve.stop()
    stored = stored_span_counts(database_url)
    assert sorted(t for t, _ in stored) == sorted(http_traces + grpc_traces)
    assert set(stored.values()) == {1}


def test_a_request_waits_for_its_commit_at_most_request_timeout(database_url: str) -> None:
    first, first_traces = turn_request(50)
    second, second_traces = turn_request(40)
    third, third_traces = turn_request(30)
    with running(database_url, statement_timeout=0, request_timeout=1) as processor:
        url = base_url(processor)
        host, port = processor.grpc_address
        with grpc.insecure_channel(f"{host}:{port}") as channel, \
                _locked(database_url, "spans", "span_traces"):
            stuck = threading.Thread(target=lambda: answers.append(_timed(lambda: post_traces(url, first))))
            answers: list[tuple[object, float]] = []
            stuck.start()
            wait_until(lambda: processor.pipeline.pending_spans == 50, "the first write to start")
            time.sleep(0.3)  # the writer is inside its COPY, waiting for the lock
            queued = _in_threads(lambda: post_traces(url, second), lambda: export_grpc(channel, third))
            stuck.join(60)
            assert processor.pipeline.pending_spans == 120  # the stuck write and the two queued
            health = _get(url + "/healthz")
        (first_answer, first_s), = answers
        (second_answer, second_s), (third_answer, third_s) = queued
        print(f"request_timeout 1 s, write stuck: {first_answer} after {first_s:.2f} s, queued behind it "
              f"{second_answer} after {second_s:.2f} s and gRPC {third_answer} after {third_s:.2f} s")
        assert first_answer == (503, "5") and second_answer == (503, "5")
        assert third_answer == ("UNAVAILABLE", 5)
        assert max(first_s, second_s, third_s) < ANSWER_WITHIN_S
        assert health == 200
        # The lock is gone: the write in progress commits after all; the two requests whose clients
        # stopped waiting were skipped, not written.
        wait_until(lambda: processor.pipeline.pending_spans == 0, "the queue to empty")
        assert count_spans(database_url, first_traces) == 50
        assert count_spans(database_url, second_traces + third_traces) == 0
        refused = processor.metrics.registry.get_sample_value
        assert refused("otel_chatbot_spans_refused_total", {"transport": "http", "reason": "timeout"}) == 90
        assert refused("otel_chatbot_spans_refused_total", {"transport": "grpc", "reason": "timeout"}) == 30
        # The clients' retries: the first is a no-op (already stored), the others are stored now.
        assert post_traces(url, first) == (200, None) and post_traces(url, second) == (200, None)
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            assert export_grpc(channel, third) == ("OK", None)
    stored = stored_span_counts(database_url)
    assert sorted(t for t, _ in stored) == sorted(first_traces + second_traces + third_traces)
    assert set(stored.values()) == {1}


def test_sigterm_keeps_shutdown_timeout_with_a_write_and_an_api_lookup_stuck(database_url: str) -> None:
    """No statement timeout here: the deadline alone must bound the stop."""
    shutdown_timeout = 3.0
    serve = Serve(database_url, "--shutdown-timeout", str(shutdown_timeout), "--statement-timeout", "0",
                  "--request-timeout", "60")
    serve.start()
    wait_until(lambda: _get(serve.url + "/readyz") == 200, "every worker ready")
    body, traces = turn_request(50)
    feedback = b'{"turn_id": "turn-x", "rating": "up"}'
    answers: list[tuple[int, str | None]] = []
    try:
        with _locked(database_url, "spans", "span_traces", "chat_turns"):
            senders = [threading.Thread(target=lambda: answers.append(post_traces(serve.url, body))),
                       threading.Thread(target=lambda: answers.append(
                           post(serve.url + "/v1/feedback", feedback, "application/json")))]
            for sender in senders:
                sender.start()
            time.sleep(1.0)  # both are waiting on the locks now
            assert answers == []
            assert serve.proc is not None
            serve.signal(signal.SIGTERM)
            rc, took = wait_exit(serve.proc, shutdown_timeout + 30)
            for sender in senders:
                sender.join(30)
    finally:
        serve.stop()
    print(f"SIGTERM with a write and a feedback lookup stuck on locks: exit {rc} after {took:.2f} s "
          f"(shutdown_timeout {shutdown_timeout}); answers {sorted(answers)}")
    assert rc == 0
    assert took < shutdown_timeout + 1.0  # the deadline plus interpreter exit
    # Both retryable: the write cancelled before the deadline, the lookup's request answered at it.
    assert len(answers) == 2 and {status for status, _ in answers} == {503}
    assert None not in {retry_after for _, retry_after in answers}
    assert count_spans(database_url, traces) == 0  # rolled back, nothing half-written
