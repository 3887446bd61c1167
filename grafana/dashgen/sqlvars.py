"""The Postgres variables shared by the SQL dashboards, and the WHERE clauses that use them."""

from __future__ import annotations

from dashgen.core import JSON, sql_variable

SERVICE = sql_variable("service", "Service", "SELECT DISTINCT service FROM chat_turns ORDER BY 1")
CHANNEL = sql_variable("channel", "Channel",
                       "SELECT DISTINCT COALESCE(source, 'unknown') FROM chat_turns ORDER BY 1")
MODEL = sql_variable("model", "Model",
                     "SELECT DISTINCT COALESCE(model, 'unknown') FROM chat_turns ORDER BY 1")


def turn_filter(alias: str = "t", *, model: bool = False) -> str:
    """Service and channel (and model) filters on a chat_turns alias."""
    clause = f"{alias}.service IN ($service) AND COALESCE({alias}.source, 'unknown') IN ($channel)"
    if model:
        clause += f" AND COALESCE({alias}.model, 'unknown') IN ($model)"
    return clause


def view_filter() -> str:
    """Service and channel filters on an engagement view (its source is never NULL)."""
    return "service IN ($service) AND source IN ($channel)"


def variables(*, model: bool = False) -> list[JSON]:
    return [SERVICE, CHANNEL, MODEL] if model else [SERVICE, CHANNEL]


def flags(alias: str = "t") -> str:
    """A turn's flags as one readable text column."""
    names = (("error", "error"), ("fallback", "fallback"), ("hallucinated", "hallucination"),
             ("prompt_injection", "injection"), ("blocked", "blocked"), ("rate_limited", "rate-limited"),
             ("escalated", "escalated"))
    cases = ", ".join(f"CASE WHEN {alias}.{col} THEN '{name}' END" for col, name in names)
    return f"concat_ws(', ', {cases})"


def session_link(dashboard_url: str) -> JSON:
    """Data link of a ``session`` column: that conversation on the Conversations dashboard."""
    return {"title": "Open this conversation", "url": dashboard_url}
