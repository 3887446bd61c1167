"""Read queries for the CLI (stats, demo), the feedback API and the review page (LLM calls of a trace)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import psycopg

# turn_stored (migration 0015) probes the live days' partitions (pruned at plan time), then the one
# partition the turn index of closed days names: a lookup costs the same however many days are kept.
# A turn that arrives for a past day is in the index after the next rollup run; until then it is
# answered as pending (202), while the writer stores its rating all the same.
_TURN_STORED = "SELECT turn_stored(%s)"


def turn_exists(url_or_conn: str | psycopg.Connection[Any], turn_id: str) -> bool:
    """True if a turn with this id is stored (the feedback API answers 200, else 202: pending)."""
    if isinstance(url_or_conn, str):
        with psycopg.connect(url_or_conn, autocommit=True) as conn:
            return _turn_exists(conn, turn_id)
    return _turn_exists(url_or_conn, turn_id)


def _turn_exists(conn: psycopg.Connection[Any], turn_id: str) -> bool:
    row = conn.execute(_TURN_STORED, (turn_id,)).fetchone()
    return bool(row and row[0])


@dataclass(frozen=True, slots=True)
class ModelSummary:
    model: str
    turns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class ChatSummary:
    """Aggregates over chat_turns (and their feedback). Rates are fractions of turns, 0..1."""

    turns: int
    sessions: int
    users: int
    latency_p50_s: float | None
    latency_p95_s: float | None
    fallback_rate: float
    error_rate: float
    hallucination_rate: float
    injection_rate: float
    thumbs_down_rate: float | None  # fraction of rated turns rated "down"; None without feedback
    rated_turns: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    by_model: list[ModelSummary] = field(default_factory=list)


_SUMMARY = """
SELECT count(*), count(DISTINCT session_id), count(DISTINCT user_id),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds),
       count(*) FILTER (WHERE fallback), count(*) FILTER (WHERE error),
       count(*) FILTER (WHERE hallucinated), count(*) FILTER (WHERE prompt_injection),
       COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0), COALESCE(sum(cost_usd), 0)
FROM chat_turns WHERE started_at >= %(since)s"""

_FEEDBACK = """
SELECT count(*), count(*) FILTER (WHERE f.rating = 'down')
FROM feedback f JOIN chat_turns t ON t.turn_id = f.turn_id WHERE t.started_at >= %(since)s"""

_BY_MODEL = """
SELECT COALESCE(model, 'unknown'), count(*), COALESCE(sum(input_tokens), 0), COALESCE(sum(output_tokens), 0),
       COALESCE(sum(cost_usd), 0)
FROM chat_turns WHERE started_at >= %(since)s
GROUP BY 1 ORDER BY 2 DESC, 1"""

_EPOCH = datetime.fromisoformat("1970-01-01T00:00:00+00:00")


def chat_summary(conn: psycopg.Connection[Any], since: datetime | None = None) -> ChatSummary:
    """Summary of the turns started at or after ``since`` (all turns when None)."""
    params = {"since": since or _EPOCH}
    row = conn.execute(_SUMMARY, params).fetchone()
    assert row is not None
    turns = int(row[0])
    rated, down = conn.execute(_FEEDBACK, params).fetchone() or (0, 0)
    models = [ModelSummary(str(m), int(n), int(i), int(o), float(c))
              for m, n, i, o, c in conn.execute(_BY_MODEL, params)]

    def rate(count: int) -> float:
        return count / turns if turns else 0.0

    return ChatSummary(
        turns=turns, sessions=int(row[1]), users=int(row[2]),
        latency_p50_s=None if row[3] is None else float(row[3]),
        latency_p95_s=None if row[4] is None else float(row[4]),
        fallback_rate=rate(int(row[5])), error_rate=rate(int(row[6])),
        hallucination_rate=rate(int(row[7])), injection_rate=rate(int(row[8])),
        thumbs_down_rate=int(down) / int(rated) if rated else None, rated_turns=int(rated),
        input_tokens=int(row[9]), output_tokens=int(row[10]), cost_usd=float(row[11]),
        by_model=models,
    )


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def format_summary(summary: ChatSummary) -> str:
    """A plain-text report for the terminal."""
    lines = [
        f"turns              {summary.turns}",
        f"sessions           {summary.sessions}",
        f"users              {summary.users}",
        f"latency p50 / p95  {_secs(summary.latency_p50_s)} / {_secs(summary.latency_p95_s)}",
        f"fallback rate      {_pct(summary.fallback_rate)}",
        f"error rate         {_pct(summary.error_rate)}",
        f"hallucination rate {_pct(summary.hallucination_rate)}",
        f"injection rate     {_pct(summary.injection_rate)}",
        f"thumbs down        {_pct(summary.thumbs_down_rate)} of {summary.rated_turns} rated turns",
        f"tokens in / out    {summary.input_tokens} / {summary.output_tokens}",
        f"cost               ${summary.cost_usd:.4f}",
    ]
    if summary.by_model:
        lines.append("by model:")
        width = max(len(m.model) for m in summary.by_model)
        lines += [f"  {m.model:<{width}}  {m.turns:>7} turns  {m.input_tokens:>9} in  "
                  f"{m.output_tokens:>9} out  ${m.cost_usd:.4f}" for m in summary.by_model]
    return "\n".join(lines)
