"""Spans from real third-party instrumentations, exported over real OTLP into the real processor.

No otel_chatbot SDK here: these are apps that only run OpenInference or the official OpenTelemetry
GenAI instrumentation, so the processor must find their turns (auto turns), sessions, messages,
models and token sums on its own.
"""

from __future__ import annotations

from collections.abc import Iterator

import openai
import pytest
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage
from langchain_core.prompts import ChatPromptTemplate
from openai_stub_server import OpenAIStubServer
from openinference.instrumentation import using_session, using_user
from openinference.instrumentation.langchain import LangChainInstrumentor
from openinference.instrumentation.openai import OpenAIInstrumentor as OpenInferenceOpenAI
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as GenAIOpenAI
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from server_support import base_url, fetch, running

from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow

TURN_QUERY = ("SELECT session_id, user_id, user_message, bot_response, model, input_tokens, output_tokens, "
              "auto, service FROM chat_turns WHERE trace_id = %s")


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    # The rows layout: these tests read the normalised span columns from `spans` (the blocks layout
    # stores the same values: tests/test_store_writer.py and test_store_write_paths.py check both).
    with running(database_url, span_storage="rows") as proc:
        yield proc


def _provider(processor: Processor, service: str, transport: str) -> TracerProvider:
    if transport == "grpc":
        host, port = processor.grpc_address
        exporter: HttpSpanExporter | GrpcSpanExporter = GrpcSpanExporter(
            endpoint=f"http://{host}:{port}", insecure=True)
    else:
        exporter = HttpSpanExporter(endpoint=f"{base_url(processor)}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


@pytest.mark.parametrize("transport", ["http", "grpc"])
def test_langchain_chain_with_openinference_becomes_a_turn(processor: Processor, database_url: str,
                                                           transport: str) -> None:
    provider = _provider(processor, "lc-bot", transport)
    instrumentor = LangChainInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        model = GenericFakeChatModel(messages=iter([AIMessage(
            content="We open at 9 am.",
            usage_metadata={"input_tokens": 12, "output_tokens": 5, "total_tokens": 17})]))
        chain = ChatPromptTemplate.from_messages([("human", "{question}")]) | model
        with using_session("lc-session"), using_user("lc-user"):
            chain.invoke({"question": "When do you open?"})
        assert provider.force_flush(30_000)  # returns after the processor answered: committed
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    (trace_id,) = {row[0] for row in fetch(database_url, "SELECT trace_id FROM spans WHERE name = %s",
                                           ("RunnableSequence",))}
    assert fetch(database_url, "SELECT count(*) FROM spans WHERE trace_id = %s", (trace_id,)) == [(3,)]
    (turn,) = fetch(database_url, TURN_QUERY, (trace_id,))
    session, user, question, answer, _model, tokens_in, tokens_out, auto, service = turn
    assert (session, user, auto, service) == ("lc-session", "lc-user", True, "lc-bot")
    assert question == "When do you open?"
    assert answer is not None and "We open at 9 am." in answer
    assert (tokens_in, tokens_out) == (12, 5)


def _ask_openai(stub: OpenAIStubServer, question: str,
                model: str = "gpt-4o-mini") -> openai.types.chat.ChatCompletion:
    client = openai.OpenAI(base_url=stub.base_url, api_key="test-key", max_retries=0)
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": question}])


def test_openai_client_with_openinference(processor: Processor, database_url: str) -> None:
    provider = _provider(processor, "oi-bot", "http")
    instrumentor = OpenInferenceOpenAI()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAIStubServer() as stub, using_session("oi-session"):
            completion = _ask_openai(stub, "Where is my parcel?")
        assert provider.force_flush(30_000)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    usage = completion.usage
    assert usage is not None
    rows = fetch(database_url, "SELECT trace_id FROM spans WHERE service = 'oi-bot'")
    assert len(rows) == 1
    (turn,) = fetch(database_url, TURN_QUERY, (rows[0][0],))
    assert turn[0] == "oi-session"
    assert turn[2] == "Where is my parcel?" and turn[3] == "stub answer to: Where is my parcel?"
    assert turn[4] == "gpt-4o-mini"
    assert (turn[5], turn[6]) == (usage.prompt_tokens, usage.completion_tokens)
    (cost,) = fetch(database_url, "SELECT cost_usd FROM chat_turns WHERE trace_id = %s", (rows[0][0],))[0]
    assert cost > 0  # gpt-4o-mini is in the packaged price table


def test_openai_client_with_official_genai_instrumentation(processor: Processor, database_url: str,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The GenAI instrumentation puts message content on the span only when asked to.
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental")
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY")
    provider = _provider(processor, "genai-bot", "grpc")
    instrumentor = GenAIOpenAI()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAIStubServer() as stub:
            first = _ask_openai(stub, "Can I change my delivery address?", model="gpt-4o")
            second = _ask_openai(stub, "And the billing address?", model="gpt-4o")
        assert provider.force_flush(30_000)
    finally:
        instrumentor.uninstrument()
        provider.shutdown()
    spans = fetch(database_url, "SELECT trace_id, model, input_tokens, output_tokens FROM spans "
                                "WHERE service = 'genai-bot' ORDER BY start_time")
    assert len(spans) == 2
    for (trace_id, model, tokens_in, tokens_out), completion in zip(spans, (first, second), strict=True):
        assert completion.usage is not None
        assert (model, tokens_in, tokens_out) == ("gpt-4o", completion.usage.prompt_tokens,
                                                  completion.usage.completion_tokens)
        (turn,) = fetch(database_url, TURN_QUERY, (trace_id,))
        assert turn[4] == "gpt-4o" and (turn[5], turn[6]) == (tokens_in, tokens_out)
    questions = {row[0] for row in fetch(database_url, "SELECT user_message FROM chat_turns "
                                                       "WHERE service = 'genai-bot'")}
    assert questions == {"Can I change my delivery address?", "And the billing address?"}
