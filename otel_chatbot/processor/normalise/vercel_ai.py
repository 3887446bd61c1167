"""The Vercel AI SDK's span convention (``ai.*`` attributes), read as the conventions the turn builder knows.

A ``generateText``/``streamText`` call with ``experimental_telemetry`` records a root span
(``ai.generateText``, ``ai.streamText``, ``ai.generateObject``, ``ai.streamObject``) holding the
caller's prompt (``ai.prompt``), the final text and the usage *summed over all steps*; below it one
provider-call span per step (``….doGenerate`` / ``….doStream``) with the messages sent
(``ai.prompt.messages``), that step's text and usage; and ``ai.toolCall`` spans for executed tools.
Every span names its kind in ``ai.operationId``. Session, user and channel come from
``ai.telemetry.metadata.*`` (the keys are listed in ``semconv``).

``chat_attributes`` adds the conventional keys (``input.value``, ``output.value``, GenAI model,
provider, operation and usage) next to the SDK's own, so turn detection, message extraction and
token sums run unchanged: the root, which carries the user's message, is the turn; only the
provider calls carry token counts, so the root's repeated totals are never counted twice.
Pure functions; the received attributes are stored as they came.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from otel_chatbot import semconv as sc

OPERATION_ID: Final = "ai.operationId"

_ROOTS: Final = frozenset({"ai.generateText", "ai.streamText", "ai.generateObject", "ai.streamObject"})
_CALL_SUFFIXES: Final = (".doGenerate", ".doStream")
_EMBEDDINGS: Final = frozenset({"ai.embed", "ai.embedMany", "ai.embed.doEmbed", "ai.embedMany.doEmbed"})
_TOOL_CALL: Final = "ai.toolCall"
_USER_ROLES: Final = frozenset({"user"})
# ai.usage.inputTokens/outputTokens since AI SDK 5; promptTokens/completionTokens before.
_INPUT_TOKENS: Final = ("ai.usage.inputTokens", "ai.usage.promptTokens")
_OUTPUT_TOKENS: Final = ("ai.usage.outputTokens", "ai.usage.completionTokens")



def chat_attributes(attributes: dict[str, Any]) -> dict[str, Any]:
    """``attributes`` plus the conventional keys its ``ai.*`` attributes stand for.

    Keys already present win (a newer SDK version emitting GenAI names itself is read as is).
    Spans of an unknown operation come back unchanged.
    """
    operation = attributes.get(OPERATION_ID)
    if not isinstance(operation, str):
        return attributes
    if operation in _ROOTS:
        derived = _root(attributes)
    elif operation.endswith(_CALL_SUFFIXES) and operation.rsplit(".", 1)[0] in _ROOTS:
        derived = _provider_call(attributes)
    elif operation == _TOOL_CALL:
        derived = {sc.GEN_AI_OPERATION_NAME: "execute_tool"}
    elif operation in _EMBEDDINGS:
        # Model and provider only: an embedding is no chat turn, and counting its tokens would
        # make it one (a span with usage is a turn candidate).
        derived = {**_model_and_provider(attributes), sc.GEN_AI_OPERATION_NAME: "embeddings"}
    else:
        return attributes
    out = dict(attributes)
    for key, value in derived.items():
        if value is not None and key not in out:
            out[key] = value
    return out


def _root(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        sc.INPUT_VALUE: user_message(attributes.get("ai.prompt")),
        sc.OUTPUT_VALUE: _response(attributes),
        **_model_and_provider(attributes),
        **_conversation(attributes),
    }


def _provider_call(attributes: dict[str, Any]) -> dict[str, Any]:
    derived = {
        sc.INPUT_VALUE: user_message(attributes.get("ai.prompt.messages")),
        sc.OUTPUT_VALUE: _response(attributes),
        sc.GEN_AI_OPERATION_NAME: "chat",
        **_model_and_provider(attributes),
        **_conversation(attributes),
    }
    response_model = attributes.get("ai.response.model")
    if isinstance(response_model, str) and response_model:
        derived[sc.GEN_AI_RESPONSE_MODEL] = response_model
    derived[sc.GEN_AI_USAGE_INPUT_TOKENS] = _first(attributes, _INPUT_TOKENS)
    derived[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = _first(attributes, _OUTPUT_TOKENS)
    return derived


def _conversation(attributes: dict[str, Any]) -> dict[str, Any]:
    return {
        sc.SESSION_ID: _metadata(attributes, sc.VERCEL_AI_SESSION_KEYS),
        sc.USER_ID: _metadata(attributes, sc.VERCEL_AI_USER_KEYS),
        sc.CHAT_SOURCE: _metadata(attributes, sc.VERCEL_AI_SOURCE_KEYS),
    }


def _metadata(attributes: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = attributes.get(sc.VERCEL_AI_METADATA_PREFIX + key)
        if isinstance(value, str | int) and not isinstance(value, bool) and value != "":
            return str(value)
    return None


def _model_and_provider(attributes: dict[str, Any]) -> dict[str, Any]:
    model = attributes.get("ai.model.id")
    return {
        sc.GEN_AI_REQUEST_MODEL: model if isinstance(model, str) and model else None,
        sc.GEN_AI_PROVIDER_NAME: provider_name(attributes.get("ai.model.provider")),
    }


def provider_name(value: Any) -> str | None:
    """``openai.chat`` → ``openai``: the SDK's provider ids name the provider, then the API used."""
    if not isinstance(value, str) or not value:
        return None
    return value.split(".", 1)[0] or None


def _response(attributes: dict[str, Any]) -> str | None:
    for key in ("ai.response.text", "ai.response.object"):
        value = attributes.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _first(attributes: dict[str, Any], keys: tuple[str, ...]) -> Any:
    for key in keys:
        value = attributes.get(key)
        if value is not None:
            return value
    return None


def user_message(prompt: Any) -> str | None:
    """The newest user text in ``ai.prompt`` or ``ai.prompt.messages`` (JSON text).

    ``ai.prompt`` is ``{"system"?, "prompt"?: text | messages, "messages"?: messages}``;
    ``ai.prompt.messages`` is a message list. A message's content is a text or a list of parts, of
    which the ``{"type": "text", "text": …}`` ones hold its text.
    """
    if isinstance(prompt, str):
        try:
            prompt = orjson.loads(prompt)
        except orjson.JSONDecodeError:
            return prompt or None
    if isinstance(prompt, dict):
        messages = prompt.get("messages")
        if isinstance(messages, list):
            text = _last_user_text(messages)
            if text is not None:
                return text
        inner = prompt.get("prompt")
        if isinstance(inner, str):
            return inner or None
        return _last_user_text(inner) if isinstance(inner, list) else None
    return _last_user_text(prompt) if isinstance(prompt, list) else None


def _last_user_text(messages: list[Any]) -> str | None:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") in _USER_ROLES:
            text = _content_text(message.get("content"))
            if text is not None:
                return text
    return None


def _content_text(content: Any) -> str | None:
    if isinstance(content, str):
        return content or None
    if isinstance(content, list):
        texts = [part["text"] for part in content if isinstance(part, dict)
                 and part.get("type") == "text" and isinstance(part.get("text"), str)]
        return "\n".join(texts) or None
    return None
