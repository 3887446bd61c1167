"""Stamps the current chat turn's identity on every span started inside it.

``chat_turn`` puts the turn's attributes in a ContextVar; this SpanProcessor copies them onto each
span at ``on_start``. A ContextVar (not the OTel Context) because instrumentors such as
OpenInference's LangChain tracer build the parent context for a child span from the parent *span*
alone, which would drop any extra Context value; a ContextVar follows the code that is running,
including asyncio tasks and LangChain's executor hops (both copy the context).
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

__all__ = ["TurnAttributesProcessor", "enter_turn", "exit_turn"]

_TURN_ATTRIBUTES: ContextVar[dict[str, Any] | None] = ContextVar("otel_chatbot_turn", default=None)


def enter_turn(attributes: dict[str, Any]) -> Token[dict[str, Any] | None]:
    """Make ``attributes`` the ones stamped on spans started from here on (in this context)."""
    return _TURN_ATTRIBUTES.set(attributes)


def exit_turn(token: Token[dict[str, Any] | None]) -> None:
    try:
        _TURN_ATTRIBUTES.reset(token)
    except ValueError:
        # Exited in another context than entered (a generator resumed elsewhere): clear instead.
        _TURN_ATTRIBUTES.set(None)


class TurnAttributesProcessor(SpanProcessor):
    """Adds session, user, source and ``chat.in_turn`` to spans started inside a chat turn."""

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        attributes = _TURN_ATTRIBUTES.get()
        if attributes is not None:
            span.set_attributes(attributes)

    def on_end(self, span: ReadableSpan) -> None:
        pass

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
