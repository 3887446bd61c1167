"""Overhead of one chat_turn against bare OpenTelemetry spans, measured in the same run.

Three set-ups, each applied to both arms alike:
- synchronous export (SimpleSpanProcessor) to a no-op exporter: every microsecond of the turn is
  counted, redaction and injection check included, against spans that cost only their SDK work;
- synchronous export through the real OTLP protobuf encoder (what the OTLP exporters run before
  the network): the whole CPU cost per turn as production pays it, minus the socket;
- BatchSpanProcessor (the production set-up): time on the app thread, what users wait for.

    python benchmarks/overhead.py [--iterations N]

Prints the ratios turn / bare (target <= 1.5x) and the cost of redacting a 1 KB message.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence

from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)

import otel_chatbot
from otel_chatbot.privacy import Redactor
from otel_chatbot.sdk.export import ContentFilterExporter
from otel_chatbot.sdk.injection import detect_prompt_injection

USER_MESSAGE = (
    "Hi, I ordered a blue rain jacket last week (order 88231) and it still has not arrived. "
    "You can reach me at anna.k@example.org or +49 30 1234567. Can you check the status?"
)
BOT_REPLY = "Thanks Anna! Order 88231 left our warehouse yesterday; it should arrive within 2 days."
# 1 KB with one e-mail address and one phone number (the realistic case), and 1 KB with none.
KB_MESSAGE = (("I still have not received my parcel, order 88231, shipped on the 3rd. " * 14)[:960]
              + " Mail anna.k@example.org or call +49 30 1234567.")[:1024]
KB_PLAIN = ("My parcel has not arrived and the tracking page shows no update since Monday. " * 14)[:1024]


class NoopExporter(SpanExporter):
    def __init__(self) -> None:
        self.count = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        return SpanExportResult.SUCCESS


class EncodingExporter(SpanExporter):
    """Encodes spans to an OTLP request body as the OTLP/HTTP exporter does, then drops the bytes."""

    def __init__(self) -> None:
        self.bytes = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.bytes += len(encode_spans(spans).SerializePartialToString())
        return SpanExportResult.SUCCESS


def best_of(fn: Callable[[], None], iterations: int, rounds: int = 7,
            between: Callable[[], object] | None = None) -> float:
    """Median over rounds of the mean seconds per call (median damps a noisy neighbour).
    ``between`` runs after each round, untimed (to drain an export queue)."""
    per_call = []
    for _ in range(rounds):
        gc.collect()
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        per_call.append((time.perf_counter() - start) / iterations)
        if between is not None:
            between()
    return statistics.median(per_call)


def measure(*, batch: bool, iterations: int, encode: bool = False) -> tuple[float, float, float]:
    """Seconds per call of (chat_turn + child, bare span, bare span + child), both arms exporting
    through the same processor kind (batched or synchronous) to the same exporter: a no-op one,
    or with ``encode`` one that runs the OTLP protobuf encoder."""
    exporter: SpanExporter = EncodingExporter() if encode else NoopExporter()
    provider = otel_chatbot.instrument(
        "overhead-bench", exporter=exporter, batch=batch, set_global=False, instrument_libraries=False
    )
    assert provider is not None
    child_tracer = provider.get_tracer("app")
    bare_provider = TracerProvider()
    bare_provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    if batch:
        # A round must fit the export queue (2048 spans, two per call) or spans are dropped and
        # their export work never competes with the app thread; the queue is drained between rounds.
        iterations = min(iterations, 1000)

    def drain() -> None:
        if batch:
            otel_chatbot.force_flush()
            bare_provider.force_flush()
    bare = bare_provider.get_tracer("bare")
    attributes = {
        "session.id": "sess-42", "gen_ai.conversation.id": "sess-42", "user.id": "user-7",
        "chat.source": "website", "chat.turn.id": "0" * 32, "input.value": USER_MESSAGE,
    }
    # What a hand-written equivalent does: the same ids on the child as chat_turn stamps on it.
    child_attributes = {k: v for k, v in attributes.items() if k not in ("chat.turn.id", "input.value")}
    child_attributes["chat.in_turn"] = "0" * 32

    # A new order number per call: every message is new text, as in a real chat, so the exporter's
    # memo of recent redactions never answers for the turn (both arms format the same strings).
    numbers = itertools.count(100_000)

    def turn() -> None:
        n = str(next(numbers))
        with otel_chatbot.chat_turn(session_id="sess-42", user_id="user-7", source="website",
                                    user_message=USER_MESSAGE.replace("88231", n)) as t:
            with child_tracer.start_as_current_span("retrieve"):
                pass
            t.set_response(BOT_REPLY.replace("88231", n))

    def bare_span() -> None:
        n = str(next(numbers))
        attributes["input.value"] = USER_MESSAGE.replace("88231", n)
        with bare.start_as_current_span("chat.turn", attributes=attributes) as span:
            span.set_attribute("output.value", BOT_REPLY.replace("88231", n))

    def bare_pair() -> None:
        n = str(next(numbers))
        attributes["input.value"] = USER_MESSAGE.replace("88231", n)
        with bare.start_as_current_span("chat.turn", attributes=attributes) as span:
            with bare.start_as_current_span("retrieve", attributes=child_attributes):
                pass
            span.set_attribute("output.value", BOT_REPLY.replace("88231", n))

    try:
        for fn in (turn, bare_span, bare_pair):  # warm up caches and code paths
            best_of(fn, 200, rounds=1, between=drain)
        return (best_of(turn, iterations, between=drain), best_of(bare_span, iterations, between=drain),
                best_of(bare_pair, iterations, between=drain))
    finally:
        otel_chatbot.shutdown()
        bare_provider.shutdown()


def conversation_export(*, memo: bool, turns: int = 20) -> float:
    """Seconds to export (redaction on) the LLM spans of one conversation of ``turns`` turns, each
    carrying the whole history so far as OpenInference input messages, as chat apps send it."""
    exporter = ContentFilterExporter(NoopExporter(), Redactor(), memo_entries=1024 if memo else 0)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    llm = provider.get_tracer("llm")
    history: list[tuple[str, str]] = []
    start = time.perf_counter()
    for i in range(turns):
        history.append(("user", USER_MESSAGE.replace("88231", str(i))))
        attributes: dict[str, str] = {"openinference.span.kind": "LLM"}
        for j, (role, content) in enumerate(history):
            attributes[f"llm.input_messages.{j}.message.role"] = role
            attributes[f"llm.input_messages.{j}.message.content"] = content
        reply = BOT_REPLY.replace("88231", str(i))
        attributes["llm.output_messages.0.message.content"] = reply
        with llm.start_as_current_span("ChatOpenAI", attributes=attributes):
            pass
        history.append(("assistant", reply))
    elapsed = time.perf_counter() - start
    provider.shutdown()
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000, help="calls per round (default 3000)")
    args = parser.parse_args(argv)
    if args.iterations < 1:
        parser.error("--iterations must be >= 1")

    t_turn, t_bare, t_pair = measure(batch=False, iterations=args.iterations)
    t_turn_enc, _t_bare_enc, t_pair_enc = measure(batch=False, iterations=args.iterations, encode=True)
    # Production set-up: BatchSpanProcessor on both arms, so export (and the turn's redaction) runs on
    # the export thread. The app thread's time per turn is what a chatbot's users wait for; the export
    # thread still competes for the GIL, so part of its work shows up here too.
    t_turn_batch, _t_bare_batch, t_pair_batch = measure(batch=True, iterations=args.iterations)
    redactor = Redactor()
    best_of(lambda: redactor.redact(KB_MESSAGE), 200, rounds=1)
    t_redact = best_of(lambda: redactor.redact(KB_MESSAGE), args.iterations)
    t_plain = best_of(lambda: redactor.redact(KB_PLAIN), args.iterations)
    t_injection = best_of(lambda: detect_prompt_injection(USER_MESSAGE), args.iterations)

    print("synchronous export (SimpleSpanProcessor) to a no-op exporter: every microsecond of the turn")
    print("counted, its export-side redaction included, while the bare arm's export work is zero")
    print(f"chat_turn (turn + child span, redaction on)    : {t_turn * 1e6:8.1f} us")
    print(f"bare SDK span, same attributes                 : {t_bare * 1e6:8.1f} us")
    print(f"bare SDK span + child, same attributes on both : {t_pair * 1e6:8.1f} us")
    print(f"ratio chat_turn / bare span + child (target <= 1.5x): {t_turn / t_pair:6.2f}x")
    print(f"ratio chat_turn / one bare span                : {t_turn / t_bare:8.2f}x")
    print("synchronous export through the real OTLP protobuf encoder (no socket): the CPU production pays")
    print(f"chat_turn (turn + child span, redaction on)    : {t_turn_enc * 1e6:8.1f} us")
    print(f"bare SDK span + child, same attributes on both : {t_pair_enc * 1e6:8.1f} us")
    print(f"ratio chat_turn / bare span + child (target <= 1.5x): {t_turn_enc / t_pair_enc:6.2f}x")
    print("batched export (BatchSpanProcessor, as in production): time on the app thread")
    print(f"chat_turn (turn + child span, redaction on)    : {t_turn_batch * 1e6:8.1f} us")
    print(f"bare SDK span + child, same attributes on both : {t_pair_batch * 1e6:8.1f} us")
    print(f"ratio chat_turn / bare span + child (target <= 1.5x): {t_turn_batch / t_pair_batch:6.2f}x")
    print(f"redact 1 KB message (one email, one phone)     : {t_redact * 1e6:8.1f} us "
          f"({t_redact / t_bare:.2f}x of one bare span; {t_redact / (t_pair_enc / 2):.2f}x of one "
          "with the OTLP encoder, half the encoded pair)")
    print(f"redact 1 KB message without PII                : {t_plain * 1e6:8.1f} us "
          f"({t_plain / t_bare:.2f}x of one bare span)")
    print(f"prompt-injection check of the user message     : {t_injection * 1e6:8.1f} us "
          f"({len(USER_MESSAGE)} characters)")
    conversation_export(memo=True)  # warm up
    with_memo = statistics.median(conversation_export(memo=True) for _ in range(5))
    without_memo = statistics.median(conversation_export(memo=False) for _ in range(5))
    print("a 20-turn conversation whose LLM spans carry the history so far (exported, redaction on):")
    print(f"with the memo of recent redactions             : {with_memo * 1e3:8.2f} ms")
    print(f"without it (every message redacted every turn) : {without_memo * 1e3:8.2f} ms "
          f"({without_memo / with_memo:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
