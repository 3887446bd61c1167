"""Feedback before its turn through the real processor: HTTP API (202) and OTLP spans, attached when the
turn arrives and counted under the turn's service; expiry metrics; bad requests; the API's pool."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from server_support import base_url, fetch, running, wait_until

from otel_chatbot.processor.app import Processor
from otel_chatbot.store.api_pool import APPLICATION_NAME

JSON_HEADERS = {"Content-Type": "application/json"}


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url, max_body_bytes=4096, api_pool_size=3) as proc:
        yield proc


def _metric(proc: Processor, name: str, **labels: str) -> float | None:
    """What a scrape reads once an earlier scrape has seen each new chat series at 0."""
    list(proc.metrics.registry.collect())
    return proc.metrics.registry.get_sample_value(name, labels)


def _label_values(proc: Processor, name: str, label: str) -> set[str]:
    return {s.labels[label] for f in proc.metrics.registry.collect() for s in f.samples if s.name == name}


def _export(proc: Processor, service: str, name: str, attributes: dict[str, object]) -> None:
    """One span exported by the real OTLP/HTTP exporter of an app named ``service``."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(proc)}/v1/traces")))
    with provider.get_tracer("test").start_as_current_span(name, attributes=attributes):
        pass
    provider.shutdown()


def _turn(proc: Processor, turn_id: str, service: str = "shop-bot") -> None:
    _export(proc, service, "chat.turn", {"chat.turn.id": turn_id, "session.id": "s-1", "input.value": "hi",
                                         "output.value": "hello", "chat.source": "website"})


def test_api_feedback_before_its_turn_is_202_then_attached_under_the_turns_service(
        processor: Processor, database_url: str) -> None:
    url = f"{base_url(processor)}/v1/feedback"
    turn_id = f"t-{uuid.uuid4().hex}"
    early = httpx.post(url, json={"turn_id": turn_id, "rating": "down", "comment": "wrong"})
    assert early.status_code == 202
    assert early.json() == {"turn_id": turn_id, "rating": "down", "stored": False, "pending": True}
    assert fetch(database_url, "SELECT turn_id, origin FROM pending_feedback") == [(turn_id, "api")]
    assert _metric(processor, "otel_chatbot_feedback_pending_total") == 1
    assert _metric(processor, "chatbot_feedback_total", service="shop-bot", rating="down") is None

    _turn(processor, turn_id)  # the app's exporter sends the turn seconds later
    assert fetch(database_url, "SELECT rating, comment, service FROM feedback WHERE turn_id = %s",
                 (turn_id,)) == [("down", "wrong", "shop-bot")]
    assert fetch(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]
    assert _metric(processor, "chatbot_feedback_total", service="shop-bot", rating="down") == 1
    # A rating of a stored turn: 200, counted under the turn's service too, never "unknown".
    later = httpx.post(url, json={"turn_id": turn_id, "rating": "up"})
    assert later.status_code == 200
    assert later.json() == {"turn_id": turn_id, "rating": "up", "stored": True, "pending": False}
    assert _metric(processor, "chatbot_feedback_total", service="shop-bot", rating="up") == 1
    assert _label_values(processor, "chatbot_feedback_total", "service") == {"shop-bot"}


def test_feedback_span_before_its_turn_waits_and_counts_under_the_turns_service(
        processor: Processor, database_url: str) -> None:
    turn_id = f"t-{uuid.uuid4().hex}"
    _export(processor, "chat-widget", "chat.feedback",
            {"chat.turn.id": turn_id, "chat.feedback.rating": "up"})
    assert fetch(database_url, "SELECT turn_id, origin, service FROM pending_feedback") == [
        (turn_id, "span", "chat-widget")]
    assert fetch(database_url, "SELECT count(*) FROM feedback") == [(0,)]
    _turn(processor, turn_id, service="desk-bot")
    assert fetch(database_url, "SELECT rating, origin, service FROM feedback") == [("up", "span", "desk-bot")]
    assert _metric(processor, "chatbot_feedback_total", service="desk-bot", rating="up") == 1
    assert _label_values(processor, "chatbot_feedback_total", "service") == {"desk-bot"}


def test_pending_feedback_expires_by_age_with_a_metric(database_url: str) -> None:
    with running(database_url, pending_feedback_max_age=0.5) as proc:
        url = f"{base_url(proc)}/v1/feedback"
        assert httpx.post(url, json={"turn_id": "never-comes", "rating": "down"}).status_code == 202
        wait_until(lambda: _metric(proc, "otel_chatbot_feedback_expired_total", reason="age") == 1,
                   "the age sweep", timeout=20)
        assert fetch(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]
        _turn(proc, "never-comes")  # too late: nothing is attached or counted
        assert fetch(database_url, "SELECT count(*) FROM feedback") == [(0,)]
        assert _metric(proc, "chatbot_feedback_total", service="shop-bot", rating="down") is None
        assert _metric(proc, "otel_chatbot_feedback_expired_total", reason="cap") == 0


def test_pending_feedback_beyond_the_count_limit_expires_the_oldest_with_a_metric(database_url: str) -> None:
    with running(database_url, pending_feedback_max=2) as proc:
        url = f"{base_url(proc)}/v1/feedback"
        for i in range(5):
            assert httpx.post(url, json={"turn_id": f"wait-{i}", "rating": "up"}).status_code == 202
        waiting = fetch(database_url, "SELECT turn_id FROM pending_feedback ORDER BY 1")
        assert waiting == [("wait-3",), ("wait-4",)]
        assert _metric(proc, "otel_chatbot_feedback_expired_total", reason="cap") == 3
        assert _metric(proc, "otel_chatbot_feedback_pending_total") == 5


def test_malformed_oversized_and_unauthorised_feedback_is_refused_and_nothing_is_kept(
        database_url: str) -> None:
    with running(database_url, max_body_bytes=4096, auth_token="s3cret") as proc:
        url = f"{base_url(proc)}/v1/feedback"
        auth = {"Authorization": "Bearer s3cret"}
        cases = [
            (httpx.post(url, json={"turn_id": "t", "rating": "up"}), 401, "bearer token"),
            (httpx.post(url, json={"turn_id": "t", "rating": "up"}, headers={"Authorization": "Bearer no"}),
             401, "bearer token"),
            (httpx.post(url, content=b"x" * 5000, headers={**auth, **JSON_HEADERS}),
             413, "exceeds the limit"),
            (httpx.post(url, content=b"{oops", headers={**auth, **JSON_HEADERS}), 400, "not valid JSON"),
            (httpx.post(url, json={"turn_id": "t", "rating": "meh"}, headers=auth), 400, "rating"),
            (httpx.post(url, json={"turn_id": "t" * 257, "rating": "up"}, headers=auth), 400, "turn_id"),
            (httpx.post(url, json={"turn_id": "  ", "rating": "up"}, headers=auth), 400, "turn_id"),
            (httpx.post(url, json={"turn_id": "t", "rating": "up", "comment": "c" * 3000}, headers=auth),
             202, None),  # fits the body limit and the comment limit
            (httpx.post(url, json={"turn_id": "u", "rating": "up", "comment": ["no"]}, headers=auth),
             400, "comment"),
            (httpx.post(url, content=b"turn_id=t", headers={**auth, "Content-Type": "text/plain"}),
             415, "application/json"),
        ]
        for response, status, message in cases:
            assert response.status_code == status, response.text
            if message is not None:
                assert message in response.json()["message"], response.text
        assert fetch(database_url, "SELECT turn_id, length(comment) FROM pending_feedback") == [("t", 3000)]
        assert fetch(database_url, "SELECT count(*) FROM feedback") == [(0,)]


def _api_connections(database_url: str) -> int:
    rows = fetch(database_url, "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                 "AND datname = current_database()", (APPLICATION_NAME,))
    return int(rows[0][0])


def test_api_and_readyz_reuse_a_bounded_pool_of_connections(processor: Processor, database_url: str) -> None:
    api = base_url(processor)
    turn_id = f"t-{uuid.uuid4().hex}"
    _turn(processor, turn_id)
    statuses: list[int] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        with httpx.Client() as http:
            for i in range(n):
                response = (http.get(f"{api}/readyz") if i % 2 else
                            http.post(f"{api}/v1/feedback", json={"turn_id": turn_id, "rating": "up"}))
                with lock:
                    statuses.append(response.status_code)

    # Every API backend seen while the requests run: a connection per request would show one per request.
    backends: set[int] = set()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            backends.update(pid for (pid,) in fetch(
                database_url, "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND datname = current_database()",
                (APPLICATION_NAME,)))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=client, args=(10,)) for _ in range(5)]  # 50 requests, 5 at a time
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    done.set()
    watcher.join(timeout=10)
    assert sorted(set(statuses)) == [200] and len(statuses) == 50
    # api_pool_size=3: never more server connections than that, however many requests came.
    assert 1 <= len(backends) <= 3, backends
    assert 1 <= _api_connections(database_url) <= 3
    for _ in range(10):
        assert httpx.get(f"{api}/readyz").status_code == 200
    assert 1 <= _api_connections(database_url) <= 3
    processor.shutdown()
    wait_until(lambda: _api_connections(database_url) == 0, "the pool to close its connections", timeout=10)
