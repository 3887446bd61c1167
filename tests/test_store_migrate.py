"""Migrations: ordered, recorded, idempotent, safe under concurrency; the read-only role."""

from __future__ import annotations

import subprocess
import sys

import psycopg
import pytest
from psycopg import errors

from otel_chatbot.store.migrate import LATEST_VERSION, load_migrations, migrate, schema_version

_INSERT_FEEDBACK = "INSERT INTO feedback (turn_id, rating, origin, given_at) VALUES ('t', %s, 'api', now())"


def test_migrate_applies_all_versions_once_in_order(fresh_database_url: str) -> None:
    assert schema_version(fresh_database_url) is None
    versions = [m.version for m in load_migrations()]
    assert versions == sorted(versions) and versions[-1] == LATEST_VERSION

    assert migrate(fresh_database_url) == versions
    assert migrate(fresh_database_url) == []  # idempotent
    assert schema_version(fresh_database_url) == LATEST_VERSION
    with psycopg.connect(fresh_database_url) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
        assert [r[0] for r in rows] == versions
        tables = {r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
        partitioned = {r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid")}
    assert {"feedback", "evaluations", "sessions", "schema_migrations"} <= tables
    assert partitioned == {"spans", "chat_turns", "span_blocks", "span_traces", "llm_calls", "error_spans"}


def test_concurrent_migrate_from_two_processes_applies_each_version_once(fresh_database_url: str) -> None:
    code = ("import sys; from otel_chatbot.store.migrate import migrate; "
            "print(','.join(map(str, migrate(sys.argv[1]))))")
    procs = [subprocess.Popen([sys.executable, "-c", code, fresh_database_url], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append([int(v) for v in out.strip().split(",") if v])
    applied = outputs[0] + outputs[1]
    assert sorted(applied) == [m.version for m in load_migrations()]  # every version exactly once
    with psycopg.connect(fresh_database_url) as conn:
        count = conn.execute("SELECT count(*) FROM schema_migrations").fetchone()
    assert count == (len(load_migrations()),)


def test_reader_role_can_select_but_not_write(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        login = conn.execute(
            "SELECT rolcanlogin FROM pg_roles WHERE rolname = 'otel_chatbot_reader'").fetchone()
        assert login == (False,)  # NOLOGIN until an operator enables it
        conn.execute("CREATE TABLE spans_p20000101 PARTITION OF spans "
                     "FOR VALUES FROM ('2000-01-01') TO ('2000-01-02')")
        conn.commit()
        conn.execute("SET ROLE otel_chatbot_reader")
        for table in ("spans", "chat_turns", "feedback", "evaluations", "sessions", "spans_p20000101"):
            conn.execute(f"SELECT count(*) FROM {table}")  # a partition created later is readable too
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute(_INSERT_FEEDBACK, ("up",))
        conn.rollback()
        conn.execute("SET ROLE otel_chatbot_reader")
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("DELETE FROM chat_turns")


def test_schema_rejects_bad_feedback_and_scores(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        with pytest.raises(errors.CheckViolation):
            conn.execute(_INSERT_FEEDBACK, ("meh",))
        conn.rollback()
        with pytest.raises(errors.CheckViolation):
            conn.execute("INSERT INTO evaluations (turn_id, evaluator, accuracy) VALUES ('t', 'judge', 11)")
