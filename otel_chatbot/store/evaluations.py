"""Queries of the LLM judge: which turns and sessions to judge, their context, and storing verdicts.

Retrieved documents are read from OpenInference RETRIEVER spans of the turn's trace
(``retrieval.documents.N.document.content``), fetched through the span reader (either span layout),
kept when they start within an hour before to a day after the turn.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

from otel_chatbot.store.span_storage import DEFAULT_LAYOUT
from otel_chatbot.store.trace_fetch import span_reader

_DOCUMENT_KEY = re.compile(r"^retrieval\.documents\.(\d+)\.document\.content$")


@dataclass(frozen=True, slots=True)
class TurnFilter:
    since: datetime | None = None
    until: datetime | None = None
    service: str | None = None
    source: str | None = None

    def where(self, alias: str = "t") -> tuple[str, dict[str, Any]]:
        """SQL conditions (joined with AND, never empty) and their parameters."""
        clauses = [f"{alias}.bot_response IS NOT NULL", f"{alias}.bot_response <> ''"]
        params: dict[str, Any] = {}
        for key, clause in (("since", f"{alias}.started_at >= %(since)s"),
                            ("until", f"{alias}.started_at < %(until)s"),
                            ("service", f"{alias}.service = %(service)s"),
                            ("source", f"{alias}.source = %(source)s")):
            value = getattr(self, key)
            if value is not None:
                clauses.append(clause)
                params[key] = value
        return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class TurnCandidate:
    turn_id: str
    already_judged: bool


@dataclass(frozen=True, slots=True)
class TurnToJudge:
    turn_id: str
    started_at: datetime
    trace_id: str
    service: str
    source: str | None
    user_message: str | None
    bot_response: str | None
    hallucinated: bool
    documents: tuple[str, ...] = ()


def turn_candidates(conn: psycopg.Connection[Any], where: TurnFilter, evaluator: str,
                    judge_version: str) -> list[TurnCandidate]:
    """Every turn with a reply matching ``where``, oldest first, flagged if this judge has scored it."""
    condition, params = where.where()
    rows = conn.execute(f"""
        SELECT t.turn_id, EXISTS (SELECT 1 FROM evaluations e WHERE e.turn_id = t.turn_id
                                  AND e.evaluator = %(evaluator)s AND e.judge_version = %(version)s)
        FROM chat_turns t WHERE {condition} ORDER BY t.started_at, t.turn_id""",
                        {**params, "evaluator": evaluator, "version": judge_version}).fetchall()
    return [TurnCandidate(str(turn_id), bool(done)) for turn_id, done in rows]


def turns_to_judge(conn: psycopg.Connection[Any], turn_ids: Sequence[str]) -> list[TurnToJudge]:
    """The turns (with their retrieved documents), in the order of ``turn_ids``; missing ones left out."""
    rows = conn.execute("""
        SELECT turn_id, started_at, trace_id, service, source, user_message, bot_response, hallucinated
        FROM chat_turns WHERE turn_id = ANY(%s)""", (list(turn_ids),)).fetchall()
    by_id = {str(r[0]): r for r in rows}
    out = []
    for turn_id in turn_ids:
        r = by_id.get(turn_id)
        if r is None:
            continue
        out.append(TurnToJudge(str(r[0]), r[1], str(r[2]), str(r[3]), r[4], r[5], r[6], bool(r[7]),
                               retrieved_documents(conn, str(r[2]), r[1])))
    return out


def retrieved_documents(conn: psycopg.Connection[Any], trace_id: str, around: datetime) -> tuple[str, ...]:
    """Contents of the documents retrieved in ``trace_id`` (RETRIEVER spans, in start order), read
    through the span reader (either span layout)."""
    low_ns = int((around - timedelta(hours=1)).timestamp() * 1e9)
    high_ns = int((around + timedelta(days=1)).timestamp() * 1e9)
    rows = [(s.attributes,) for s in span_reader(DEFAULT_LAYOUT).trace(conn, trace_id)
            if low_ns <= s.start_ns < high_ns and s.attributes.get("openinference.span.kind") == "RETRIEVER"]
    documents: list[str] = []
    for (attributes,) in rows:
        indexed = []
        for key, value in (attributes or {}).items():
            match = _DOCUMENT_KEY.match(key)
            if match and isinstance(value, str) and value.strip():
                indexed.append((int(match.group(1)), value))
        documents.extend(text for _, text in sorted(indexed))
    return tuple(documents)


@dataclass(frozen=True, slots=True)
class TurnEvaluationRow:
    turn_id: str
    evaluator: str
    judge_version: str
    model: str
    scores: dict[str, float]  # accuracy, relevance, clarity and (with context) groundedness
    hallucinated: bool | None  # None: not assessed (no retrieved documents)
    rationale: str
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def save_turn_evaluation(conn: psycopg.Connection[Any], row: TurnEvaluationRow) -> tuple[bool, bool]:
    """Store a verdict in one transaction; returns (stored, newly_hallucinated).

    A verdict already stored for (turn, evaluator, version) is left alone (stored False). A
    hallucinated verdict flags the turn with source ``judge`` unless it is flagged already, so
    ``chatbot_hallucinations_total`` counts it once.
    """
    with conn.transaction():
        inserted = conn.execute("""
            INSERT INTO evaluations (turn_id, evaluator, judge_version, model, accuracy, relevance, clarity,
                                     groundedness, hallucinated, rationale, input_tokens, output_tokens,
                                     cost_usd)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (turn_id, evaluator, judge_version) DO NOTHING RETURNING id""",
            (row.turn_id, row.evaluator, row.judge_version, row.model, row.scores.get("accuracy"),
             row.scores.get("relevance"), row.scores.get("clarity"), row.scores.get("groundedness"),
             row.hallucinated, row.rationale, row.input_tokens, row.output_tokens, row.cost_usd)).fetchone()
        if inserted is None:
            return False, False
        if not row.hallucinated:
            return True, False
        flagged = conn.execute("""
            UPDATE chat_turns SET hallucinated = true, hallucination_source = 'judge'
            WHERE turn_id = %s AND NOT hallucinated""", (row.turn_id,))
        return True, flagged.rowcount > 0


@dataclass(frozen=True, slots=True)
class SessionCandidate:
    session_id: str
    already_judged: bool


def session_candidates(conn: psycopg.Connection[Any], where: TurnFilter, idle_before: datetime,
                       evaluator: str, judge_version: str) -> list[SessionCandidate]:
    """Sessions with a turn matching ``where`` whose latest turn started before ``idle_before``
    (a conversation still going on is not judged yet), oldest first."""
    condition, params = where.where()
    rows = conn.execute(f"""
        WITH matching AS (SELECT DISTINCT t.session_id FROM chat_turns t
                          WHERE t.session_id IS NOT NULL AND {condition}),
             ended AS (SELECT c.session_id, max(c.started_at) AS last_at FROM chat_turns c
                       JOIN matching USING (session_id) GROUP BY c.session_id
                       HAVING max(c.started_at) < %(idle_before)s)
        SELECT e.session_id, EXISTS (SELECT 1 FROM session_evaluations s WHERE s.session_id = e.session_id
                                     AND s.evaluator = %(evaluator)s AND s.judge_version = %(version)s)
        FROM ended e ORDER BY e.last_at, e.session_id""",
                        {**params, "idle_before": idle_before, "evaluator": evaluator,
                         "version": judge_version}).fetchall()
    return [SessionCandidate(str(s), bool(done)) for s, done in rows]


def session_transcript(conn: psycopg.Connection[Any], session_id: str) -> list[tuple[str | None, str | None]]:
    """(user message, bot reply) of every turn of the session, in order."""
    rows = conn.execute("""
        SELECT user_message, bot_response FROM chat_turns WHERE session_id = %s
        ORDER BY started_at, turn_id""", (session_id,)).fetchall()
    return [(r[0], r[1]) for r in rows]


@dataclass(frozen=True, slots=True)
class SessionEvaluationRow:
    session_id: str
    evaluator: str
    judge_version: str
    model: str
    scores: dict[str, float]  # goal_completion, coherence, frustration
    goal_completed: bool
    rationale: str
    turns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None


def save_session_evaluation(conn: psycopg.Connection[Any], row: SessionEvaluationRow) -> bool:
    """Store a session verdict; False if this judge version had already stored one."""
    with conn.transaction():
        inserted = conn.execute("""
            INSERT INTO session_evaluations (session_id, evaluator, judge_version, model, goal_completion,
                                             coherence, frustration, goal_completed, rationale, turns,
                                             input_tokens, output_tokens, cost_usd)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT (session_id, evaluator, judge_version) DO NOTHING RETURNING id""",
            (row.session_id, row.evaluator, row.judge_version, row.model, row.scores["goal_completion"],
             row.scores["coherence"], row.scores["frustration"], row.goal_completed, row.rationale,
             row.turns, row.input_tokens, row.output_tokens, row.cost_usd)).fetchone()
    return inserted is not None
