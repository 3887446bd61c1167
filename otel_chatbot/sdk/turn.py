"""``chat_turn``: one span per user message and bot answer, with the turn's identity on every child.

Usable as ``with``, ``async with`` and as a decorator of sync or async functions. The turn span
carries ``chat.turn.id``; spans started inside it (LangChain, OpenAI, the app's own) get session,
user, channel and ``chat.in_turn`` from ``TurnAttributesProcessor``.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, overload

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode

from otel_chatbot import semconv
from otel_chatbot.sdk.injection import detect_prompt_injection
from otel_chatbot.sdk.propagation import enter_turn, exit_turn
from otel_chatbot.sdk.tracing import settings as _settings
from otel_chatbot.sdk.tracing import tracer as _tracer

__all__ = ["ChatTurn", "PromptInjectionBlocked", "chat_turn", "current_turn"]

_log = logging.getLogger("otel_chatbot")

P = ParamSpec("P")
R = TypeVar("R")

_CURRENT: ContextVar[ChatTurn | None] = ContextVar("otel_chatbot_current_turn", default=None)
# Decorated functions fill turn fields from their own parameters of these names.
_BINDABLE = {"session_id": "session_id", "user_id": "user_id", "source": "source",
             "user_message": "user_message", "message": "user_message"}


class PromptInjectionBlocked(Exception):
    """Raised on entering a turn whose user message was flagged, when blocking was asked for.

    The turn is still recorded (``chat.prompt_injection`` and ``chat.blocked`` true); ``turn_id``
    lets the app answer the user and still accept feedback on the refusal.
    """

    def __init__(self, turn: ChatTurn) -> None:
        super().__init__(f"prompt injection blocked in turn {turn.id}")
        self.turn = turn
        self.turn_id = turn.id


class ChatTurn:
    """The live turn: its id, span and the marks the app sets while answering."""

    __slots__ = ("_capture", "_response", "blocked", "id", "prompt_injection", "session_id", "source",
                 "span", "user_id", "user_message")

    def __init__(self, turn_id: str, span: trace.Span, session_id: str | None, user_id: str | None,
                 source: str | None, user_message: str | None, capture: bool) -> None:
        self.id = turn_id
        self.span = span
        self.session_id = session_id
        self.user_id = user_id
        self.source = source
        self.user_message = user_message
        self.prompt_injection = False
        self.blocked = False
        self._response: str | None = None
        self._capture = capture

    @property
    def turn_id(self) -> str:
        return self.id

    @property
    def response(self) -> str | None:
        return self._response

    def set_response(self, text: str) -> None:
        """The bot's reply (recorded as ``output.value`` unless content capture is off)."""
        self._response = text
        if self._capture:
            self.span.set_attribute(semconv.OUTPUT_VALUE, text)

    def mark_fallback(self, reason: str | None = None) -> None:
        """The bot could not answer and fell back (canned reply, handoff to a human, …)."""
        self.span.set_attribute(semconv.CHAT_FALLBACK, True)
        if reason:
            self.span.set_attribute(semconv.CHAT_FALLBACK_REASON, reason)

    def mark_hallucination(self, source: str = "app") -> None:
        if source not in semconv.HALLUCINATION_SOURCES:
            allowed = semconv.HALLUCINATION_SOURCES
            raise ValueError(f"hallucination source must be one of {allowed}, got {source!r}")
        self.span.set_attributes(
            {semconv.CHAT_HALLUCINATION: True, semconv.CHAT_HALLUCINATION_SOURCE: source}
        )

    def mark_escalated(self, reason: str | None = None) -> None:
        """The conversation was handed to a human agent at this turn (``reason``: e.g. "billing")."""
        self.span.set_attribute(semconv.CHAT_ESCALATED, True)
        if reason:
            self.span.set_attribute(semconv.CHAT_ESCALATION_REASON, reason)

    def mark_blocked(self) -> None:
        self.blocked = True
        self.span.set_attribute(semconv.CHAT_BLOCKED, True)

    def mark_rate_limited(self) -> None:
        self.span.set_attribute(semconv.CHAT_RATE_LIMITED, True)

    def set_attribute(self, key: str, value: Any) -> None:
        self.span.set_attribute(key, value)

    def add_usage(self, model: str, input_tokens: int, output_tokens: int, *, provider: str | None = None,
                  duration_s: float | None = None) -> None:
        """Record an LLM call made without an instrumentor, as a ``chat.usage`` child span.

        ``duration_s`` back-dates the span start so the call's latency is kept.
        """
        if not model:
            raise ValueError("add_usage: model must be a non-empty string")
        for name, value in (("input_tokens", input_tokens), ("output_tokens", output_tokens)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"add_usage: {name} must be a non-negative int, got {value!r}")
        attributes: dict[str, Any] = {
            semconv.GEN_AI_OPERATION_NAME: "chat",
            semconv.GEN_AI_REQUEST_MODEL: model,
            semconv.GEN_AI_USAGE_INPUT_TOKENS: input_tokens,
            semconv.GEN_AI_USAGE_OUTPUT_TOKENS: output_tokens,
            semconv.CHAT_IN_TURN: self.id,
            # Explicit, so a usage recorded after the turn's block has exited still carries them.
            **_identity_attributes(self.session_id, self.user_id, self.source),
        }
        if provider:
            attributes[semconv.GEN_AI_PROVIDER_NAME] = provider
        end = time.time_ns()
        start = end - int(duration_s * 1e9) if duration_s else end
        parent = trace.set_span_in_context(self.span)
        child = _tracer().start_span(semconv.CHAT_USAGE_SPAN_NAME, context=parent, attributes=attributes,
                                         start_time=start)
        child.end(end_time=end)

    def record_feedback(self, rating: str, comment: str | None = None) -> None:
        from otel_chatbot.sdk.feedback import record_feedback

        record_feedback(self.id, rating, comment)


def current_turn() -> ChatTurn | None:
    """The turn the calling code runs in, if any."""
    return _CURRENT.get()


def _new_turn_id() -> str:
    return os.urandom(16).hex()


def _identity_attributes(session_id: str | None, user_id: str | None, source: str | None) -> dict[str, Any]:
    """Session, user and channel as every span of a turn carries them (empty values left out)."""
    attributes: dict[str, Any] = {}
    if session_id:
        attributes[semconv.SESSION_ID] = session_id
        attributes[semconv.GEN_AI_CONVERSATION_ID] = session_id
    if user_id:
        attributes[semconv.USER_ID] = user_id
    if source:
        attributes[semconv.CHAT_SOURCE] = source
    return attributes


class _TurnScope:
    """What ``chat_turn(...)`` returns: a (async) context manager and a decorator."""

    def __init__(self, session_id: str | None, user_id: str | None, source: str | None,
                 user_message: str | None, turn_id: str | None, attributes: dict[str, Any] | None,
                 block_injections: bool | None, name: str) -> None:
        self._session_id = session_id
        self._user_id = user_id
        self._source = source
        self._user_message = user_message
        self._turn_id = turn_id
        self._attributes = attributes
        self._block = block_injections
        self._name = name
        self._turn: ChatTurn | None = None
        self._tokens: tuple[object, Token[dict[str, Any] | None], Token[ChatTurn | None]] | None = None

    def _copy(self, overrides: dict[str, str]) -> _TurnScope:
        return _TurnScope(
            overrides.get("session_id", self._session_id),
            overrides.get("user_id", self._user_id),
            overrides.get("source", self._source),
            overrides.get("user_message", self._user_message),
            None,
            self._attributes,
            self._block,
            self._name,
        )

    # --- context manager -------------------------------------------------------------------
    def __enter__(self) -> ChatTurn:
        if self._turn is not None:
            raise RuntimeError("this chat_turn(...) is already entered; create one per turn")
        conf = _settings()
        turn_id = self._turn_id or _new_turn_id()
        # What every span of the turn carries (the turn span adds chat.turn.id instead of in_turn).
        shared = _identity_attributes(self._session_id, self._user_id, self._source)
        attributes = dict(shared)
        attributes[semconv.CHAT_TURN_ID] = turn_id
        attributes[semconv.OPENINFERENCE_SPAN_KIND] = "CHAIN"
        if self._attributes:
            attributes.update(self._attributes)
        message = self._user_message
        injection = False
        if message is not None:
            if conf.capture_content:
                attributes[semconv.INPUT_VALUE] = message
            if conf.detect_injections:
                injection = detect_prompt_injection(message)
                attributes[semconv.CHAT_PROMPT_INJECTION] = injection
        block = injection and (self._block if self._block is not None else conf.block_injections)
        if block:
            attributes[semconv.CHAT_BLOCKED] = True
        span = _tracer().start_span(self._name, attributes=attributes)
        turn = ChatTurn(turn_id, span, self._session_id, self._user_id, self._source, message,
                        conf.capture_content)
        turn.prompt_injection = injection
        turn.blocked = block
        if block:
            span.end()
            raise PromptInjectionBlocked(turn)
        shared[semconv.CHAT_IN_TURN] = turn_id
        self._turn = turn
        self._tokens = (
            otel_context.attach(trace.set_span_in_context(span)),
            enter_turn(shared),
            _CURRENT.set(turn),
        )
        return turn

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        turn, tokens = self._turn, self._tokens
        self._turn = self._tokens = None
        if turn is None or tokens is None:
            return
        span = turn.span
        try:
            if exc is not None and not isinstance(exc, GeneratorExit):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            span.end()
        except Exception:
            _log.exception("chat_turn: could not end the turn span")
        finally:
            ctx_token, turn_token, current_token = tokens
            try:
                _CURRENT.reset(current_token)
            except ValueError:
                _CURRENT.set(None)
            exit_turn(turn_token)
            with contextlib.suppress(Exception):
                otel_context.detach(ctx_token)  # type: ignore[arg-type]

    async def __aenter__(self) -> ChatTurn:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.__exit__(exc_type, exc, tb)

    # --- decorator ---------------------------------------------------------------------------
    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]: ...

    @overload
    def __call__(self, fn: Callable[P, R]) -> Callable[P, R]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        signature = inspect.signature(fn)
        # Only fields chat_turn(...) left unset are filled from the call: decided once, here.
        bindable = [(param, _BINDABLE[param]) for param in signature.parameters
                    if param in _BINDABLE and getattr(self, f"_{_BINDABLE[param]}") is None]

        def scope_for(args: tuple[Any, ...], kwargs: dict[str, Any]) -> _TurnScope:
            overrides: dict[str, str] = {}
            if bindable:
                try:
                    bound = signature.bind_partial(*args, **kwargs).arguments
                except TypeError:
                    bound = {}
                for param, field in bindable:
                    value = bound.get(param)
                    if isinstance(value, str):
                        overrides[field] = value
            return self._copy(overrides)

        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with scope_for(args, kwargs) as turn:
                    result = await fn(*args, **kwargs)
                    if isinstance(result, str) and turn.response is None:
                        turn.set_response(result)
                    return result

            return async_wrapper

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
            with scope_for(args, kwargs) as turn:
                result = fn(*args, **kwargs)
                if isinstance(result, str) and turn.response is None:
                    turn.set_response(result)
                return result

        return wrapper


def chat_turn(
    session_id: str | None = None,
    user_id: str | None = None,
    source: str | None = None,
    user_message: str | None = None,
    *,
    turn_id: str | None = None,
    attributes: dict[str, Any] | None = None,
    block_injections: bool | None = None,
    name: str = semconv.CHAT_TURN_SPAN_NAME,
    prompt_version: str | None = None,
) -> _TurnScope:
    """One chat turn: ``with chat_turn(session_id=..., user_id=..., source="web", user_message=m) as t:``.

    As a decorator, missing fields are taken from the function's parameters named ``session_id``,
    ``user_id``, ``source``, ``user_message`` or ``message``, and a ``str`` return value becomes the
    bot reply. ``block_injections`` (default: the ``instrument()`` setting, off) makes entering a
    turn whose message is flagged as a prompt injection raise ``PromptInjectionBlocked``.
    ``prompt_version`` names the prompt template that answers (compare versions in ``stats --by``);
    the app's own version is the resource's ``service.version`` (``instrument(service_version=...)``).
    """
    if prompt_version:
        attributes = {**(attributes or {}), semconv.PROMPT_TEMPLATE_VERSION: prompt_version}
    return _TurnScope(session_id, user_id, source, user_message, turn_id, attributes, block_injections, name)
