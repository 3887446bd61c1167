"""The Vercel AI SDK (Node.js), set up as its users do, exporting OTLP to the real processor.

``tests/js/vercel_ai_chat.mjs`` runs the real ``ai`` package with ``experimental_telemetry``, the
OpenTelemetry Node SDK and OTLP/protobuf exporter, and the OpenAI-compatible provider against the
local OpenAI-compatible server. The processor must find one turn per call on the ``ai.generateText``
/ ``ai.streamText`` root, with session, user and channel from the telemetry metadata, the last user
message, the final reply, and tokens summed over the provider calls only.

Needs node and ``npm ci --prefix tests/js``: fails when CI=true and they are missing, skips elsewhere.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openai_stub_server import OpenAIStubServer
from server_support import base_url, fetch, running

from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.pricing import PriceTable

pytestmark = pytest.mark.slow

JS_DIR = Path(__file__).resolve().parent / "js"
SCRIPT = JS_DIR / "vercel_ai_chat.mjs"
INSTALL = "apt-get install nodejs npm && npm ci --prefix tests/js"

# scenario -> (root span, user's last message, expected reply)
SCENARIOS = {
    "generate": ("ai.generateText", "When do you open on Sunday?",
                 "stub answer to: When do you open on Sunday?"),
    "generate-tool": ("ai.generateText", "What is the weather in Paris?",
                      "stub answer using: sunny, 21 C in What is the weather in Paris?"),
    "stream": ("ai.streamText", "Do you ship to Canada?", "stub answer to: Do you ship to Canada?"),
    "stream-tool": ("ai.streamText", "Is it raining in Oslo?",
                    "stub answer using: sunny, 21 C in Is it raining in Oslo?"),
}

TURN_QUERY = ("SELECT t.session_id, t.user_id, t.source, t.service, t.user_message, t.bot_response, t.model, "
              "t.input_tokens, t.output_tokens, t.cost_usd, t.error, t.auto, s.name "
              "FROM chat_turns t JOIN spans s ON s.span_id = t.span_id AND s.trace_id = t.trace_id "
              "WHERE t.session_id = %s")


def _node() -> str:
    node = shutil.which("node")
    if node is not None and (JS_DIR / "node_modules" / "ai" / "package.json").is_file():
        return node
    what = "node" if node is None else "tests/js/node_modules"
    message = f"{what} missing for the Vercel AI SDK test: {INSTALL}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must not skip it)")
    pytest.skip(message)


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    # The rows layout: these tests read the normalised span columns from `spans` (the blocks layout
    # stores the same values: tests/test_store_writer.py and test_store_write_paths.py check both).
    with running(database_url, span_storage="rows") as proc:
        yield proc


def _run_chatbot(processor: Processor, stub: OpenAIStubServer, *scenarios: str) -> dict[str, dict[str, Any]]:
    """Run the Node.js chatbot; returns its report per scenario (text, usage or error)."""
    node = _node()
    run_id = uuid.uuid4().hex[:8]
    env = {**os.environ, "OTLP_TRACES_URL": f"{base_url(processor)}/v1/traces", "LLM_BASE_URL": stub.base_url,
           "RUN_ID": run_id, "SCENARIOS": ",".join(scenarios)}
    done = subprocess.run([node, str(SCRIPT)], cwd=JS_DIR, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [line["scenario"] for line in lines] == list(scenarios), done.stdout
    return {line["scenario"]: line for line in lines}


def _stub_usages(stub: OpenAIStubServer, question: str) -> list[dict[str, int]]:
    """The usage the server reported for each call of the conversation that asked ``question``."""
    return [usage for request, usage in stub.answered if _last_user(request) == question]


def _last_user(request: dict[str, Any]) -> str:
    content = next(m for m in reversed(request["messages"]) if m["role"] == "user")["content"]
    return content if isinstance(content, str) else content[0]["text"]


@pytest.mark.parametrize("with_tools", [False, True], ids=["text", "tools"])
def test_vercel_ai_sdk_generate_and_stream_become_one_turn_each(processor: Processor, database_url: str,
                                                                with_tools: bool) -> None:
    scenarios = [name for name in SCENARIOS if name.endswith("-tool") == with_tools]
    with OpenAIStubServer() as stub:
        reports = _run_chatbot(processor, stub, *scenarios)
    prices = PriceTable.load()
    for scenario in scenarios:
        root, question, reply = SCENARIOS[scenario]
        report = reports[scenario]
        assert report.get("error") is None and report["text"] == reply
        session = report["sessionId"]
        usages = _stub_usages(stub, question)
        calls = len(usages)
        assert calls == (2 if with_tools else 1)  # with tools: the tool call, then the answer
        tokens_in = sum(u["prompt_tokens"] for u in usages)
        tokens_out = sum(u["completion_tokens"] for u in usages)
        # what the SDK itself reported agrees with the server
        assert (report["usage"]["inputTokens"], report["usage"]["outputTokens"]) == (tokens_in, tokens_out)

        (turn,) = fetch(database_url, TURN_QUERY, (session,))
        assert turn[:7] == (session, f"user-{scenario}", "website", "vercel-ai-bot", question, reply,
                            "gpt-4o-mini"), scenario
        assert (turn[7], turn[8]) == (tokens_in, tokens_out), scenario
        assert (turn[10], turn[11], turn[12]) == (False, True, root), scenario

        (trace_id,) = {row[0] for row in fetch(database_url, "SELECT trace_id FROM chat_turns "
                                                             "WHERE session_id = %s", (session,))}
        spans = fetch(database_url, "SELECT name, input_tokens, output_tokens, provider, model, operation "
                                    "FROM spans WHERE trace_id = %s ORDER BY start_time", (trace_id,))
        call = root + (".doStream" if root == "ai.streamText" else ".doGenerate")
        # Only the provider calls carry tokens: the root repeats the total and is not counted again.
        llm = [s for s in spans if s[1] is not None]
        assert [s[0] for s in llm] == [call] * calls, scenario
        assert all(s[3:] == ("localai", "gpt-4o-mini", "chat") for s in llm), scenario
        assert (sum(s[1] for s in llm), sum(s[2] for s in llm)) == (tokens_in, tokens_out)
        tools = [s for s in spans if s[0] == "ai.toolCall"]
        assert [s[5] for s in tools] == (["execute_tool"] if with_tools else [])
        expected_cost = sum(prices.cost("gpt-4o-mini", u["prompt_tokens"], u["completion_tokens"]) or 0.0
                            for u in usages)
        assert turn[9] == pytest.approx(expected_cost) and turn[9] > 0



def test_vercel_ai_sdk_failed_call_is_an_error_turn(processor: Processor, database_url: str) -> None:
    with OpenAIStubServer() as stub:
        reports = _run_chatbot(processor, stub, "error")
    assert reports["error"]["error"] == "stub failure"
    session = reports["error"]["sessionId"]
    (turn,) = fetch(database_url, TURN_QUERY, (session,))
    assert turn[:7] == (session, "user-error", "website", "vercel-ai-bot", "Please FAIL now", None,
                        "gpt-4o-mini")
    assert turn[7:] == (0, 0, 0.0, True, True, "ai.generateText")
