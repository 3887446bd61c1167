"""Fuzzing material: request bodies captured from the real OTLP exporters, byte and JSON mutations,
hypothesis strategies for OTLP/JSON-shaped documents, and hostile HTTP requests."""

from __future__ import annotations

import base64
import copy
import gzip
import http.server
import json
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.protobuf import json_format
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

# CI runs a bounded share; FUZZ_EXAMPLES=10000 (or more) runs the long one.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
SEED = int(os.environ.get("FUZZ_SEED", "20261130"))


@contextmanager
def _capture_server() -> Iterator[tuple[str, list[bytes]]]:
    """A local HTTP endpoint that keeps every request body it gets and answers 200."""
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces", bodies
    finally:
        server.shutdown()
        server.server_close()


def captured_exporter_bodies() -> list[bytes]:
    """Protobuf bodies the real OTLP/HTTP exporter sends for a few realistic chat traces."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    with _capture_server() as (endpoint, bodies):
        resource = Resource.create({"service.name": "fuzz-bot", "deployment": "test"})
        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        tracer = provider.get_tracer("fuzz")
        for i in range(4):
            with tracer.start_as_current_span("chat.turn", attributes={
                    "chat.turn.id": f"turn-{i}", "session.id": f"s-{i % 2}", "user.id": "u-1",
                    "input.value": "what are your opening hours?", "output.value": "9 to 5",
                    "chat.source": "website", "chat.fallback": i == 2}) as turn:
                turn.add_event("retrieved", {"documents": 3})
                with tracer.start_as_current_span("ChatOpenAI", attributes={
                        "openinference.span.kind": "LLM", "llm.model_name": "gpt-4o-mini",
                        "llm.token_count.prompt": 120, "llm.token_count.completion": 30,
                        "llm.input_messages.0.message.content": "hello"}):
                    pass
            with tracer.start_as_current_span("chat.feedback", attributes={
                    "chat.turn.id": f"turn-{i}", "chat.feedback.rating": "down" if i % 2 else "up"}):
                pass
        provider.shutdown()
    assert len(bodies) == 12, len(bodies)
    return bodies


def as_otlp_json(body: bytes) -> dict[str, Any]:
    """The OTLP/JSON form of a protobuf trace body (hex ids, as the spec wants)."""
    document = json_format.MessageToDict(ExportTraceServiceRequest.FromString(body))
    for rs in document.get("resourceSpans", []):
        for ss in rs.get("scopeSpans", []):
            for span in ss.get("spans", []):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in span:
                        span[key] = base64.b64decode(span[key]).hex()
    return document


# --- mutations ------------------------------------------------------------------------------------
def mutate_bytes(rng: random.Random, body: bytes) -> bytes:
    data = bytearray(body)
    for _ in range(rng.randint(1, 8)):
        op = rng.randrange(6)
        position = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(position, len(data) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1:
            del data[position:position + rng.randint(1, 16)]
        elif op == 2:
            data[position:position] = os.urandom(rng.randint(1, 16))
        elif op == 3 and data:
            start = rng.randrange(len(data))
            data[position:position] = data[start:start + rng.randint(1, 64)]  # duplicate a segment
        elif op == 4:
            data[position:position] = bytes([rng.choice([0x0A, 0x12, 0x1A, 0x22, 0x3A, 0x4A, 0x52])]) + \
                bytes([rng.choice([0x7F, 0xFF, 0x80, 0x00])] * rng.randint(1, 5))  # bogus tags/lengths
        else:
            data = data[:position]  # truncate
    return bytes(data)


_JUNK: list[Any] = [None, True, -1, 0, 2**64, -(2**63) - 1, 1e308, "", "zz", "\udcff", [], {}, [[[]]],
                    "-5", "1e3", "ffffffffffffffffffffffffffffffff", "0" * 32, "00" * 8, "x" * 10_000]


def mutate_json(rng: random.Random, document: Any) -> Any:
    """Replace, drop or retype a few values anywhere in ``document`` (a deep copy)."""
    document = copy.deepcopy(document)
    for _ in range(rng.randint(1, 6)):
        parent, key = _random_slot(rng, document)
        if parent is None:
            return rng.choice(_JUNK)
        op = rng.randrange(4)
        if op == 0:
            parent[key] = rng.choice(_JUNK)
        elif op == 1 and isinstance(parent, dict):
            parent.pop(key, None)
        elif op == 2:
            parent[key] = [parent[key]] if rng.random() < 0.5 else {"value": parent[key]}
        elif isinstance(parent[key], str | int):
            parent[key] = -abs(int(parent[key])) if str(parent[key]).isdigit() else parent[key] * 3
    return document


def _random_slot(rng: random.Random, document: Any) -> tuple[Any, Any]:
    slots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                slots.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node):
                slots.append((node, i))
                walk(v)

    walk(document)
    return rng.choice(slots) if slots else (None, None)


# --- hypothesis strategies ------------------------------------------------------------------------
_hex = st.sampled_from("0123456789abcdef")
_ids = st.one_of(st.text(_hex, min_size=32, max_size=32), st.text(_hex, min_size=16, max_size=16),
                 st.text(max_size=40),
                 st.integers(), st.none(), st.just(""), st.just("0" * 32))
_nanos = st.one_of(st.integers(min_value=-(2**63), max_value=2**64), st.text(max_size=25), st.none())
_any_value = st.recursive(
    st.one_of(st.builds(lambda s: {"stringValue": s}, st.text(max_size=60)),
              st.builds(lambda i: {"intValue": i}, st.one_of(st.integers(), st.text(max_size=30))),
              st.builds(lambda b: {"boolValue": b}, st.one_of(st.booleans(), st.text(max_size=5))),
              st.builds(lambda d: {"doubleValue": d}, st.one_of(st.floats(), st.text(max_size=10))),
              st.builds(lambda b: {"bytesValue": b}, st.text(max_size=20)),
              st.just({}), st.none(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.builds(lambda vs: {"arrayValue": {"values": vs}}, st.lists(inner, max_size=3)),
        st.builds(lambda kvs: {"kvlistValue": {"values": kvs}},
                  st.lists(st.fixed_dictionaries({"key": st.text(max_size=10), "value": inner}),
                           max_size=3))),
    max_leaves=4)
_attributes = st.lists(st.fixed_dictionaries({"key": st.one_of(st.sampled_from(
    ["chat.turn.id", "session.id", "user.id", "input.value", "output.value", "gen_ai.request.model",
     "gen_ai.usage.input_tokens", "llm.token_count.prompt", "chat.feedback.rating", "chat.fallback",
     "openinference.span.kind", "service.name"]), st.text(max_size=30)), "value": _any_value}), max_size=5)
_span = st.fixed_dictionaries({
    "traceId": _ids, "spanId": _ids, "name": st.one_of(st.text(max_size=40), st.integers()),
    "startTimeUnixNano": _nanos, "endTimeUnixNano": _nanos, "attributes": _attributes,
}, optional={"parentSpanId": _ids, "kind": st.one_of(st.integers(-5, 10), st.text(max_size=20)),
             "status": st.one_of(st.fixed_dictionaries({"code": st.integers(-3, 5),
                                                        "message": st.text(max_size=20)}),
                                 st.text(max_size=5)),
             "events": st.lists(st.fixed_dictionaries({"name": st.text(max_size=10), "timeUnixNano": _nanos,
                                                       "attributes": _attributes}), max_size=3)})
otlp_json_documents = st.fixed_dictionaries({"resourceSpans": st.lists(st.fixed_dictionaries({
    "resource": st.fixed_dictionaries({"attributes": _attributes}),
    "scopeSpans": st.lists(st.fixed_dictionaries({"spans": st.lists(_span, max_size=3)}), max_size=2),
}), max_size=2)})
_log_record = st.fixed_dictionaries({"timeUnixNano": _nanos, "body": _any_value, "attributes": _attributes},
                                    optional={"traceId": _ids, "spanId": _ids,
                                              "eventName": st.text(max_size=20)})
otlp_json_logs = st.fixed_dictionaries({"resourceLogs": st.lists(st.fixed_dictionaries({
    "resource": st.fixed_dictionaries({"attributes": _attributes}),
    "scopeLogs": st.lists(st.fixed_dictionaries({"logRecords": st.lists(_log_record, max_size=4)}),
                          max_size=2),
}), max_size=2)})


# --- hostile HTTP requests ------------------------------------------------------------------------
def deep_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def gzip_bomb(decompressed_bytes: int) -> bytes:
    return gzip.compress(b"\0" * decompressed_bytes, compresslevel=9)


def huge_attributes_body(count: int, value_bytes: int) -> bytes:
    document = {"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "big",
        "startTimeUnixNano": "1", "endTimeUnixNano": "2",
        "attributes": [{"key": f"k{i}", "value": {"stringValue": "v" * value_bytes}} for i in range(count)],
    }]}]}]}
    return json.dumps(document).encode()


HttpCase = tuple[str, str, dict[str, str], bytes]


def http_cases(rng: random.Random, corpus: list[bytes], limit_bytes: int) -> Iterator[HttpCase]:
    """Endless hostile requests over every route, drawn from ``rng``."""
    json_corpus = [json.dumps(as_otlp_json(b)).encode() for b in corpus]
    bomb = gzip_bomb(limit_bytes + 1024)
    makers: list[Callable[[], HttpCase]] = [
        lambda: ("POST", rng.choice(["/v1/traces", "/v1/logs"]), {"Content-Type": "application/x-protobuf"},
                 mutate_bytes(rng, rng.choice(corpus))),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/json"},
                 json.dumps(mutate_json(rng, json.loads(rng.choice(json_corpus)))).encode()),
        lambda: ("POST", "/v1/traces", {"Content-Type": rng.choice(
            ["text/plain", "application/xml", "", "application/json; charset=latin-1", "multipart/form-data",
             "application/x-protobuf; proto=wrong", "application/grpc"])}, rng.choice(corpus)),
        lambda: ("POST", rng.choice(["/v1/traces", "/v1/logs", "/v1/feedback"]),
                 {"Content-Type": "application/json", "Content-Encoding": "gzip"}, bomb),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf",
                                        "Content-Encoding": rng.choice(["gzip", "deflate", "br", "zstd"])},
                 os.urandom(rng.randint(0, 64))),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/json"},
                 huge_attributes_body(*rng.choice([(1, 10), (5000, 10), (1, 200_000), (40, 50_000)]))),
        lambda: ("POST", rng.choice(["/v1/traces", "/v1/feedback"]), {"Content-Type": "application/json"},
                 deep_json(rng.choice([100, 5000, 100_000]))),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/json"},
                 b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "\xff\xfe invalid utf-8"}]}]}]}'),
        lambda: ("POST", "/v1/feedback", {"Content-Type": "application/json"}, json.dumps(rng.choice([
            {"turn_id": "t", "rating": "sideways"}, {"turn_id": "", "rating": "up"}, {"rating": "up"},
            {"turn_id": "x" * 300, "rating": "up"}, {"turn_id": 5, "rating": "up"}, [], "up",
            {"turn_id": "t", "rating": "up", "comment": "c" * 20_000},
            {"turn_id": "t", "rating": "down", "comment": {"nested": True}}])).encode()),
        lambda: (rng.choice(["GET", "PUT", "DELETE", "PATCH"]),
                 rng.choice(["/v1/traces", "/v1/logs", "/v1/feedback", "/", "/v1", "/../etc/passwd", "/%00"]),
                 {}, b""),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/x-protobuf"},
                 os.urandom(rng.randint(0, 512))),
        lambda: ("POST", "/v1/traces", {"Content-Type": "application/json"}, json.dumps(
            {"resourceSpans": [{"scopeSpans": [{"spans": [{
                "traceId": os.urandom(16).hex(), "spanId": os.urandom(8).hex(), "name": "clock stepped back",
                "startTimeUnixNano": str(time.time_ns()),
                "endTimeUnixNano": str(time.time_ns() - 10**9 * rng.randint(1, 99)),
                "attributes": [{"key": "chat.turn.id", "value": {"stringValue": os.urandom(4).hex()}},
                               {"key": "input.value", "value": {"stringValue": "hi"}}]}]}]}]}).encode()),
    ]
    while True:
        yield rng.choice(makers)()
