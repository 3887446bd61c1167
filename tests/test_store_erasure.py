"""Right to erasure: `otel-chatbot purge --user-id` deletes every row of one user, and only theirs.

Spans come through the real OTLP/HTTP exporter into a running processor; the quality-loop rows
(feedback, judge scores, reviews, outcomes, clusters) are written as the commands that own them do.
"""

from __future__ import annotations

import pytest
from export_support import exporting, http_exporter
from layouts import BOTH_LAYOUTS, span_keys, stored_block_texts, trace_spans
from opentelemetry.trace import Tracer
from server_support import base_url, fetch, running

from otel_chatbot.cli import main

pytestmark = BOTH_LAYOUTS
TABLES = ("stored_span_ids", "chat_turns", "trace_usage", "feedback", "evaluations", "turn_reviews",
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


def _store_conversations(url: str, span_storage: str) -> None:
    with running(url, turn_settle_seconds=0, span_storage=span_storage) as processor, \
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


def test_purge_user_deletes_every_row_of_that_user_only(database_url: str, span_storage: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    _store_conversations(database_url, span_storage)
    _store_quality_rows(database_url)
    before = _counts(database_url)
    assert before == {"stored_span_ids": 11, "chat_turns": 5, "trace_usage": 5, "feedback": 2,
                      "evaluations": 3, "turn_reviews": 2, "failure_cluster_members": 3, "outcomes": 2,
                      "session_evaluations": 2, "sessions": 3}
    u_b_spans = span_keys(database_url, [str(t) for (t,) in fetch(
        database_url, "SELECT trace_id FROM chat_turns WHERE user_id = 'u-b'")])
    assert len(u_b_spans) == 4

    # Per-trace usage parts of u-a's traces (as many as the writer keeps for them).
    u_a_traces = ("SELECT trace_id FROM chat_turns WHERE user_id = 'u-a' UNION SELECT trace_id FROM spans "
                  "WHERE attributes->>'enduser.id' = 'u-a' UNION SELECT trace_id FROM span_traces "
                  "WHERE user_ids ? 'u-a'")
    def count(query: str) -> int:
        return int(fetch(database_url, query)[0][0])

    parts = count(f"SELECT count(*) FROM turn_parts WHERE trace_id IN ({u_a_traces})")
    assert parts >= 3
    # The blocks holding u-a's spans (often u-b's too) and u-a's index rows: as the exporter batched them.
    blocks = count(f"SELECT count(DISTINCT block_id) FROM span_traces WHERE trace_id IN ({u_a_traces})")
    index_rows = count(f"SELECT count(*) FROM span_traces WHERE trace_id IN ({u_a_traces})")
    assert (blocks >= 1 and index_rows >= 4) == (span_storage == "blocks")
    assert main(["purge", "--user-id", "u-a", "--database-url", database_url]) == 0
    out = capsys.readouterr().out.splitlines()
    # pending_feedback holds ratings of turns not stored yet: none of a stored turn is left waiting.
    rows_spans, llm = (7, 0) if span_storage == "rows" else (0, 3)
    assert out == [f"spans: {rows_spans}", f"span_blocks: {blocks}", f"span_traces: {index_rows}",
                   f"llm_calls: {llm}", "error_spans: 0", "chat_turns: 3", f"turn_parts: {parts}",
                   "feedback: 1", "pending_feedback: 0", "evaluations: 2",
                   "turn_reviews: 1", "failure_cluster_members: 2", "outcomes: 1", "session_evaluations: 1",
                   "sessions: 1", "rollup_conversation_days: 0", "rollup_user_days: 0",
                   "rollup_turn_index: 0", "failure_clusters: 1",
                   f"{13 + rows_spans + blocks + index_rows + llm + parts} row(s) of user 'u-a' deleted or "
                   "scrubbed"]
    after = _counts(database_url)
    assert after == {"stored_span_ids": 4, "chat_turns": 2, "trace_usage": 2, "feedback": 1,
                     "evaluations": 1, "turn_reviews": 1, "failure_cluster_members": 1, "outcomes": 1,
                     "session_evaluations": 1, "sessions": 2}
    # What is left is u-b's, and nothing left anywhere mentions u-a.
    assert span_keys(database_url) == u_b_spans
    for trace in {t for t, _ in u_b_spans}:  # a rewritten block still reads back whole
        assert len(trace_spans(database_url, trace, span_storage)) == 2
    assert sorted(r[0] for r in fetch(database_url, "SELECT turn_id FROM chat_turns")) == ["tb1", "tb2"]
    assert sorted(r[0] for r in fetch(database_url, "SELECT session_id FROM sessions")) == ["s-b", "s-x"]
    assert fetch(database_url, "SELECT count(*) FROM spans WHERE attributes::text LIKE '%%u-a%%' "
                               "OR resource::text LIKE '%%u-a%%'") == [(0,)]
    texts = stored_block_texts(database_url)
    assert [t for t in texts if "u-a" in t] == [] and (len(texts) > 0) == (span_storage == "blocks")
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
