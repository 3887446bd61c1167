"""Message shapes of agent/RAG frameworks seen through OpenInference (pure normalise functions).

The real frameworks run in test_frameworks_python.py; these pin the shapes that needed handling.
"""

from __future__ import annotations

import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_chatbot.processor.decode import PROTOBUF, parse_traces
from otel_chatbot.processor.normalise import normalise_traces, user_message_of
from otel_chatbot.processor.pricing import PriceTable

T0 = 1_700_000_000_000_000_000


def test_inputs_under_app_names_are_searched() -> None:
    haystack = {"data": {"prompt_builder": {"question": "Do you deliver?"}, "retriever": {"top_k": 3}}}
    assert user_message_of({"input.value": json.dumps(haystack)}) == "Do you deliver?"
    builder = {"template": None, "template_variables": None, "kwargs": {"question": "Open today?"}}
    assert user_message_of({"input.value": json.dumps(builder)}) == "Open today?"
    assert user_message_of({"input.value": json.dumps({"a": {"b": 1}})}) == '{"a": {"b": 1}}'
    assert user_message_of({"input.value": json.dumps({"a": {"b": 1}})}, raw=False) is None


def test_member_text_wins_over_raw_json_of_the_turn_span() -> None:
    # Haystack: the pipeline's output holds reprs of its message objects; the LLM span has the text.
    pipeline_output = {"llm": {"replies": ["ChatMessage(_role=<ChatRole.ASSISTANT>, _content=[...])"]}}
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    spans = [
        (b"\x01" * 8, b"", "Pipeline.run", {"openinference.span.kind": "CHAIN", "session.id": "s",
                                           "input.value": json.dumps({"data": {"q": {"query": "Hours?"}}}),
                                           "output.value": json.dumps(pipeline_output)}),
        (b"\x02" * 8, b"\x01" * 8, "OpenAIChatGenerator.run", {
            "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
            "output.value": json.dumps({"replies": ["ChatMessage(...)"]}),
            "llm.output_messages.0.message.role": "assistant",
            "llm.output_messages.0.message.content": "9 to 5.",
            "llm.token_count.prompt": 4, "llm.token_count.completion": 3}),
    ]
    for span_id, parent, name, attributes in spans:
        span = scope.spans.add(trace_id=b"\x0c" * 16, span_id=span_id, parent_span_id=parent, name=name,
                               start_time_unix_nano=T0, end_time_unix_nano=T0 + 1000)
        for key, value in attributes.items():
            any_value = AnyValue(int_value=value) if isinstance(value, int) else AnyValue(string_value=value)
            span.attributes.append(KeyValue(key=key, value=any_value))
    batch = normalise_traces(parse_traces(request.SerializeToString(), PROTOBUF), PriceTable.load())
    (turn,) = batch.turns
    assert (turn.span_id, turn.user_message, turn.bot_response) == ("01" * 8, "Hours?", "9 to 5.")
