"""Engagement by channel for `otel-chatbot stats`: the engagement views (migration 0006) over a window,
through their window functions (migration 0015)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import psycopg
from psycopg import sql


@dataclass(frozen=True, slots=True)
class ChannelEngagement:
    """One channel's figures. ``user_days`` counts each user once per active day; ``returning_user_days``
    those of users already seen on an earlier day. ``csat`` is the share of rated turns rated up."""

    source: str
    conversations: int
    turns_per_conversation: float | None
    user_days: int
    returning_user_days: int
    abandoned: int
    csat: float | None


# The window functions of migration 0015 return the engagement views' rows of the window's days only
# (closed days from the rollups, the rest live), so the cost follows the window, not the history.
_BY_CHANNEL = """
WITH conv AS (
    SELECT source, sum(conversations) AS n, sum(turns) AS turns
    FROM engagement_conversations_daily_between(%(first)s, %(last)s)
    WHERE {filters} GROUP BY 1
), ret AS (
    SELECT source, sum(users) AS users, sum(returning_users) AS returning
    FROM engagement_returning_users_between(%(first)s, %(last)s)
    WHERE {filters} GROUP BY 1
), abandoned AS (
    SELECT source, count(*) AS n FROM engagement_dropoff_between(%(since)s, %(until)s)
    WHERE last_turn_at < %(until)s AND {filters} GROUP BY 1
), csat AS (
    SELECT source, sum(thumbs_up)::double precision / NULLIF(sum(rated_turns), 0) AS share
    FROM engagement_csat_daily_between(%(first)s, %(last)s)
    WHERE {filters} GROUP BY 1
), channels AS (
    SELECT source FROM conv UNION SELECT source FROM ret UNION SELECT source FROM abandoned
    UNION SELECT source FROM csat
)
SELECT ch.source, COALESCE(conv.n, 0), conv.turns::double precision / NULLIF(conv.n, 0),
       COALESCE(ret.users, 0), COALESCE(ret.returning, 0), COALESCE(abandoned.n, 0), csat.share
FROM channels ch
LEFT JOIN conv USING (source)
LEFT JOIN ret USING (source)
LEFT JOIN abandoned USING (source)
LEFT JOIN csat USING (source)
ORDER BY 2 DESC, 1"""


def engagement_by_channel(conn: psycopg.Connection[Any], since: datetime | None = None,
                          until: datetime | None = None, services: Sequence[str] = (),
                          sources: Sequence[str] = ()) -> list[ChannelEngagement]:
    """All stored history, or the UTC days from ``since`` to ``until`` (conversations by the day they
    started, abandoned ones by their last turn in [since, until)) of the given services and channels
    (empty: any)."""
    filters: list[sql.Composable] = [sql.SQL("true")]
    params: dict[str, Any] = {
        # No bound: from year 1 to 9999, the whole history.
        "since": since or datetime.min.replace(tzinfo=UTC),
        "until": until or datetime.max.replace(tzinfo=UTC),
        "first": (since.astimezone(UTC).date() if since else date.min),
        "last": (until.astimezone(UTC).date() if until else date.max),
        "services": list(services), "sources": list(sources)}
    for column, values in (("service", services), ("source", sources)):
        if values:
            filters.append(sql.SQL("{} = ANY(%({})s)").format(sql.Identifier(column), sql.SQL(column + "s")))
    query = sql.SQL(_BY_CHANNEL).format(filters=sql.SQL(" AND ").join(filters))
    return [ChannelEngagement(str(s), int(c), None if t is None else float(t), int(u), int(r), int(a),
                              None if x is None else float(x))
            for s, c, t, u, r, a, x in conn.execute(query, params)]


def _pct(part: float | None, whole: float = 1.0) -> str:
    return "n/a" if part is None or not whole else f"{part / whole * 100:.1f}%"


def format_engagement(rows: list[ChannelEngagement]) -> str:
    if not rows:
        return "Engagement by channel: no conversations yet"
    lines = ["Engagement by channel (UTC days; abandoned: left 30 min after a bad answer)",
             f"  {'channel':<12} {'conversations':>13} {'turns/conv':>10} {'returning':>9} "
             f"{'abandoned':>9} {'CSAT':>6}"]
    for r in rows:
        turns = "n/a" if r.turns_per_conversation is None else f"{r.turns_per_conversation:.1f}"
        lines.append(f"  {r.source[:12]:<12} {r.conversations:>13} {turns:>10} "
                     f"{_pct(r.returning_user_days, r.user_days):>9} {r.abandoned:>9} {_pct(r.csat):>6}")
    return "\n".join(lines)
