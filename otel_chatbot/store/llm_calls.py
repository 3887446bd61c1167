"""LLM calls of traces (model, tokens, cost, latency): from ``llm_calls`` rows (blocks layout) or from
the LLM spans of ``spans`` (rows layout). Read through store/trace_fetch.py's SpanReader."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg


@dataclass(frozen=True, slots=True)
class LlmCall:
    """One LLM span of a trace (a span with a model or token counts), for the review page."""

    trace_id: str
    span_id: str
    name: str
    model: str | None
    provider: str | None
    input_tokens: int | None
    output_tokens: int | None
    duration_ms: float
    cost_usd: float | None
    error: bool
    start_time: datetime


_FROM_SPANS = """
SELECT trace_id, span_id, name, model, provider, input_tokens, output_tokens, duration_ms, cost_usd,
       status_code = 2, start_time
FROM spans
WHERE trace_id = ANY(%(traces)s) AND start_time >= %(start)s AND start_time <= %(end)s
  AND (model IS NOT NULL OR input_tokens IS NOT NULL OR output_tokens IS NOT NULL)
ORDER BY start_time, span_id"""

_FROM_LLM_CALLS = """
SELECT trace_id, span_id, name, model, provider, input_tokens, output_tokens, duration_ms, cost_usd,
       status_code = 2, start_time
FROM llm_calls
WHERE trace_id = ANY(%(traces)s) AND start_time >= %(start)s AND start_time <= %(end)s
ORDER BY start_time, span_id"""


def row_llm_calls(conn: psycopg.Connection[Any], trace_ids: Sequence[str], start: datetime,
                  end: datetime) -> list[LlmCall]:
    return _calls(conn, _FROM_SPANS, trace_ids, start, end)


def block_llm_calls(conn: psycopg.Connection[Any], trace_ids: Sequence[str], start: datetime,
                    end: datetime) -> list[LlmCall]:
    return _calls(conn, _FROM_LLM_CALLS, trace_ids, start, end)


def _calls(conn: psycopg.Connection[Any], query: LiteralString, trace_ids: Sequence[str], start: datetime,
           end: datetime) -> list[LlmCall]:
    if not trace_ids:
        return []
    rows = conn.execute(query, {"traces": list(trace_ids), "start": start, "end": end}).fetchall()
    return [LlmCall(*row) for row in rows]
