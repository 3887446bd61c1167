"""The judge's rubric: prompts, the JSON schemas of its answers, and the validation of those answers.

Pure functions, no I/O. ``JUDGE_VERSION`` names this rubric and prompt text: it is stored with every
score, and a turn is judged once per version, so changing the wording or the scale means bumping it
(scores of different versions are not comparable and are kept apart).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import jsonschema

JUDGE_VERSION: Final = "turn-v1"
SESSION_JUDGE_VERSION: Final = "session-v1"

TURN_DIMENSIONS: Final = ("accuracy", "relevance", "clarity", "groundedness")
SESSION_DIMENSIONS: Final = ("goal_completion", "coherence", "frustration")

# What the judge reads is capped: a 200 kB pasted log must not cost a fortune per turn.
MAX_MESSAGE_CHARS: Final = 6_000
MAX_CONTEXT_CHARS: Final = 12_000
MAX_SESSION_TURNS: Final = 40


class VerdictInvalid(ValueError):
    """The judge's answer is not the JSON the schema asks for; the message says what is wrong."""


def _score(description: str) -> dict[str, Any]:
    return {"type": "number", "minimum": 0, "maximum": 10, "description": description}


_TURN_PROPERTIES: dict[str, Any] = {
    "accuracy": _score("Is the answer factually correct and free of errors? 10 = fully correct."),
    "relevance": _score("Does the answer address what the user asked? 10 = exactly on point."),
    "clarity": _score("Is the answer clear, well organised and easy to act on? 10 = very clear."),
    "rationale": {"type": "string", "description": "One to three sentences justifying the scores."},
}
_GROUNDEDNESS = _score("Is every claim of the answer supported by the retrieved documents? "
                       "10 = fully supported, 0 = contradicts or invents beyond them.")


def turn_schema(with_context: bool) -> dict[str, Any]:
    """The JSON schema of a turn verdict; groundedness only when documents were retrieved."""
    properties = dict(_TURN_PROPERTIES)
    if with_context:
        properties["groundedness"] = _GROUNDEDNESS
    return {"type": "object", "properties": properties, "required": list(properties),
            "additionalProperties": False}


SESSION_SCHEMA: Final[dict[str, Any]] = {
    "type": "object",
    "properties": {
        "goal_completion": _score("Did the user get what they came for by the end? 10 = fully."),
        "coherence": _score("Do the bot's answers stay consistent with each other and with the "
                            "conversation so far? 10 = fully coherent."),
        "frustration": _score("How frustrated does the user become (repeating themselves, complaining, "
                              "asking for a human)? 0 = not at all, 10 = very."),
        "goal_completed": {"type": "boolean", "description": "True if the user's goal was met."},
        "rationale": {"type": "string", "description": "One to three sentences justifying the scores."},
    },
    "required": ["goal_completion", "coherence", "frustration", "goal_completed", "rationale"],
    "additionalProperties": False,
}

_TURN_SYSTEM = """\
You are a strict, fair evaluator of a customer-facing chatbot. You are given one user message and the
bot's reply{context_note}. Score the reply from 0 to 10 on each dimension of the JSON schema; use the
whole scale and judge only what is written. Answer with a single JSON object matching the schema and
nothing else."""

_SESSION_SYSTEM = """\
You are a strict, fair evaluator of a customer-facing chatbot. You are given a whole conversation, turn
by turn. Score it from 0 to 10 on each dimension of the JSON schema (frustration: higher means a more
frustrated user). Answer with a single JSON object matching the schema and nothing else."""


def _clip(text: str | None, limit: int) -> str:
    text = text or ""
    return text if len(text) <= limit else text[:limit] + " […truncated]"


def turn_messages(user_message: str | None, bot_response: str | None,
                  documents: Sequence[str]) -> list[dict[str, str]]:
    """Chat messages asking for a turn verdict (documents: the retrieved context, may be empty)."""
    note = ", and the documents the bot retrieved to answer it (score groundedness against them)" \
        if documents else ""
    parts = [f"USER MESSAGE:\n{_clip(user_message, MAX_MESSAGE_CHARS)}",
             f"BOT REPLY:\n{_clip(bot_response, MAX_MESSAGE_CHARS)}"]
    budget = MAX_CONTEXT_CHARS
    for i, document in enumerate(documents):
        if budget <= 0:
            break
        clipped = _clip(document, budget)
        budget -= len(clipped)
        parts.append(f"RETRIEVED DOCUMENT {i + 1}:\n{clipped}")
    return [{"role": "system", "content": _TURN_SYSTEM.format(context_note=note)},
            {"role": "user", "content": "\n\n".join(parts)}]


@dataclass(frozen=True, slots=True)
class TranscriptTurn:
    user_message: str | None
    bot_response: str | None


def session_messages(turns: Sequence[TranscriptTurn]) -> list[dict[str, str]]:
    """Chat messages asking for a session verdict; the latest MAX_SESSION_TURNS turns, in order."""
    shown = list(turns)[-MAX_SESSION_TURNS:]
    lines = [] if len(shown) == len(turns) else [f"(the first {len(turns) - len(shown)} turns are omitted)"]
    for i, t in enumerate(shown, start=len(turns) - len(shown) + 1):
        lines.append(f"TURN {i}\nUSER: {_clip(t.user_message, MAX_MESSAGE_CHARS // 4)}\n"
                     f"BOT: {_clip(t.bot_response, MAX_MESSAGE_CHARS // 4)}")
    return [{"role": "system", "content": _SESSION_SYSTEM},
            {"role": "user", "content": "\n\n".join(lines)}]


def repair_message(error: str) -> dict[str, str]:
    """The follow-up sent once when an answer fails validation."""
    return {"role": "user", "content": f"Your answer was rejected: {error}. Reply again with only a JSON "
                                       "object that matches the schema exactly."}


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; a NaN score would pass minimum/maximum and break the table.
    raise VerdictInvalid(f"not valid JSON ({name} is not a number JSON allows)")


def parse_verdict(content: str | None, schema: dict[str, Any]) -> dict[str, Any]:
    """The validated JSON object of an answer, or VerdictInvalid saying what is wrong with it."""
    text = (content or "").strip()
    if text.startswith("```"):  # some models wrap JSON in a Markdown fence despite being told not to
        text = text.strip("`").removeprefix("json").strip()
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise VerdictInvalid(f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the answer"
        raise VerdictInvalid(f"{where}: {exc.message}") from None
    if not isinstance(value, dict):  # the schemas are objects; keeps mypy and readers sure of it
        raise VerdictInvalid("expected a JSON object")
    return value
