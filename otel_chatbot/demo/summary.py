"""Fallback summary SQL for the demo, used only when ``otel_chatbot.store.queries`` is not present."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["DemoSummary", "chat_summary", "format_summary"]


@dataclass
class DemoSummary:
    totals: dict[str, Any]
    by_model: list[tuple[Any, ...]] = field(default_factory=list)


_TOTALS = """
SELECT count(*) AS turns,
       count(DISTINCT session_id) AS sessions,
       count(DISTINCT user_id) AS users,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds) AS p95,
       avg(fallback::int) AS fallback_rate,
       avg(error::int) AS error_rate,
       avg(hallucinated::int) AS hallucination_rate,
       avg(prompt_injection::int) AS injection_rate,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd
FROM chat_turns
"""
_FEEDBACK = "SELECT count(*) FILTER (WHERE rating = 'down'), count(*) FROM feedback"
_BY_MODEL = """
SELECT model, count(*), coalesce(sum(input_tokens + output_tokens), 0), coalesce(sum(cost_usd), 0)
FROM chat_turns WHERE model IS NOT NULL GROUP BY model ORDER BY 2 DESC
"""


def chat_summary(conn: psycopg.Connection[Any]) -> DemoSummary:
    with conn.cursor() as cur:
        cur.execute(_TOTALS)
        row = cur.fetchone()
        assert row is not None and cur.description is not None
        totals = {col.name: value for col, value in zip(cur.description, row, strict=True)}
        cur.execute(_FEEDBACK)
        down, rated = cur.fetchone() or (0, 0)
        totals["thumbs_down_rate"] = (down / rated) if rated else None
        totals["feedback"] = rated
        cur.execute(_BY_MODEL)
        return DemoSummary(totals, list(cur.fetchall()))


def _pct(value: Any) -> str:
    return "-" if value is None else f"{float(value) * 100:.1f}%"


def format_summary(summary: DemoSummary) -> str:
    t = summary.totals
    p50 = "-" if t["p50"] is None else f"{t['p50']:.2f}s"
    p95 = "-" if t["p95"] is None else f"{t['p95']:.2f}s"
    lines = [
        "What was stored",
        f"  turns {t['turns']}   sessions {t['sessions']}   users {t['users']}   feedback {t['feedback']}",
        f"  latency p50 {p50}   p95 {p95}",
        f"  fallback {_pct(t['fallback_rate'])}   errors {_pct(t['error_rate'])}   "
        f"hallucinations {_pct(t['hallucination_rate'])}   injections {_pct(t['injection_rate'])}   "
        f"thumbs-down {_pct(t['thumbs_down_rate'])}",
        f"  tokens in {t['input_tokens']}   out {t['output_tokens']}   cost ${float(t['cost_usd']):.4f}",
    ]
    for model, turns, tokens, cost in summary.by_model:
        lines.append(f"    {model:<20} turns {turns:<6} tokens {tokens:<9} cost ${float(cost):.4f}")
    return "\n".join(lines)
