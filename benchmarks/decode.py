"""Decode + normalise throughput for one OTLP/protobuf request of 512 LLM-like spans.

Each span carries ~12 OpenInference attributes with two ~300-byte messages; spans come in traces
of 4 (a CHAIN root with the session, three LLM children), so every trace also yields one auto turn.
Prints spans/s for parse, normalise and both, and with --profile the top cProfile entries.

    python benchmarks/decode.py [--spans 512] [--seconds 3] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import os
import pstats
import random
import string
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from otel_chatbot.processor.decode import PROTOBUF, parse_traces
from otel_chatbot.processor.normalise import normalise_traces
from otel_chatbot.processor.pricing import PriceTable


def _kv(key: str, value: object) -> Any:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=str(value)))


def _text(rng: random.Random, size: int) -> str:
    words = ["".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(size // 5)]
    return " ".join(words)[:size]


def build_request(spans: int = 512, seed: int = 7) -> bytes:
    """A serialised ExportTraceServiceRequest of ``spans`` LLM-like spans (traces of 4)."""
    rng = random.Random(seed)
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.extend(
        [
            _kv("service.name", "support-bot"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.language", "python"),
            _kv("telemetry.sdk.version", "1.45.0"),
        ]
    )
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "openinference.instrumentation.langchain"
    t0 = time.time_ns()
    root_id = b""
    trace_id = b""
    for i in range(spans):
        span = scope.spans.add()
        if i % 4 == 0:
            trace_id, root_id = os.urandom(16), os.urandom(8)
            span.span_id, span.name, kind = root_id, "RunnableSequence", "CHAIN"
        else:
            span.span_id, span.parent_span_id, span.name, kind = os.urandom(8), root_id, "ChatOpenAI", "LLM"
        span.trace_id = trace_id
        span.kind = 1
        span.start_time_unix_nano = t0 + i * 1_000_000
        span.end_time_unix_nano = span.start_time_unix_nano + rng.randint(200_000_000, 3_000_000_000)
        span.status.code = 1
        span.attributes.extend(
            [
                _kv("openinference.span.kind", kind),
                _kv("llm.model_name", "gpt-4o-mini-2024-07-18"),
                _kv("llm.provider", "openai"),
                _kv("llm.token_count.prompt", rng.randint(50, 900)),
                _kv("llm.token_count.completion", rng.randint(20, 400)),
                _kv("llm.token_count.total", 1000),
                _kv("input.value", _text(rng, 300)),
                _kv("input.mime_type", "text/plain"),
                _kv("output.value", _text(rng, 300)),
                _kv("output.mime_type", "text/plain"),
                _kv("session.id", f"session-{rng.randint(1, 200)}"),
                _kv("user.id", f"user-{rng.randint(1, 80)}"),
            ]
        )
    return request.SerializeToString()  # type: ignore[no-any-return]


def _rate(fn: Any, spans: int, seconds: float) -> float:
    fn()  # warm caches the way a running processor has them
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return spans / best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spans", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement (best run counts)")
    parser.add_argument("--profile", action="store_true", help="print the top cProfile entries")
    args = parser.parse_args()
    body = build_request(args.spans)
    prices = PriceTable.load()
    request = parse_traces(body, PROTOBUF)
    batch = normalise_traces(request, prices)
    print(f"request: {len(body)} bytes, {len(batch.spans)} spans, {len(batch.turns)} turns")

    gc.collect()
    parse_rate = _rate(lambda: parse_traces(body, PROTOBUF), args.spans, args.seconds)
    normalise_rate = _rate(lambda: normalise_traces(request, prices), args.spans, args.seconds)
    both_rate = _rate(
        lambda: normalise_traces(parse_traces(body, PROTOBUF), prices), args.spans, args.seconds
    )
    print(f"parse only          {parse_rate:12,.0f} spans/s  {1e6 / parse_rate:6.2f} µs/span")
    print(f"normalise only      {normalise_rate:12,.0f} spans/s  {1e6 / normalise_rate:6.2f} µs/span")
    print(f"parse + normalise   {both_rate:12,.0f} spans/s  {1e6 / both_rate:6.2f} µs/span")

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(200):
            normalise_traces(parse_traces(body, PROTOBUF), prices)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)


if __name__ == "__main__":
    main()
