"""Problem turns: the turns a quality owner wants to look at, with the reasons each was chosen.

A turn is a problem when it got a thumbs-down, the bot fell back, it was flagged hallucinated (by the
app, or by the judge in ``evaluations``), it failed with an error, or its lowest judge score (accuracy,
relevance, clarity, groundedness, over all its evaluations) is below the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from otel_chatbot.quality.window import TurnWindow

REASONS = ("thumbs_down", "fallback", "hallucinated", "low_score", "error")
DEFAULT_SCORE_THRESHOLD = 5.0


@dataclass(frozen=True)
class ProblemTurn:
    turn_id: str
    started_at: datetime
    session_id: str | None
    service: str
    source: str | None
    user_message: str | None
    bot_response: str | None
    reasons: tuple[str, ...]
    lowest_score: float | None
    feedback_comment: str | None


# The judge's verdicts on a turn (LEAST ignores NULLs, so a judge that scored only some dimensions
# still counts) and its latest feedback, joined to chat_turns ``t``; PROBLEM is the problem condition.
JUDGE_AND_FEEDBACK = """
LEFT JOIN feedback f ON f.turn_id = t.turn_id
LEFT JOIN LATERAL (
    SELECT min(least(v.accuracy, v.relevance, v.clarity, v.groundedness)) AS lowest,
           bool_or(v.hallucinated) AS hallucinated
    FROM evaluations v WHERE v.turn_id = t.turn_id
) e ON true
"""
# Each reason as a boolean expression over t, f and e (in the order of REASONS).
_REASON_SQL = {
    "thumbs_down": "coalesce(f.rating = 'down', false)",
    "fallback": "t.fallback",
    "hallucinated": "(t.hallucinated OR coalesce(e.hallucinated, false))",
    "low_score": "coalesce(e.lowest < %(threshold)s, false)",
    "error": "t.error",
}


def problem_condition(reasons: tuple[str, ...] = REASONS) -> str:
    """SQL true for a turn with any of ``reasons`` (needs JUDGE_AND_FEEDBACK and %(threshold)s)."""
    for reason in reasons:
        if reason not in _REASON_SQL:
            raise ValueError(f"--reason: expected one of {', '.join(REASONS)}, got {reason!r}")
    return "(" + " OR ".join(_REASON_SQL[r] for r in reasons) + ")"


PROBLEM = problem_condition()

_PROBLEMS = """
SELECT t.turn_id, t.started_at, t.session_id, t.service, t.source, t.user_message, t.bot_response,
       """ + ", ".join(_REASON_SQL[r] for r in REASONS) + """, e.lowest, f.comment
FROM chat_turns t
""" + JUDGE_AND_FEEDBACK + """
WHERE {window} AND {problem}
  {with_message}
ORDER BY t.started_at DESC, t.turn_id DESC
LIMIT %(limit)s
"""


def select_problem_turns(conn: psycopg.Connection[Any], window: TurnWindow, *,
                         score_threshold: float = DEFAULT_SCORE_THRESHOLD, require_message: bool = False,
                         limit: int | None = None, reasons: tuple[str, ...] = REASONS) -> list[ProblemTurn]:
    """Problem turns of ``window`` with any of ``reasons``, oldest first; with ``limit``, only the
    latest ``limit`` of them. Each turn lists all its reasons, also those not asked for."""
    condition, params = window.where("t")
    with_message = sql.SQL("AND btrim(coalesce(t.user_message, '')) <> ''" if require_message else "")
    query = sql.SQL(_PROBLEMS).format(window=condition, problem=sql.SQL(problem_condition(reasons)),
                                      with_message=with_message)
    params.update(threshold=score_threshold, limit=limit)
    rows = conn.execute(query, params).fetchall()
    turns = [_problem(row) for row in rows]
    turns.reverse()
    return turns


def _problem(row: tuple[Any, ...]) -> ProblemTurn:
    (turn_id, started_at, session_id, service, source, user_message, bot_response,
     *flags, lowest, comment) = row
    reasons = tuple(reason for reason, flag in zip(REASONS, flags, strict=True) if flag)
    return ProblemTurn(turn_id=turn_id, started_at=started_at, session_id=session_id, service=service,
                       source=source, user_message=user_message, bot_response=bot_response, reasons=reasons,
                       lowest_score=None if lowest is None else float(lowest), feedback_comment=comment)
