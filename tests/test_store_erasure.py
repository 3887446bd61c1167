"""Right to erasure: `otel-chatbot purge --user-id` deletes every row of one user, and only theirs.

Spans come through the real OTLP/HTTP exporter into a running processor; the quality-loop rows
(feedback, judge scores, reviews, outcomes, clusters) are written as the commands that own them do.
"""

from __future__ import annotations

import pytest
from export_support import exporting, http_exporter
from opentelemetry.trace import Tracer
from server_support import base_url, fetch, running

from otel_chatbot.cli import main

TABLES = ("spans", "chat_turns", "trace_usage", "feedback", "evaluations", "turn_reviews",
          "failure_cluster_members", "outcomes", "session_evaluations", "sessions")


def _turn(tracer: Tracer, turn_id: str, session: str, user: str) -> None:
    """A turn span carrying the user, with an LLM child span that does not."""
    attributes = {"chat.turn.id": turn_id, "session.id": session, "user.id": user,
                  "input.value": f"message of {user}", "output.value": "answer"}
    with tracer.start_as_current_span("chat.turn", attributes=attributes), \
            tracer.start_as_current_span("llm", attributes={
                "openinference.span.kind": "LLM", "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 5}):
        pass


def _store_conversations(url: str) -> None:
    with running(url, turn_settle_seconds=0) as processor, \
            exporting(http_exporter(f"{base_url(processor)}/v1/traces")) as tracer:
        _turn(tracer, "ta1", "s-a", "u-a")
        _turn(tracer, "ta2", "s-a", "u-a")
        _turn(tracer, "ta3", "s-x", "u-a")  # a session u-b speaks in too
        _turn(tracer, "tb1", "s-b", "u-b")
        _turn(tracer, "tb2", "s-x", "u-b")
        # A span outside any turn that names the user under another accepted attribute.
        with tracer.start_as_current_span("login", attributes={"enduser.id": "u-a"}):
            pass


def _store_quality_rows(url: str) -> None:
    import psycopg

    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO feedback (turn_id, rating, origin, given_at) VALUES "
                     "('ta1', 'down', 'api', now()), ('tb1', 'up', 'api', now())")
        conn.execute("INSERT INTO evaluations (turn_id, evaluator, judge_version, accuracy) VALUES "
                     "('ta1', 'llm', 'v1', 3), ('ta2', 'llm', 'v1', 9), ('tb1', 'llm', 'v1', 8)")
        conn.execute("INSERT INTO turn_reviews (turn_id, reviewer, rating) VALUES "
                     "('ta1', 'ann', 'down'), ('tb1', 'ann', 'up')")
        conn.execute("INSERT INTO outcomes (session_id, turn_id, kind, origin, recorded_at) VALUES "
                     "('s-a', NULL, 'lead', 'api', now()), (NULL, 'tb1', 'conversion', 'api', now())")
        conn.execute("INSERT INTO session_evaluations (session_id, evaluator, judge_version) VALUES "
                     "('s-a', 'llm', 'v1'), ('s-b', 'llm', 'v1')")
        run = conn.execute("INSERT INTO failure_cluster_runs (window_start, window_end, embedder, "
                           "problem_turns) VALUES (now(), now(), 'hash', 3) RETURNING run_id").fetchone()
        assert run is not None
        conn.execute("INSERT INTO failure_clusters (run_id, cluster_id, label, representative_turn_id, "
                     "representative_message, size, share, example_turn_ids) VALUES "
                     "(%s, 0, 'hours', 'ta1', 'message of u-a', 3, 1.0, ARRAY['ta1', 'tb1'])", run)
        conn.execute("INSERT INTO failure_cluster_members (run_id, cluster_id, turn_id) VALUES "
                     "(%s, 0, 'ta1'), (%s, 0, 'ta2'), (%s, 0, 'tb1')", (run[0], run[0], run[0]))


def _counts(url: str) -> dict[str, int]:
    return {table: int(fetch(url, f"SELECT count(*) FROM {table}")[0][0]) for table in TABLES}


def test_purge_user_deletes_every_row_of_that_user_only(database_url: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _store_conversations(database_url)
    _store_quality_rows(database_url)
    before = _counts(database_url)
    assert before == {"spans": 11, "chat_turns": 5, "trace_usage": 5, "feedback": 2, "evaluations": 3,
                      "turn_reviews": 2, "failure_cluster_members": 3, "outcomes": 2,
                      "session_evaluations": 2, "sessions": 3}

    # Per-trace usage parts of u-a's traces (as many as the writer keeps for them).
    parts = int(fetch(database_url, "SELECT count(*) FROM turn_parts WHERE trace_id IN (SELECT trace_id "
                                    "FROM chat_turns WHERE user_id = 'u-a' UNION SELECT trace_id FROM spans "
                                    "WHERE attributes->>'enduser.id' = 'u-a')")[0][0])
    assert parts >= 3
    assert main(["purge", "--user-id", "u-a", "--database-url", database_url]) == 0
    out = capsys.readouterr().out.splitlines()
    # pending_feedback holds ratings of turns not stored yet: none of a stored turn is left waiting.
    assert out == ["spans: 7", "chat_turns: 3", f"turn_parts: {parts}", "feedback: 1", "pending_feedback: 0",
                   "evaluations: 2",
                   "turn_reviews: 1", "failure_cluster_members: 2", "outcomes: 1", "session_evaluations: 1",
                   "sessions: 1", "rollup_conversation_days: 0", "rollup_user_days: 0",
                   "rollup_turn_index: 0",
                   "failure_clusters: 1",
                   f"{20 + parts} row(s) of user 'u-a' deleted or scrubbed"]
    after = _counts(database_url)
    assert after == {"spans": 4, "chat_turns": 2, "trace_usage": 2, "feedback": 1, "evaluations": 1,
                     "turn_reviews": 1, "failure_cluster_members": 1, "outcomes": 1,
                     "session_evaluations": 1, "sessions": 2}
    # What is left is u-b's, and nothing left anywhere mentions u-a.
    assert sorted(r[0] for r in fetch(database_url, "SELECT turn_id FROM chat_turns")) == ["tb1", "tb2"]
    assert sorted(r[0] for r in fetch(database_url, "SELECT session_id FROM sessions")) == ["s-b", "s-x"]
    assert fetch(database_url, "SELECT count(*) FROM spans WHERE attributes::text LIKE '%%u-a%%' "
                               "OR resource::text LIKE '%%u-a%%'") == [(0,)]
    assert fetch(database_url, "SELECT representative_turn_id, representative_message, example_turn_ids "
                               "FROM failure_clusters") == [(None, None, ["tb1"])]
    # A second purge finds nothing more.
    assert main(["purge", "--user-id", "u-a", "--database-url", database_url]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "0 row(s) of user 'u-a' deleted or scrubbed"


def test_purge_user_refuses_bad_input(database_url: str, fresh_database_url: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["purge", "--user-id", " ", "--database-url", database_url]) == 2
    assert "user_id: must be non-empty" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["purge", "--user-id", "u-a", "--older-than", "3", "--database-url", database_url])
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
    # An unmigrated database is refused, not reported as purged.
    assert main(["purge", "--user-id", "u-a", "--database-url", fresh_database_url]) == 2
    assert "has no otel-chatbot schema; run `otel-chatbot serve` or `otel-chatbot migrate` first" in \
        capsys.readouterr().err
    assert main(["purge", "--older-than", "3", "--database-url", fresh_database_url]) == 2
    assert "has no otel-chatbot schema" in capsys.readouterr().err
