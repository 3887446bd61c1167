"""Client timestamps cannot create partitions at will: days outside [today - 31, today + 1] go to the
DEFAULT partition (counted in otel_chatbot_spans_out_of_range_total); retention and queries still see
every row."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import psycopg
from layouts import BOTH_LAYOUTS
from prometheus_client import CollectorRegistry
from store_factories import DAY_NS, NOW_NS, span, trace_id, turn

from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.partitions import create_partitions, day_of_ns, list_partitions
from otel_chatbot.store.retention import purge_older_than
from otel_chatbot.store.writer import BatchWriter

pytestmark = BOTH_LAYOUTS
YEAR_NS = 365 * DAY_NS
# The table with one row per stored trace (of one span here) in each layout, and the layout's tables.
TRACE_TABLE = {"rows": "spans", "blocks": "span_traces"}
SPAN_TABLES = {"rows": ("spans",), "blocks": ("span_blocks", "span_traces")}


def _scattered_batch(rng: random.Random, n: int) -> tuple[NormalisedBatch, list[int]]:
    times = [NOW_NS + rng.randrange(-20 * YEAR_NS, 20 * YEAR_NS) for _ in range(n)]
    traces = [trace_id() for _ in times]
    return NormalisedBatch(spans=[span(t, start_ns=ts) for t, ts in zip(traces, times, strict=True)],
                           turns=[turn(t, start_ns=ts) for t, ts in zip(traces, times, strict=True)]), times


def test_scattered_timestamps_create_a_bounded_number_of_partitions(database_url: str,
                                                                   span_storage: str) -> None:
    rng = random.Random(7)
    batch, times = _scattered_batch(rng, 200)
    registry = CollectorRegistry()
    metrics = ProcessorMetrics(registry)
    writer = BatchWriter(database_url, span_storage=span_storage)
    writer.start()
    try:
        result = writer.write(batch)
        metrics.observe_commit(result)
    finally:
        writer.shutdown()
    today = NOW_NS // DAY_NS
    in_window = [ts for ts in times if today - 31 <= ts // DAY_NS <= today + 1]
    assert result.out_of_range_spans == 200 - len(in_window)
    assert registry.get_sample_value("otel_chatbot_spans_out_of_range_total") == 200 - len(in_window)
    with psycopg.connect(database_url) as conn:
        for table in (*SPAN_TABLES[span_storage], "chat_turns"):
            days = {d for _, d in list_partitions(conn, table)}
            assert days == {day_of_ns(ts) for ts in in_window}
        for table in (TRACE_TABLE[span_storage], "chat_turns"):
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (200,)
            default = conn.execute(f"SELECT count(*) FROM {table}_default").fetchone()
            assert default == (200 - len(in_window),)


def test_a_day_partition_created_later_takes_its_rows_from_the_default(database_url: str,
                                                                     span_storage: str) -> None:
    future = NOW_NS + 5 * DAY_NS  # beyond the window today: the default partition
    trace = trace_id()
    table = TRACE_TABLE[span_storage]
    writer = BatchWriter(database_url, span_storage=span_storage)
    writer.start()
    try:
        first = writer.write(NormalisedBatch(spans=[span(trace, start_ns=future, sid="00000000000000aa")]))
        assert first.out_of_range_spans == 1
        with psycopg.connect(database_url) as conn:
            conn.autocommit = True
            for each in SPAN_TABLES[span_storage]:
                create_partitions(conn, each, [day_of_ns(future)])  # that day has come
                assert conn.execute(f"SELECT count(*) FROM {each}_default").fetchone() == (0,)
            name = f"{table}_p{day_of_ns(future):%Y%m%d}"
            assert conn.execute(f"SELECT trace_id FROM {name}").fetchall() == [(trace,)]
            assert conn.execute("SELECT span_id FROM stored_span_ids").fetchall() == [("00000000000000aa",)]
        # A Collector retry of the same span is still a duplicate, not a second row.
        again = writer.write(NormalisedBatch(spans=[span(trace, start_ns=future, sid="00000000000000aa")]))
        assert again.duplicate_spans == 1
    finally:
        writer.shutdown()


def test_retention_deletes_old_rows_of_the_default_partition(database_url: str, span_storage: str) -> None:
    old, recent_far = NOW_NS - 400 * DAY_NS, NOW_NS + 400 * DAY_NS
    writer = BatchWriter(database_url, span_storage=span_storage)
    writer.start()
    try:
        spans = [span(trace_id(), start_ns=old), span(trace_id(), start_ns=recent_far)]
        writer.write(NormalisedBatch(spans=spans, turns=[turn(trace_id(), start_ns=old)]))
    finally:
        writer.shutdown()
    purge_older_than(database_url, 30, now=datetime.fromtimestamp(NOW_NS / 1e9, UTC) + timedelta(hours=1))
    with psycopg.connect(database_url) as conn:
        for table in SPAN_TABLES[span_storage]:
            assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone() == (1,), table
        assert conn.execute("SELECT count(*) FROM chat_turns_default").fetchone() == (0,)
