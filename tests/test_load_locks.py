"""A request of any size the body limit allows commits against a stock Postgres (64 locks per
transaction), and one group's failure fails only the request that caused it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from store_factories import llm_span, span, trace_id, turn

from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store import embedded
from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.migrate import migrate
from otel_chatbot.store.writer import BatchWriter


@pytest.fixture(scope="module")
def stock_pg_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second real server with Postgres' stock max_locks_per_transaction (64), migrated."""
    patch = pytest.MonkeyPatch()
    patch.setattr(embedded, "_SERVER_OPTIONS", "-c max_locks_per_transaction=64")
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("stockpg")) / "data")
    try:
        url = server.start()
    finally:
        patch.undo()
    try:
        with psycopg.connect(url) as conn:
            assert conn.execute("SHOW max_locks_per_transaction").fetchone() == ("64",)
        migrate(url)
        yield url
    finally:
        server.shutdown()


def test_sixteen_thousand_traces_commit_against_stock_lock_table(stock_pg_url: str) -> None:
    """16,000 one-span traces, each an LLM span with a turn: 16,000 distinct lock ids in one batch."""
    traces = [trace_id() for _ in range(16_000)]
    batch = NormalisedBatch(spans=[llm_span(t) for t in traces], turns=[turn(t) for t in traces])
    writer = BatchWriter(stock_pg_url)
    writer.start()
    try:
        result = writer.write(batch)
    finally:
        writer.shutdown()
    assert len(result.new_spans) == 16_000
    with psycopg.connect(stock_pg_url) as conn:
        ids = set(traces)
        stored = {str(r[0]) for r in conn.execute("SELECT trace_id FROM chat_turns")} & ids
        assert len(stored) == 16_000
        usage = conn.execute("SELECT count(*), sum(input_tokens) FROM trace_usage WHERE trace_id = ANY(%s)",
                             (traces,)).fetchone()
        assert usage == (16_000, 16_000 * 100)


def test_plain_spans_of_many_traces_commit(stock_pg_url: str) -> None:
    traces = [trace_id() for _ in range(16_000)]
    writer = BatchWriter(stock_pg_url)
    writer.start()
    try:
        result = writer.write(NormalisedBatch(spans=[span(t) for t in traces]))
    finally:
        writer.shutdown()
    assert len(result.new_spans) == 16_000


def test_an_oversized_key_fails_only_its_own_request_in_a_group(database_url: str) -> None:
    """A session id too long for the btree index fails every time (program_limit_exceeded): it is a
    permanent refusal of that request only, and the requests grouped with it still commit."""
    import os

    from otel_chatbot.errors import PermanentError
    from otel_chatbot.processor.metrics import ProcessorMetrics
    from otel_chatbot.processor.pipeline import Pipeline

    huge_session = os.urandom(6000).hex()  # incompressible: beyond btree's 2704-byte row limit
    bad_trace = trace_id()
    bad = NormalisedBatch(spans=[span(bad_trace)], turns=[turn(bad_trace, session=huge_session)])
    good_traces = [trace_id() for _ in range(20)]
    goods = [NormalisedBatch(spans=[span(t)], turns=[turn(t)]) for t in good_traces]
    writer = BatchWriter(database_url)
    pipeline = Pipeline(writer, ProcessorMetrics(None), write_batch_spans=10_000)
    # Queue everything before the writer thread runs, so they form one group.
    pipeline._intake_open = True
    pipeline._down_reason = None
    futures = [pipeline.submit(b, "http") for b in [*goods[:10], bad, *goods[10:]]]
    pipeline._intake_open = False
    pipeline.start()
    try:
        outcomes = [f.exception(timeout=30) for f in futures]
    finally:
        pipeline.shutdown(5)
    assert [type(e).__name__ for e in outcomes] == ["NoneType"] * 10 + ["PermanentError"] + ["NoneType"] * 10
    assert isinstance(outcomes[10], PermanentError)
    with psycopg.connect(database_url) as conn:
        stored = {str(r[0]) for r in conn.execute("SELECT trace_id FROM chat_turns")}
    assert stored == set(good_traces)
