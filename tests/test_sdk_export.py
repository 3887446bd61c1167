"""ContentFilterExporter: redaction before export, and its memo of recent redactions."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_chatbot.privacy import Redactor
from otel_chatbot.sdk.export import ContentFilterExporter


class CountingRedactor:
    """The real Redactor, counting the texts it is asked to redact."""

    def __init__(self) -> None:
        self.calls = 0
        self._redactor = Redactor()

    def __call__(self, text: str) -> str:
        self.calls += 1
        return self._redactor.redact(text)


def _export_conversation(exporter: ContentFilterExporter, memory: InMemorySpanExporter,
                         turns: int) -> list[dict[str, object]]:
    """LLM spans that each carry the conversation so far, as chat apps send it, exported through
    ``exporter`` (which wraps ``memory``); the attributes that came out."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    history: list[str] = []
    for i in range(turns):
        history.append(f"turn {i}: mail me at user{i}@example.org")
        attributes = {f"llm.input_messages.{j}.message.content": m for j, m in enumerate(history)}
        with tracer.start_as_current_span("llm", attributes=attributes):
            pass
    provider.shutdown()
    return [dict(span.attributes or {}) for span in memory.get_finished_spans()]


def test_the_memo_redacts_each_message_once_and_exports_the_same_text() -> None:
    counting, memory = CountingRedactor(), InMemorySpanExporter()
    with_memo = _export_conversation(ContentFilterExporter(memory, counting), memory, turns=10)
    assert counting.calls == 10  # one per message, not 1 + 2 + … + 10 = 55
    uncached, memory = CountingRedactor(), InMemorySpanExporter()
    without = _export_conversation(ContentFilterExporter(memory, uncached, memo_entries=0), memory, turns=10)
    assert uncached.calls == 55
    assert with_memo == without
    last = with_memo[-1]
    assert last["llm.input_messages.9.message.content"] == "turn 9: mail me at [REDACTED:EMAIL]"
    assert not any("@example.org" in str(v) for span in with_memo for v in span.values())


def test_the_memo_is_bounded_and_skips_long_texts() -> None:
    counting, memory = CountingRedactor(), InMemorySpanExporter()
    exporter = ContentFilterExporter(memory, counting, memo_entries=4, memo_max_chars=64)
    _export_conversation(exporter, memory, turns=12)
    assert len(exporter._memo) == 4  # the four most recent messages
    assert counting.calls > 12  # older messages fell out and were redacted again
    long_text = "x" * 65 + " a@b.example.com"
    assert exporter._redacted(counting, long_text) == "x" * 65 + " [REDACTED:EMAIL]"
    assert long_text not in exporter._memo


def test_bad_memo_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="memo_entries and memo_max_chars must be >= 0"):
        ContentFilterExporter(InMemorySpanExporter(), Redactor(), memo_entries=-1)
