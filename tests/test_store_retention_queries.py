"""Retention drops whole old partitions; the read queries summarise what is stored."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from layouts import span_keys
from store_factories import DAY_NS, NOW_NS, feedback, flags_of, llm_span, span, trace_id, turn

from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.partitions import BLOCK_TABLES
from otel_chatbot.store.queries import chat_summary, format_summary, turn_exists
from otel_chatbot.store.retention import purge_older_than
from otel_chatbot.store.writer import BatchWriter


@pytest.mark.both_layouts
def test_purge_drops_only_partitions_entirely_older_than_the_cutoff(database_url: str,
                                                                    span_storage: str) -> None:
    old_t, recent_t = trace_id(), trace_id()
    ten_days_ago = NOW_NS - 10 * DAY_NS
    # keeps its cache of known partitions across the purge
    writer = BatchWriter(database_url, span_storage=span_storage)
    writer.start()
    writer.write(NormalisedBatch(
        spans=[span(old_t, start_ns=ten_days_ago), span(recent_t),
               llm_span(old_t, start_ns=ten_days_ago + 10**6), llm_span(recent_t)],
        turns=[turn(old_t, start_ns=ten_days_ago), turn(recent_t)]))
    now = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
    old_day = datetime.fromtimestamp(ten_days_ago / 1e9, UTC).strftime("%Y%m%d")

    assert purge_older_than(database_url, 30, now=now) == []
    dropped = purge_older_than(database_url, 7, now=now)
    tables = ("spans",) if span_storage == "rows" else BLOCK_TABLES
    assert sorted(dropped) == sorted([f"{t}_p{old_day}" for t in (*tables, "chat_turns")])
    assert {t for t, _ in span_keys(database_url)} == {recent_t}
    with psycopg.connect(database_url) as conn:
        if span_storage == "blocks":  # the LLM-call rows of the dropped day went with it
            assert conn.execute("SELECT trace_id FROM llm_calls").fetchall() == [(recent_t,)]
        assert conn.execute("SELECT trace_id FROM chat_turns").fetchall() == [(recent_t,)]
        # usage totals of the purged trace go with its spans; the recent trace keeps its own
        assert conn.execute("SELECT trace_id FROM trace_usage").fetchall() == [(recent_t,)]
    assert purge_older_than(database_url, 7, now=now) == []  # nothing left to drop

    # A late span of the purged day still lands: the writer notices and recreates the partition.
    late = writer.write(NormalisedBatch(spans=[span(trace_id(), start_ns=ten_days_ago)]))
    writer.shutdown()
    assert len(late.new_spans) == 1
    assert len(span_keys(database_url)) == 3


def test_purge_rejects_negative_days(database_url: str) -> None:
    with pytest.raises(ValueError, match="days"):
        purge_older_than(database_url, -1)


def test_chat_summary_and_turn_exists(writer: BatchWriter, database_url: str) -> None:
    a, b, c = trace_id(), trace_id(), trace_id()
    writer.write(NormalisedBatch(
        spans=[llm_span(a, input_tokens=100, output_tokens=10, cost_usd=0.5),
               llm_span(b, input_tokens=50, output_tokens=5, cost_usd=0.25, model="gpt-4o-mini")],
        turns=(turns := [turn(a, session="s1", user="u1", fallback=True),
                         turn(b, session="s1", user="u2", error=True, hallucinated=True),
                         turn(c, session="s2", user="u1", prompt_injection=True)]),
        flags=[flags_of(t) for t in turns],
        feedback=[feedback(a, "down", NOW_NS), feedback(b, "up", NOW_NS)]))
    assert turn_exists(database_url, a) and not turn_exists(database_url, "no-such-turn")
    with psycopg.connect(database_url) as conn:
        assert turn_exists(conn, b)
        summary = chat_summary(conn)
        empty = chat_summary(conn, since=datetime.fromtimestamp(NOW_NS / 1e9 + 3600, UTC))
    assert (summary.turns, summary.sessions, summary.users) == (3, 2, 2)
    assert summary.latency_p50_s == pytest.approx(0.9) and summary.latency_p95_s == pytest.approx(0.9)
    assert summary.fallback_rate == pytest.approx(1 / 3) and summary.error_rate == pytest.approx(1 / 3)
    assert summary.hallucination_rate == pytest.approx(1 / 3)
    assert summary.injection_rate == pytest.approx(1 / 3)
    assert summary.thumbs_down_rate == pytest.approx(0.5) and summary.rated_turns == 2
    assert (summary.input_tokens, summary.output_tokens, summary.cost_usd) == (150, 15, 0.75)
    assert [(m.model, m.turns, m.input_tokens) for m in summary.by_model] == [
        ("gpt-4o", 1, 100), ("gpt-4o-mini", 1, 50), ("unknown", 1, 0)]
    text = format_summary(summary)
    assert "turns              3" in text and "50.0% of 2 rated turns" in text and "gpt-4o-mini" in text
    assert empty.turns == 0 and empty.latency_p50_s is None and empty.thumbs_down_rate is None
    assert "n/a" in format_summary(empty)
