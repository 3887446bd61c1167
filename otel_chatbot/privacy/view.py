"""What every detector needs to know about a text, computed once: its UTF-8, digit count, words.

The word set lets a detector rule a message out with one set test on its cue words (``born``,
``passport``, ``road``…) instead of a regex scan; most messages hold none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

_DIGITS: Final = b"0123456789"
# Lower-case ASCII letters, digits and apostrophes stay, non-ASCII bytes stay (so "straße" is one
# word), everything else becomes a space. Digits stay inside words so that "3rd" is not the street
# word "rd" and "5th" is not "th".
_WORD_TABLE: Final = bytes(
    (i + 32) if 65 <= i <= 90 else i if (97 <= i <= 122 or 48 <= i <= 57 or i >= 128 or i == 39) else 32
    for i in range(256)
)


@dataclass
class TextView:
    text: str
    raw: bytes = field(init=False)
    digits: int = field(init=False)
    _words: frozenset[bytes] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.raw = self.text.encode("utf-8", "surrogatepass")
        self.digits = len(self.raw) - len(self.raw.translate(None, _DIGITS))

    @property
    def words(self) -> frozenset[bytes]:
        """The lower-case words of the text as UTF-8 bytes (letters, digits and apostrophes)."""
        if self._words is None:
            self._words = frozenset(self.raw.translate(_WORD_TABLE).split())
        return self._words


def gate(words: str) -> frozenset[bytes]:
    """A set of cue words (space-separated, lower case) to intersect with ``TextView.words``."""
    return frozenset(word.encode() for word in words.split())
