"""Zero-code: an app run under ``opentelemetry-instrument`` exports chat spans with no setup code.

The app runs in a subprocess with the real OTLP/HTTP exporter; a real HTTP server in the test
receives and decodes the protobuf requests.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from otel_chatbot import semconv


class _Sink(ThreadingHTTPServer):
    daemon_threads = True
    requests: list[ExportTraceServiceRequest]
    headers_seen: list[dict[str, str]]


class _Handler(BaseHTTPRequestHandler):
    server: _Sink

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
            self.send_response(404)
            self.end_headers()
            return
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.requests.append(request)
        self.server.headers_seen.append({k.lower(): v for k, v in self.headers.items()})
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def sink() -> Iterator[_Sink]:
    server = _Sink(("127.0.0.1", 0), _Handler)
    server.requests, server.headers_seen = [], []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


APP = textwrap.dedent("""
    from langchain_core.language_models.fake_chat_models import FakeListChatModel
    from otel_chatbot import chat_turn

    model = FakeListChatModel(responses=["We will write to you at help@example.com"])
    with chat_turn(session_id="zc-session", user_id="zc-user", source="slack",
                   user_message="my email is zoe@example.org") as turn:
        turn.set_response(model.invoke("hello").content)
        turn.mark_fallback("handoff")
    print("TURN", turn.id)
""")


def _attrs(kvs: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.value
        out[kv.key] = getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None
    return out


def test_opentelemetry_instrument_gives_chat_spans(sink: _Sink, tmp_path: Path) -> None:
    launcher = shutil.which("opentelemetry-instrument")
    assert launcher is not None, "opentelemetry-instrument is part of the core dependencies"
    script = tmp_path / "app.py"
    script.write_text(APP)
    host, port = sink.server_address[:2]
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({
        "OTEL_PYTHON_DISTRO": "otel_chatbot",
        "OTEL_PYTHON_CONFIGURATOR": "otel_chatbot",
        "OTEL_SERVICE_NAME": "zero-code-bot",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{host!s}:{port}",
        "OTEL_EXPORTER_OTLP_HEADERS": "x-tenant=acme",
        "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS": "openai",
    })
    done = subprocess.run([launcher, sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    turn_id = done.stdout.split("TURN", 1)[1].strip()
    spans = []
    for request in sink.requests:
        for resource_spans in request.resource_spans:
            resource = _attrs(resource_spans.resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                spans.extend((resource, span.name, _attrs(span.attributes)) for span in scope_spans.spans)
    assert spans, f"nothing exported; stderr: {done.stderr}"
    assert all(h.get("x-tenant") == "acme" for h in sink.headers_seen)
    turn = [attrs for _, name, attrs in spans if name == "chat.turn"]
    assert len(turn) == 1
    assert turn[0][semconv.CHAT_TURN_ID] == turn_id
    assert turn[0][semconv.SESSION_ID] == "zc-session" and turn[0][semconv.CHAT_SOURCE] == "slack"
    assert turn[0][semconv.CHAT_FALLBACK] is True
    assert turn[0][semconv.INPUT_VALUE] == "my email is [REDACTED:EMAIL]"
    assert turn[0][semconv.OUTPUT_VALUE] == "We will write to you at [REDACTED:EMAIL]"
    # LangChain was instrumented by auto-instrumentation, and its spans carry the turn's identity.
    llm = [attrs for _, _, attrs in spans if attrs.get(semconv.OPENINFERENCE_SPAN_KIND) == "LLM"]
    assert llm and llm[0][semconv.SESSION_ID] == "zc-session" and llm[0][semconv.USER_ID] == "zc-user"
    assert llm[0][semconv.CHAT_IN_TURN] == turn_id
    assert {resource["service.name"] for resource, _, _ in spans} == {"zero-code-bot"}
