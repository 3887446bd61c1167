"""The real ``openai`` client against a local OpenAI-compatible server, inside chat_turn."""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from openai_stub_server import OpenAIStubServer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otel_chatbot
from otel_chatbot import semconv


@pytest.fixture
def stub() -> Iterator[OpenAIStubServer]:
    with OpenAIStubServer() as server:
        yield server


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel_chatbot.instrument("openai-bot", exporter=exporter, batch=False, set_global=False,
                            instrument_libraries=["openai"])
    try:
        yield exporter
    finally:
        otel_chatbot.shutdown()


def test_openai_call_is_traced_with_tokens_session_and_user(stub: OpenAIStubServer,
                                                            spans: InMemorySpanExporter) -> None:
    client = openai.OpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0)
    with otel_chatbot.chat_turn(session_id="s-oa", user_id="u-oa", source="api",
                                user_message="what are your opening hours") as turn:
        completion = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "what are your opening hours"}])
        turn.set_response(completion.choices[0].message.content or "")
    assert stub.requests and stub.requests[0]["model"] == "gpt-4o-mini"
    llm_spans = [s for s in spans.get_finished_spans()
                 if (s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM"]
    assert len(llm_spans) == 1
    attrs = llm_spans[0].attributes or {}
    assert attrs[semconv.SESSION_ID] == "s-oa" and attrs[semconv.USER_ID] == "u-oa"
    assert attrs[semconv.CHAT_IN_TURN] == turn.id and attrs[semconv.CHAT_SOURCE] == "api"
    assert attrs["llm.token_count.prompt"] == completion.usage.prompt_tokens  # type: ignore[union-attr]
    assert attrs["llm.token_count.completion"] == completion.usage.completion_tokens  # type: ignore[union-attr]
    assert attrs["llm.model_name"] == "gpt-4o-mini"
    (turn_span,) = [s for s in spans.get_finished_spans() if s.name == "chat.turn"]
    assert (turn_span.attributes or {})[semconv.OUTPUT_VALUE] == "stub answer to: what are your opening hours"


def test_openai_error_marks_turn_as_error(stub: OpenAIStubServer, spans: InMemorySpanExporter) -> None:
    client = openai.OpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0)
    with pytest.raises(openai.InternalServerError), otel_chatbot.chat_turn(session_id="s-fail"):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "FAIL please"}])
    (turn_span,) = [s for s in spans.get_finished_spans() if s.name == "chat.turn"]
    assert turn_span.status.status_code is StatusCode.ERROR
    llm = [s for s in spans.get_finished_spans() if s.name != "chat.turn"]
    assert llm and llm[0].status.status_code is StatusCode.ERROR
    assert (llm[0].attributes or {})[semconv.SESSION_ID] == "s-fail"


def test_stub_server_rejects_bad_requests(stub: OpenAIStubServer) -> None:
    import httpx

    bad_json = httpx.post(f"{stub.base_url}/chat/completions", content=b"{nope",
                          headers={"Content-Type": "application/json"})
    assert bad_json.status_code == 400 and "invalid JSON" in bad_json.text
    wrong_path = httpx.post(f"{stub.base_url}/embeddings", json={})
    assert wrong_path.status_code == 404
