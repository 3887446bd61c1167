"""Right to erasure: delete every stored row of one end user, in one transaction.

A user's data is found from two sides: the turns stored under their ``user_id``, and the spans whose
attributes or resource carry their id under any of the accepted names (``user.id``, ``enduser.id``,
…; in the blocks span layout the trace index lists those ids per trace). Every trace touched that way
belongs to them, so all spans of those traces go (retrievals, LLM calls and tool spans carry the
user's words without carrying the id; a span block shared with other users' traces is rewritten
without them), and with the turns everything
keyed by turn (feedback, evaluations, reviews, outcomes, cluster membership), and the sessions that
only this user had. Failure clusters are shared: their pointers to the user's turns and the quoted
message are cleared, the cluster itself stays.

Identifiers here are constants of this module, composed with ``psycopg.sql``; the user id is always a
bound parameter.
"""

from __future__ import annotations

from typing import Any, LiteralString

import psycopg
from psycopg import sql

from otel_chatbot import semconv as sc
from otel_chatbot.store.block_erasure import erase_traces

# Tables keyed by turn id, deleted by ``turn_id = ANY(turns)``. Missing tables (an older schema) are
# skipped, so erasure works on every schema version that has chat_turns.
_BY_TURN = ("feedback", "pending_feedback", "evaluations", "turn_reviews", "failure_cluster_members")

Connection = psycopg.Connection[Any]


def erase_user(url: str, user_id: str) -> dict[str, int]:
    """Delete ``user_id``'s rows; returns the number of rows deleted (or scrubbed) per table."""
    if not user_id:
        raise ValueError("user_id must be non-empty")
    with psycopg.connect(url) as conn, conn.transaction():
        return _erase(conn, user_id)


def _erase(conn: Connection, user_id: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    # A concurrent writer could be storing one more span of the user while we delete: the writer's
    # merge works per trace, so the user's later spans land after this and a second purge removes them.
    blocks = _exists(conn, "span_traces")
    traces = _ids(conn, sql.SQL("SELECT DISTINCT trace_id FROM chat_turns WHERE user_id = %(user)s "
                                "UNION SELECT DISTINCT trace_id FROM spans WHERE ") + _carries_user()
                  + (sql.SQL(" UNION SELECT DISTINCT trace_id FROM span_traces "
                             "WHERE user_ids ? %(user)s") if blocks else sql.SQL("")),
                  user_id)
    turns = _ids(conn, sql.SQL("SELECT turn_id FROM chat_turns WHERE user_id = %(user)s "
                               "OR trace_id = ANY(%(traces)s)"), user_id, traces)
    sessions = _ids(conn, sql.SQL("SELECT DISTINCT session_id FROM chat_turns WHERE session_id IS NOT NULL "
                                  "AND turn_id = ANY(%(turns)s)"), user_id, turns=turns)
    # Sessions someone else also spoke in stay (they are that user's data too).
    shared = set(_ids(conn, sql.SQL("SELECT DISTINCT session_id FROM chat_turns WHERE session_id = "
                                    "ANY(%(sessions)s) AND NOT (turn_id = ANY(%(turns)s))"),
                      user_id, turns=turns, sessions=sessions))
    own_sessions = [s for s in sessions if s not in shared]
    params = {"user": user_id, "traces": traces, "turns": turns, "sessions": own_sessions}

    def delete(table: str, where: LiteralString) -> None:
        if _exists(conn, table):
            statement = sql.SQL("DELETE FROM {} WHERE ").format(sql.Identifier(table)) + sql.SQL(where)
            counts[table] = conn.execute(statement, params).rowcount

    delete("spans", "trace_id = ANY(%(traces)s)")
    if blocks:
        # Blocks hold other users' spans too: they are rewritten without these traces (block_erasure.py).
        counts.update(erase_traces(conn, traces))
    delete("chat_turns", "turn_id = ANY(%(turns)s)")
    if _exists(conn, "unsettled_turns"):
        # Settle reminders of those turns (migration 0018): bookkeeping, not reported as the user's rows.
        conn.execute("DELETE FROM unsettled_turns WHERE turn_id = ANY(%(turns)s)", params)
    delete("turn_parts", "trace_id = ANY(%(traces)s)")
    delete("trace_usage", "trace_id = ANY(%(traces)s)")  # a table before migration 11, a view since
    for table in _BY_TURN:
        delete(table, "turn_id = ANY(%(turns)s)")
    delete("outcomes", "turn_id = ANY(%(turns)s) OR session_id = ANY(%(sessions)s)")
    delete("session_evaluations", "session_id = ANY(%(sessions)s)")
    delete("sessions", "session_id = ANY(%(sessions)s)")
    # Rollups of closed days (migration 0015): the rollup job rebuilds the days touched here.
    delete("rollup_conversation_days", "session_id = ANY(%(sessions)s) OR first_user = %(user)s")
    delete("rollup_user_days", "user_id = %(user)s")
    delete("rollup_turn_index", "turn_id = ANY(%(turns)s)")
    if _exists(conn, "failure_clusters"):
        counts["failure_clusters"] = conn.execute(
            "UPDATE failure_clusters SET "
            "example_turn_ids = ARRAY(SELECT t FROM unnest(example_turn_ids) AS t "
            "WHERE NOT (t = ANY(%(turns)s))), "
            "representative_turn_id = CASE WHEN representative_turn_id = ANY(%(turns)s) THEN NULL "
            "ELSE representative_turn_id END, "
            "representative_message = CASE WHEN representative_turn_id = ANY(%(turns)s) THEN NULL "
            "ELSE representative_message END "
            "WHERE representative_turn_id = ANY(%(turns)s) OR example_turn_ids && %(turns)s::text[]",
            params).rowcount
    return counts


def _carries_user() -> sql.Composed:
    """``attributes->>'user.id' = %(user)s OR …`` over every accepted user-id name, both JSON columns."""
    tests = [sql.SQL("{} ->> {} = %(user)s").format(sql.Identifier(column), sql.Literal(name))
             for column in ("attributes", "resource") for name in sc.USER_ALIASES]
    return sql.SQL("(") + sql.SQL(" OR ").join(tests) + sql.SQL(")")


def _ids(conn: Connection, query: sql.Composed | sql.SQL, user_id: str, traces: list[str] | None = None, *,
         turns: list[str] | None = None, sessions: list[str] | None = None) -> list[str]:
    params = {"user": user_id, "traces": traces or [], "turns": turns or [], "sessions": sessions or []}
    return [str(row[0]) for row in conn.execute(query, params)]


def _exists(conn: Connection, table: str) -> bool:
    """True for a table of that name (a view of that name holds no rows of its own)."""
    row = conn.execute("SELECT relkind IN ('r', 'p') FROM pg_class WHERE oid = to_regclass(%s)",
                       (table,)).fetchone()
    return bool(row and row[0])
