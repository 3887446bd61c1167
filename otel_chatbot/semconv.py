"""Attribute names shared by the SDK and the processor.

Our own ``chat.*`` names cover only what no existing convention has; everything else reuses
OpenTelemetry GenAI, OpenInference and OpenLLMetry names. The alias tuples list, in order of
preference, every attribute the processor accepts for one meaning.
"""

from __future__ import annotations

from typing import Final

# --- what the SDK emits ---------------------------------------------------------------------
SESSION_ID: Final = "session.id"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
USER_ID: Final = "user.id"
CHAT_TURN_ID: Final = "chat.turn.id"
CHAT_SOURCE: Final = "chat.source"
INPUT_VALUE: Final = "input.value"
OUTPUT_VALUE: Final = "output.value"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL: Final = "gen_ai.response.model"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_USAGE_INPUT_TOKENS: Final = "gen_ai.usage.input_tokens"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
CHAT_FALLBACK: Final = "chat.fallback"
CHAT_FALLBACK_REASON: Final = "chat.fallback.reason"
CHAT_HALLUCINATION: Final = "chat.hallucination"
CHAT_HALLUCINATION_SOURCE: Final = "chat.hallucination.source"
CHAT_PROMPT_INJECTION: Final = "chat.prompt_injection"
CHAT_BLOCKED: Final = "chat.blocked"
CHAT_RATE_LIMITED: Final = "chat.rate_limited"
CHAT_FEEDBACK_RATING: Final = "chat.feedback.rating"
CHAT_FEEDBACK_COMMENT: Final = "chat.feedback.comment"
CHAT_FEEDBACK_SPAN_NAME: Final = "chat.feedback"
# Escalation of a turn to a human agent (the turn span), and business outcomes (a chat.outcome span
# or log record naming a session or a turn).
CHAT_ESCALATED: Final = "chat.escalated"
CHAT_ESCALATION_REASON: Final = "chat.escalation.reason"
CHAT_OUTCOME_SPAN_NAME: Final = "chat.outcome"
CHAT_OUTCOME_KIND: Final = "chat.outcome.kind"
CHAT_OUTCOME_VALUE: Final = "chat.outcome.value"
CHAT_OUTCOME_LABEL: Final = "chat.outcome.label"
OUTCOME_KINDS: Final = ("conversion", "lead", "csat", "nps")
# The prompt template version that answered a turn (OpenInference's name) and the app version.
PROMPT_TEMPLATE_VERSION: Final = "llm.prompt_template.version"
SERVICE_VERSION: Final = "service.version"
CHAT_TURN_SPAN_NAME: Final = "chat.turn"
CHAT_USAGE_SPAN_NAME: Final = "chat.usage"
# Stamped by the SDK on every span started inside a chat_turn (value: the turn id). Such spans are
# members of an SDK turn and never become auto-detected turns of their own, even when they arrive
# in an earlier batch than the turn span (BatchSpanProcessor exports children first).
CHAT_IN_TURN: Final = "chat.in_turn"
OPENINFERENCE_SPAN_KIND: Final = "openinference.span.kind"
SERVICE_NAME: Final = "service.name"

FEEDBACK_RATINGS: Final = ("up", "down")
HALLUCINATION_SOURCES: Final = ("app", "judge", "human")

# --- what the processor also accepts (first match wins) -------------------------------------
SESSION_ALIASES: Final = (
    SESSION_ID,
    GEN_AI_CONVERSATION_ID,
    "traceloop.association.properties.session_id",
    "traceloop.association.properties.conversation_id",
    "traceloop.association.properties.thread_id",
    "metadata.session_id",
    "metadata.conversation_id",
    "metadata.thread_id",
)
USER_ALIASES: Final = (
    USER_ID,
    "enduser.id",
    "traceloop.association.properties.user_id",
    "metadata.user_id",
)
MODEL_ALIASES: Final = (
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_REQUEST_MODEL,
    "llm.model_name",
    "llm.response.model",
    "llm.request.model",
)
PROMPT_VERSION_ALIASES: Final = (PROMPT_TEMPLATE_VERSION, "chat.prompt.version", "traceloop.prompt.version")
APP_VERSION_ALIASES: Final = (SERVICE_VERSION, "chat.app.version")
PROVIDER_ALIASES: Final = (GEN_AI_PROVIDER_NAME, "llm.provider", "llm.system", "gen_ai.system")
INPUT_TOKEN_ALIASES: Final = (
    GEN_AI_USAGE_INPUT_TOKENS,
    "llm.token_count.prompt",
    "gen_ai.usage.prompt_tokens",
    "llm.usage.prompt_tokens",
)
OUTPUT_TOKEN_ALIASES: Final = (
    GEN_AI_USAGE_OUTPUT_TOKENS,
    "llm.token_count.completion",
    "gen_ai.usage.completion_tokens",
    "llm.usage.completion_tokens",
)
TOTAL_TOKEN_ALIASES: Final = ("llm.token_count.total", "llm.usage.total_tokens", "gen_ai.usage.total_tokens")
INPUT_MESSAGE_ALIASES: Final = (INPUT_VALUE, "gen_ai.input.messages", "gen_ai.prompt")
OUTPUT_MESSAGE_ALIASES: Final = (OUTPUT_VALUE, "gen_ai.output.messages", "gen_ai.completion")
# Vercel AI SDK: experimental_telemetry.metadata keys (JavaScript habit: camelCase). Read from the
# SDK's chat spans only (processor/normalise/vercel_ai.py), not as plain aliases: an embedding
# call carrying the same metadata is no chat turn.
VERCEL_AI_METADATA_PREFIX: Final = "ai.telemetry.metadata."
VERCEL_AI_SESSION_KEYS: Final = ("sessionId", "session_id", "conversationId", "conversation_id",
                                 "threadId", "thread_id", "chatId")
VERCEL_AI_USER_KEYS: Final = ("userId", "user_id")
VERCEL_AI_SOURCE_KEYS: Final = ("source", "channel")
# Legacy indexed GenAI content: gen_ai.prompt.N.content / gen_ai.completion.N.content
LEGACY_PROMPT_PREFIX: Final = "gen_ai.prompt."
LEGACY_COMPLETION_PREFIX: Final = "gen_ai.completion."
# OpenInference flattened messages: llm.input_messages.N.message.content
OPENINFERENCE_INPUT_MESSAGES_PREFIX: Final = "llm.input_messages."
OPENINFERENCE_OUTPUT_MESSAGES_PREFIX: Final = "llm.output_messages."

# Attributes that carry message text: PII redaction applies to these (and to their prefixes), in the
# SDK's exporter and in the processor alike. Besides our own and the GenAI names: OpenInference's
# invocation parameters and prompt templates (which embed the user's variables), and OpenLLMetry's
# entity inputs/outputs and indexed prompts, which carry the user's text verbatim from apps that do
# not use our SDK.
MESSAGE_ATTRIBUTES: Final = (
    INPUT_VALUE, OUTPUT_VALUE, "gen_ai.input.messages", "gen_ai.output.messages",
    "gen_ai.system_instructions",
    CHAT_FEEDBACK_COMMENT, "llm.invocation_parameters", "traceloop.entity.input", "traceloop.entity.output",
    "gen_ai.prompt", "gen_ai.completion", "ai.prompt", "ai.prompt.messages", "ai.response.text",
    # Vercel AI SDK, besides the above
    "ai.response.object", "ai.response.toolCalls", "ai.toolCall.args", "ai.toolCall.result",
)
MESSAGE_ATTRIBUTE_PREFIXES: Final = (
    LEGACY_PROMPT_PREFIX,
    LEGACY_COMPLETION_PREFIX,
    OPENINFERENCE_INPUT_MESSAGES_PREFIX,
    OPENINFERENCE_OUTPUT_MESSAGES_PREFIX,
    "llm.prompts.",
    "llm.prompt_template.",
    "gen_ai.task.",
    "traceloop.entity.",
    "retrieval.documents.",
)
