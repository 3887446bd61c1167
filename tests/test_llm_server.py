"""The local OpenAI-compatible test server, driven by the real openai client."""

from __future__ import annotations

import math
import time

import openai
import pytest
from llm_server import LLMServer, Reply, embed_text
from openai import OpenAI


def _client(server: LLMServer, **kwargs: object) -> OpenAI:
    return OpenAI(base_url=server.base_url, api_key="test-key", **kwargs)  # type: ignore[arg-type]


def test_scripted_replies_in_order_with_usage(llm_server: LLMServer) -> None:
    llm_server.script(Reply({"accuracy": 8}),
                      Reply("plain words here", prompt_tokens=11, completion_tokens=4))
    client = _client(llm_server)
    schema: dict[str, object] = {"type": "object", "properties": {"accuracy": {"type": "integer"}}}
    first = client.chat.completions.create(
        model="judge-x", messages=[{"role": "user", "content": "rate this answer"}],
        response_format={"type": "json_schema", "json_schema": {"name": "scores", "schema": schema}},
    )
    second = client.chat.completions.create(model="judge-x", messages=[{"role": "user", "content": "again"}])
    assert first.choices[0].message.content == '{"accuracy": 8}'
    assert first.usage is not None and (first.usage.prompt_tokens, first.usage.completion_tokens) == (3, 2)
    assert first.model == "judge-x"
    assert second.choices[0].message.content == "plain words here"
    assert second.usage is not None
    assert (second.usage.prompt_tokens, second.usage.completion_tokens) == (11, 4)
    bodies = [r.body for r in llm_server.chat_requests()]
    assert bodies[0]["response_format"]["json_schema"]["schema"] == schema
    assert llm_server.requests[0].headers["authorization"] == "Bearer test-key"


def test_no_script_is_a_500_and_responder_answers(llm_server: LLMServer) -> None:
    client = _client(llm_server, max_retries=0)
    with pytest.raises(openai.InternalServerError, match="no scripted reply"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    llm_server.respond_with(lambda body: Reply(f"echo {body['messages'][-1]['content']}"))
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo hi"


def test_429_carries_retry_after_and_the_client_waits(llm_server: LLMServer) -> None:
    llm_server.script(Reply.error(429, retry_after=0.6), Reply("done"))
    client = _client(llm_server, max_retries=1)
    reply = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "done"
    first, second = llm_server.chat_requests()
    assert second.at - first.at >= 0.6


def test_500_and_timeout(llm_server: LLMServer) -> None:
    llm_server.script(Reply.error(500, message="boom"), Reply.slow(2.0, "late"))
    client = _client(llm_server, max_retries=0, timeout=0.3)
    with pytest.raises(openai.InternalServerError, match="boom"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert time.monotonic() - started < 1.5


def test_embeddings_deterministic_and_similar_texts_close(llm_server: LLMServer) -> None:
    client = _client(llm_server)
    texts = ["refund for my order", "refund for my order please", "what is the weather in Paris"]
    result = client.embeddings.create(model="emb", input=texts)  # client default: base64
    as_floats = client.embeddings.create(model="emb", input=texts[0], encoding_format="float")
    vectors = [d.embedding for d in result.data]
    assert all(len(v) == 64 for v in vectors)
    assert vectors[0] == pytest.approx(embed_text(texts[0]), abs=1e-6)
    assert as_floats.data[0].embedding == pytest.approx(vectors[0], abs=1e-6)

    def cosine(a: list[float], b: list[float]) -> float:
        dot = sum(x * y for x, y in zip(a, b, strict=True))
        return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    assert cosine(vectors[0], vectors[1]) > 0.8 > cosine(vectors[0], vectors[2])
    assert result.usage.prompt_tokens == 4 + 5 + 6


def test_embeddings_scripted_failure(llm_server: LLMServer) -> None:
    llm_server.script(Reply.error(503, retry_after=0.1), endpoint="embeddings")
    client = _client(llm_server, max_retries=0)
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="emb", input="x")
    assert len(client.embeddings.create(model="emb", input="x").data) == 1


def test_shutdown_twice() -> None:
    server = LLMServer().start()
    server.shutdown()
    server.shutdown()
