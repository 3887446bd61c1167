"""Health answers promptly while a large request is being decoded (decode runs off the event loop)."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

from server_support import base_url, running, turn_request, wait_until, writer_blocked

# Generous: the event loop only waits for the GIL (released every 5 ms by the decoding thread).
HEALTH_LATENCY_LIMIT_S = 0.25
# The protobuf parse is one C call that holds the GIL for the whole message (0.1-1 s for 15 MiB on the
# loaded test machine): a single probe may wait that long, hence a bound on the worst that only
# catches decoding back on the event loop (2.8 s per probe there).
HEALTH_WORST_LIMIT_S = 2.5


def _get(url: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
    return time.perf_counter() - started


def test_healthz_answers_promptly_while_a_large_body_is_decoded(database_url: str) -> None:
    body, _traces = turn_request(50_000)
    assert len(body) > 8 * 1024**2  # a large request (the figure below is for this size)
    with running(database_url) as processor, writer_blocked(database_url):
        # (The processor is shut down with the writer still blocked: its answer is then 503.)
        url = base_url(processor)
        _get(url + "/healthz")  # warm the connection path
        answers: list[int] = []

        def post() -> None:
            request = urllib.request.Request(url + "/v1/traces", data=body, method="POST",
                                             headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(request, timeout=60) as response:
                    answers.append(response.status)
            except urllib.error.HTTPError as exc:
                answers.append(exc.code)

        sender = threading.Thread(target=post)
        sender.start()
        latencies: list[float] = []
        # Decoding: from the send until the batch reaches the pipeline (the writer is blocked after).
        while processor.pipeline.pending_spans == 0 and sender.is_alive():
            latencies.append(_get(url + "/healthz"))
            time.sleep(0.01)
        ordered = sorted(latencies)
        worst, median = ordered[-1], ordered[len(ordered) // 2]
        print(f"/healthz during the decode of a {len(body) / 1024**2:.1f} MiB request: "
              f"{len(latencies)} probes, median {median * 1000:.0f} ms, worst {worst * 1000:.0f} ms, "
              f"all: {[round(x * 1000) for x in latencies]}")
        assert median < HEALTH_LATENCY_LIMIT_S
        assert worst < HEALTH_WORST_LIMIT_S
        assert processor.pipeline.pending_spans == 50_000
        assert len(latencies) >= 5, "the decode was too quick to measure anything"
        processor.shutdown(3.0)
    sender.join(60)
    wait_until(lambda: bool(answers), "the large request's answer")
    assert answers == [503]  # retryable: the sender sends it again to the next processor
