"""The LLM columns of a span row: model, provider, operation, tokens and cost."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from otel_chatbot import semconv as sc
from otel_chatbot.processor.normalise.plan import Plan, clean_text
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import SpanRow

_OPERATION_BY_KIND: Final = {
    "LLM": "chat",
    "EMBEDDING": "embeddings",
    "TOOL": "execute_tool",
    "AGENT": "invoke_agent",
}
# Agent and workflow spans repeat the summed usage of the LLM calls below them (GenAI invoke_agent,
# the Vercel AI SDK 7 root and steps): their tokens would be counted twice, so they count none.
_AGGREGATE_OPERATIONS: Final = frozenset({"invoke_agent", "invoke_workflow", "agent_step"})
_OPERATION_BY_REQUEST_TYPE: Final = {
    "chat": "chat",
    "completion": "text_completion",
    "embedding": "embeddings",
}


def fill_llm_columns(row: SpanRow, attributes: dict[str, Any], prices: PriceTable, plan: Plan) -> None:
    # Straight-line lookups in preference order: this runs for every LLM span, so no helper calls
    # on the common path.
    get = attributes.get
    model = None
    for key in plan.model_keys:
        value = get(key)
        if type(value) is str and value:
            model = value if "\x00" not in value else clean_text(value)
            break
    provider = None
    for key in plan.provider_keys:
        value = get(key)
        if type(value) is str and value:
            provider = clean_text(value.lower())
            break
    operation = get(sc.GEN_AI_OPERATION_NAME)
    if type(operation) is not str or not operation:
        kind = get(sc.OPENINFERENCE_SPAN_KIND)
        operation = _OPERATION_BY_KIND.get(kind) if type(kind) is str else None
        if operation is None:
            request_type = get("llm.request.type")
            operation = _OPERATION_BY_REQUEST_TYPE.get(request_type) if type(request_type) is str else None
    else:
        operation = clean_text(operation)
    row.model = model
    row.provider = provider if provider is not None else (prices.provider(model) if model else None)
    row.operation = operation
    if not plan.tokens or operation in _AGGREGATE_OPERATIONS:
        return
    input_tokens = output_tokens = None
    for key in plan.input_keys:
        value = get(key)
        if value is not None:
            input_tokens = value if type(value) is int and value >= 0 else _count(value)
            if input_tokens is not None:
                break
    for key in plan.output_keys:
        value = get(key)
        if value is not None:
            output_tokens = value if type(value) is int and value >= 0 else _count(value)
            if output_tokens is not None:
                break
    if input_tokens is None or output_tokens is None:
        total = _first_count(attributes, plan.total_keys)
        if total is not None:
            if input_tokens is None and output_tokens is None:
                input_tokens, output_tokens = total, 0  # no split given: count it all as input
            elif input_tokens is None:
                input_tokens = max(total - (output_tokens or 0), 0)
            else:
                output_tokens = max(total - input_tokens, 0)
        if input_tokens is None and output_tokens is None:
            return
    row.input_tokens = input_tokens = input_tokens or 0
    row.output_tokens = output_tokens = output_tokens or 0
    cost = None
    for key in plan.cost_keys:
        value = get(key)
        if value is not None:
            cost = _cost(value)
            if cost is not None:
                break
    row.cost_usd = cost if cost is not None else prices.cost(model, input_tokens, output_tokens)


def _count(value: Any) -> int | None:
    """A token count given as a string, float or (rejected) bool/negative."""
    if isinstance(value, bool):
        return None
    try:
        count = int(float(value))
    except (TypeError, ValueError, OverflowError):
        return None
    return count if count >= 0 else None


def _cost(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        cost = float(value)
    except (TypeError, ValueError):
        return None
    return cost if cost >= 0 and cost != float("inf") else None


def _first_count(attributes: dict[str, Any], keys: Iterable[str]) -> int | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            count = value if type(value) is int and value >= 0 else _count(value)
            if count is not None:
                return count
    return None
