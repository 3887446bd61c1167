"""``instrument()``: one call sets up tracing for a chatbot and turns on the LLM instrumentors.

Precedence for every setting: argument, then ``OTEL_CHATBOT_*`` / standard ``OTEL_*`` environment
variable, then default. Telemetry trouble at runtime is logged, never raised into the app; only
invalid argument values (a programming error) raise ``ValueError``.
"""

from __future__ import annotations

import atexit
import importlib.util
import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from otel_chatbot.privacy import Redactor
from otel_chatbot.sdk.export import ContentFilterExporter
from otel_chatbot.sdk.propagation import TurnAttributesProcessor

__all__ = ["Settings", "force_flush", "instrument", "is_instrumented", "settings", "shutdown", "tracer"]

_log = logging.getLogger("otel_chatbot")

PROTOCOLS = ("http/protobuf", "grpc")
LIBRARIES = ("langchain", "openai")
_TRACER_NAME = "otel_chatbot"


@dataclass(frozen=True)
class Settings:
    """What ``chat_turn`` needs to know about how the SDK was set up."""

    capture_content: bool = True
    detect_injections: bool = True
    block_injections: bool = False


@dataclass
class _State:
    provider: TracerProvider
    owns_provider: bool
    processors: list[SpanProcessor]
    tracer: trace.Tracer
    settings: Settings
    instrumentors: list[Any] = field(default_factory=list)


_lock = threading.RLock()
_state: _State | None = None
_atexit_registered = False
_DEFAULT_SETTINGS = Settings()


def _env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    _log.warning("ignoring %s=%r: expected true or false", name, raw)
    return default


def _resolve_protocol(protocol: str | None) -> str:
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"protocol: expected one of {PROTOCOLS}, got {protocol!r}")
        return protocol
    env = os.environ
    raw = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if raw in (None, ""):
        return "http/protobuf"
    if raw not in PROTOCOLS:
        _log.warning("unsupported OTLP protocol %r; using http/protobuf", raw)
        return "http/protobuf"
    return raw


def _http_traces_url(endpoint: str) -> str:
    """A base URL gets the OTLP traces path; a URL that already has a path is used as is."""
    parts = urlsplit(endpoint)
    if not parts.scheme or not parts.netloc:
        raise ValueError(f"endpoint: expected a URL like http://127.0.0.1:4318, got {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def _build_exporter(endpoint: str | None, protocol: str, headers: dict[str, str] | None) -> SpanExporter:
    if protocol == "grpc":
        # Imported only here: the gRPC client is heavy and HTTP is the default.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

        insecure = None
        if endpoint is not None and endpoint.startswith("http://"):
            insecure = True
        grpc_headers = tuple(headers.items()) if headers else None
        exporter: SpanExporter = GrpcExporter(endpoint=endpoint, insecure=insecure, headers=grpc_headers)
        return exporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    url = _http_traces_url(endpoint) if endpoint is not None else None
    return HttpExporter(endpoint=url, headers=headers)


def _resolve_redactor(redact: bool | Callable[[str], str] | None) -> Callable[[str], str] | None:
    if redact is None:
        redact = _env_bool("OTEL_CHATBOT_REDACT", True)
    if redact is True:
        # A key turns markers into stable keyed tokens (<EMAIL:7f3a09c2>); see otel_chatbot.privacy.
        return Redactor(pseudonym_key=os.environ.get("OTEL_CHATBOT_PSEUDONYM_KEY") or None)
    if redact is False:
        return None
    if not callable(redact):
        raise ValueError(f"redact: expected a bool, a Redactor or a callable, got {type(redact).__name__}")
    return redact


def _instrument_libraries(provider: TracerProvider, libraries: Iterable[str]) -> list[Any]:
    """Turn on the OpenInference instrumentors for the libraries that are installed."""
    done: list[Any] = []
    for library in libraries:
        if library not in LIBRARIES:
            raise ValueError(f"instrument_libraries: unknown library {library!r}; expected {LIBRARIES}")
        package = "langchain_core" if library == "langchain" else "openai"
        if importlib.util.find_spec(package) is None:
            continue
        try:
            if library == "langchain":
                from openinference.instrumentation.langchain import LangChainInstrumentor as Instrumentor
            else:
                from openinference.instrumentation.openai import OpenAIInstrumentor as Instrumentor
        except ImportError:
            _log.info("%s is installed, openinference-instrumentation-%s is not: skipped", package, library)
            continue
        try:
            instrumentor = Instrumentor()
            if instrumentor.is_instrumented_by_opentelemetry:
                continue  # e.g. opentelemetry-instrument already did it
            instrumentor.instrument(tracer_provider=provider)
            done.append(instrumentor)
        except Exception:
            _log.exception("could not instrument %s", library)
    return done


def instrument(
    service_name: str | None = None,
    service_version: str | None = None,
    *,
    endpoint: str | None = None,
    protocol: str | None = None,
    headers: Mapping[str, str] | None = None,
    auth_token: str | None = None,
    resource_attributes: Mapping[str, Any] | None = None,
    redact: bool | Callable[[str], str] | None = None,
    capture_content: bool | None = None,
    detect_injections: bool | None = None,
    block_injections: bool | None = None,
    instrument_libraries: bool | Iterable[str] = True,
    exporter: SpanExporter | None = None,
    batch: bool = True,
    set_global: bool = True,
) -> TracerProvider | None:
    """Set up chat telemetry; returns the TracerProvider in use (None if setup failed).

    ``endpoint`` is the OTLP base URL (``http://127.0.0.1:4318``; for gRPC ``http://host:4317``);
    unset, the exporter reads ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT``. ``exporter`` replaces the
    OTLP exporter (tests pass an InMemorySpanExporter). ``set_global=False`` keeps the provider
    private to the SDK. When a global SDK TracerProvider already exists it is reused and our
    processors are added to it. Calling again while instrumented returns the same provider.
    """
    global _state, _atexit_registered
    resolved_protocol = _resolve_protocol(protocol)
    redactor = _resolve_redactor(redact)
    turn_settings = Settings(
        capture_content=capture_content
        if capture_content is not None
        else _env_bool("OTEL_CHATBOT_CAPTURE_CONTENT", True),
        detect_injections=detect_injections
        if detect_injections is not None
        else _env_bool("OTEL_CHATBOT_DETECT_INJECTIONS", True),
        block_injections=block_injections
        if block_injections is not None
        else _env_bool("OTEL_CHATBOT_BLOCK_INJECTIONS", False),
    )
    if instrument_libraries is True:
        libraries: tuple[str, ...] = LIBRARIES
    elif instrument_libraries is False:
        libraries = ()
    else:
        libraries = tuple(instrument_libraries)
    if endpoint is not None and resolved_protocol == "http/protobuf":
        _http_traces_url(endpoint)  # validate now: a typo is the caller's bug, not a runtime failure
    with _lock:
        if _state is not None:
            _log.debug("otel_chatbot.instrument() called again; keeping the existing setup")
            return _state.provider
        try:
            token = auth_token or os.environ.get("OTEL_CHATBOT_AUTH_TOKEN") or None
            all_headers = dict(headers) if headers else {}
            if token:
                all_headers["authorization"] = f"Bearer {token}"
            span_exporter = exporter or _build_exporter(endpoint, resolved_protocol, all_headers or None)
            filtered = ContentFilterExporter(span_exporter, redactor, turn_settings.capture_content)
            export_processor: SpanProcessor = (
                BatchSpanProcessor(filtered) if batch else SimpleSpanProcessor(filtered)
            )
            processors: list[SpanProcessor] = [TurnAttributesProcessor(), export_processor]

            existing = trace.get_tracer_provider() if set_global else None
            if isinstance(existing, TracerProvider):
                provider, owns = existing, False
            else:
                attrs: dict[str, Any] = dict(resource_attributes or {})
                if service_name:
                    attrs["service.name"] = service_name
                if service_version:
                    attrs["service.version"] = service_version
                provider, owns = TracerProvider(resource=Resource.create(attrs)), True
                if set_global:
                    trace.set_tracer_provider(provider)
            for processor in processors:
                provider.add_span_processor(processor)
            instrumentors = _instrument_libraries(provider, libraries)
            _state = _State(
                provider=provider,
                owns_provider=owns,
                processors=processors,
                tracer=provider.get_tracer(_TRACER_NAME),
                settings=turn_settings,
                instrumentors=instrumentors,
            )
            if not _atexit_registered:
                atexit.register(shutdown)
                _atexit_registered = True
            return provider
        except ValueError:
            raise
        except Exception:
            _log.exception("otel_chatbot.instrument() failed; the app runs without chat telemetry")
            return None


def force_flush(timeout_millis: int = 30000) -> bool:
    """Export everything recorded so far; True when it all went out in time."""
    state = _state
    if state is None:
        return True
    try:
        return all(p.force_flush(timeout_millis) for p in state.processors)
    except Exception:
        _log.exception("otel_chatbot.force_flush() failed")
        return False


def shutdown() -> None:
    """Flush and stop what ``instrument()`` set up. Safe to call twice; ``instrument()`` may follow."""
    global _state
    with _lock:
        state, _state = _state, None
    if state is None:
        return
    for instrumentor in state.instrumentors:
        try:
            instrumentor.uninstrument()
        except Exception:
            _log.exception("could not uninstrument %s", type(instrumentor).__name__)
    try:
        if state.owns_provider:
            state.provider.shutdown()
        else:
            for processor in state.processors:
                processor.shutdown()
    except Exception:
        _log.exception("otel_chatbot.shutdown() failed")


def is_instrumented() -> bool:
    return _state is not None


def tracer() -> trace.Tracer:
    """The SDK's tracer: our provider's when instrumented, else the global one."""
    state = _state
    return state.tracer if state is not None else trace.get_tracer(_TRACER_NAME)


def settings() -> Settings:
    state = _state
    return state.settings if state is not None else _DEFAULT_SETTINGS
