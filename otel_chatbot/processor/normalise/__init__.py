"""Parsed OTLP requests → rows: spans, chat turns and feedback (pure functions).

By concern: ``spans`` (span rows, the hot path), ``llm`` (model/provider/tokens/cost columns),
``turns`` (turns and feedback), ``logs`` (feedback and outcomes from log records), ``outcomes``
(outcome events, escalation and prompt/app versions), ``text`` (message text),
``plan`` (what an attribute key set means, shared helpers), ``vercel_ai`` (the Vercel AI SDK's ``ai.*``
attributes read as the conventions above).
"""

from otel_chatbot.processor.normalise.logs import normalise_logs
from otel_chatbot.processor.normalise.plan import Redact
from otel_chatbot.processor.normalise.spans import normalise_traces
from otel_chatbot.processor.normalise.text import bot_response_of, user_message_of

__all__ = ["Redact", "bot_response_of", "normalise_logs", "normalise_traces", "user_message_of"]
