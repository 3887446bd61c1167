"""A small OpenAI-compatible HTTP server for tests: POST /v1/chat/completions with usage.

Real sockets and real HTTP, so the ``openai`` client, its instrumentors and other OpenAI-compatible
clients (agent frameworks, the Vercel AI SDK) run unmodified. The reply echoes the last user
message; a message containing "FAIL" gets a 500 error body. A request offering tools gets a call of
the first tool (every string parameter set to the user's message) until a tool result is in the
conversation, then an answer quoting that result. ``"stream": true`` gets server-sent events, with
a final usage chunk when ``stream_options.include_usage`` asks for it.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: OpenAIStubServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "invalid JSON", "type": "invalid_request_error"}})
            return
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "invalid_request_error"}})
            return
        self.server.requests.append(body)
        messages = body.get("messages") or []
        last = _text(messages[-1].get("content")) if messages else ""
        if "FAIL" in last:
            self._send(500, {"error": {"message": "stub failure", "type": "server_error"}})
            return
        model = body.get("model", "gpt-4o-mini")
        prompt_tokens = sum(len(_text(m.get("content")).split()) for m in messages) + 3
        tool_call = _tool_call(body.get("tools"), messages)
        if tool_call is not None:
            message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [tool_call]}
            finish_reason = "tool_calls"
            completion_tokens = len(tool_call["function"]["arguments"].split()) + 1
        else:
            if messages and messages[-1].get("role") == "tool":
                reply = f"stub answer using: {last}"
            else:
                reply = f"stub answer to: {last}"
            message = {"role": "assistant", "content": reply}
            finish_reason = "stop"
            completion_tokens = len(reply.split())
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": prompt_tokens + completion_tokens}
        self.server.answered.append((body, usage))
        completion_id = f"chatcmpl-stub-{len(self.server.requests)}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            self._stream(completion_id, model, message, finish_reason, usage if include_usage else None)
            return
        self._send(200, {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "finish_reason": finish_reason, "message": message}],
            "usage": usage,
        })

    def _stream(self, completion_id: str, model: str, message: dict[str, Any], finish_reason: str,
                usage: dict[str, int] | None) -> None:
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": int(time.time()),
                "model": model}
        deltas: list[dict[str, Any]] = [{"role": "assistant", "content": ""}]
        if message.get("tool_calls"):
            deltas.append({"tool_calls": [{"index": 0, **message["tool_calls"][0]}]})
        else:
            words = str(message["content"]).split(" ")
            deltas.extend({"content": w if i == 0 else " " + w} for i, w in enumerate(words))
        chunks = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        chunks.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": finish_reason}]})
        if usage is not None:
            chunks.append({**base, "choices": [], "usage": usage})
        data = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _text(content: Any) -> str:
    """A message content as text: a string, or the text parts of a content list."""
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def _tool_call(tools: Any, messages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A call of the first offered tool, unless the conversation already holds a tool result."""
    if not isinstance(tools, list) or not tools or any(m.get("role") == "tool" for m in messages):
        return None
    function = tools[0].get("function") or {}
    question = next((_text(m.get("content")) for m in reversed(messages) if m.get("role") == "user"), "")
    properties = (function.get("parameters") or {}).get("properties") or {}
    arguments = {name: question for name, schema in properties.items()
                 if isinstance(schema, dict) and schema.get("type") == "string"}
    call_number = sum(1 for m in messages if m.get("role") == "assistant") + 1
    return {"id": f"call_stub_{call_number}", "type": "function",
            "function": {"name": function.get("name", "tool"), "arguments": json.dumps(arguments)}}


class OpenAIStubServer(ThreadingHTTPServer):
    """``with OpenAIStubServer() as s: OpenAI(base_url=s.base_url, api_key="x")``."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        # (request, usage reported) of each answered request, in order
        self.answered: list[tuple[dict[str, Any], dict[str, int]]] = []
        self._thread = threading.Thread(target=self.serve_forever, name="openai-stub", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def __enter__(self) -> OpenAIStubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(timeout=5)
