"""normalise_traces: LLM columns and messages from every convention the processor accepts."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_chatbot.processor.decode import PROTOBUF, parse_traces
from otel_chatbot.processor.normalise import bot_response_of, normalise_traces, user_message_of
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch

PRICES = PriceTable.load()
T0 = 1_700_000_000_000_000_000


def _value(value: Any) -> Any:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def normalise(*spans: dict[str, Any], service: str | None = "bot", redact: Any = None) -> NormalisedBatch:
    """Build a protobuf request from span dicts, send it through the raw protobuf path."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    if service is not None:
        rs.resource.attributes.append(KeyValue(key="service.name", value=_value(service)))
    scope = rs.scope_spans.add()
    for spec in spans:
        span = scope.spans.add()
        span.trace_id = spec.get("trace", b"\x0a" * 16)
        span.span_id = spec.get("id", os.urandom(8))
        span.parent_span_id = spec.get("parent", b"")
        span.name = spec.get("name", "span")
        span.start_time_unix_nano = T0 + spec.get("start", 0)
        span.end_time_unix_nano = T0 + spec.get("end", 2_000_000_000)
        span.status.code = spec.get("status", 0)
        for key, value in spec.get("attrs", {}).items():
            span.attributes.append(KeyValue(key=key, value=_value(value)))
    return normalise_traces(parse_traces(request.SerializeToString(), PROTOBUF), PRICES, redact)


def test_openinference_llm_span() -> None:
    messages = {
        "llm.input_messages.0.message.role": "system",
        "llm.input_messages.0.message.content": "Be kind.",
        "llm.input_messages.1.message.role": "user",
        "llm.input_messages.1.message.content": "Hi there",
        "llm.output_messages.0.message.role": "assistant",
        "llm.output_messages.0.message.content": "Hello! How can I help?",
    }
    batch = normalise(
        {
            "attrs": {
                "openinference.span.kind": "LLM",
                "llm.model_name": "gpt-4o-2024-08-06",
                "llm.provider": "OpenAI",
                "llm.token_count.prompt": 1_000_000,
                "llm.token_count.completion": 100_000,
                "session.id": "s1",
                **messages,
            }
        }
    )
    row = batch.spans[0]
    assert (row.model, row.provider, row.operation) == ("gpt-4o-2024-08-06", "openai", "chat")
    assert (row.input_tokens, row.output_tokens) == (1_000_000, 100_000)
    assert row.cost_usd == pytest.approx(2.5 + 1.0)  # gpt-4o family price, per million tokens
    turn = batch.turns[0]
    assert (turn.user_message, turn.bot_response, turn.session_id) == (
        "Hi there",
        "Hello! How can I help?",
        "s1",
    )
    assert turn.auto and turn.model == "gpt-4o-2024-08-06"


def test_genai_current_convention() -> None:
    inputs = [
        {"role": "system", "parts": [{"type": "text", "content": "You are a bot."}]},
        {"role": "user", "parts": [{"type": "text", "content": "first question"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "first answer"}]},
        {"role": "user", "parts": [{"type": "text", "content": "Refund please"}]},
    ]
    outputs = [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Refund issued."}],
            "finish_reason": "stop",
        }
    ]
    batch = normalise(
        {
            "name": "chat claude-3-5-sonnet",
            "attrs": {
                "gen_ai.operation.name": "chat",
                "gen_ai.provider.name": "anthropic",
                "gen_ai.request.model": "claude-3-5-sonnet",
                "gen_ai.response.model": "claude-3-5-sonnet-20241022",
                "gen_ai.usage.input_tokens": 2000,
                "gen_ai.usage.output_tokens": 1000,
                "gen_ai.conversation.id": "conv-9",
                "gen_ai.input.messages": json.dumps(inputs),
                "gen_ai.output.messages": json.dumps(outputs),
            },
        }
    )
    row, turn = batch.spans[0], batch.turns[0]
    assert (row.model, row.provider, row.operation) == ("claude-3-5-sonnet-20241022", "anthropic", "chat")
    assert row.cost_usd == pytest.approx((2000 * 3 + 1000 * 15) / 1e6)
    assert (turn.session_id, turn.user_message, turn.bot_response) == (
        "conv-9",
        "Refund please",
        "Refund issued.",
    )


def test_genai_legacy_convention() -> None:
    batch = normalise(
        {
            "attrs": {
                "gen_ai.system": "openai",
                "gen_ai.request.model": "gpt-4o-mini",
                "gen_ai.usage.prompt_tokens": 30,
                "gen_ai.usage.completion_tokens": 12,
                "gen_ai.prompt.0.role": "system",
                "gen_ai.prompt.0.content": "sys",
                "gen_ai.prompt.1.role": "user",
                "gen_ai.prompt.1.content": "old question",
                "gen_ai.prompt.2.role": "assistant",
                "gen_ai.prompt.2.content": "old answer",
                "gen_ai.prompt.3.role": "user",
                "gen_ai.prompt.3.content": "new question",
                "gen_ai.completion.0.role": "assistant",
                "gen_ai.completion.0.content": "new answer",
            }
        }
    )
    row, turn = batch.spans[0], batch.turns[0]
    assert (row.model, row.provider, row.input_tokens, row.output_tokens) == ("gpt-4o-mini", "openai", 30, 12)
    assert (turn.user_message, turn.bot_response) == ("new question", "new answer")


def test_openllmetry_traceloop_convention() -> None:
    batch = normalise(
        {
            "attrs": {
                "llm.request.type": "chat",
                "gen_ai.system": "Mistral",
                "llm.request.model": "mistral-large-latest",
                "llm.usage.prompt_tokens": "40",
                "llm.usage.total_tokens": 100,
                "traceloop.association.properties.session_id": "tl-session",
                "traceloop.association.properties.user_id": "tl-user",
            }
        }
    )
    row, turn = batch.spans[0], batch.turns[0]
    assert (row.model, row.provider, row.operation) == ("mistral-large-latest", "mistral", "chat")
    assert (row.input_tokens, row.output_tokens) == (40, 60)  # string count; output derived from the total
    assert row.cost_usd == pytest.approx((40 * 2 + 60 * 6) / 1e6)
    assert (turn.session_id, turn.user_id) == ("tl-session", "tl-user")


def test_total_only_counts_as_input_and_unknown_model_has_no_cost() -> None:
    row = normalise({"attrs": {"llm.model_name": "my-own-model", "llm.token_count.total": 77}}).spans[0]
    assert (row.input_tokens, row.output_tokens, row.cost_usd) == (77, 0, None)


def test_explicit_cost_attribute_wins_over_the_price_table() -> None:
    row = normalise(
        {
            "attrs": {
                "llm.model_name": "gpt-4o",
                "llm.token_count.prompt": 10,
                "llm.token_count.completion": 10,
                "llm.cost.total": 0.5,
            }
        }
    ).spans[0]
    assert row.cost_usd == 0.5


def test_our_chat_attributes() -> None:
    batch = normalise(
        {
            "name": "chat.turn",
            "status": 2,
            "attrs": {
                "chat.turn.id": "turn-42",
                "session.id": "s",
                "user.id": "u",
                "chat.source": "whatsapp",
                "input.value": "hello",
                "output.value": "sorry, I cannot help",
                "chat.fallback": "true",
                "chat.fallback.reason": "no_answer",
                "chat.hallucination": True,
                "chat.hallucination.source": "judge",
                "chat.prompt_injection": False,
                "chat.blocked": "false",
                "chat.rate_limited": True,
            },
        }
    )
    turn = batch.turns[0]
    assert (turn.turn_id, turn.auto, turn.session_id, turn.user_id, turn.source, turn.service) == (
        "turn-42",
        False,
        "s",
        "u",
        "whatsapp",
        "bot",
    )
    assert (turn.fallback, turn.fallback_reason, turn.hallucinated, turn.hallucination_source) == (
        True,
        "no_answer",
        True,
        "judge",
    )
    assert (turn.prompt_injection, turn.blocked, turn.rate_limited, turn.error) == (False, False, True, True)
    assert turn.latency_s == pytest.approx(2.0) and turn.start_ns == T0
    assert batch.spans[0].input_tokens is None  # no token counts: not an LLM span


def test_missing_service_name_defaults() -> None:
    batch = normalise({"attrs": {"session.id": "s"}}, service=None)
    assert batch.spans[0].service == "unknown_service" and batch.turns[0].service == "unknown_service"


def test_redaction_applies_to_message_attributes_and_turn_text() -> None:
    def redact(text: str) -> str:
        return text.replace("alice@example.com", "[REDACTED:EMAIL]")

    batch = normalise(
        {
            "attrs": {
                "session.id": "s",
                "input.value": "mail alice@example.com",
                "llm.input_messages.0.message.content": "alice@example.com",
                "output.value": "ok",
                "user.id": "alice@example.com",
            }
        },
        redact=redact,
    )
    attributes = json.loads(batch.spans[0].attributes_json)
    assert attributes["input.value"] == "mail [REDACTED:EMAIL]"
    assert attributes["llm.input_messages.0.message.content"] == "[REDACTED:EMAIL]"
    assert attributes["user.id"] == "alice@example.com"  # an id, not message text: left alone
    assert batch.turns[0].user_message == "mail [REDACTED:EMAIL]"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain question", "plain question"),
        ('{"input": "chain input"}', "chain input"),
        ('{"question": "q?", "chat_history": []}', "q?"),
        (
            '{"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "u1"}, '
            '{"role": "assistant", "content": "a1"}, '
            '{"role": "user", "content": [{"type": "text", "text": "u2"}]}], '
            '"model": "gpt-4o"}',
            "u2",
        ),
        (
            '{"messages": [[{"lc": 1, "type": "constructor", '
            '"id": ["langchain", "schema", "messages", "HumanMessage"], '
            '"kwargs": {"content": "lc human", "type": "human"}}]]}',
            "lc human",
        ),
        ('[{"type": "human", "content": "from a list"}]', "from a list"),
        ("{broken json", "{broken json"),
    ],
)
def test_user_message_shapes(value: str, expected: str) -> None:
    assert user_message_of({"input.value": value}) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain answer", "plain answer"),
        ('{"output": "chain output"}', "chain output"),
        (
            '{"choices": [{"message": {"role": "assistant", "content": "openai answer"}}], "usage": {}}',
            "openai answer",
        ),
        ('{"generations": [[{"text": "lc generation"}]], "llm_output": null}', "lc generation"),
        ('{"role": "assistant", "content": [{"type": "text", "text": "anthropic"}]}', "anthropic"),
    ],
)
def test_bot_response_shapes(value: str, expected: str) -> None:
    assert bot_response_of({"output.value": value}) == expected
