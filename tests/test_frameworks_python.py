"""Python agent and RAG frameworks, instrumented as their users do, exporting OTLP to the real processor.

Each test runs the real framework against the local OpenAI-compatible server (tools included where
the framework has them), exports its spans over OTLP/HTTP with the OpenTelemetry SDK to a running
processor on the embedded Postgres, and checks the stored turn: one per run, on the framework's top
span, with session, user, the user's message, the final reply, model and the tokens the server
reported (summed over every LLM call of the run).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import openai
import pytest
from openai_stub_server import OpenAIStubServer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from server_support import base_url, fetch, running

from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow

TURN_QUERY = ("SELECT t.session_id, t.user_id, t.user_message, t.bot_response, t.model, t.input_tokens, "
              "t.output_tokens, s.name FROM chat_turns t "
              "JOIN spans s ON s.trace_id = t.trace_id AND s.span_id = t.span_id WHERE t.service = %s")


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    # The rows layout: the turn query joins the span rows of `spans` (the blocks layout stores the same
    # values: tests/test_store_writer.py and test_store_write_paths.py check both).
    with running(database_url, span_storage="rows") as proc:
        yield proc


def _provider(processor: Processor, service: str) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{base_url(processor)}/v1/traces")))
    return provider


def _flush(provider: TracerProvider) -> None:
    assert provider.force_flush(30_000)  # returns once the processor answered: the rows are committed
    provider.shutdown()


def _usage(stub: OpenAIStubServer, calls: int) -> tuple[int, int]:
    """Prompt and completion tokens the server reported, summed; checks how many calls there were."""
    assert len(stub.answered) == calls, [request["messages"] for request, _ in stub.answered]
    return (sum(u["prompt_tokens"] for _, u in stub.answered),
            sum(u["completion_tokens"] for _, u in stub.answered))


def _turn(database_url: str, service: str) -> tuple[Any, ...]:
    (turn,) = fetch(database_url, TURN_QUERY, (service,))
    return turn


def _ids() -> tuple[str, str]:
    run = uuid.uuid4().hex[:8]
    return f"session-{run}", f"user-{run}"


def test_pydantic_ai_agent_with_tool(processor: Processor, database_url: str) -> None:
    # Pydantic AI's own OpenTelemetry instrumentation (GenAI conventions); session = conversation_id,
    # user = run metadata.
    from pydantic_ai import Agent
    from pydantic_ai.models.instrumented import InstrumentationSettings
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    session, user = _ids()
    provider = _provider(processor, "pydantic-ai-bot")
    with OpenAIStubServer() as stub:
        model = OpenAIChatModel("gpt-4o-mini", provider=OpenAIProvider(base_url=stub.base_url, api_key="x"))
        agent = Agent(model, system_prompt="You are the shop assistant.")
        agent.instrument = InstrumentationSettings(tracer_provider=provider)

        @agent.tool_plain
        def opening_hours(day: str) -> str:
            return f"{day}: 9 to 17"

        result = agent.run_sync("Are you open on Sunday?", conversation_id=session,
                                metadata={"user_id": user})
    _flush(provider)
    assert result.output == "stub answer using: Are you open on Sunday?: 9 to 17"
    tokens = _usage(stub, calls=2)
    assert (result.usage.input_tokens, result.usage.output_tokens) == tokens
    assert _turn(database_url, "pydantic-ai-bot") == (session, user, "Are you open on Sunday?", result.output,
                                                       "gpt-4o-mini", *tokens, "invoke_agent agent")


def test_openai_agents_sdk_with_openinference(processor: Processor, database_url: str) -> None:
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.openai_agents import OpenAIAgentsInstrumentor

    session, user = _ids()
    provider = _provider(processor, "openai-agents-bot")
    instrumentor = OpenAIAgentsInstrumentor()
    instrumentor.instrument(tracer_provider=provider)  # replaces the SDK's own trace exporter

    @function_tool
    def order_status(order: str) -> str:
        """Where an order is."""
        return f"order {order} ships tomorrow"

    try:
        with OpenAIStubServer() as stub:
            client = openai.AsyncOpenAI(base_url=stub.base_url, api_key="x", max_retries=0)
            agent = Agent(name="support", instructions="You are the shop assistant.", tools=[order_status],
                          model=OpenAIChatCompletionsModel(model="gpt-4o-mini", openai_client=client))
            with using_session(session), using_user(user):
                result = Runner.run_sync(agent, "Where is order 42?")
    finally:
        instrumentor.uninstrument()
    _flush(provider)
    reply = "stub answer using: order Where is order 42? ships tomorrow"
    assert result.final_output == reply
    assert _turn(database_url, "openai-agents-bot") == (
        session, user, "Where is order 42?", reply, "gpt-4o-mini", *_usage(stub, calls=2), "Agent workflow")


def test_haystack_pipeline_with_openinference(processor: Processor, database_url: str) -> None:
    from haystack import Pipeline
    from haystack.components.builders import ChatPromptBuilder
    from haystack.components.generators.chat import OpenAIChatGenerator
    from haystack.dataclasses import ChatMessage
    from haystack.utils import Secret
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.haystack import HaystackInstrumentor

    session, user = _ids()
    provider = _provider(processor, "haystack-bot")
    instrumentor = HaystackInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAIStubServer() as stub:
            pipeline = Pipeline()
            template = [ChatMessage.from_system("You are the shop assistant."),
                        ChatMessage.from_user("{{question}}")]
            pipeline.add_component("prompt_builder",
                                   ChatPromptBuilder(template=template, required_variables=["question"]))
            generator = OpenAIChatGenerator(api_key=Secret.from_token("x"), model="gpt-4o-mini",
                                            api_base_url=stub.base_url)
            pipeline.add_component("llm", generator)
            pipeline.connect("prompt_builder.prompt", "llm.messages")
            with using_session(session), using_user(user):
                result = pipeline.run({"prompt_builder": {"question": "Do you deliver on Sunday?"}})
    finally:
        instrumentor.uninstrument()
    _flush(provider)
    reply = "stub answer to: Do you deliver on Sunday?"
    assert result["llm"]["replies"][0].text == reply
    assert _turn(database_url, "haystack-bot") == (session, user, "Do you deliver on Sunday?", reply,
                                                    "gpt-4o-mini", *_usage(stub, calls=1), "Pipeline.run")


def test_llama_index_chat_engine_with_openinference(processor: Processor, database_url: str) -> None:
    from llama_index.core.chat_engine import SimpleChatEngine
    from openinference.instrumentation import using_session, using_user
    from openinference.instrumentation.llama_index import LlamaIndexInstrumentor

    session, user = _ids()
    provider = _provider(processor, "llama-index-bot")
    instrumentor = LlamaIndexInstrumentor()
    instrumentor.instrument(tracer_provider=provider)
    try:
        with OpenAIStubServer() as stub:
            engine = SimpleChatEngine.from_defaults(llm=_llama_index_llm(stub.base_url),
                                                    system_prompt="You are the shop assistant.")
            with using_session(session), using_user(user):
                engine.chat("Hello")
                answer = engine.chat("Where is my order?")
    finally:
        instrumentor.uninstrument()
    _flush(provider)
    reply = "stub answer to: Where is my order?"
    assert str(answer) == reply
    # Two turns of one conversation: one trace each, the second's messages carry the history.
    turns = fetch(database_url, TURN_QUERY + " ORDER BY t.started_at", ("llama-index-bot",))
    assert [t[:4] for t in turns] == [(session, user, "Hello", "stub answer to: Hello"),
                                      (session, user, "Where is my order?", reply)]
    second = stub.answered[1][1]
    assert turns[1][4:] == ("gpt-4o-mini", second["prompt_tokens"], second["completion_tokens"],
                            "SimpleChatEngine.chat")


def _llama_index_llm(base_url: str) -> Any:
    """A LlamaIndex LLM on the real ``openai`` client (llama-index-llms-openai requires openai<3,
    older than this project's). It hands LlamaIndex the client's completion as ``raw``, as the
    packaged OpenAI LLM does, which is where the instrumentation reads token counts."""
    from llama_index.core.base.llms.types import (
        ChatMessage,
        ChatResponse,
        CompletionResponse,
        CompletionResponseGen,
        LLMMetadata,
    )
    from llama_index.core.llms import CustomLLM
    from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback

    class OpenAICompatibleLLM(CustomLLM):
        base_url: str
        model: str = "gpt-4o-mini"

        @property
        def metadata(self) -> LLMMetadata:
            return LLMMetadata(model_name=self.model, is_chat_model=True)

        @llm_chat_callback()
        def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
            client = openai.OpenAI(base_url=self.base_url, api_key="x", max_retries=0)
            completion = client.chat.completions.create(
                model=self.model, messages=[{"role": m.role.value, "content": m.content} for m in messages])
            text = completion.choices[0].message.content
            return ChatResponse(message=ChatMessage(role="assistant", content=text), raw=completion)

        @llm_completion_callback()
        def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
            raise NotImplementedError("chat only")

        @llm_completion_callback()
        def stream_complete(self, prompt: str, formatted: bool = False,
                            **kwargs: Any) -> CompletionResponseGen:
            raise NotImplementedError("chat only")

    return OpenAICompatibleLLM(base_url=base_url)
