"""An exporter wrapper that redacts (or drops) message content before spans leave the process.

Wrapping the exporter rather than redacting in ``on_end`` because ended spans are immutable, and
because the export runs on the BatchSpanProcessor's worker thread: the redaction cost stays off the
request path. A span is copied only when one of its message attributes actually changes.

Recent results are remembered by text: a chat app sends the conversation so far with every LLM call,
so without the memo each earlier message would be redacted again on every later turn of the session
(quadratic in its length). The memo is bounded in entries and in the length of the texts it keeps.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_chatbot import semconv

__all__ = ["ContentFilterExporter", "is_message_attribute"]

# Besides the shared list: OpenInference attributes that can echo prompts (invocation parameters,
# prompt templates and their variables, legacy completion-style prompts).
_MESSAGE_KEYS = frozenset(semconv.MESSAGE_ATTRIBUTES)
_MESSAGE_PREFIXES = semconv.MESSAGE_ATTRIBUTE_PREFIXES
# Event attributes that carry text: GenAI content events and exception messages.
_EVENT_TEXT_KEYS = frozenset(
    {"content", "gen_ai.prompt", "gen_ai.completion", "exception.message", "message"}
)


def is_message_attribute(key: str) -> bool:
    """True for attributes that carry user or bot text (never token counts or ids)."""
    return key in _MESSAGE_KEYS or key.startswith(_MESSAGE_PREFIXES)


class _KeyClassifier:
    """Remembers which attribute names carry text, so a span costs set operations, not a loop.

    Attribute names are few and repeat across spans; the cache is bounded in case an app puts ids
    in attribute names.
    """

    _MAX = 8192

    def __init__(self, is_text: Callable[[str], bool]) -> None:
        self._is_text = is_text
        self._seen: set[str] = set()
        self._text: set[str] = set()

    def text_keys(self, attributes: Any) -> set[str]:
        keys = set(attributes)
        unknown = keys - self._seen
        if unknown:
            text = {k for k in unknown if self._is_text(k)}
            if len(self._seen) < self._MAX:
                self._seen |= unknown
                self._text |= text
            else:
                return (keys & self._text) | text
        return keys & self._text


def _copied(attributes: Any) -> dict[str, Any]:
    """A plain dict of ``attributes``. ``copy()`` first: a span's attributes are a mapping proxy over
    BoundedAttributes, whose ``copy`` is one C-level dict copy, where ``dict(...)`` would call
    ``__getitem__`` in Python once per key."""
    copy = getattr(attributes, "copy", None)
    result = copy() if copy is not None else None
    return result if isinstance(result, dict) else dict(attributes)


class ContentFilterExporter(SpanExporter):
    """Redacts message attributes with ``redact``, or drops them when ``capture_content`` is False.

    ``memo_entries`` bounds the memo of recent redactions (0 turns it off); texts longer than
    ``memo_max_chars`` are redacted every time and not kept.
    """

    def __init__(
        self,
        inner: SpanExporter,
        redact: Callable[[str], str] | None,
        capture_content: bool = True,
        *,
        memo_entries: int = 1024,
        memo_max_chars: int = 4096,
    ) -> None:
        if memo_entries < 0 or memo_max_chars < 0:
            raise ValueError("memo_entries and memo_max_chars must be >= 0")
        self._inner = inner
        self._redact = redact
        self._capture = capture_content
        self._span_keys = _KeyClassifier(is_message_attribute)
        self._event_keys = _KeyClassifier(_EVENT_TEXT_KEYS.__contains__)
        self._memo: dict[str, str] = {}
        self._memo_entries = memo_entries
        self._memo_max_chars = memo_max_chars if memo_entries else -1

    def _redacted(self, redact: Callable[[str], str], text: str) -> str:
        memo = self._memo
        known = memo.get(text)
        if known is not None:
            return known
        value = redact(text)
        if len(text) <= self._memo_max_chars:
            if len(memo) >= self._memo_entries:
                # Oldest first (dicts keep insertion order). Exports may run on several threads
                # (SimpleSpanProcessor): another one may have evicted the same entry already.
                with contextlib.suppress(StopIteration, RuntimeError, KeyError):
                    del memo[next(iter(memo))]
            memo[text] = value
        return value

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._redact is None and self._capture:
            return self._inner.export(spans)
        try:
            filtered = [self._filter(span) for span in spans]
        except Exception:  # never ship unredacted content because the filter broke
            return SpanExportResult.FAILURE
        return self._inner.export(filtered)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def _filter(self, span: ReadableSpan) -> ReadableSpan:
        attributes = span.attributes or {}
        new_attributes = self._filter_mapping(attributes, self._span_keys)
        events = span.events
        new_events: list[Event] | None = None
        for i, event in enumerate(events):
            changed = self._filter_mapping(event.attributes or {}, self._event_keys)
            if changed is not None:
                if new_events is None:
                    new_events = list(events)
                new_events[i] = Event(event.name, changed, event.timestamp)
        if new_attributes is None and new_events is None:
            return span
        return ReadableSpan(
            name=span.name,
            context=span.context,
            parent=span.parent,
            resource=span.resource,
            attributes=attributes if new_attributes is None else new_attributes,
            events=events if new_events is None else new_events,
            links=span.links,
            kind=span.kind,
            status=span.status,
            start_time=span.start_time,
            end_time=span.end_time,
            instrumentation_scope=span.instrumentation_scope,
        )

    def _filter_mapping(self, attributes: Any, classifier: _KeyClassifier) -> dict[str, Any] | None:
        """A filtered copy of ``attributes``, or None when nothing changes."""
        keys = classifier.text_keys(attributes)
        if not keys:
            return None
        out: dict[str, Any] | None = None
        redact = self._redact
        for key in keys:
            value = attributes[key]
            new_value: Any
            if not self._capture and key != "exception.message":  # errors stay debuggable
                new_value = None
            elif redact is None:
                continue
            elif isinstance(value, str):
                new_value = self._redacted(redact, value)
                if new_value == value:
                    continue
            elif isinstance(value, (tuple, list)):
                new_value = tuple(self._redacted(redact, v) if isinstance(v, str) else v for v in value)
                if new_value == tuple(value):
                    continue
            else:
                continue
            if out is None:
                out = _copied(attributes)
            if new_value is None:
                del out[key]
            else:
                out[key] = new_value
        return out
