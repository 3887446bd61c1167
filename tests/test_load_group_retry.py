"""One group commit, several requests: when it fails, each request gets the answer its own data earns.

The writer commits the requests queued behind a busy write as one transaction. A test trigger on
chat_turns (real Postgres) refuses one request's turn — permanently (SQLSTATE 22023, a data error), or
with an error the writer must treat as retryable (53000, insufficient resources) — or makes one request
slow so that the writer's connection can be terminated in the middle of the group (a transient
failure). Requests go over real HTTP to a real Processor; ``pending_spans`` tells when they are queued.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from load_support import post_traces, stored_span_counts
from server_support import base_url, running, turn_request, wait_until

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.pipeline import Pipeline

_TRIGGER = """
CREATE TABLE test_slept (slept bool);
CREATE FUNCTION test_refuse_marked_turns() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.session_id = 'refused-by-trigger' THEN
        RAISE EXCEPTION 'turn % refused by the test trigger', NEW.turn_id USING ERRCODE = '22023';
    ELSIF NEW.session_id = 'busy-by-trigger' THEN
        RAISE EXCEPTION 'out of resources (test trigger)' USING ERRCODE = '53000';
    ELSIF NEW.session_id = 'slow-by-trigger' AND NOT EXISTS (SELECT FROM test_slept) THEN
        INSERT INTO test_slept VALUES (true);  -- once per transaction: rolled back with it
        PERFORM pg_sleep(1.5);
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER test_refuse_marked_turns BEFORE INSERT ON chat_turns
    FOR EACH ROW EXECUTE FUNCTION test_refuse_marked_turns();
"""
_SPANS = 20  # per request


def _install_trigger(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(_TRIGGER)


def _drop_trigger(url: str) -> None:
    with psycopg.connect(url) as conn:
        conn.execute("DROP TRIGGER test_refuse_marked_turns ON chat_turns")


@contextmanager
def _turns_locked(url: str) -> Iterator[None]:
    """Another connection holds chat_turns: the write in progress waits until the block ends."""
    conn = psycopg.connect(url)
    try:
        conn.execute("LOCK TABLE chat_turns IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        conn.rollback()
        conn.close()


class _Group:
    """Requests sent one after the other (each queued before the next is sent, so the order in the
    group is the order here) while a first request holds the writer on a lock."""

    def __init__(self, processor: Processor, sessions: list[str]) -> None:
        self.url = base_url(processor)
        self.processor = processor
        self.requests = [turn_request(_SPANS, session=s) for s in sessions]
        self.answers: list[tuple[int, str | None] | None] = [None] * len(sessions)
        self._threads: list[threading.Thread] = []

    def send_behind_a_busy_write(self, database_url: str) -> None:
        plug, self.plug_traces = turn_request(5, session="plug")
        pipeline = self.processor.pipeline
        with _turns_locked(database_url):
            plug_answer: list[tuple[int, str | None]] = []
            first = threading.Thread(target=lambda: plug_answer.append(post_traces(self.url, plug)))
            first.start()
            wait_until(lambda: pipeline.pending_spans == 5, "the first write to start")
            for i, (body, _traces) in enumerate(self.requests):
                thread = threading.Thread(target=self._send, args=(i, body))
                thread.start()
                self._threads.append(thread)
                queued = functools.partial(_pending_is, pipeline, 5 + _SPANS * (i + 1))
                wait_until(queued, "the request queued")
        first.join(60)
        for thread in self._threads:
            thread.join(60)
        assert plug_answer == [(200, None)]

    def _send(self, i: int, body: bytes) -> None:
        self.answers[i] = post_traces(self.url, body)

    def traces(self, *indexes: int) -> list[str]:
        return [t for i in indexes for t in self.requests[i][1]]


def _pending_is(pipeline: Pipeline, spans: int) -> bool:
    return pipeline.pending_spans == spans


def _stored_traces(url: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for (trace, _span), n in stored_span_counts(url).items():
        counts[trace] = counts.get(trace, 0) + n
    return counts


def test_a_refused_request_fails_alone_and_the_rest_of_its_group_commits(database_url: str) -> None:
    _install_trigger(database_url)
    sessions = ["s-0", "s-1", "refused-by-trigger", "s-3", "s-4", "s-5"]
    with running(database_url) as processor:
        group = _Group(processor, sessions)
        group.send_behind_a_busy_write(database_url)
        assert group.answers == [(200, None)] * 2 + [(400, None)] + [(200, None)] * 3
        assert processor.pipeline.ready
    stored = _stored_traces(database_url)
    assert sorted(stored) == sorted(group.plug_traces + group.traces(0, 1, 3, 4, 5))
    assert set(stored.values()) == {1}


def test_a_retryable_failure_of_one_request_answers_the_rest_retryable_not_permanent(
        database_url: str) -> None:
    """The database's answer to one request's data is indistinguishable from an outage (SQLSTATE class
    53): the requests committed one by one before it succeed; it and those after it get 503 with
    Retry-After (not 400: retried, they commit once the database takes them)."""
    _install_trigger(database_url)
    sessions = ["s-0", "s-1", "busy-by-trigger", "s-3", "s-4"]
    with running(database_url) as processor:
        group = _Group(processor, sessions)
        group.send_behind_a_busy_write(database_url)
        assert group.answers == [(200, None)] * 2 + [(503, "5")] * 3
        assert _stored_traces(database_url).keys() == set(group.plug_traces + group.traces(0, 1))
        # The writer is connected again; once the database takes the data, the retries commit.
        wait_until(lambda: processor.pipeline.ready, "the writer back")
        _drop_trigger(database_url)
        for body, _traces in group.requests[2:]:
            assert post_traces(group.url, body) == (200, None)
    stored = _stored_traces(database_url)
    assert sorted(stored) == sorted(group.plug_traces + group.traces(0, 1, 2, 3, 4))
    assert set(stored.values()) == {1}


def test_a_transient_failure_in_the_middle_of_a_group_fails_no_request(database_url: str) -> None:
    """The writer's connection is terminated (pg_terminate_backend, as a failover or an idle-session
    killer does) while it writes a group: the requests are committed one by one on a new connection."""
    _install_trigger(database_url)
    sessions = ["s-0", "slow-by-trigger", "s-2", "s-3"]
    terminated: list[int] = []

    def terminate_the_slow_write() -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            def sleeping() -> bool:
                rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                    "'otel-chatbot-writer' AND wait_event = 'PgSleep'").fetchall()
                terminated.extend(pid for pid, in rows)
                return bool(rows)
            wait_until(sleeping, "the group's write in the slow turn")
            conn.execute("SELECT pg_terminate_backend(%s)", (terminated[0],))

    with running(database_url) as processor:
        killer = threading.Thread(target=terminate_the_slow_write)
        killer.start()
        group = _Group(processor, sessions)
        group.send_behind_a_busy_write(database_url)
        killer.join(60)
        assert len(terminated) == 1
        assert group.answers == [(200, None)] * 4
        assert processor.pipeline.ready
    stored = _stored_traces(database_url)
    assert sorted(stored) == sorted(group.plug_traces + group.traces(0, 1, 2, 3))
    assert set(stored.values()) == {1}
