"""otel-chatbot: OpenTelemetry-native observability for LLM chatbots.

The app-side API lives here and imports only client dependencies (OpenTelemetry API/SDK and
exporters); the processor, store and CLI are imported from their own subpackages.
"""

from otel_chatbot.privacy import Redactor, redact
from otel_chatbot.sdk import (
    ChatTurn,
    PromptInjectionBlocked,
    chat_turn,
    current_turn,
    detect_prompt_injection,
    force_flush,
    instrument,
    is_instrumented,
    record_feedback,
    record_outcome,
    set_injection_classifier,
    shutdown,
)

__version__ = "0.1.0"

__all__ = [
    "ChatTurn",
    "PromptInjectionBlocked",
    "Redactor",
    "__version__",
    "chat_turn",
    "current_turn",
    "detect_prompt_injection",
    "force_flush",
    "instrument",
    "is_instrumented",
    "record_feedback",
    "record_outcome",
    "redact",
    "set_injection_classifier",
    "shutdown",
]
