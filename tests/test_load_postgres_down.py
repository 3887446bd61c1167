"""Postgres stopped for 10 s under load: retryable refusals with Retry-After, readiness false, bounded
memory; once it is back, every request retried by its sender is stored exactly once. (Overload:
tests/test_load_overload.py.)"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from load_support import Senders, Serve, post_traces
from server_support import turn_request

from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.migrate import migrate

RSS_LIMIT_MIB = 400  # the processor's peak resident memory allowed in these tests (figures in the note)


@pytest.fixture(scope="module")
def own_pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A Postgres of this module alone: these tests stop and restart it."""
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("ownpg")) / "data")
    url = server.start()
    migrate(url)
    try:
        yield server
    finally:
        server.shutdown()


def _readyz(url: str) -> int:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def _retrying_sender(url: str, statuses: Counter[int], retry_afters: set[str | None],
                     stop: threading.Event) -> Callable[[int, int], list[tuple[str, str]]]:
    def send(_worker: int, _n: int) -> list[tuple[str, str]]:
        body, traces = turn_request(100)
        give_up = time.monotonic() + 60
        while time.monotonic() < give_up:
            status, retry_after = post_traces(url, body)
            statuses[status] += 1
            if status == 200:
                return [(t, "") for t in traces]
            retry_afters.add(retry_after)
            if stop.is_set():
                return []
            time.sleep(0.2)  # like the Collector, a little sooner than Retry-After
        return []
    return send


def test_postgres_down_for_10_s_under_load(own_pg: EmbeddedPostgres) -> None:
    url = own_pg.url
    assert url is not None
    serve = Serve(url, "--shutdown-timeout", "5")
    serve.start()
    statuses: Counter[int] = Counter()
    retry_afters: set[str | None] = set()
    stop = threading.Event()
    readiness: list[int] = []
    try:
        send = _retrying_sender(serve.url, statuses, retry_afters, stop)
        with Senders(send, threads=3) as senders:
            time.sleep(2.0)
            own_pg.shutdown()
            down_until = time.monotonic() + 10
            while time.monotonic() < down_until:
                readiness.append(_readyz(serve.url))
                serve.sample_rss()
                time.sleep(0.5)
            own_pg.start()
            deadline = time.monotonic() + 30
            while _readyz(serve.url) != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(2.0)
            stop.set()
        serve.sample_rss()
    finally:
        serve.stop()
    with psycopg.connect(url) as conn:
        stored = {str(t): int(n) for t, n in conn.execute(
            "SELECT trace_id, count(*) FROM stored_span_ids GROUP BY 1")}
    acknowledged = [t for t, _ in senders.acknowledged]
    print(f"Postgres down 10 s under load: answers {dict(statuses)}, "
          f"Retry-After {sorted(map(str, retry_afters))}, "
          f"readiness during {Counter(readiness)}, peak RSS {serve.peak_rss / 2**20:.0f} MiB, "
          f"{len(acknowledged)} spans acknowledged, {len(stored)} stored")
    assert statuses[503] > 0 and statuses[200] > 0
    assert set(statuses) <= {200, 503, 429}
    assert None not in retry_afters
    assert readiness and all(r == 503 for r in readiness[2:])  # false once the writer noticed
    assert serve.peak_rss < RSS_LIMIT_MIB * 2**20
    assert [t for t in acknowledged if t not in stored] == []
    assert {t: n for t, n in stored.items() if n != 1} == {}
