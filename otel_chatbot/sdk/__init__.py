"""The app side: instrument(), chat_turn(), record_feedback() and the prompt-injection guard."""

from otel_chatbot.sdk.feedback import record_feedback
from otel_chatbot.sdk.injection import detect_prompt_injection, set_injection_classifier
from otel_chatbot.sdk.outcomes import record_outcome
from otel_chatbot.sdk.tracing import force_flush, instrument, is_instrumented, shutdown
from otel_chatbot.sdk.turn import ChatTurn, PromptInjectionBlocked, chat_turn, current_turn

__all__ = [
    "ChatTurn",
    "PromptInjectionBlocked",
    "chat_turn",
    "current_turn",
    "detect_prompt_injection",
    "force_flush",
    "instrument",
    "is_instrumented",
    "record_feedback",
    "record_outcome",
    "set_injection_classifier",
    "shutdown",
]
