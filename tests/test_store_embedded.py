"""The embedded Postgres: restart on an existing data dir, reuse of a running server, failures."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from store_factories import span, trace_id

from otel_chatbot.errors import Unavailable
from otel_chatbot.records import NormalisedBatch
from otel_chatbot.store.embedded import EmbeddedPostgres, EmbeddedPostgresError
from otel_chatbot.store.migrate import LATEST_VERSION, migrate, schema_version
from otel_chatbot.store.writer import BatchWriter


def _reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def test_restart_on_existing_data_dir_and_reuse_of_a_running_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "pg"
    first = EmbeddedPostgres(data_dir)
    url = first.start()
    assert first.owned and first.start() == url  # start() twice returns the same server
    migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("CREATE TABLE kept (x int)")
        conn.execute("INSERT INTO kept VALUES (42)")

    # A second handle on the same data dir reuses the running server and leaves it running.
    second = EmbeddedPostgres(data_dir)
    assert second.start() == url and not second.owned
    second.shutdown()
    assert _reachable(url)

    first.shutdown()
    first.shutdown()  # safe twice
    assert not _reachable(url)
    assert not (data_dir / "postmaster.pid").exists()

    again = EmbeddedPostgres(data_dir)
    url = again.start()
    try:
        assert again.owned
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
        assert schema_version(url) == LATEST_VERSION
    finally:
        again.shutdown()


def test_writer_reports_unavailable_while_the_server_is_down_then_recovers(tmp_path: Path) -> None:
    server = EmbeddedPostgres(tmp_path / "pg")
    url = server.start()
    migrate(url)
    writer = BatchWriter(url)
    writer.start()
    try:
        assert len(writer.write(NormalisedBatch(spans=[span(trace_id())])).new_spans) == 1
        server.shutdown()
        with pytest.raises(Unavailable):
            writer.write(NormalisedBatch(spans=[span(trace_id())]))
        with pytest.raises(Unavailable):  # still down: reconnecting fails the same way
            writer.write(NormalisedBatch(spans=[span(trace_id())]))
        assert server.start() == url
        retried = writer.write(NormalisedBatch(spans=[span(trace_id())]))  # reconnects by itself
        assert len(retried.new_spans) == 1
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT count(*) FROM stored_span_ids").fetchone() == (2,)
    finally:
        writer.shutdown()
        server.shutdown()


def test_a_data_dir_that_is_not_postgres_fails_with_the_reason(tmp_path: Path) -> None:
    data_dir = tmp_path / "not-pg"
    data_dir.mkdir()
    (data_dir / "notes.txt").write_text("something else lives here")
    with pytest.raises(EmbeddedPostgresError, match=r"initdb|exists"):
        EmbeddedPostgres(data_dir).start()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        EmbeddedPostgres(blocker / "pg").start()
