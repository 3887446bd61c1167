"""OpenAI chat fine-tuning lines: conversations assembled from turns, and the format check.

One line is ``{"messages": [{"role": "system", "content": ...}, {"role": "user", ...}, ...]}``:
an optional system message first, then user and assistant alternating, ending with the assistant.
An assistant message may carry ``"weight": 0`` (OpenAI's multi-turn weighting): it is context the
model sees but is not trained on, which is how a long conversation split into windows repeats the
turns before a window without training on them twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

_ROLES = ("system", "user", "assistant")
_KEYS = {"role", "content", "weight"}


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
        if not isinstance(message, dict) or not {"role", "content"} <= set(message) <= _KEYS:
            raise FinetuneFormatError(f"{where}: expected an object with 'role' and 'content' "
                                      f"(and 'weight' on an assistant message)")
        role, content = message["role"], message["content"]
        if "weight" in message and (role != "assistant" or message["weight"] not in (0, 1)
                                    or isinstance(message["weight"], bool)):
            raise FinetuneFormatError(f"{where}.weight: expected 0 or 1 on an assistant message")
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
    if messages[-1].get("weight", 1) == 0:
        raise FinetuneFormatError("messages: the last assistant message must be trained on (weight 1)")


def example(pairs: Iterable[tuple[str, str]], system_prompt: str | None, context: int = 0) -> dict[str, Any]:
    """One validated line from (user message, assistant reply) pairs in conversation order; the
    first ``context`` replies are context only (weight 0)."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    for index, (user, assistant) in enumerate(pairs):
        messages.append({"role": "user", "content": user})
        reply: dict[str, Any] = {"role": "assistant", "content": assistant}
        if index < context:
            reply["weight"] = 0
        messages.append(reply)
    line = {"messages": messages}
    validate_line(line)
    return line


def sessions(turns: Sequence[ExportTurn]) -> list[list[ExportTurn]]:
    """The turns of each session in time order (a turn without a session on its own), in the order
    of each group's first turn."""
    groups: dict[str, list[ExportTurn]] = {}
    for turn in sorted(turns, key=lambda t: (t.started_at, t.turn_id)):
        key = f"s:{turn.session_id}" if turn.session_id is not None else f"t:{turn.turn_id}"
        groups.setdefault(key, []).append(turn)
    return list(groups.values())


def conversations(turns: Sequence[ExportTurn], system_prompt: str | None) -> list[dict[str, Any]]:
    """One line per session, one per turn without a session, with no length limit."""
    return [example(((t.user_message, t.reply) for t in group), system_prompt) for group in sessions(turns)]
