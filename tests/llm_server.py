"""A local OpenAI-compatible HTTP server for tests: chat completions and embeddings on a real socket.

The real ``openai`` client talks to it unmodified (``base_url=server.base_url``), so retries, timeouts,
JSON parsing and usage accounting are exercised for real. Nothing here mimics a model: chat replies
are scripted by the test, embeddings are a deterministic hashed bag of words.

Usage::

    server = LLMServer()
    server.start()                      # random free port on 127.0.0.1
    client = OpenAI(base_url=server.base_url, api_key="test")
    server.script(
        Reply.error(429, retry_after=1.0),          # first chat request: 429 + Retry-After: 1.0
        Reply.error(500),                           # second: 500
        Reply('{"accuracy": 8}'),                   # third: this content (a str is sent as is)
        Reply({"accuracy": 8}),                     # a dict is JSON-encoded into the content
        Reply("not json {", completion_tokens=7),   # malformed JSON content, usage overridden
        Reply.slow(5.0, "late"),                    # answers after 5 s (client timeouts)
    )
    server.respond_with(lambda request: Reply({...}))   # used once the script queue is empty
    server.requests                     # list[RecordedRequest]: path, body (parsed JSON), headers, at
    server.shutdown()                   # safe twice; also a context manager (``with LLMServer() as s``)

Endpoints:
- ``POST /v1/chat/completions``: pops the next scripted :class:`Reply` (else calls the responder;
  with neither, answers 500 "no scripted reply" so a test notices). ``response_format`` is accepted
  (json_schema / json_object) and recorded; the content is whatever was scripted. ``usage`` counts
  whitespace-separated words of the prompt messages and of the reply unless the Reply overrides them.
- ``POST /v1/embeddings``: ``input`` (a string or a list of strings) → one vector per input of
  ``dimensions`` (default 64) floats: each lower-cased word hashes to a bucket and a sign, the vector
  is L2-normalised, so texts sharing words have a high cosine similarity and identical texts are
  identical. ``encoding_format`` ``float`` or ``base64`` (the client's default: little-endian
  float32). Scripted failures for embeddings go in ``server.script(..., endpoint="embeddings")``;
  a scripted 200 Reply there only adds its delay, the vectors are always computed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

EMBEDDING_DIMENSIONS = 64
_WORD = re.compile(r"[a-z0-9']+")


@dataclass(frozen=True)
class Reply:
    """One scripted answer: content (str as is, dict/list JSON-encoded), or an HTTP error, or a delay."""

    content: str | dict[str, Any] | list[Any] = ""
    status: int = 200
    retry_after: float | None = None
    delay: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    raw_body: bytes | None = None  # sent instead of a completion (e.g. a body that is not JSON)

    @classmethod
    def error(cls, status: int, *, retry_after: float | None = None,
              message: str = "scripted failure") -> Reply:
        return cls(content=message, status=status, retry_after=retry_after)

    @classmethod
    def slow(cls, seconds: float, content: str | dict[str, Any] = "") -> Reply:
        return cls(content=content, delay=seconds)

    def content_text(self) -> str:
        return self.content if isinstance(self.content, str) else json.dumps(self.content)


@dataclass(frozen=True)
class RecordedRequest:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)  # arrival time, monotonic clock


Responder = Callable[[dict[str, Any]], Reply]


def embed_text(text: str, dimensions: int = EMBEDDING_DIMENSIONS) -> list[float]:
    """The server's embedding of one text (exposed so tests can compute expected similarities)."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dimensions
        vector[bucket] += 1.0 if digest[4] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vector))
    return [v / norm for v in vector] if norm else vector


def _words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):  # content parts
        return sum(_words(part.get("text", "")) if isinstance(part, dict) else _words(part) for part in value)
    return 0


def _error_body(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


class _Handler(BaseHTTPRequestHandler):
    server: LLMServer
    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes: with Nagle on, a kept-alive connection waits for the
    # client's delayed ACK (~40 ms) on every answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send_json(400, _error_body("request body is not JSON"))
            return
        path = self.path.split("?", 1)[0].rstrip("/")
        endpoint = {"/v1/chat/completions": "chat", "/v1/embeddings": "embeddings"}.get(path)
        if endpoint is None:
            self._send_json(404, _error_body(f"no route {self.path}"))
            return
        self.server.record(RecordedRequest(path, body, {k.lower(): v for k, v in self.headers.items()}))
        reply = self.server.next_reply(endpoint, body)
        if reply is not None and reply.delay:
            time.sleep(reply.delay)
        if reply is not None and reply.status != 200:
            self._send_error(reply)
        elif endpoint == "embeddings":
            self._send_embeddings(body)
        elif reply is None:
            self._send_json(500, {"error": {"message": "no scripted reply", "type": "server_error"}})
        elif reply.raw_body is not None:
            self._send(200, reply.raw_body)
        else:
            self._send_completion(body, reply)

    def _send_error(self, reply: Reply) -> None:
        headers = {} if reply.retry_after is None else {"Retry-After": f"{reply.retry_after:g}"}
        kind = "rate_limit_error" if reply.status == 429 else "server_error"
        self._send_json(reply.status, {"error": {"message": reply.content_text(), "type": kind}}, headers)

    def _send_completion(self, body: dict[str, Any], reply: Reply) -> None:
        content = reply.content_text()
        prompt = reply.prompt_tokens
        if prompt is None:
            prompt = sum(_words(m.get("content")) for m in body.get("messages") or [] if isinstance(m, dict))
        completion = reply.completion_tokens if reply.completion_tokens is not None else len(content.split())
        self._send_json(200, {
            "id": f"chatcmpl-test-{len(self.server.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "test-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion},
        })

    def _send_embeddings(self, body: dict[str, Any]) -> None:
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        if not texts or not all(isinstance(t, str) for t in texts):
            self._send_json(400, _error_body("input must be a string or a list of strings"))
            return
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        as_base64 = body.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = embed_text(text, dimensions)
            encoded: Any = (base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                            if as_base64 else vector)
            data.append({"object": "embedding", "index": index, "embedding": encoded})
        tokens = sum(len(t.split()) for t in texts)
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model", "test-embedding"),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _send_json(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout): nothing to do
            pass


class LLMServer(ThreadingHTTPServer):
    """The server; see the module docstring. ``base_url`` ends in ``/v1`` as the openai client expects."""

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__((host, port), _Handler)
        self.requests: list[RecordedRequest] = []
        self._scripts: dict[str, deque[Reply]] = {"chat": deque(), "embeddings": deque()}
        self._responder: Responder | None = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def start(self) -> LLMServer:
        self._thread = threading.Thread(target=self.serve_forever, name="llm-server", daemon=True)
        self._thread.start()
        return self

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            super().shutdown()
            self._thread.join(timeout=5)
        self.server_close()

    def __enter__(self) -> LLMServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def script(self, *replies: Reply, endpoint: str = "chat") -> None:
        """Queue replies for the next requests to ``endpoint`` (``chat`` or ``embeddings``), in order."""
        with self._lock:
            self._scripts[endpoint].extend(replies)

    def respond_with(self, responder: Responder | None) -> None:
        """Answer chat requests with ``responder(request_body)`` once the script queue is empty."""
        self._responder = responder

    def chat_requests(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def next_reply(self, endpoint: str, body: dict[str, Any]) -> Reply | None:
        with self._lock:
            queue = self._scripts[endpoint]
            if queue:
                return queue.popleft()
        if endpoint == "chat" and self._responder is not None:
            return self._responder(body)
        return None
