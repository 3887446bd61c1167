"""The figures of ``otel-chatbot stats``, per group of one dimension, read from Postgres in one statement.

A group is the turns of a window (quality/window.py: [since, until), services, sources) sharing a value
of the dimension (``unknown`` when the turn has none). Outcome figures are per conversation: a session
counts in a group when one of its turns does, and its outcomes count whenever they were recorded (a
purchase the day after the chat converts that chat). Engagement: drop-off is a conversation whose last
turn in the window went wrong (an error, a fallback or a thumbs-down); a returning user had a turn before
the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import TYPE_CHECKING, Any, Final

import psycopg
from psycopg import sql

if TYPE_CHECKING:  # the window gives its SQL condition; the store imports no quality module at run time
    from otel_chatbot.quality.window import TurnWindow

DIMENSIONS: Final = ("service", "source", "model", "prompt_version", "app_version")


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One group's figures. Rates are fractions 0..1 (None when there is nothing to divide by)."""

    group: str
    turns: int
    conversations: int
    users: int
    returning_users: int
    turns_per_conversation: float | None
    drop_off_rate: float | None  # of conversations
    latency_p50_s: float | None
    latency_p95_s: float | None
    latency_p99_s: float | None
    error_rate: float | None
    fallback_rate: float | None
    hallucination_rate: float | None
    injection_rate: float | None
    escalation_rate: float | None
    rated_turns: int
    thumbs_down_rate: float | None  # of rated turns
    judged_turns: int
    accuracy: float | None  # mean judge scores, 0-10
    relevance: float | None
    clarity: float | None
    groundedness: float | None
    input_tokens: int
    output_tokens: int
    cost_usd: float
    converted_conversations: int
    conversion_rate: float | None  # conversations with a conversion outcome / conversations
    csat_responses: int
    csat_average: float | None  # 1-5
    nps_responses: int
    nps_average: float | None  # 0-10


_STATS = """
WITH t AS MATERIALIZED (
    SELECT turn_id, session_id, user_id, started_at, latency_seconds, error, fallback, hallucinated,
           prompt_injection, escalated, input_tokens, output_tokens, cost_usd,
           COALESCE({dimension}, 'unknown') AS grp
    FROM chat_turns c
    WHERE {window}
), rated AS (
    SELECT t.grp, t.turn_id, f.rating FROM t JOIN feedback f USING (turn_id)
), turns AS (
    SELECT grp, count(*) AS turns, count(DISTINCT session_id) AS conversations,
           count(session_id) AS conversation_turns, count(DISTINCT user_id) AS users,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds) AS p50,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds) AS p95,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_seconds) AS p99,
           count(*) FILTER (WHERE error) AS errors, count(*) FILTER (WHERE fallback) AS fallbacks,
           count(*) FILTER (WHERE hallucinated) AS hallucinated,
           count(*) FILTER (WHERE prompt_injection) AS injections,
           count(*) FILTER (WHERE escalated) AS escalated,
           COALESCE(sum(input_tokens), 0) AS input_tokens, COALESCE(sum(output_tokens), 0) AS output_tokens,
           COALESCE(sum(cost_usd), 0) AS cost_usd
    FROM t GROUP BY grp
), feedback AS (
    SELECT grp, count(*) AS rated, count(*) FILTER (WHERE rating = 'down') AS down FROM rated GROUP BY grp
), judged AS (
    SELECT t.grp, count(DISTINCT t.turn_id) AS judged, avg(e.accuracy) AS accuracy,
           avg(e.relevance) AS relevance, avg(e.clarity) AS clarity, avg(e.groundedness) AS groundedness
    FROM t JOIN evaluations e USING (turn_id) GROUP BY t.grp
), conversations AS (
    SELECT DISTINCT grp, session_id FROM t WHERE session_id IS NOT NULL
), outcomes_of AS (
    SELECT c.grp, count(DISTINCT c.session_id) FILTER (WHERE o.kind = 'conversion') AS converted,
           count(o.value) FILTER (WHERE o.kind = 'csat') AS csat_n,
           avg(o.value) FILTER (WHERE o.kind = 'csat') AS csat,
           count(o.value) FILTER (WHERE o.kind = 'nps') AS nps_n,
           avg(o.value) FILTER (WHERE o.kind = 'nps') AS nps
    FROM conversations c JOIN outcomes o ON o.session_id = c.session_id AND NOT o.pending
    GROUP BY c.grp
), last_turns AS (
    SELECT DISTINCT ON (t.grp, t.session_id) t.grp, (t.error OR t.fallback OR r.rating = 'down') AS bad
    FROM t LEFT JOIN rated r ON r.turn_id = t.turn_id AND r.grp = t.grp
    WHERE t.session_id IS NOT NULL
    ORDER BY t.grp, t.session_id, t.started_at DESC
), drop_off AS (
    SELECT grp, count(*) FILTER (WHERE bad) AS dropped FROM last_turns GROUP BY grp
), returners AS (
    SELECT u.grp, count(*) AS returning_users
    FROM (SELECT DISTINCT grp, user_id FROM t WHERE user_id IS NOT NULL) u
    -- a turn before the window: on a rolled-up day wholly before it (one index probe), or live from
    -- lookback_from (pruned at plan time) up to the window
    WHERE EXISTS (SELECT 1 FROM rollup_user_days r WHERE r.user_id = u.user_id AND r.day < %(lookback_day)s)
       OR u.user_id IN (SELECT p.user_id FROM chat_turns p WHERE p.started_at >= %(lookback_from)s
                        AND p.started_at < %(window_since)s AND p.user_id IS NOT NULL)
    GROUP BY u.grp
)
SELECT turns.grp, turns.turns, turns.conversations, turns.conversation_turns, turns.users,
       COALESCE(returners.returning_users, 0), COALESCE(drop_off.dropped, 0), turns.p50, turns.p95,
       turns.p99,
       turns.errors, turns.fallbacks, turns.hallucinated, turns.injections, turns.escalated,
       COALESCE(feedback.rated, 0), COALESCE(feedback.down, 0), COALESCE(judged.judged, 0),
       judged.accuracy, judged.relevance, judged.clarity, judged.groundedness, turns.input_tokens,
       turns.output_tokens, turns.cost_usd, COALESCE(outcomes_of.converted, 0),
       COALESCE(outcomes_of.csat_n, 0), outcomes_of.csat, COALESCE(outcomes_of.nps_n, 0), outcomes_of.nps
FROM turns
LEFT JOIN feedback USING (grp) LEFT JOIN judged USING (grp) LEFT JOIN outcomes_of USING (grp)
LEFT JOIN drop_off USING (grp) LEFT JOIN returners USING (grp)
ORDER BY turns.turns DESC, turns.grp"""


def group_stats(conn: psycopg.Connection[Any], window: TurnWindow, *, by: str | None) -> list[GroupStats]:
    """The figures of the turns in ``window`` per value of ``by`` (one of DIMENSIONS), or one group
    "all" when ``by`` is None."""
    if by is not None and by not in DIMENSIONS:
        raise ValueError(f"by: expected one of {', '.join(DIMENSIONS)}, got {by!r}")
    dimension = sql.Literal("all") if by is None else sql.Identifier("c", by)
    where, params = window.where("c")
    params.update(_lookback(conn, window.since))
    query = sql.SQL(_STATS).format(dimension=dimension, window=where)
    return [_group(row) for row in conn.execute(query, params)]


def _lookback(conn: psycopg.Connection[Any], since: datetime) -> dict[str, Any]:
    """Where "a turn before ``since``" is looked for: rolled-up days before ``lookback_day`` (wholly
    before ``since`` and before rollup_state.live_from), live turns from ``lookback_from`` on."""
    row = conn.execute("SELECT live_from FROM rollup_state").fetchone()
    live_from: date = row[0] if row and row[0] is not None else date.min
    day = min(live_from, since.astimezone(UTC).date())
    return {"lookback_day": day, "lookback_from": datetime.combine(day, time.min, UTC)}


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def _opt(value: Any) -> float | None:
    return None if value is None else float(value)


def _group(row: tuple[Any, ...]) -> GroupStats:
    (grp, turns, conversations, conversation_turns, users, returning, dropped, p50, p95, p99, errors,
     fallbacks, hallucinated, injections, escalated, rated, down, judged, accuracy, relevance, clarity,
     groundedness, tokens_in, tokens_out, cost, converted, csat_n, csat, nps_n, nps) = row
    return GroupStats(
        group=str(grp), turns=int(turns), conversations=int(conversations), users=int(users),
        returning_users=int(returning), turns_per_conversation=_ratio(conversation_turns, conversations),
        drop_off_rate=_ratio(dropped, conversations), latency_p50_s=_opt(p50), latency_p95_s=_opt(p95),
        latency_p99_s=_opt(p99), error_rate=_ratio(errors, turns), fallback_rate=_ratio(fallbacks, turns),
        hallucination_rate=_ratio(hallucinated, turns), injection_rate=_ratio(injections, turns),
        escalation_rate=_ratio(escalated, turns), rated_turns=int(rated),
        thumbs_down_rate=_ratio(down, rated),
        judged_turns=int(judged), accuracy=_opt(accuracy), relevance=_opt(relevance), clarity=_opt(clarity),
        groundedness=_opt(groundedness), input_tokens=int(tokens_in), output_tokens=int(tokens_out),
        cost_usd=float(cost), converted_conversations=int(converted),
        conversion_rate=_ratio(converted, conversations), csat_responses=int(csat_n),
        csat_average=_opt(csat),
        nps_responses=int(nps_n), nps_average=_opt(nps))
