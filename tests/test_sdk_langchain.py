"""LangChain fake chat models inside chat_turn, traced by the OpenInference LangChain instrumentor."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import otel_chatbot
from otel_chatbot import semconv


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    otel_chatbot.instrument("lc-bot", exporter=exporter, batch=False, set_global=False,
                            instrument_libraries=["langchain"])
    try:
        yield exporter
    finally:
        otel_chatbot.shutdown()


def langchain_spans(exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans() if s.name not in ("chat.turn", "chat.usage")]


def assert_in_turn(exporter: InMemorySpanExporter, turn_id: str, session: str,
                   user: str) -> list[ReadableSpan]:
    children = langchain_spans(exporter)
    assert children, "the instrumentor produced no spans"
    for span in children:
        attrs = span.attributes or {}
        assert attrs[semconv.SESSION_ID] == session, span.name
        assert attrs[semconv.USER_ID] == user, span.name
        assert attrs[semconv.CHAT_IN_TURN] == turn_id, span.name
    return children


def test_sync_chain_spans_carry_session_and_user(spans: InMemorySpanExporter) -> None:
    chain = (ChatPromptTemplate.from_messages([("human", "{question}")])
             | FakeListChatModel(responses=["Your order ships tomorrow."]) | StrOutputParser())
    with otel_chatbot.chat_turn(session_id="s-lc", user_id="u-lc", source="web",
                                user_message="where is my order") as turn:
        answer = chain.invoke({"question": "where is my order"})
        turn.set_response(answer)
    children = assert_in_turn(spans, turn.id, "s-lc", "u-lc")
    kinds = {(s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) for s in children}
    assert {"LLM", "CHAIN"} <= kinds
    llm = next(s for s in children if (s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM")
    assert llm.context is not None and llm.context.trace_id == turn.span.get_span_context().trace_id


def test_async_invoke_in_concurrent_turns(spans: InMemorySpanExporter) -> None:
    async def one(session: str) -> str:
        model = FakeListChatModel(responses=[f"answer for {session}"])
        async with otel_chatbot.chat_turn(session_id=session, user_id=f"user-{session}") as turn:
            reply = await model.ainvoke("hello")
            turn.set_response(str(reply.content))
            return turn.id

    async def main() -> list[str]:
        return list(await asyncio.gather(one("A"), one("B"), one("C")))

    ids = dict(zip("ABC", asyncio.run(main()), strict=True))
    children = langchain_spans(spans)
    assert len(children) >= 3
    for span in children:
        attrs = span.attributes or {}
        session = attrs[semconv.SESSION_ID]
        assert attrs[semconv.CHAT_IN_TURN] == ids[str(session)]
        assert attrs[semconv.USER_ID] == f"user-{session}"


def test_streaming_sync_and_async(spans: InMemorySpanExporter) -> None:
    model = GenericFakeChatModel(messages=iter([AIMessage(content="chunk one two three"),
                                                AIMessage(content="async chunk stream")]))
    with otel_chatbot.chat_turn(session_id="s-stream", user_id="u-stream") as turn:
        text = "".join(str(chunk.content) for chunk in model.stream("hi"))
        turn.set_response(text)
    assert text == "chunk one two three"
    assert_in_turn(spans, turn.id, "s-stream", "u-stream")
    spans.clear()

    async def astream() -> tuple[str, str]:
        async with otel_chatbot.chat_turn(session_id="s-astream", user_id="u-astream") as aturn:
            parts = [str(chunk.content) async for chunk in model.astream("hi")]
            return "".join(parts), aturn.id

    text, turn_id = asyncio.run(astream())
    assert text == "async chunk stream"
    children = assert_in_turn(spans, turn_id, "s-astream", "u-astream")
    llm = [s for s in children if (s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM"]
    assert llm and "async chunk stream" in str((llm[0].attributes or {}).get(semconv.OUTPUT_VALUE))


def test_exception_inside_a_turn_marks_turn_and_llm_span(spans: InMemorySpanExporter) -> None:
    class Exploding(FakeListChatModel):
        def _call(self, *args: object, **kwargs: object) -> str:
            raise ConnectionError("upstream model unavailable")

    with pytest.raises(ConnectionError), \
            otel_chatbot.chat_turn(session_id="s-err", user_id="u-err", user_message="hi"):
        Exploding(responses=["never"]).invoke("hi")
    (turn_span,) = [s for s in spans.get_finished_spans() if s.name == "chat.turn"]
    assert turn_span.status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in turn_span.events)
    children = langchain_spans(spans)
    assert children and all(s.status.status_code is StatusCode.ERROR for s in children)
    assert all((s.attributes or {})[semconv.SESSION_ID] == "s-err" for s in children)


def test_message_content_in_langchain_spans_is_redacted(spans: InMemorySpanExporter) -> None:
    model = FakeListChatModel(responses=["Sure, I will email bob@example.com"])
    with otel_chatbot.chat_turn(session_id="s-pii"):
        model.invoke("my card is 4111 1111 1111 1111")
    for span in langchain_spans(spans):
        text = repr(dict(span.attributes or {}))
        assert "4111 1111 1111 1111" not in text and "bob@example.com" not in text
    llm = next(s for s in langchain_spans(spans)
               if (s.attributes or {}).get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM")
    content = (llm.attributes or {})["llm.output_messages.0.message.content"]
    assert content == "Sure, I will email [REDACTED:EMAIL]"
