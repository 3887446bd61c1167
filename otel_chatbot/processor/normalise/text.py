"""The user's message and the bot's answer in a span's attributes, whichever convention carries them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

import orjson

from otel_chatbot import semconv as sc

# Searches a parsed message value for text; the int is the nesting depth (bounded).
TextIn = Callable[[Any, int], str | None]

_USER_ROLES: Final = frozenset({"user", "human", "humanmessage", "humanmessagechunk"})
_ASSISTANT_ROLES: Final = frozenset({"assistant", "ai", "aimessage", "aimessagechunk", "model", "bot"})
_INPUT_TEXT_KEYS: Final = (
    "input",
    "question",
    "query",
    "user_input",
    "human_input",
    "message",
    "prompt",
    "text",
    "content",
    "inputs",
)
_OUTPUT_TEXT_KEYS: Final = (
    "output",
    "answer",
    "response",
    "result",
    "output_text",
    "text",
    "content",
    "generation",
    "outputs",
)


def user_message_of(attributes: dict[str, Any], raw: bool = True) -> str | None:
    """The end user's text in a span's attributes, from whichever convention carries it.

    ``raw``: a JSON value with no recognisable text counts as text itself.
    """
    return _message_of(attributes, sc.INPUT_MESSAGE_ALIASES, _user_text_in, sc.LEGACY_PROMPT_PREFIX,
                       sc.OPENINFERENCE_INPUT_MESSAGES_PREFIX, user=True, raw=raw)


def bot_response_of(attributes: dict[str, Any], raw: bool = True) -> str | None:
    """The bot's answer in a span's attributes, from whichever convention carries it (``raw``: as above)."""
    return _message_of(attributes, sc.OUTPUT_MESSAGE_ALIASES, _bot_text_in, sc.LEGACY_COMPLETION_PREFIX,
                       sc.OPENINFERENCE_OUTPUT_MESSAGES_PREFIX, user=False, raw=raw)


def _message_of(attributes: dict[str, Any], aliases: tuple[str, ...], text_in: TextIn,
                legacy_prefix: str, openinference_prefix: str, *, user: bool, raw: bool) -> str | None:
    """First text found: whole-message attributes (aliases), then legacy GenAI indexed messages,
    then OpenInference flattened messages."""
    for key in aliases:
        value = attributes.get(key)
        if value is not None and value != "":
            text = _text_of(value, text_in, raw)
            if text:
                return text
    return _indexed_text(attributes, legacy_prefix, ".content", ".role", user=user) or _indexed_text(
        attributes, openinference_prefix, ".message.content", ".message.role", user=user)


def _parse_json_text(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.lstrip()
        if stripped[:1] in ("{", "["):
            try:
                return orjson.loads(stripped)
            except orjson.JSONDecodeError:
                return value
    return value


def _text_of(value: Any, text_in: TextIn, raw: bool = True) -> str | None:
    """An attribute's text: plain text as is; JSON (or a structured value) searched with ``text_in``,
    falling back to the raw text (if ``raw``) when the search finds nothing."""
    parsed = _parse_json_text(value)
    if parsed is value and isinstance(value, str):
        return value
    text = text_in(parsed, 0)
    return text if text is not None else (value if raw and isinstance(value, str) else None)


def _user_text_in(obj: Any, depth: int) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return obj or None
    if isinstance(obj, list):
        return _message_text(obj, _USER_ROLES)
    if isinstance(obj, dict):
        if "messages" in obj:
            text = _message_text(obj["messages"], _USER_ROLES)
            if text is not None:
                return text
        for key in _INPUT_TEXT_KEYS:
            if key in obj:
                text = _user_text_in(obj[key], depth + 1)
                if text is not None:
                    return text
        text = _single_text_value(obj)
        if text is not None:
            return text
        # Inputs keyed by the app's own names: Haystack's {"data": {"<component>": {"question": …}}},
        # LlamaIndex's {"kwargs": {…}}.
        for value in obj.values():
            if isinstance(value, dict):
                text = _user_text_in(value, depth + 1)
                if text is not None:
                    return text
    return None


def _bot_text_in(obj: Any, depth: int) -> str | None:
    if depth > 6:
        return None
    if isinstance(obj, str):
        return obj or None
    if isinstance(obj, list):
        return _message_text(obj, _ASSISTANT_ROLES)
    if isinstance(obj, dict):
        choices = obj.get("choices")  # an OpenAI chat completion
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            message = choice.get("message")
            text = _message_content(message) if isinstance(message, dict) else None
            if text is None and isinstance(choice.get("text"), str) and choice["text"]:
                text = choice["text"]
            if text is not None:
                return text
        generations = obj.get("generations")  # a LangChain LLMResult
        if isinstance(generations, list) and generations:
            first = (
                generations[0][0] if isinstance(generations[0], list) and generations[0] else generations[0]
            )
            if isinstance(first, dict):
                text = first.get("text") or _message_content(first.get("message"))
                if isinstance(text, str) and text:
                    return text
        candidates = obj.get("candidates")  # a Gemini response
        if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
            text = _content_text(candidates[0].get("content"))
            if text is not None:
                return text
        if "messages" in obj:
            text = _message_text(obj["messages"], _ASSISTANT_ROLES)
            if text is not None:
                return text
        if obj.get("role") in _ASSISTANT_ROLES or obj.get("type") in ("message", "ai"):
            text = _message_content(obj)
            if text is not None:
                return text
        for key in _OUTPUT_TEXT_KEYS:
            if key in obj:
                text = _bot_text_in(obj[key], depth + 1)
                if text is not None:
                    return text
        return _single_text_value(obj)
    return None


def _single_text_value(obj: dict[str, Any]) -> str | None:
    texts = [v for v in obj.values() if isinstance(v, str) and v]
    return texts[0] if len(texts) == 1 else None


def _flatten_messages(messages: Any) -> list[Any]:
    if not isinstance(messages, list):
        return []
    flat: list[Any] = []
    for m in messages:
        if isinstance(m, list):  # LangChain batches: [[message, ...]]
            flat.extend(m)
        else:
            flat.append(m)
    return flat


def _role(message: Any) -> str | None:
    if not isinstance(message, dict):
        return None
    role = message.get("role") or message.get("type")
    if (
        role == "constructor"
    ):  # LangChain serialised object: {"lc": 1, "id": [..., "HumanMessage"], "kwargs": …}
        ids = message.get("id")
        role = ids[-1] if isinstance(ids, list) and ids else None
    if role is None and isinstance(message.get("kwargs"), dict):
        role = message["kwargs"].get("type")
    return role.lower() if isinstance(role, str) else None


def _message_content(message: Any) -> str | None:
    if isinstance(message, str):
        return message or None
    if not isinstance(message, dict):
        return None
    # LangChain serialises messages as {"lc": 1, "kwargs": {...}} (dumpd) or {"type": "ai", "data": {...}}
    # (messages_to_dict): the content sits one level down in both.
    for wrapper in ("kwargs", "data"):
        if isinstance(message.get(wrapper), dict):
            message = message[wrapper]
            break
    for key in ("content", "parts", "text"):
        if key in message:
            text = _content_text(message[key])
            if text is not None:
                return text
    return None


def _content_text(content: Any) -> str | None:
    """Text of a message content: a string, or a list of parts ({"type": "text", "text"|"content": …})."""
    if isinstance(content, str):
        return content or None
    if isinstance(content, dict):
        return _message_content(content)
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, str):
                texts.append(part)
            elif isinstance(part, dict) and part.get("type", "text") == "text":
                text = part.get("text", part.get("content"))
                if isinstance(text, str):
                    texts.append(text)
        joined = "".join(texts) if len(texts) == 1 else "\n".join(texts)
        return joined or None
    return None


def _message_text(messages: Any, roles: frozenset[str]) -> str | None:
    """The newest message with one of ``roles`` (lists are in chat order: the last one is the newest)."""
    flat = _flatten_messages(messages)
    any_role = False
    for message in reversed(flat):
        role = _role(message)
        any_role = any_role or role is not None
        if role in roles:
            text = _message_content(message)
            if text is not None:
                return text
    if not any_role and flat:  # a plain list of texts: the last one is the newest
        return _message_content(flat[-1])
    return None


def _indexed_text(
    attributes: dict[str, Any], prefix: str, content_suffix: str, role_suffix: str, *, user: bool
) -> str | None:
    """Flattened message lists: ``prefix + N + content_suffix``; users → last user, bot → first assistant."""
    if prefix + "0" + content_suffix not in attributes and not any(k.startswith(prefix) for k in attributes):
        return None
    indexed: list[tuple[int, str, str | None]] = []
    for key, value in attributes.items():
        if key.startswith(prefix) and key.endswith(content_suffix):
            index = key[len(prefix) : -len(content_suffix)]
            if index.isdigit() and isinstance(value, str) and value:
                role = attributes.get(prefix + index + role_suffix)
                indexed.append((int(index), value, role.lower() if isinstance(role, str) else None))
    if not indexed:
        return None
    indexed.sort()
    if user:
        users = [text for _, text, role in indexed if role in _USER_ROLES]
        return users[-1] if users else (indexed[-1][1] if all(r is None for _, _, r in indexed) else None)
    answers = [text for _, text, role in indexed if role is None or role in _ASSISTANT_ROLES]
    return answers[0] if answers else None
