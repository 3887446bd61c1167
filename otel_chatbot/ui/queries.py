"""Read and write queries of the review page: turn lists, the review queue, conversations, reviews.

Every value is a bound parameter; the only identifiers built into SQL (the flag filter's column) come
from a fixed list and go through psycopg.sql.Identifier. Spans are read through store.queries.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from otel_chatbot.quality.select import DEFAULT_SCORE_THRESHOLD
from otel_chatbot.store.llm_calls import LlmCall
from otel_chatbot.store.span_storage import DEFAULT_LAYOUT
from otel_chatbot.store.trace_fetch import SpanReader, span_reader

# A judge score (0-10, any dimension) below this makes a turn a problem turn. Problem turns are the
# same as those of `otel-chatbot failures` and `export` (quality/select.py), ranked for review here.
LOW_SCORE = DEFAULT_SCORE_THRESHOLD
# Flags a reviewer can filter on: (chat_turns column, label).
FLAGS: dict[str, str] = {
    "fallback": "fallback", "hallucinated": "hallucination", "prompt_injection": "prompt injection",
    "blocked": "blocked", "rate_limited": "rate limited", "error": "error", "escalated": "escalated",
}
# Why a turn is in the review queue, most urgent first (the queue's sort order).
PRIORITIES = {1: "thumbs down", 2: "low judge score", 3: "hallucination", 4: "fallback", 5: "error"}

# Per-turn judge summary and the queue priority; %(since)s bounds both tables (a judge row is never
# older than its turn, so evaluations.created_at >= since keeps every score of the window's turns).
# {where} adds conditions on the turn (t) and its feedback (f).
_RANKED = """
WITH judged AS (
    SELECT turn_id, min(LEAST(accuracy, relevance, clarity, groundedness)) AS low_score,
           bool_or(hallucinated) AS judge_hallucinated
    FROM evaluations WHERE created_at >= %(since)s GROUP BY turn_id
), ranked AS (
    SELECT t.turn_id, t.started_at, t.session_id, t.service, t.source, t.user_message,
           t.bot_response, f.rating, j.low_score, r.reviewer, r.reviewed_at,
           CASE WHEN f.rating = 'down' THEN 1
                WHEN j.low_score < %(low)s THEN 2
                WHEN t.hallucinated OR j.judge_hallucinated THEN 3
                WHEN t.fallback THEN 4
                WHEN t.error THEN 5 END AS priority
    FROM chat_turns t
    LEFT JOIN feedback f ON f.turn_id = t.turn_id
    LEFT JOIN judged j ON j.turn_id = t.turn_id
    LEFT JOIN turn_reviews r ON r.turn_id = t.turn_id
    WHERE t.started_at >= %(since)s {where}
)
"""
_PROBLEMS = _RANKED.replace("{where}", "")
_ORDER = "ORDER BY priority, started_at DESC, turn_id"


@dataclass(frozen=True, slots=True)
class TurnFilter:
    """The filters of the turn list; None means "any"."""

    since: datetime
    service: str | None = None
    source: str | None = None
    flag: str | None = None  # a key of FLAGS
    rating: str | None = None  # "up", "down" or "none" (unrated)
    problems_only: bool = False


@dataclass(frozen=True, slots=True)
class QueueItem:
    turn_id: str
    started_at: datetime
    session_id: str | None
    service: str
    source: str | None
    user_message: str | None
    bot_response: str | None
    rating: str | None
    low_score: float | None
    priority: int
    reviewer: str | None
    reviewed_at: datetime | None

    @property
    def reason(self) -> str:
        return PRIORITIES[self.priority]


@dataclass(frozen=True, slots=True)
class QueuePosition:
    """Where a turn sits among the window's problem turns (reviewed ones included)."""

    index: int | None  # 1-based; None when the turn is not a problem turn
    total: int
    reviewed: int  # of ``total``: the review progress, from the same scan
    previous: str | None
    next: str | None
    next_unreviewed: str | None


@dataclass(slots=True)
class ConversationTurn:
    turn: dict[str, Any]
    feedback: dict[str, Any] | None = None
    review: dict[str, Any] | None = None
    evaluations: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: list[LlmCall] = field(default_factory=list)

    @property
    def flags(self) -> list[str]:
        return [label for column, label in FLAGS.items() if self.turn.get(column)]


@dataclass(frozen=True, slots=True)
class Review:
    turn_id: str
    reviewer: str
    rating: str | None
    corrected_reply: str | None
    note: str | None


def _params(since: datetime, **extra: Any) -> dict[str, Any]:
    return {"since": since, "low": LOW_SCORE, **extra}


def review_queue(conn: psycopg.Connection[Any], since: datetime,
                 limit: int = 50) -> tuple[list[QueueItem], int, int]:
    """(problem turns not reviewed yet, most urgent first; reviewed; total problem turns), in one
    scan: the counts are window aggregates over all problem turns, taken before the LIMIT."""
    query = (_PROBLEMS + "SELECT turn_id, started_at, session_id, service, source, user_message, "
             "bot_response, rating, low_score, priority, reviewer, reviewed_at, "
             "count(reviewer) OVER (), count(*) OVER () FROM ranked WHERE priority IS NOT NULL "
             "ORDER BY reviewer IS NOT NULL, priority, started_at DESC, turn_id LIMIT %(limit)s")
    rows = conn.execute(query, _params(since, limit=limit)).fetchall()
    if not rows:
        return [], 0, 0
    queue = [QueueItem(*row[:12]) for row in rows if row[10] is None]
    return queue, int(rows[0][12]), int(rows[0][13])


def queue_position(conn: psycopg.Connection[Any], turn_id: str, since: datetime) -> QueuePosition:
    """Previous/next problem turn around ``turn_id`` and the first unreviewed one after it."""
    query = (_PROBLEMS + "SELECT turn_id, reviewer IS NOT NULL FROM ranked WHERE priority IS NOT NULL "
             + _ORDER)
    order = [(str(tid), bool(done)) for tid, done in conn.execute(query, _params(since))]
    ids = [tid for tid, _ in order]
    reviewed = sum(done for _, done in order)
    unreviewed = [tid for tid, done in order if not done and tid != turn_id]
    if turn_id not in ids:
        return QueuePosition(None, len(ids), reviewed, None, None, unreviewed[0] if unreviewed else None)
    at = ids.index(turn_id)
    after = [tid for tid, done in order[at + 1:] if not done]
    return QueuePosition(at + 1, len(ids), reviewed, ids[at - 1] if at > 0 else None,
                         ids[at + 1] if at + 1 < len(ids) else None,
                         after[0] if after else (unreviewed[0] if unreviewed else None))


def list_turns(conn: psycopg.Connection[Any], filters: TurnFilter, limit: int = 100) -> list[QueueItem]:
    """The newest turns matching ``filters`` (problem or not), with the same columns as the queue."""
    conditions: list[sql.Composable] = []
    params = _params(filters.since, limit=limit)
    if filters.service is not None:
        conditions.append(sql.SQL("t.service = %(service)s"))
        params["service"] = filters.service
    if filters.source is not None:
        conditions.append(sql.SQL("t.source = %(source)s"))
        params["source"] = filters.source
    if filters.flag is not None:
        if filters.flag not in FLAGS:
            raise ValueError(f"unknown flag {filters.flag!r}")
        conditions.append(sql.SQL("t.{}").format(sql.Identifier(filters.flag)))
    if filters.rating == "none":
        conditions.append(sql.SQL("f.rating IS NULL"))
    elif filters.rating is not None:
        conditions.append(sql.SQL("f.rating = %(rating)s"))
        params["rating"] = filters.rating
    where = sql.SQL("").join(sql.SQL(" AND ") + c for c in conditions)
    query = sql.SQL(_RANKED).format(where=where) + sql.SQL(
        "SELECT turn_id, started_at, session_id, service, source, user_message, bot_response, rating, "
        "low_score, coalesce(priority, 0), reviewer, reviewed_at FROM ranked {} "
        "ORDER BY started_at DESC, turn_id LIMIT %(limit)s").format(
            sql.SQL("WHERE priority IS NOT NULL" if filters.problems_only else ""))
    return [QueueItem(*row) for row in conn.execute(query, params)]


def filter_options(conn: psycopg.Connection[Any], since: datetime) -> tuple[list[str], list[str]]:
    """Distinct services and sources of the window's turns (the filter drop-downs)."""
    services = [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT service FROM chat_turns WHERE started_at >= %s ORDER BY 1 LIMIT 200", (since,))]
    sources = [str(r[0]) for r in conn.execute(
        "SELECT DISTINCT source FROM chat_turns WHERE started_at >= %s AND source IS NOT NULL "
        "ORDER BY 1 LIMIT 200", (since,))]
    return services, sources


def recent_reviews(conn: psycopg.Connection[Any], limit: int = 20) -> list[dict[str, Any]]:
    """Who reviewed what, newest first."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT turn_id, reviewer, rating, corrected_reply IS NOT NULL AS corrected, "
                    "reviewed_at FROM turn_reviews ORDER BY reviewed_at DESC, turn_id LIMIT %s", (limit,))
        return cur.fetchall()


_TURN_COLUMNS = ("turn_id, started_at, trace_id, session_id, user_id, source, service, latency_seconds, "
                 "user_message, bot_response, model, input_tokens, output_tokens, cost_usd, "
                 "fallback, fallback_reason, hallucinated, hallucination_source, prompt_injection, "
                 "blocked, rate_limited, error, escalated, escalation_reason")
_MAX_SESSION_TURNS = 200


def conversation(conn: psycopg.Connection[Any], turn_id: str,
                 reader: SpanReader | None = None) -> list[ConversationTurn] | None:
    """The whole session of ``turn_id`` in order (just the turn when it has no session), each turn
    with its feedback, review, judge scores and LLM calls (read with ``reader``, by default the
    default span layout's); None if the turn is unknown."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(f"SELECT {_TURN_COLUMNS} FROM chat_turns WHERE turn_id = %s "
                    "ORDER BY started_at DESC LIMIT 1", (turn_id,))
        selected = cur.fetchone()
        if selected is None:
            return None
        if selected["session_id"] is None:
            turns = [selected]
        else:
            cur.execute(f"SELECT {_TURN_COLUMNS} FROM chat_turns WHERE session_id = %s "
                        "ORDER BY started_at, turn_id LIMIT %s", (selected["session_id"], _MAX_SESSION_TURNS))
            turns = cur.fetchall()
            if not any(t["turn_id"] == turn_id for t in turns):  # a session longer than the cap
                turns.append(selected)
        by_id = {t["turn_id"]: ConversationTurn(t) for t in turns}
        ids = list(by_id)
        cur.execute("SELECT turn_id, rating, comment, origin, given_at FROM feedback "
                    "WHERE turn_id = ANY(%s)", (ids,))
        for row in cur.fetchall():
            by_id[row["turn_id"]].feedback = row
        cur.execute("SELECT turn_id, reviewer, rating, corrected_reply, note, reviewed_at FROM turn_reviews "
                    "WHERE turn_id = ANY(%s)", (ids,))
        for row in cur.fetchall():
            by_id[row["turn_id"]].review = row
        cur.execute("SELECT turn_id, evaluator, judge_version, model, accuracy, relevance, clarity, "
                    "groundedness, hallucinated, rationale, created_at FROM evaluations "
                    "WHERE turn_id = ANY(%s) ORDER BY created_at, id", (ids,))
        for row in cur.fetchall():
            by_id[row["turn_id"]].evaluations.append(row)
    # LLM calls: bounded by the turns' times so only the relevant day partitions are read.
    traces = sorted({str(t["trace_id"]) for t in turns})
    start = min(t["started_at"] for t in turns) - timedelta(hours=1)
    end = max(t["started_at"] for t in turns) + timedelta(hours=1)
    by_trace: dict[str, list[ConversationTurn]] = {}
    for item in by_id.values():
        by_trace.setdefault(str(item.turn["trace_id"]), []).append(item)
    for call in (reader or span_reader(DEFAULT_LAYOUT)).llm_calls(conn, traces, start, end):
        for item in by_trace.get(call.trace_id, []):
            item.llm_calls.append(call)
    return list(by_id.values())


def session_scores(conn: psycopg.Connection[Any], session_id: str | None) -> list[dict[str, Any]]:
    """The conversation-level judge scores of a session (goal completion, coherence, frustration)."""
    if session_id is None:
        return []
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT evaluator, judge_version, model, goal_completion, coherence, frustration, "
                    "goal_completed, rationale, created_at FROM session_evaluations WHERE session_id = %s "
                    "ORDER BY created_at, id", (session_id,))
        return cur.fetchall()


def turn_known(conn: psycopg.Connection[Any], turn_id: str) -> bool:
    row = conn.execute("SELECT EXISTS (SELECT 1 FROM chat_turns WHERE turn_id = %s)", (turn_id,)).fetchone()
    return bool(row and row[0])


def store_review(conn: psycopg.Connection[Any], review: Review) -> None:
    """Insert or replace the review of a turn (latest reviewer wins; reviewed_at is now)."""
    conn.execute(
        "INSERT INTO turn_reviews (turn_id, reviewer, rating, corrected_reply, note, reviewed_at) "
        "VALUES (%s, %s, %s, %s, %s, now()) ON CONFLICT (turn_id) DO UPDATE SET "
        "reviewer = EXCLUDED.reviewer, rating = EXCLUDED.rating, "
        "corrected_reply = EXCLUDED.corrected_reply, note = EXCLUDED.note, reviewed_at = now()",
        (review.turn_id, review.reviewer, review.rating, review.corrected_reply, review.note))
