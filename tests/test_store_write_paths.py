"""BatchWriter's fast paths against a real Postgres: COPY values, the per-trace usage table,
the direct COPY of new turns and its fallback, and the upgrade of a database written before trace_usage."""

from __future__ import annotations

import psycopg
import pytest
from layouts import BOTH_LAYOUTS, span_keys, trace_spans
from psycopg import sql
from store_factories import NOW_NS, US, feedback, llm_span, rows, span, trace_id, turn

from otel_chatbot.errors import PermanentError
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.copyrows import TurnEncoder
from otel_chatbot.store.migrate import load_migrations, migrate
from otel_chatbot.store.turnplan import plan_turns
from otel_chatbot.store.writer import BatchWriter

pytestmark = BOTH_LAYOUTS


def test_encoded_values_round_trip_including_nulls_unicode_and_partial_usage(writer: BatchWriter,
                                                                             database_url: str,
                                                                             span_storage: str) -> None:
    t = trace_id()
    s = span(t, name="répondre ✓", service="böt", attributes={"q": "naïve 😀", "n": 1})
    s.events_json = '[{"name": "ünïcode"}]'
    partial = llm_span(t, parent=s.span_id, input_tokens=7)
    partial.output_tokens, partial.cost_usd, partial.provider, partial.operation = None, None, None, None
    result = writer.write(NormalisedBatch(spans=[s, partial]))
    assert len(result.new_spans) == 2
    by_id = {x.span_id: x for x in trace_spans(database_url, t, span_storage)}
    got = by_id[s.span_id]
    assert (got.name, got.service, got.parent_span_id, got.attributes, got.events, got.kind) == (
        "répondre ✓", "böt", None, {"q": "naïve 😀", "n": 1}, [{"name": "ünïcode"}], 1)
    got = by_id[partial.span_id]
    assert (got.parent_span_id, got.input_tokens, got.output_tokens, got.cost_usd, got.provider,
            got.operation) == (s.span_id, 7, None, None, None, None)
    assert rows(database_url, "SELECT input_tokens, output_tokens, cost_usd, llm_spans FROM trace_usage") == [
        (7, 0, 0.0, 1)]


def test_out_of_range_kind_is_rejected_and_nothing_is_stored(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    good, bad = span(t), span(t)
    bad.kind = 70_000  # smallint column: binary COPY would wrap it silently
    with pytest.raises(PermanentError, match="kind 70000"):
        writer.write(NormalisedBatch(spans=[good] * 100 + [bad], turns=[turn(t)]))
    assert span_keys(database_url) == []
    assert len(writer.write(NormalisedBatch(spans=[good])).new_spans) == 1


def test_a_retry_of_many_spans_stores_only_the_new_one(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    spans = [span(t, start_ns=NOW_NS + i * US) for i in range(300)]
    assert len(writer.write(NormalisedBatch(spans=spans)).new_spans) == 300
    again = writer.write(NormalisedBatch(spans=[*spans, span(t)]))
    assert (len(again.new_spans), again.duplicate_spans) == (1, 300)
    assert len(set(span_keys(database_url))) == len(span_keys(database_url)) == 301


def test_usage_counts_each_new_llm_span_once_and_keeps_the_latest_model(writer: BatchWriter,
                                                                       database_url: str) -> None:
    t = trace_id()
    root = span(t)
    late = llm_span(t, parent=root.span_id, start_ns=NOW_NS + 5 * US, model="gpt-4o", input_tokens=10,
                    output_tokens=1, cost_usd=0.5)
    writer.write(NormalisedBatch(spans=[root, late], turns=[turn(t, sid=root.span_id)]))
    early = llm_span(t, parent=root.span_id, start_ns=NOW_NS + 2 * US, model="gpt-4o-mini", input_tokens=20,
                     output_tokens=2, cost_usd=0.25)
    writer.write(NormalisedBatch(spans=[early, late]))  # `late` again: a retried span adds nothing
    # The span that arrived last started earlier: the model stays the latest-starting span's.
    assert rows(database_url, "SELECT input_tokens, output_tokens, cost_usd, model FROM chat_turns") == [
        (30, 3, 0.75, "gpt-4o")]
    assert rows(database_url, "SELECT input_tokens, llm_spans, model FROM trace_usage") == [(30, 2, "gpt-4o")]


def test_llm_spans_before_their_turn_count_in_the_new_turn(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    root = span(t)
    writer.write(NormalisedBatch(spans=[llm_span(t, parent=root.span_id, input_tokens=40, output_tokens=4)]))
    assert rows(database_url, "SELECT count(*) FROM chat_turns") == [(0,)]
    result = writer.write(NormalisedBatch(spans=[root], turns=[turn(t, sid=root.span_id)]))
    assert [x.turn_id for x in result.new_turns] == [t]
    assert rows(database_url, "SELECT input_tokens, output_tokens, model FROM chat_turns") == [
        (40, 4, "gpt-4o")]


def test_sdk_turn_repeated_in_a_batch_is_one_new_turn(writer: BatchWriter, database_url: str) -> None:
    t = trace_id()
    sdk = turn(t, auto=False, turn_id="turn-dup")
    result = writer.write(NormalisedBatch(spans=[llm_span(t)], turns=[sdk, sdk]))
    assert [x.turn_id for x in result.new_turns] == ["turn-dup"]
    assert writer.write(NormalisedBatch(turns=[sdk])).new_turns == []
    assert rows(database_url, "SELECT turn_id, input_tokens FROM chat_turns") == [("turn-dup", 100)]


def test_a_key_taken_by_another_trace_falls_back_to_the_merge_path(writer: BatchWriter,
                                                                    database_url: str) -> None:
    a, b = trace_id(), trace_id()
    writer.write(NormalisedBatch(turns=[turn(a)]))  # auto turn: turn_id = a, started at NOW_NS
    # An SDK turn of another trace claiming the same (turn_id, started_at): the probe of trace b sees
    # nothing, the direct COPY hits the key, the batch is redone through INSERT … ON CONFLICT.
    clash = turn(b, auto=False, turn_id=a)
    result = writer.write(NormalisedBatch(spans=[span(b)], turns=[clash, turn(trace_id())],
                                          feedback=[feedback(a, "up", NOW_NS)]))
    assert len(result.new_spans) == 1 and len(result.new_feedback) == 1
    assert len(result.new_turns) == 1 and result.new_turns[0].turn_id != a
    assert rows(database_url, "SELECT count(*) FROM chat_turns WHERE turn_id = %s", a) == [(1,)]
    assert span_keys(database_url) == [(b, result.new_spans[0].span_id)]


def test_plan_turns_splits_by_what_is_stored() -> None:
    new_trace, merged, sdk_done, sdk_trace = trace_id(), trace_id(), trace_id(), trace_id()
    stored = {merged: [(merged, NOW_NS // US - 5, True)],
              sdk_done: [("turn-x", NOW_NS // US, False)],
              sdk_trace: [(sdk_trace, NOW_NS // US, True)]}
    sdk_new = turn(sdk_trace, auto=False, turn_id="turn-new")
    sdk_retry = turn(sdk_done, auto=False, turn_id="turn-x")
    autos = [turn(new_trace), turn(merged), turn(sdk_done), turn(sdk_trace)]
    fresh, merge, displaced = plan_turns([sdk_new, sdk_retry], autos, stored)
    assert [t.turn_id for t in fresh] == ["turn-new", new_trace]
    assert [t.trace_id for t in merge] == [merged]
    assert displaced == {sdk_trace}


def test_turn_parts_cache_does_not_mix_turns() -> None:
    enc = TurnEncoder()
    a = turn(trace_id(), fallback=True)
    b = turn(trace_id())
    after_a, after_b = enc.tail(a, a.error), enc.tail(b, b.error)
    assert after_a != after_b  # the flags differ, so must their encodings
    assert enc.tail(turn(trace_id(), fallback=True), False) == after_a


def test_upgrade_backfills_trace_usage_from_stored_spans(fresh_database_url: str) -> None:
    url = fresh_database_url
    with psycopg.connect(url) as conn:  # a database at version 2, written by the earlier writer
        conn.execute("CREATE TABLE schema_migrations (version int PRIMARY KEY, name text NOT NULL, "
                     "applied_at timestamptz NOT NULL DEFAULT now())")
        for m in load_migrations():
            if m.version < 3:
                conn.execute(sql.SQL(m.sql))  # type: ignore[arg-type]
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                             (m.version, m.name))
        conn.execute("CREATE TABLE spans_p_old PARTITION OF spans FOR VALUES FROM (MINVALUE) TO (MAXVALUE)")
        t = trace_id()
        stored = (("a1", 1, "old-model", 5), ("a2", 2, "new-model", 7), ("a3", 3, None, None))
        for sid, start, model, tokens in stored:
            conn.execute("INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, "
                         "duration_ms, status_code, service, model, input_tokens) VALUES (%s, %s, 'x', 1, "
                         "to_timestamp(%s), to_timestamp(%s), 0, 0, 'bot', %s, %s)",
                         (t, sid, start, start, model, tokens))
    assert migrate(url) == [m.version for m in load_migrations() if m.version >= 3]
    assert rows(url, "SELECT trace_id, input_tokens, llm_spans, model FROM trace_usage") == [
        (t, 12, 2, "new-model")]
