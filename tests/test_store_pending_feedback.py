"""Feedback that arrives before its turn, at the store: parked, attached on arrival, expired, raced."""

from __future__ import annotations

import threading
import time

import psycopg
from store_factories import NOW_NS, US, feedback, rows, trace_id, turn

from otel_chatbot.records import CommitResult, NormalisedBatch
from otel_chatbot.store.api_pool import ApiPool
from otel_chatbot.store.pending_feedback import PendingFeedbackSweeper
from otel_chatbot.store.writer import BatchWriter


def _sdk_turn(turn_id: str, service: str = "shop-bot") -> NormalisedBatch:
    return NormalisedBatch(turns=[turn(trace_id(), turn_id=turn_id, auto=False, service=service)])


def test_feedback_before_its_turn_waits_then_is_attached_under_the_turns_service(
        writer: BatchWriter, database_url: str) -> None:
    # The widget's rating carries no service (API) or the widget's own (span): the turn's counts.
    early = writer.write(NormalisedBatch(feedback=[feedback("turn-7", "down", NOW_NS, comment="wrong")]))
    assert (early.new_feedback, early.parked_feedback, early.expired_feedback) == ([], 1, 0)
    assert rows(database_url, "SELECT turn_id, rating, comment, origin FROM pending_feedback") == [
        ("turn-7", "down", "wrong", "api")]
    assert rows(database_url, "SELECT count(*) FROM feedback") == [(0,)]

    arrived = writer.write(_sdk_turn("turn-7"))
    attached = [(f.turn_id, f.rating, f.comment, f.origin, f.time_ns, f.service)
                for f in arrived.new_feedback]
    assert attached == [("turn-7", "down", "wrong", "api", NOW_NS // 1000 * 1000, "shop-bot")]
    stored = rows(database_url, "SELECT turn_id, rating, service FROM feedback")
    assert stored == [("turn-7", "down", "shop-bot")]
    assert rows(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]
    # The turn re-sent (a Collector retry) attaches nothing again.
    assert writer.write(_sdk_turn("turn-7")).new_feedback == []


def test_pending_feedback_keeps_the_latest_event_and_a_later_rating_still_counts(
        writer: BatchWriter, database_url: str) -> None:
    writer.write(NormalisedBatch(feedback=[feedback("turn-8", "up", NOW_NS + 10 * US)]))
    late_older = writer.write(NormalisedBatch(feedback=[feedback("turn-8", "down", NOW_NS)]))
    assert late_older.parked_feedback == 0  # an older event does not replace the waiting one
    arrived = writer.write(_sdk_turn("turn-8"))
    assert [(f.rating, f.service) for f in arrived.new_feedback] == [("up", "shop-bot")]
    changed = writer.write(NormalisedBatch(feedback=[feedback("turn-8", "down", NOW_NS + 20 * US)]))
    assert [(f.rating, f.service) for f in changed.new_feedback] == [("down", "shop-bot")]
    assert changed.parked_feedback == 0
    assert rows(database_url, "SELECT rating FROM feedback") == [("down",)]


def test_feedback_and_its_turn_in_one_batch_is_stored_directly(writer: BatchWriter,
                                                                database_url: str) -> None:
    batch = _sdk_turn("turn-9", service="desk-bot")
    batch.feedback.append(feedback("turn-9", "up", NOW_NS))
    result = writer.write(batch)
    assert [(f.turn_id, f.service) for f in result.new_feedback] == [("turn-9", "desk-bot")]
    assert result.parked_feedback == 0
    assert rows(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]


def test_pending_feedback_beyond_the_count_limit_drops_the_oldest(database_url: str) -> None:
    writer = BatchWriter(database_url, pending_feedback_max=3)
    writer.start()
    try:
        results = [writer.write(NormalisedBatch(feedback=[feedback(f"wait-{i}", "up", NOW_NS + i)]))
                   for i in range(5)]
        assert [(r.parked_feedback, r.expired_feedback) for r in results] == [
            (1, 0), (1, 0), (1, 0), (1, 1), (1, 1)]
        assert rows(database_url, "SELECT turn_id FROM pending_feedback ORDER BY 1") == [
            ("wait-2",), ("wait-3",), ("wait-4",)]
        # The dropped one's turn arrives: no rating to attach.
        assert writer.write(_sdk_turn("wait-0")).new_feedback == []
        assert [f.turn_id for f in writer.write(_sdk_turn("wait-3")).new_feedback] == ["wait-3"]
    finally:
        writer.shutdown()


def test_sweeper_expires_pending_feedback_by_age_and_by_count(database_url: str) -> None:
    writer = BatchWriter(database_url)
    writer.start()
    pool = ApiPool(database_url, max_size=2)
    pool.start()
    expired: list[tuple[str, int]] = []
    old = PendingFeedbackSweeper(pool.connection, max_age_s=0.5, max_rows=100, interval_s=60,
                                 on_expired=lambda reason, n: expired.append((reason, n)))
    try:
        writer.write(NormalisedBatch(feedback=[feedback("never-1", "up", NOW_NS),
                                               feedback("never-2", "down", NOW_NS)]))
        assert old.sweep() == {"age": 0, "cap": 0}  # not old yet
        time.sleep(0.6)
        writer.write(NormalisedBatch(feedback=[feedback("recent", "up", NOW_NS)]))
        assert old.sweep() == {"age": 2, "cap": 0}
        assert expired == [("age", 2)]
        assert rows(database_url, "SELECT turn_id FROM pending_feedback") == [("recent",)]
        capped = PendingFeedbackSweeper(pool.connection, max_age_s=3600, max_rows=0, interval_s=60,
                                        on_expired=lambda reason, n: expired.append((reason, n)))
        assert capped.sweep() == {"age": 0, "cap": 1}
        assert expired == [("age", 2), ("cap", 1)]
        # The background thread sweeps on its own; shutdown is safe twice.
        writer.write(NormalisedBatch(feedback=[feedback("never-3", "up", NOW_NS)]))
        background = PendingFeedbackSweeper(pool.connection, max_age_s=0.2, max_rows=100, interval_s=0.1,
                                            on_expired=lambda reason, n: expired.append((reason, n)))
        background.start()
        deadline = time.monotonic() + 10
        while ("age", 1) not in expired and time.monotonic() < deadline:
            time.sleep(0.05)
        background.shutdown()
        background.shutdown()
        assert expired[-1] == ("age", 1)
        assert rows(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]
    finally:
        pool.shutdown()
        pool.shutdown()
        writer.shutdown()


def test_a_rating_and_its_turn_committed_at_once_by_two_writers_meet_exactly_once(database_url: str) -> None:
    # Two writers stand for two replicas: each pair (rating on one, turn on the other) starts together.
    writers = [BatchWriter(database_url), BatchWriter(database_url)]
    for w in writers:
        w.start()
    pairs = 30
    results: list[list[CommitResult]] = [[], []]
    barrier = threading.Barrier(2)

    def run(side: int) -> None:
        for i in range(pairs):
            batch = (NormalisedBatch(feedback=[feedback(f"race-{i}", "down", NOW_NS)]) if side == 0
                     else _sdk_turn(f"race-{i}"))
            barrier.wait(timeout=30)
            results[side].append(writers[side].write(batch))

    threads = [threading.Thread(target=run, args=(side,)) for side in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for w in writers:
            w.shutdown()
    counted = [f for side in results for r in side for f in r.new_feedback]
    assert sorted(f.turn_id for f in counted) == sorted(f"race-{i}" for i in range(pairs))
    assert {f.service for f in counted} == {"shop-bot"}
    parked = sum(r.parked_feedback for r in results[0])
    attached = sum(len(r.new_feedback) for r in results[1])
    assert parked == attached  # each parked rating was attached by its turn's write, no other
    assert rows(database_url, "SELECT count(*) FROM pending_feedback") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM feedback WHERE service = 'shop-bot'") == [(pairs,)]


def test_sweeper_expires_pending_outcomes_whose_turn_never_came(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("""
            INSERT INTO outcomes (session_id, turn_id, kind, value, origin, recorded_at, pending) VALUES
              (NULL, 'gone-turn', 'conversion', 10, 'api', now() - interval '1 hour', true),
              (NULL, 'soon-turn', 'csat', 4, 'api', now(), true),
              ('s-1', NULL, 'conversion', 5, 'api', now() - interval '1 hour', false)""")
    pool = ApiPool(database_url, max_size=1)
    pool.start()
    expired: list[int] = []
    try:
        sweeper = PendingFeedbackSweeper(pool.connection, max_age_s=60, max_rows=100, interval_s=60,
                                         on_expired=lambda reason, n: None,
                                         on_outcomes_expired=expired.append)
        assert sweeper.sweep() == {"age": 0, "cap": 0}
        assert expired == [1]
        # Only the hour-old pending one goes; the recent pending one and the stored one stay.
        assert rows(database_url, "SELECT turn_id, pending FROM outcomes ORDER BY id") == [
            ("soon-turn", True), (None, False)]
        assert sweeper.sweep() == {"age": 0, "cap": 0} and expired == [1]
    finally:
        pool.shutdown()
