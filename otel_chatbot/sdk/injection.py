"""Prompt-injection detection on the user message: known attack phrasings plus an optional classifier.

The heuristic is deliberately a maintained list of phrasings seen in the wild (instruction
override, role hijack, system-prompt extraction, jailbreak personas, delimiter smuggling), matched
after normalising case, whitespace and light leetspeak, in English and a few other languages. It
flags; it never blocks by itself (see ``chat_turn(block_injections=...)``).
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from collections.abc import Callable
from typing import Final

__all__ = [
    "InjectionClassifier",
    "detect_prompt_injection",
    "heuristic_match",
    "normalise",
    "set_injection_classifier",
]

_log = logging.getLogger(__name__)

# A classifier returns True/False or a probability; >= 0.5 counts as an injection.
InjectionClassifier = Callable[[str], "bool | float"]

_LEET: Final = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s"})
# The same folding (lowercase + leetspeak) as one 256-byte table: bytes.translate is far cheaper
# than str.translate with a dict, and most messages are ASCII.
_ASCII_FOLD: Final = bytes.maketrans(
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZ013457@$", b"abcdefghijklmnopqrstuvwxyzoieastas"
)

# Written against the normalised text: lowercase, accents stripped, leetspeak undone, runs of
# whitespace collapsed to one space. Each rule runs only when one of its gate words occurs as a
# word of the message: the words are found with one bytes.translate and a split, and a set test
# per rule is far cheaper than a substring search per trigger (most messages trip no gate). Every
# alternative of a pattern requires one of its rule's gate words as a whole word (no letter right
# before or after it: "prompt" in "system prompts" is not one, so that alternative is gated on
# "system"), so a gate can only skip rules that cannot match.
_RULES: Final[tuple[tuple[tuple[str, ...], str], ...]] = (
    # instruction override
    (("ignore", "disregard", "forget", "skip", "override", "bypass"),
     r"\b(ignore|disregard|forget|skip|override|bypass)\b( all| any| the| your| my)*"
     r" (previous|prior|above|earlier|preceding|former|initial|original|system)"
     r"( \w+)? (instructions?|prompts?|rules|directions|guidelines|context|messages?|commands?)"
     r"|\b(ignore|disregard|forget) (everything|all) (you (were|have been) told|above|before)"),
    (("new", "now"),
     r"\bnew (instructions|rules)\b ?:|\bfrom now on,? you (are|will|must|shall)\b"),
    # role hijack / jailbreak personas
    (("now", "act", "behave", "pretend", "roleplay", "mode"),
     r"\byou are now\b( a| an| the)? ?(dan|evil|unfiltered|uncensored|jailbroken|developer mode|root|admin)"
     r"|\b(act|behave|pretend|roleplay) (as|like|to be)( a| an)? (dan|unfiltered|uncensored|jailbroken|evil)"
     r"|\bdo anything now\b"
     r"|\b(developer|god|jailbreak|dan) mode (enabled|on|activated)\b"
     r"|\benable (developer|god|jailbreak|dan) mode\b"),
    (("without",),
     r"\bwithout (any )?(restrictions|filters|censorship|limitations|guardrails)\b"),
    # system prompt extraction
    (("system", "initial", "hidden", "instructions", "original", "prompt"),
     r"\b(reveal|show|print|repeat|output|display|leak|tell me|give me|what (is|are))( me)?( your| the)"
     r"( \w+)? (system prompt|initial prompt|hidden (prompt|instructions)|instructions you were given"
     r"|original instructions|prompt above)"
     r"|\bbegin(ning)? of (the )?(system )?prompt\b"),
    (("repeat",), r"\brepeat (the|everything|all)( text| words)? (above|before)\b"),
    # delimiter / role smuggling ("im" from "<|im_start|>": "_" separates words in the gate)
    (("im", "endoftext", "system", "assistant", "inst"),
     r"<\|?(im_start|im_end|system|endoftext)\|?>|^\s*(system|assistant) ?:|\[(system|inst)\]"),
    # French, Spanish, German, Italian, Portuguese
    (("instructions", "instrucciones", "ignorier", "ignoriere", "istruzioni", "instrucoes",
      "revele", "muestra", "zeige", "mostra"),
     r"\bignore[rz]? (toutes )?(les )?instructions (precedentes|anterieures)"
     r"|\b(ignora|olvida)( todas)? (las )?instrucciones (anteriores|previas)"
     r"|\bignoriere? (alle )?(vorherigen|bisherigen|obigen) (anweisungen|instruktionen)"
     r"|\bignora (tutte )?(le )?istruzioni (precedenti|sopra)"
     r"|\bignore (todas )?(as )?instrucoes anteriores"
     r"|\b(revele|muestra|zeige|mostra)( me| mir)? (tu|ton|votre|dein|il tuo|seu) (prompt|system prompt)"),
)
_COMPILED: Final = tuple(
    (frozenset(word.encode() for word in gate), re.compile(pattern, re.MULTILINE)) for gate, pattern in _RULES
)
_ANY_GATE: Final = frozenset().union(*(gate for gate, _ in _COMPILED))
# For the gate: the same folding as _ASCII_FOLD, and every byte that is not an ASCII letter becomes
# a space, so punctuation, digits, "_" and every non-ASCII character (UTF-8 bytes >= 128) split
# words. Gate words are ASCII and a pattern's whole words have no letter beside them, so splitting
# also at the non-ASCII letters left after folding ("ß", Cyrillic) only adds words; keeping those
# bytes in their word would glue "ignore" to a curly quote or a dash and skip a rule that matches.
_WORD_FOLD: Final = bytes(
    _ASCII_FOLD[b] if b < 128 and chr(_ASCII_FOLD[b]).isalpha() else 32
    for b in range(256)
)

_classifier: InjectionClassifier | None = None
_classifier_lock = threading.Lock()


def _fold(text: str) -> str:
    """Lowercase, accents stripped, leetspeak undone: what _ASCII_FOLD does, for any text."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(ch for ch in folded if not unicodedata.combining(ch))
    return folded.lower().translate(_LEET)


def normalise(text: str) -> str:
    """Lowercase, strip accents, undo light leetspeak and collapse whitespace."""
    if text.isascii():
        return " ".join(text.encode().translate(_ASCII_FOLD).decode().split())
    return " ".join(_fold(text).split())


def _words(text: str) -> list[bytes]:
    """The runs of ASCII letters of ``text`` after the same folding as ``normalise``."""
    if text.isascii():
        return text.encode().translate(_WORD_FOLD).split()
    return _fold(text).encode("utf-8", "surrogatepass").translate(_WORD_FOLD).split()


def heuristic_match(text: str) -> str | None:
    """The attack phrasing found in ``text`` (normalised form), or None."""
    words = _words(text)
    if _ANY_GATE.isdisjoint(words):  # the common case: one pass over the words
        return None
    present = _ANY_GATE.intersection(words)
    patterns = [pattern for gate, pattern in _COMPILED if not gate.isdisjoint(present)]
    # Line structure matters for "system:" smuggling, so normalise each line separately.
    folded = "\n".join(normalise(line) for line in text.splitlines() or [text])
    for pattern in patterns:
        m = pattern.search(folded)
        if m is not None:
            return m.group(0)
    return None


def set_injection_classifier(fn: InjectionClassifier | None) -> None:
    """Install (or remove, with None) a classifier consulted after the heuristic finds nothing."""
    global _classifier
    with _classifier_lock:
        _classifier = fn


def detect_prompt_injection(text: str | None) -> bool:
    """True when the heuristic or the installed classifier flags ``text``. Never raises."""
    if not text:
        return False
    try:
        if heuristic_match(text) is not None:
            return True
    except Exception:  # a detector bug must not break the chatbot
        _log.exception("prompt-injection heuristic failed")
    classifier = _classifier
    if classifier is None:
        return False
    try:
        verdict = classifier(text)
    except Exception:
        _log.exception("prompt-injection classifier failed; using the heuristic verdict only")
        return False
    return bool(verdict >= 0.5) if isinstance(verdict, float) else bool(verdict)
