"""Shutdown keeps its deadline: one deadline shared by every stage, the write in progress cancelled
at it, and what could not be committed answered retryable (503) — never a hang past the timeout."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from server_support import base_url, count_spans, make_processor, turn_request, writer_blocked


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
