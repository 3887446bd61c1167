"""OpenAI chat fine-tuning lines: conversations assembled from turns, and the format check.

One line is ``{"messages": [{"role": "system", "content": ...}, {"role": "user", ...}, ...]}``:
an optional system message first, then user and assistant alternating, ending with the assistant.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_ROLES = ("system", "user", "assistant")


class FinetuneFormatError(ValueError):
    """A line does not follow the chat fine-tuning format; the message says where."""


@dataclass(frozen=True)
class ExportTurn:
    """A turn chosen for export, already redacted, with the reply to train on (a reviewer's
    corrected reply where there is one, else the bot's)."""

    turn_id: str
    session_id: str | None
    started_at: datetime
    user_message: str
    reply: str


def validate_line(line: Any) -> None:
    """Raise FinetuneFormatError unless ``line`` is one valid chat fine-tuning example."""
    if not isinstance(line, dict) or set(line) != {"messages"}:
        raise FinetuneFormatError("a line is an object with exactly one key, 'messages'")
    messages = line["messages"]
    if not isinstance(messages, list) or not messages:
        raise FinetuneFormatError("messages: expected a non-empty list")
    expected = "user"
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict) or set(message) != {"role", "content"}:
            raise FinetuneFormatError(f"{where}: expected an object with 'role' and 'content'")
        role, content = message["role"], message["content"]
        if role not in _ROLES:
            raise FinetuneFormatError(f"{where}.role: expected one of {', '.join(_ROLES)}, got {role!r}")
        if not isinstance(content, str) or not content.strip():
            raise FinetuneFormatError(f"{where}.content: expected non-empty text")
        if role == "system" and index == 0:
            continue
        if role != expected:
            raise FinetuneFormatError(f"{where}.role: expected {expected!r}, got {role!r}")
        expected = "assistant" if role == "user" else "user"
    if messages[-1]["role"] != "assistant":
        raise FinetuneFormatError("messages: the last message must be the assistant's")


def example(pairs: Iterable[tuple[str, str]], system_prompt: str | None) -> dict[str, Any]:
    """One validated line from (user message, assistant reply) pairs in conversation order."""
    messages: list[dict[str, str]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for user, assistant in pairs:
        messages.append({"role": "user", "content": user})
        messages.append({"role": "assistant", "content": assistant})
    line = {"messages": messages}
    validate_line(line)
    return line


def conversations(turns: Sequence[ExportTurn], system_prompt: str | None) -> list[dict[str, Any]]:
    """One line per session (its turns in time order), one per turn without a session; lines in the
    order of their first turn."""
    groups: dict[str, list[ExportTurn]] = {}
    for turn in sorted(turns, key=lambda t: (t.started_at, t.turn_id)):
        key = f"s:{turn.session_id}" if turn.session_id is not None else f"t:{turn.turn_id}"
        groups.setdefault(key, []).append(turn)
    return [example(((t.user_message, t.reply) for t in group), system_prompt) for group in groups.values()]
