"""BatchWriter against a real Postgres: idempotence, turn merge rules, token sums, feedback, sessions."""

from __future__ import annotations

import threading

import pytest
from layouts import BOTH_LAYOUTS, span_keys, trace_spans
from store_factories import DAY_NS, NOW_NS, US, feedback, flags_of, llm_span, rows, span, trace_id, turn

from otel_chatbot.errors import PermanentError
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.partitions import BLOCK_TABLES
from otel_chatbot.store.turnplan import fold_auto_turns
from otel_chatbot.store.writer import BatchWriter

pytestmark = BOTH_LAYOUTS


def test_retried_batch_never_duplicates_and_reports_nothing_new(writer: BatchWriter,
                                                                database_url: str) -> None:
    t = trace_id()
    root = span(t)
    batch = NormalisedBatch(spans=[root, llm_span(t, parent=root.span_id)], turns=[turn(t, sid=root.span_id)],
                            feedback=[feedback(t, "down", NOW_NS + 5)])
    first = writer.write(batch)
    assert (len(first.new_spans), len(first.new_turns), len(first.new_feedback)) == (2, 1, 1)
    assert first.new_sessions == [("s-1", "bot", "website")]
    assert first.span_count == 2 and first.duplicate_spans == 0

    again = writer.write(batch)
    assert (again.new_spans, again.new_turns, again.new_feedback, again.new_sessions) == ([], [], [], [])
    assert again.span_count == 2 and again.duplicate_spans == 2
    assert span_keys(database_url) == sorted((t, s.span_id) for s in batch.spans)
    assert rows(database_url, "SELECT count(*), sum(input_tokens) FROM chat_turns") == [(1, 100)]


def test_partly_stored_batch_reports_only_the_new_spans(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    old, new = span(t), span(t, start_ns=NOW_NS + 10)
    writer.write(NormalisedBatch(spans=[old]))
    result = writer.write(NormalisedBatch(spans=[old, new, new]))  # a span repeated in the batch counts once
    assert [s.span_id for s in result.new_spans] == [new.span_id]
    assert result.duplicate_spans == 2
    assert span_keys(database_url) == sorted([(t, old.span_id), (t, new.span_id)])


def test_span_columns_round_trip(writer: BatchWriter, database_url: str, span_storage: str) -> None:
    t = trace_id()
    s = llm_span(t, start_ns=NOW_NS + 123_456_789)
    s.status_code, s.status_message, s.events_json = 2, "boom\ttab\\slash", '[{"name": "e"}]'
    writer.write(NormalisedBatch(spans=[s]))
    (row,) = trace_spans(database_url, t, span_storage)
    # A timestamptz column keeps microseconds; a block keeps the nanoseconds sent.
    precision = 1000 if span_storage == "rows" else 1
    assert row.start_ns == (NOW_NS + 123_456_789) // precision * precision
    assert (row.duration_ms, row.status_code, row.status_message, row.model, row.input_tokens) == (
        500.0, 2, "boom\ttab\\slash", "gpt-4o", 100)
    assert row.attributes == {"k": "v"} and row.events == [{"name": "e"}]


def test_token_sums_whatever_order_and_batch_the_llm_spans_arrive(writer: BatchWriter,
                                                                  database_url: str) -> None:
    t = trace_id()
    root = span(t)
    # An LLM span before its turn, the turn with another LLM span, then a third LLM span later.
    writer.write(NormalisedBatch(spans=[llm_span(t, parent=root.span_id, input_tokens=10, output_tokens=1,
                                                 cost_usd=0.5, model="gpt-4o-mini")]))
    first = writer.write(NormalisedBatch(spans=[root, llm_span(t, parent=root.span_id, input_tokens=20,
                                                               output_tokens=2, cost_usd=0.25)],
                                         turns=[turn(t, sid=root.span_id)]))
    assert len(first.new_turns) == 1
    later = writer.write(NormalisedBatch(spans=[llm_span(t, parent=root.span_id, start_ns=NOW_NS + 10**9,
                                                         input_tokens=30, output_tokens=3, cost_usd=0.125,
                                                         model="claude-3-5-haiku")]))
    assert later.new_turns == []  # a usage update is not a new turn
    assert rows(database_url, "SELECT input_tokens, output_tokens, cost_usd, model FROM chat_turns") == [
        (60, 6, 0.875, "claude-3-5-haiku")]  # model of the latest LLM span


def test_auto_turn_replaced_by_an_ancestor_arriving_later(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    root, child = span(t), span(t, start_ns=NOW_NS + 10**6)
    child_turn = turn(t, sid=child.span_id, start_ns=child.start_ns, session=None, user="u-child",
                      user_message="child q", bot_response="child a", fallback=True)
    first = writer.write(NormalisedBatch(spans=[child, llm_span(t, parent=child.span_id)],
                                         turns=[child_turn], flags=[flags_of(child_turn)]))
    assert [x.turn_id for x in first.new_turns] == [t]

    root_turn = turn(t, sid=root.span_id, start_ns=root.start_ns, session="s-9", user=None,
                     user_message="root q", bot_response=None)
    second = writer.write(NormalisedBatch(spans=[root], turns=[root_turn]))
    assert second.new_turns == []  # replaced, not new
    assert second.new_sessions == [("s-9", "bot", "website")]
    (row,) = rows(database_url, "SELECT turn_id, span_id, started_at = to_timestamp(%s / 1e9), session_id, "
                                "user_id, user_message, bot_response, fallback, input_tokens FROM chat_turns",
                  NOW_NS)
    assert row == (t, root.span_id, True, "s-9", "u-child", "root q", "child a", True, 100)

    # A descendant arriving after the ancestor does not take over.
    third = writer.write(NormalisedBatch(turns=[turn(t, start_ns=NOW_NS + 5 * US, user_message="late")]))
    assert third.new_turns == []
    assert rows(database_url, "SELECT span_id, user_message FROM chat_turns") == [(root.span_id, "root q")]


def test_sdk_turn_suppresses_auto_turns_of_its_trace(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    writer.write(NormalisedBatch(spans=[llm_span(t)], turns=[turn(t)]))
    assert rows(database_url, "SELECT auto FROM chat_turns") == [(True,)]
    sdk = turn(t, auto=False, turn_id="turn-abc", start_ns=NOW_NS - 10)
    result = writer.write(NormalisedBatch(turns=[sdk]))
    # The auto turn was counted at its commit: the SDK turn replacing it is the same turn, not a new one.
    assert result.new_turns == []
    assert rows(database_url, "SELECT counted FROM chat_turns") == [(1,)]
    assert rows(database_url, "SELECT turn_id, auto, input_tokens FROM chat_turns") == [
        ("turn-abc", False, 100)]
    # A later auto candidate of the same trace is not inserted.
    late = writer.write(NormalisedBatch(turns=[turn(t, start_ns=NOW_NS - 100)]))
    assert late.new_turns == []
    assert rows(database_url, "SELECT turn_id FROM chat_turns") == [("turn-abc",)]


def test_feedback_latest_wins_even_when_an_older_event_arrives_later(writer: BatchWriter,
                                                                      database_url: str) -> None:
    writer.write(NormalisedBatch(turns=[turn(trace_id(), turn_id=f"turn-{i}", auto=False) for i in (1, 2)]))
    r1 = writer.write(NormalisedBatch(feedback=[feedback("turn-1", "up", NOW_NS)]))
    assert [(f.turn_id, f.rating) for f in r1.new_feedback] == [("turn-1", "up")]
    r2 = writer.write(NormalisedBatch(feedback=[feedback("turn-1", "down", NOW_NS + 10 * US, comment="no")]))
    assert [f.rating for f in r2.new_feedback] == ["down"]
    r3 = writer.write(NormalisedBatch(feedback=[feedback("turn-1", "up", NOW_NS + 5 * US)]))  # older, late
    assert r3.new_feedback == []
    r4 = writer.write(NormalisedBatch(feedback=[feedback("turn-1", "down", NOW_NS + 20 * US, comment="yes")]))
    assert r4.new_feedback == []  # newer but the same rating: not a change
    assert rows(database_url, "SELECT rating, comment FROM feedback") == [("down", "yes")]
    # Two events for one turn in one batch: only the latest counts.
    r5 = writer.write(NormalisedBatch(feedback=[feedback("turn-2", "down", NOW_NS + 2 * US),
                                                feedback("turn-2", "up", NOW_NS + 1 * US)]))
    assert [(f.rating, f.time_ns) for f in r5.new_feedback] == [("down", NOW_NS + 2 * US)]


def test_partitions_are_created_per_day_on_demand(writer: BatchWriter, database_url: str,
                                                  span_storage: str) -> None:
    a, b = trace_id(), trace_id()
    writer.write(NormalisedBatch(spans=[span(a), span(b, start_ns=NOW_NS - 2 * DAY_NS)],
                                 turns=[turn(a), turn(b, start_ns=NOW_NS - 2 * DAY_NS)]))
    names = {r[0] for r in rows(database_url, "SELECT c.relname FROM pg_inherits i "
                                              "JOIN pg_class c ON c.oid = i.inhrelid WHERE c.relkind = 'r'")}
    tables = ("spans",) if span_storage == "rows" else BLOCK_TABLES
    for table in (*tables, "chat_turns"):
        assert len({n for n in names if n.startswith(table + "_p")}) == 2, table
    table = "spans" if span_storage == "rows" else "span_traces"
    per_partition = rows(database_url, f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1")
    assert sorted(n for _, n in per_partition) == [1, 1]


def test_a_second_writer_process_racing_on_partitions(database_url: str, span_storage: str) -> None:
    writers = [BatchWriter(database_url, span_storage=span_storage) for _ in range(4)]
    errors: list[BaseException] = []
    day = NOW_NS + 30 * DAY_NS  # a day no partition exists for yet

    def run(w: BatchWriter) -> None:
        try:
            w.start()
            t = trace_id()
            w.write(NormalisedBatch(spans=[span(t, start_ns=day)], turns=[turn(t, start_ns=day)]))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            w.shutdown()

    threads = [threading.Thread(target=run, args=(w,)) for w in writers]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert errors == []
    assert rows(database_url, "SELECT count(*) FROM chat_turns") == [(4,)]


def test_concurrent_writers_keep_token_sums_of_a_shared_trace(database_url: str, span_storage: str) -> None:
    t = trace_id()
    root = span(t)
    batches = [NormalisedBatch(spans=[root], turns=[turn(t, sid=root.span_id)])] + [
        NormalisedBatch(spans=[llm_span(t, start_ns=NOW_NS + i * US, input_tokens=1, output_tokens=1,
                                        cost_usd=0.0)])
        for i in range(1, 9)]
    writers = [BatchWriter(database_url, span_storage=span_storage) for _ in batches]
    barrier = threading.Barrier(len(batches))

    def run(w: BatchWriter, b: NormalisedBatch) -> None:
        w.start()
        barrier.wait()
        w.write(b)
        w.shutdown()

    threads = [threading.Thread(target=run, args=pair) for pair in zip(writers, batches, strict=True)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert rows(database_url, "SELECT input_tokens, output_tokens FROM chat_turns") == [(8, 8)]


def test_sessions_reported_once(writer: BatchWriter) -> None:
    a, b = trace_id(), trace_id()
    first = writer.write(NormalisedBatch(turns=[turn(a, session="s-x"), turn(b, session="s-x")]))
    assert first.new_sessions == [("s-x", "bot", "website")]
    assert writer.write(NormalisedBatch(turns=[turn(trace_id(), session="s-x")])).new_sessions == []
    fresh = BatchWriter(writer._url)  # a writer without the in-process cache asks the database
    fresh.start()
    assert fresh.write(NormalisedBatch(turns=[turn(trace_id(), session="s-x")])).new_sessions == []
    fresh.shutdown()


def test_rejected_batch_rolls_back_everything_and_the_writer_goes_on(writer: BatchWriter,
                                                                     database_url: str) -> None:
    t = trace_id()
    bad = NormalisedBatch(spans=[span(t)], turns=[turn(t)], feedback=[feedback(t, "meh", NOW_NS)])
    with pytest.raises(PermanentError, match="rating"):
        writer.write(bad)
    assert span_keys(database_url) == []
    assert rows(database_url, "SELECT count(*) FROM chat_turns") == [(0,)]
    too_big = span(t)
    too_big.input_tokens = 2**40  # does not fit the int column
    with pytest.raises(PermanentError, match="token count"):
        writer.write(NormalisedBatch(spans=[too_big]))
    ok = writer.write(NormalisedBatch(spans=[span(t)], turns=[turn(t)]))
    assert len(ok.new_spans) == 1 and len(ok.new_turns) == 1


def test_write_after_shutdown_is_unavailable(database_url: str) -> None:
    from otel_chatbot.errors import Unavailable

    w = BatchWriter(database_url)
    w.start()
    w.shutdown()
    w.shutdown()  # safe twice
    with pytest.raises(Unavailable):
        w.write(NormalisedBatch(spans=[span(trace_id())]))


def test_fold_auto_turns_keeps_the_earliest_identity_and_fills_gaps() -> None:
    t = trace_id()
    late = turn(t, start_ns=NOW_NS + 5 * US, session="s-late", user_message="late q", blocked=True)
    early = turn(t, start_ns=NOW_NS, session=None, user_message="early q")
    (folded,) = fold_auto_turns([late, early, turn(trace_id(), auto=False)][:2])
    assert (folded.span_id, folded.session_id, folded.user_message, folded.blocked) == (
        early.span_id, "s-late", "early q", True)
