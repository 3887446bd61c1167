"""What a span's attribute key set means (the plan), and the small value helpers every part shares."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

import orjson

from otel_chatbot import semconv as sc
from otel_chatbot.records import SpanRow

Redact = Callable[[str], str]

_FLAG_KEYS: Final = (
    sc.CHAT_FALLBACK,
    sc.CHAT_HALLUCINATION,
    sc.CHAT_PROMPT_INJECTION,
    sc.CHAT_BLOCKED,
    sc.CHAT_RATE_LIMITED,
)
_LLM_KEYS: Final = frozenset(
    (
        *sc.MODEL_ALIASES,
        *sc.PROVIDER_ALIASES,
        *sc.INPUT_TOKEN_ALIASES,
        *sc.OUTPUT_TOKEN_ALIASES,
        *sc.TOTAL_TOKEN_ALIASES,
        sc.GEN_AI_OPERATION_NAME,
        sc.OPENINFERENCE_SPAN_KIND,
        "llm.request.type",
    )
)
_TOKEN_KEYS: Final = frozenset((*sc.INPUT_TOKEN_ALIASES, *sc.OUTPUT_TOKEN_ALIASES, *sc.TOTAL_TOKEN_ALIASES))
# Escalation and the prompt version a span may add to its turn (the app version comes with the resource).
_EXTRA_KEYS: Final = (sc.CHAT_ESCALATED, sc.CHAT_ESCALATION_REASON, *sc.PROMPT_VERSION_ALIASES)
# Flattened message lists are keyed by index; index 0 is what a span with messages always has.
_INDEXED_CONTENT_KEYS: Final = (
    sc.LEGACY_PROMPT_PREFIX + "0.content",
    sc.LEGACY_COMPLETION_PREFIX + "0.content",
    sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX + "0.message.content",
    sc.OPENINFERENCE_OUTPUT_MESSAGES_PREFIX + "0.message.content",
    sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX + "0.message.role",
)
_CONTENT_KEYS: Final = frozenset(
    (*sc.INPUT_MESSAGE_ALIASES, *sc.OUTPUT_MESSAGE_ALIASES, *_INDEXED_CONTENT_KEYS)
)
# A span with none of these keys has no chat meaning: it is stored and otherwise skipped.
_SEMANTIC_KEYS: Final = frozenset(
    (
        *_LLM_KEYS,
        *_CONTENT_KEYS,
        *sc.SESSION_ALIASES,
        *sc.USER_ALIASES,
        *_FLAG_KEYS,
        sc.CHAT_TURN_ID,
        sc.CHAT_IN_TURN,
        sc.CHAT_SOURCE,
        sc.CHAT_FEEDBACK_RATING,
        sc.CHAT_OUTCOME_KIND,
        *_EXTRA_KEYS,
        "metadata",
    )
)
_SESSION_KEYS: Final = frozenset(sc.SESSION_ALIASES)
SESSION_METADATA: Final = ("session_id", "conversation_id", "thread_id")
# Turn details a member span may add to its turn: flags and their reasons.
DETAIL_KEYS: Final = frozenset((*_FLAG_KEYS, sc.CHAT_FALLBACK_REASON, sc.CHAT_HALLUCINATION_SOURCE))
COST_KEYS: Final = ("gen_ai.usage.cost", "llm.cost.total", "llm.usage.cost")


class Plan:
    """What a span's attribute *key set* means, worked out once per distinct key set.

    Spans from one instrumentation share their keys, so the per-span work is one cache lookup and
    then only the lookups that can hit (alias lists reduced to the keys actually present).
    """

    __slots__ = (
        "candidate",
        "cost_keys",
        "details",
        "extras",
        "feedback",
        "in_turn",
        "input_keys",
        "llm",
        "metadata",
        "model_keys",
        "outcome",
        "output_keys",
        "provider_keys",
        "semantic",
        "tokens",
        "total_keys",
        "turn_id",
        "user_keys",
    )

    def __init__(self, keys: Iterable[str]) -> None:
        present = frozenset(keys)

        def having(aliases: Iterable[str]) -> tuple[str, ...]:
            return tuple(key for key in aliases if key in present)

        self.semantic = not _SEMANTIC_KEYS.isdisjoint(present)
        self.llm = not _LLM_KEYS.isdisjoint(present)
        self.tokens = not _TOKEN_KEYS.isdisjoint(present)
        self.model_keys = having(sc.MODEL_ALIASES)
        self.provider_keys = having(sc.PROVIDER_ALIASES)
        self.input_keys = having(sc.INPUT_TOKEN_ALIASES)
        self.output_keys = having(sc.OUTPUT_TOKEN_ALIASES)
        self.total_keys = having(sc.TOTAL_TOKEN_ALIASES)
        self.cost_keys = having(COST_KEYS)
        self.user_keys = having(sc.USER_ALIASES)
        self.turn_id = sc.CHAT_TURN_ID in present
        self.in_turn = sc.CHAT_IN_TURN in present
        self.feedback = sc.CHAT_FEEDBACK_RATING in present
        self.outcome = sc.CHAT_OUTCOME_KIND in present
        self.extras = not present.isdisjoint(_EXTRA_KEYS)
        self.metadata = "metadata" in present
        # A conversation id or LLM content makes a span an auto-turn candidate (the span kind is
        # checked on the value: only LLM/CHAIN/AGENT count).
        self.candidate = (
            not _SESSION_KEYS.isdisjoint(present) or not _CONTENT_KEYS.isdisjoint(present) or self.tokens
        )
        self.details = not DETAIL_KEYS.isdisjoint(present)


PLANS: dict[tuple[str, ...], Plan] = {}
PLANS_MAX: Final = 4096


def new_plan(keys: tuple[str, ...]) -> Plan:
    plan = Plan(keys)
    if len(PLANS) >= PLANS_MAX:
        PLANS.clear()
    PLANS[keys] = plan
    return plan


ChatSpan = tuple[SpanRow, dict[str, Any], Plan]


def clean_text(text: str) -> str:
    return text.replace("\x00", "\ufffd") if "\x00" in text else text


def clean_optional(text: str | None) -> str | None:
    return clean_text(text) if text is not None else None


def text_value(value: Any) -> str | None:
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    return clean_text(str(value))


def keys_value(
    attributes: dict[str, Any], keys: tuple[str, ...], metadata_keys: tuple[str, ...]
) -> str | None:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            text = text_value(value)
            if text is not None:
                return text
    if metadata_keys and "metadata" in attributes:
        return metadata_value(attributes, metadata_keys)
    return None


def metadata_value(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """A value from LangChain run metadata, which OpenInference stores as a JSON text in ``metadata``."""
    metadata = attributes.get("metadata")
    if isinstance(metadata, str) and metadata.startswith("{"):
        try:
            metadata = orjson.loads(metadata)
        except orjson.JSONDecodeError:
            return None
    if isinstance(metadata, dict):
        for key in keys:
            value = metadata.get(key)
            if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
                return clean_text(str(value))
    return None


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    if isinstance(value, int | float):
        return value != 0
    return False
