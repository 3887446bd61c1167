"""The redactor: runs the selected detectors, merges what they found, writes markers or tokens."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from otel_chatbot.privacy import addresses, dates, identifiers, names, numbers, structured
from otel_chatbot.privacy.pseudonym import Pseudonymiser
from otel_chatbot.privacy.spans import Found, merge
from otel_chatbot.privacy.view import TextView

KINDS: Final = (
    "email",
    "phone",
    "card",
    "iban",
    "ip",
    "api_key",
    "token",
    "ssn",
    "national_id",
    "passport",
    "dob",
    "address",
    "name",
)
_IBAN_CLASSES: Final = bytes(
    ord("A") if 65 <= i <= 90 else ord("0") if 48 <= i <= 57 else ord("x") for i in range(256)
)
_IBAN_HINT: Final = b"AA00"  # an IBAN starts with two capital letters and two digits

# An extra detector (e.g. a named-entity model) returns spans of the text it is given.
Finder = Callable[[str], list[Found]]


class Redactor:
    """Replaces PII in text with ``[REDACTED:KIND]`` markers (or keyed tokens, see ``pseudonym_key``).

    ``kinds`` selects built-in detectors (default: all of ``KINDS``); ``custom_patterns`` maps a
    name to a regular expression whose matches become ``[REDACTED:NAME]``; ``pseudonym_key`` turns
    markers into stable ``<KIND:hex>`` tokens (HMAC); ``extra_finders`` add detectors such as the
    optional named-entity backend. Callable, so it fits wherever a ``Callable[[str], str]`` does.
    """

    def __init__(
        self,
        kinds: Iterable[str] | None = None,
        custom_patterns: Mapping[str, str | re.Pattern[str]] | None = None,
        pseudonym_key: bytes | str | None = None,
        extra_finders: Iterable[Finder] = (),
    ) -> None:
        selected = KINDS if kinds is None else tuple(kinds)
        for kind in selected:
            if kind not in KINDS:
                raise ValueError(f"unknown redaction kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kinds: frozenset[str] = frozenset(selected)
        self._numbers = bool(self.kinds & {"card", "ip", "phone", "ssn"})
        self._ids = bool(self.kinds & {"national_id", "passport"})
        self._pseudonymiser = Pseudonymiser(pseudonym_key) if pseudonym_key is not None else None
        self._extra = tuple(extra_finders)
        self._custom: list[tuple[re.Pattern[str], str]] = []
        for name, pattern in (custom_patterns or {}).items():
            if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(f"custom_patterns: bad name {name!r} (letters, digits and _ only)")
            try:
                compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
            except re.error as exc:
                raise ValueError(f"custom_patterns[{name!r}]: invalid regular expression: {exc}") from exc
            self._custom.append((compiled, name.upper()))

    def find(self, text: str) -> list[Found]:
        """Every PII span of ``text``, sorted and merged (overlaps become one span)."""
        kinds = self.kinds
        found: list[Found] = []
        if "token" in kinds:
            found += structured.tokens(text)
        if "api_key" in kinds:
            found += structured.api_keys(text)
        if "email" in kinds and "@" in text:
            found += structured.emails(text)
        view = TextView(text)
        digits = view.digits
        if "iban" in kinds and digits >= 10 and _IBAN_HINT in view.raw.translate(_IBAN_CLASSES):
            found += structured.ibans(text)
        if "ip" in kinds and text.count(":") >= 2:
            found += structured.ipv6(text)
        if digits >= 4:
            if self._numbers:
                found += numbers.numbers(view, kinds)
            if self._ids:
                found += identifiers.identifiers(view, kinds)
        if digits >= 2 and "dob" in kinds:
            found += dates.dates_of_birth(view)
        if digits and "address" in kinds:
            found += addresses.addresses(view)
        if "name" in kinds:
            found += names.names(view)
        for pattern, label in self._custom:
            found += [Found(m.start(), m.end(), label) for m in pattern.finditer(text) if m.end() > m.start()]
        for finder in self._extra:
            found += finder(text)
        return merge(found)

    def redact(self, text: str) -> str:
        """Return ``text`` with every detected PII span replaced by its marker or token."""
        found = self.find(text)
        if not found:
            return text
        out: list[str] = []
        done = 0
        pseudonymiser = self._pseudonymiser
        for start, end, kind in found:
            out.append(text[done:start])
            if pseudonymiser is None:
                out.append(f"[REDACTED:{kind}]")
            else:
                out.append(pseudonymiser.token(kind, text[start:end]))
            done = end
        out.append(text[done:])
        return "".join(out)

    __call__ = redact


_default: Redactor | None = None


def redact(text: str) -> str:
    """Redact ``text`` with every built-in detector."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default.redact(text)
