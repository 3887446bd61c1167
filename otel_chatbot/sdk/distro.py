"""Zero-code entry points: ``opentelemetry-instrument python app.py`` gives what ``instrument()`` gives.

Registered in pyproject as the ``opentelemetry_distro`` and ``opentelemetry_configurator`` named
``otel_chatbot``. The distro sets OTLP/HTTP trace-only defaults; the configurator calls
``instrument()`` (settings from ``OTEL_*`` / ``OTEL_CHATBOT_*`` variables) without turning on the
library instrumentors itself, because auto-instrumentation loads those next from their own entry
points against the global provider we just installed.
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _BaseConfigurator

from otel_chatbot.sdk.tracing import instrument

__all__ = ["ChatbotConfigurator", "ChatbotDistro"]

_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "none",
    "OTEL_LOGS_EXPORTER": "none",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
}


class ChatbotDistro(BaseDistro):  # type: ignore[misc]
    """Sets environment defaults; explicit environment variables win."""

    def _configure(self, **kwargs: Any) -> None:
        for key, value in _DEFAULTS.items():
            os.environ.setdefault(key, value)


class ChatbotConfigurator(_BaseConfigurator):
    """Installs the chat-aware TracerProvider as the global one."""

    def _configure(self, **kwargs: Any) -> None:
        instrument(instrument_libraries=False, set_global=True)
