"""Shutdown keeps its deadline: one deadline shared by every stage, the write in progress cancelled
at it, and what could not be committed answered retryable (503) — never a hang past the timeout."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry
from server_support import base_url, count_spans, make_processor, turn_request, wait_until, writer_blocked
from store_factories import span, trace_id

from otel_chatbot.errors import Unavailable
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.processor.pipeline import Pipeline
from otel_chatbot.records import CommitResult, NormalisedBatch


def test_shutdown_returns_within_its_timeout_while_the_write_is_stuck(database_url: str) -> None:
    body, traces = turn_request(200)
    processor = make_processor(database_url)
    processor.start()
    answers: list[int] = []
    try:
        url = base_url(processor)
        with writer_blocked(database_url):

            def post() -> None:
                request = urllib.request.Request(url + "/v1/traces", data=body, method="POST",
                                                 headers={"Content-Type": "application/x-protobuf"})
                try:
                    with urllib.request.urlopen(request, timeout=60) as response:
                        answers.append(response.status)
                except urllib.error.HTTPError as exc:
                    answers.append(exc.code)
                    assert exc.headers["Retry-After"] is not None

            sender = threading.Thread(target=post)
            sender.start()
            deadline = time.monotonic() + 30
            while processor.pipeline.pending_spans == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert processor.pipeline.pending_spans == 200
            time.sleep(0.3)  # the writer is now inside its COPY, waiting for the table lock
            started = time.monotonic()
            processor.shutdown(2.0)
            took = time.monotonic() - started
            sender.join(10)
    finally:
        processor.shutdown(2.0)
    print(f"shutdown(2.0) with the write stuck took {took:.2f} s")
    assert took < 2.5  # the timeout plus the cost of cancelling the write
    assert answers == [503]
    assert count_spans(database_url, traces) == 0  # nothing half-written, the client retries it all


class _UncancellableWriter:
    """Stands for a write the server cannot cancel (e.g. Python work between statements, or a COMMIT
    waiting on a slow disk): a test double, since a real one cannot be produced on demand."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.writes = 0

    def start(self) -> None:
        pass

    def write(self, batch: NormalisedBatch) -> CommitResult:
        self.writes += 1
        self.release.wait(10)
        return CommitResult(new_spans=list(batch.spans), span_count=len(batch.spans))

    def settle(self, until_ns: int | None = None) -> CommitResult:
        return CommitResult()

    def cancel(self) -> None:
        pass

    def shutdown(self) -> None:
        pass


def test_a_write_that_outlives_the_deadline_is_answered_retryable_at_it() -> None:
    writer = _UncancellableWriter()
    pipeline = Pipeline(writer, ProcessorMetrics(CollectorRegistry()))
    pipeline.start()
    future = pipeline.submit(NormalisedBatch(spans=[span(trace_id())]), "http")
    wait_until(lambda: writer.writes == 1, "the write to start")
    started = time.monotonic()
    pipeline.shutdown(1.0)
    took = time.monotonic() - started
    assert took < 1.2
    error = future.exception(timeout=0)
    assert isinstance(error, Unavailable) and error.retry_after == 1
    writer.release.set()  # the write finishes after all: resolving the answered future again is a no-op
    time.sleep(0.2)
    assert isinstance(future.exception(timeout=0), Unavailable)
