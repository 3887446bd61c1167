"""The Vercel AI SDK's ``ai.*`` span attributes as the processor reads them (pure functions).

The end-to-end run of the real SDK is in test_frameworks_vercel_ai.py; these cover the shapes its
versions emit that one pinned version cannot show (AI SDK 4 usage names, prompt forms, embeddings).
"""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_chatbot.processor.decode import PROTOBUF, parse_traces
from otel_chatbot.processor.normalise import normalise_traces, vercel_ai
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch

PRICES = PriceTable.load()
T0 = 1_700_000_000_000_000_000
TRACE = b"\x0b" * 16
META = {"ai.telemetry.metadata.sessionId": "s-1", "ai.telemetry.metadata.userId": "u-1",
        "ai.telemetry.metadata.channel": "whatsapp", "ai.telemetry.functionId": "chat",
        "ai.model.id": "gpt-4o", "ai.model.provider": "openai.chat"}


def _normalise(*spans: tuple[str, bytes, bytes, dict[str, Any]], redact: Any = None) -> NormalisedBatch:
    """(name, span id, parent id, attributes) spans of one trace, through the protobuf path."""
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for index, (name, span_id, parent, attributes) in enumerate(spans):
        span = scope.spans.add(trace_id=TRACE, span_id=span_id, parent_span_id=parent, name=name,
                               start_time_unix_nano=T0 + index, end_time_unix_nano=T0 + 1_000_000)
        for key, value in attributes.items():
            any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
            span.attributes.append(KeyValue(key=key, value=any_value))
    return normalise_traces(parse_traces(request.SerializeToString(), PROTOBUF), PRICES, redact)


def test_ai_sdk_4_generate_text_counts_the_provider_call_only() -> None:
    # AI SDK 4 put promptTokens/completionTokens on both spans, GenAI names on the call only.
    root = {**META, "ai.operationId": "ai.generateText", "ai.prompt": json.dumps({"prompt": "Hi, refund?"}),
            "ai.response.text": "Sure.", "ai.usage.promptTokens": 11, "ai.usage.completionTokens": 2}
    call = {**META, "ai.operationId": "ai.generateText.doGenerate", "ai.response.text": "Sure.",
            "ai.prompt.messages": json.dumps([{"role": "user", "content": [{"type": "text",
                                                                             "text": "Hi, refund?"}]}]),
            "gen_ai.usage.prompt_tokens": 11, "gen_ai.usage.completion_tokens": 2,
            "ai.usage.promptTokens": 11, "ai.usage.completionTokens": 2}
    batch = _normalise(("ai.generateText", b"\x01" * 8, b"", root),
                       ("ai.generateText.doGenerate", b"\x02" * 8, b"\x01" * 8, call))
    (turn,) = batch.turns
    assert (turn.span_id, turn.session_id, turn.user_id, turn.source) == ("01" * 8, "s-1", "u-1", "whatsapp")
    assert (turn.user_message, turn.bot_response, turn.model) == ("Hi, refund?", "Sure.", "gpt-4o")
    by_name = {s.name: s for s in batch.spans}
    assert (by_name["ai.generateText"].input_tokens, by_name["ai.generateText"].output_tokens) == (None, None)
    doc = by_name["ai.generateText.doGenerate"]
    assert (doc.input_tokens, doc.output_tokens, doc.provider, doc.operation) == (11, 2, "openai", "chat")
    assert doc.cost_usd == PRICES.cost("gpt-4o", 11, 2)
    # the stored attributes are the ones received, without the derived names
    assert "input.value" not in json.loads(by_name["ai.generateText"].attributes_json)


def test_provider_call_alone_is_a_turn_with_its_tokens() -> None:
    # The root may come in a later request: until then the call is the trace's turn.
    call = {**META, "ai.operationId": "ai.streamText.doStream", "ai.response.text": "On Monday.",
            "ai.prompt.messages": json.dumps([{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "When?"}]),
            "ai.response.model": "gpt-4o-2024-08-06", "ai.usage.inputTokens": 7, "ai.usage.outputTokens": 3}
    batch = _normalise(("ai.streamText.doStream", b"\x02" * 8, b"\x01" * 8, call))
    (turn,) = batch.turns
    assert (turn.user_message, turn.bot_response, turn.model, turn.session_id) == (
        "When?", "On Monday.", "gpt-4o-2024-08-06", "s-1")
    (span,) = batch.spans
    assert (span.input_tokens, span.output_tokens) == (7, 3)


def test_user_message_forms() -> None:
    parts = [{"type": "image", "image": "..."}, {"type": "text", "text": "What is this?"}]
    assert vercel_ai.user_message(json.dumps({"system": "x", "prompt": "plain"})) == "plain"
    prompt = json.dumps({"prompt": [{"role": "user", "content": parts}]})
    assert vercel_ai.user_message(prompt) == "What is this?"
    assert vercel_ai.user_message(json.dumps({"messages": [
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"}, {"role": "tool", "content": []}]})) == "second"
    assert vercel_ai.user_message("not json") == "not json"
    assert vercel_ai.user_message(json.dumps({"messages": [{"role": "system", "content": "x"}]})) is None
    assert vercel_ai.user_message(None) is None


def test_embeddings_and_unknown_operations_are_no_turns() -> None:
    embed = {**META, "ai.operationId": "ai.embed.doEmbed", "ai.model.id": "text-embedding-3-small",
             "ai.usage.tokens": 5, "ai.values": json.dumps(["hello"])}
    batch = _normalise(("ai.embed.doEmbed", b"\x03" * 8, b"", embed))
    assert batch.turns == []
    (span,) = batch.spans
    assert (span.model, span.operation, span.input_tokens) == ("text-embedding-3-small", "embeddings", None)
    unknown = {"ai.operationId": "ai.somethingNew", "ai.prompt": "x"}
    assert vercel_ai.chat_attributes(unknown) is unknown


def test_tool_call_only_answer_has_no_reply_text() -> None:
    root = {**META, "ai.operationId": "ai.generateText", "ai.prompt": json.dumps({"prompt": "Weather?"}),
            "ai.response.text": "", "ai.response.toolCalls": json.dumps([{"toolName": "weather"}])}
    derived = vercel_ai.chat_attributes(root)
    assert derived["input.value"] == "Weather?" and "output.value" not in derived
    assert derived["gen_ai.provider.name"] == "openai" and "gen_ai.usage.input_tokens" not in derived


def test_agent_spans_repeating_usage_are_not_counted_twice() -> None:
    # AI SDK 7's OpenTelemetry integration (GenAI names): the invoke_agent root and agent_step spans
    # carry the summed usage of the chat calls below them.
    messages = json.dumps([{"role": "user", "parts": [{"type": "text", "content": "Refund?"}]}])
    answer = json.dumps([{"role": "assistant", "parts": [{"type": "text", "content": "Yes."}]}])
    usage = {"gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 4,
             "gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}
    batch = _normalise(
        ("invoke_agent support-chat", b"\x01" * 8, b"", {**usage, "gen_ai.operation.name": "invoke_agent",
                                                          "gen_ai.input.messages": messages,
                                                          "gen_ai.output.messages": answer}),
        ("agent_step", b"\x02" * 8, b"\x01" * 8, {**usage, "gen_ai.operation.name": "agent_step"}),
        ("chat gpt-4o", b"\x03" * 8, b"\x02" * 8, {**usage, "gen_ai.operation.name": "chat",
                                                   "gen_ai.input.messages": messages}),
    )
    assert [(s.operation, s.input_tokens, s.output_tokens) for s in batch.spans] == [
        ("invoke_agent", None, None), ("agent_step", None, None), ("chat", 9, 4)]
    (turn,) = batch.turns
    assert (turn.span_id, turn.user_message, turn.bot_response, turn.model) == ("01" * 8, "Refund?", "Yes.",
                                                                                "gpt-4o")


def test_prompt_response_and_tool_attributes_are_redacted() -> None:
    def redact(text: str) -> str:
        return text.replace("ann@example.com", "[EMAIL]")

    root = {**META, "ai.operationId": "ai.generateText",
            "ai.prompt": json.dumps({"prompt": "Mail ann@example.com"}),
            "ai.response.text": "Sent to ann@example.com"}
    tool = {"ai.operationId": "ai.toolCall", "ai.toolCall.name": "send",
            "ai.toolCall.args": json.dumps({"to": "ann@example.com"}),
            "ai.toolCall.result": "ok ann@example.com"}
    batch = _normalise(("ai.generateText", b"\x01" * 8, b"", root),
                       ("ai.toolCall", b"\x02" * 8, b"\x01" * 8, tool), redact=redact)
    assert all("ann@example.com" not in span.attributes_json for span in batch.spans)
    (turn,) = batch.turns
    assert (turn.user_message, turn.bot_response) == ("Mail [EMAIL]", "Sent to [EMAIL]")
    assert batch.spans[1].operation == "execute_tool"


def test_generate_object_reply_is_the_object_json() -> None:
    root = {**META, "ai.operationId": "ai.generateObject", "ai.prompt": json.dumps({"prompt": "Order 7?"}),
            "ai.response.object": json.dumps({"status": "shipped"})}
    derived = vercel_ai.chat_attributes(root)
    assert (derived["input.value"], derived["output.value"]) == ("Order 7?", '{"status": "shipped"}')
    call = {**META, "ai.operationId": "ai.generateObject.doGenerate", "ai.usage.promptTokens": 5,
            "ai.usage.completionTokens": 6}
    assert vercel_ai.chat_attributes(call)["gen_ai.usage.output_tokens"] == 6
