"""Builders of the processor records for the store tests (plain data, realistic defaults)."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import psycopg

from otel_chatbot.records import FeedbackRow, FlagRow, SpanRow, TurnRow

DAY_NS = 86_400 * 10**9
NOW_NS = (time.time_ns() // DAY_NS) * DAY_NS + 12 * 3600 * 10**9  # today 12:00 UTC: no day boundary nearby
US = 1000  # Postgres keeps microseconds: distinct event times must differ by at least that


def trace_id() -> str:
    return os.urandom(16).hex()


def span_id() -> str:
    return os.urandom(8).hex()


def span(trace: str, *, sid: str | None = None, parent: str | None = None, start_ns: int = NOW_NS,
         duration_ns: int = 500_000_000, name: str = "op", service: str = "bot", model: str | None = None,
         input_tokens: int | None = None, output_tokens: int | None = None, cost_usd: float | None = None,
         attributes: dict[str, object] | None = None) -> SpanRow:
    return SpanRow(
        trace_id=trace, span_id=sid or span_id(), parent_span_id=parent, name=name, kind=1,
        start_ns=start_ns, end_ns=start_ns + duration_ns, status_code=0, status_message="", service=service,
        attributes_json=json.dumps(attributes or {"k": "v"}),
        resource_json=json.dumps({"service.name": service}), events_json="[]",
        model=model, provider="openai" if model else None, input_tokens=input_tokens,
        output_tokens=output_tokens, cost_usd=cost_usd, operation="chat" if model else None)


def llm_span(trace: str, *, parent: str | None = None, start_ns: int = NOW_NS + 10**6, model: str = "gpt-4o",
             input_tokens: int = 100, output_tokens: int = 50, cost_usd: float = 0.001) -> SpanRow:
    return span(trace, parent=parent, start_ns=start_ns, name="ChatOpenAI", model=model,
                input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost_usd)


def turn(trace: str, *, turn_id: str | None = None, sid: str | None = None, auto: bool = True,
         start_ns: int = NOW_NS, session: str | None = "s-1", user: str | None = "u-1",
         source: str | None = "website", user_message: str | None = "hi", bot_response: str | None = "hello",
         service: str = "bot", **flags: bool) -> TurnRow:
    return TurnRow(
        turn_id=turn_id or (trace if auto else f"turn-{os.urandom(4).hex()}"), trace_id=trace,
        span_id=sid or span_id(), auto=auto, session_id=session, user_id=user, source=source, service=service,
        start_ns=start_ns, latency_s=0.9, user_message=user_message, bot_response=bot_response, model=None,
        **flags)


def flags_of(turn: TurnRow) -> FlagRow:
    """The FlagRow a turn span with ``turn``'s flags makes (what the store keeps a turn's flags from)."""
    return FlagRow(turn.trace_id, "" if turn.auto else turn.turn_id, turn.start_ns, fallback=turn.fallback,
                   fallback_reason=turn.fallback_reason, hallucinated=turn.hallucinated,
                   hallucination_source=turn.hallucination_source, prompt_injection=turn.prompt_injection,
                   blocked=turn.blocked, rate_limited=turn.rate_limited)


def feedback(turn_id: str, rating: str, time_ns: int, *, comment: str | None = None,
             origin: str = "api") -> FeedbackRow:
    return FeedbackRow(turn_id=turn_id, rating=rating, comment=comment, origin=origin, time_ns=time_ns,
                       service="bot")


def rows(url: str, query: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one query on a new connection and return all its rows."""
    with psycopg.connect(url) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]
