"""PII redaction for message text, shared by the SDK (before export) and the processor.

Each detector is a regular expression run only when a cheap check says it can match; candidates
that need a checksum (card numbers: Luhn, IBANs: mod 97) or a context check (IP addresses vs version strings,
phone numbers vs dates) are validated in the replacement callback and left alone when they fail,
so near-misses such as an invalid card number or ``version 1.2.3.4`` survive.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Final

__all__ = ["KINDS", "Redactor", "iban_valid", "luhn_valid", "redact"]

KINDS: Final = ("email", "phone", "card", "iban", "ip", "api_key", "token")

# Python's regex engine is only fast when a pattern starts with a literal (it then jumps straight
# to candidates); a leading character class or look-behind makes it try every position (~20 ns
# per character per pattern). So each detector runs only when a C-speed check (``in``, a byte
# count) says it can match, patterns start with literals or digits, and left-boundary checks are
# done in the callback instead of with look-behinds.
_API_KEY_PREFIXES: Final = (
    "sk-", "AKIA", "gh", "github_pat_", "xox", "AIza", "_live_", "_test_", "glpat-", "hf_",
)
_API_KEY_RE: Final = re.compile(
    r"(?:sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{20,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|gh[pousr]_[A-Za-z0-9]{36,}"
    r"|github_pat_[A-Za-z0-9_]{22,}"
    r"|xox[abposr]-[A-Za-z0-9-]{10,}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|[spr]k_(?:live|test)_[0-9A-Za-z]{16,}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|hf_[A-Za-z0-9]{30,})"
    r"(?![A-Za-z0-9_-])"
)
# "api_key=…", "x-api-key: …", "password: …": the value is redacted, the key name kept.
_KEYED_WORDS: Final = ("key", "token", "secret", "password")
_KEYED_RE: Final = re.compile(
    r"(?i:(?:api[_-]?key|x-api-key|secret[_-]?key|access[_-]?token|client[_-]?secret|password)"
    r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;]{8,})"
)
_JWT_RE: Final = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}")
_BEARER_RE: Final = re.compile(r"(?i:bearer\s+)([A-Za-z0-9._~+/=-]{16,})")
_EMAIL_LOCAL_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")
_EMAIL_DOMAIN_RE: Final = re.compile(r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Spelled "[A-Z][A-Z]" rather than "[A-Z]{2}": only a plain leading class gets the fast scan.
_IBAN_RE: Final = re.compile(
    r"[A-Z][A-Z][0-9][0-9](?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?(?![A-Za-z0-9])"
)
_IPV6_RE: Final = re.compile(r"[0-9A-Fa-f:](?:[0-9A-Fa-f]{0,4}:){1,7}[0-9A-Fa-f]{0,4}(?![\w:])")
# Runs of digits and number punctuation; each run is then searched with _NUMBER_RE.
_NUMBER_RUN_RE: Final = re.compile(r"[0-9+(][0-9 ().+-]{5,}[0-9]")
# Card, IPv4 and phone candidates in one pass; every alternative starts with a digit, "+" or "(".
_NUMBER_RE: Final = re.compile(
    r"(?P<card>[0-9](?:[ -]?[0-9]){12,18})(?![0-9-]|\.[0-9])"
    r"|(?P<ipv4>(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"
    r"(?![\w]|\.[0-9])"
    r"|(?P<phone>"
    r"\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}"  # international: +44 20 7946 0958
    r"|\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"  # NANP: (415) 555-0123
    r"|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"  # NANP: 415-555-0123
    r"|0[0-9]{1,4}(?:[ .-][0-9]{2,4}){2,4}"  # trunk prefix: 020 7946 0958, 06 12 34 56 78
    r"|0[0-9]{2,4}[ /-][0-9]{5,8}"  # area code + subscriber: 030 12345678
    r")(?![\w]|[.-][0-9])"
)
_PHONE_RE: Final = re.compile(
    r"\+?[0-9]{1,4}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}|\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"
)
_DIGITS: Final = b"0123456789"


def _byte_classes(classes: dict[str, str]) -> bytes:
    """A bytes.translate table mapping each listed ASCII character to its class byte, others to "x"."""
    table = bytearray(b"x" * 256)
    for chars, cls in classes.items():
        for ch in chars:
            table[ord(ch)] = ord(cls)
    return bytes(table)


# Cheap C-speed prechecks on the UTF-8 bytes (translate + substring search), so the regexes with
# a leading character class, the slow ones, only run on text that can match:
# an IBAN starts with two capital letters and two digits ("AA00" after mapping);
_IBAN_CLASSES: Final = _byte_classes({"ABCDEFGHIJKLMNOPQRSTUVWXYZ": "A", "0123456789": "0"})
_IBAN_HINT: Final = b"AA00"
# a number run (_NUMBER_RUN_RE) is at least 7 consecutive characters of digits and number punctuation.
_RUN_CLASSES: Final = _byte_classes({"0123456789 ().+-": "0"})
_RUN_HINT: Final = b"0000000"
# Characters that, just before a number, make it part of a larger token (an id, a version, a word).
_NUMBER_GLUE: Final = frozenset("0123456789.-+_/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

# IBAN lengths per country (ISO 13616); an unknown country code is not an IBAN.
_IBAN_LENGTHS: Final = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29, "ES": 24,
    "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28, "HR": 21,
    "HU": 28, "IE": 22, "IL": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LI": 21,
    "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30,
    "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SE": 24, "SI": 19, "SK": 24, "SM": 27, "TN": 24, "TR": 26, "UA": 29, "VG": 24, "XK": 20,
}
# Words that make a dotted quad a version number rather than an address.
_VERSION_WORDS: Final = ("version", "release", "build", "v", "ver", "python", "firmware", "rev")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn checksum (payment card numbers)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(iban: str) -> bool:
    """True for an IBAN with a known country length and a valid ISO 7064 mod-97 check."""
    compact = iban.replace(" ", "").upper()
    if _IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum():
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _card_valid(text: str) -> bool:
    seps = {ch for ch in text if not ch.isdigit()}
    if len(seps) > 1:  # "1234-5678 9012 3456" mixes separators: not how cards are written
        return False
    digits = text.replace(" ", "").replace("-", "")
    # Issuer ranges: 2 (Mastercard 2-series), 3 (Amex, Diners, JCB), 4 (Visa), 5 (Mastercard), 6 (Discover…)
    return 13 <= len(digits) <= 19 and digits[0] in "23456" and luhn_valid(digits)


def _phone_valid(text: str) -> bool:
    raw = text.encode("utf-8", "surrogatepass")  # bytes.translate: far cheaper than a str table
    digits = len(raw) - len(raw.translate(None, _DIGITS))
    if text.startswith("+"):
        return 8 <= digits <= 15
    if text.startswith("00"):  # international prefix written as digits: 0044 20 7946 0958
        return 10 <= digits <= 17
    return 9 <= digits <= 12


def _ipv4_valid(before: str) -> bool:
    words = before[-12:].lower().replace(":", " ").split()
    last = words[-1] if words else ""
    return not (last in _VERSION_WORDS or before.endswith(("v", "V")))


def _ipv6_valid(text: str) -> bool:
    if sum(ch not in ":" for ch in text) < 3:  # "::" and "a::b" are not addresses worth hiding
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _number_runs(text: str, raw: bytes) -> Iterator[re.Match[str]]:
    """The matches of _NUMBER_RUN_RE in ``text`` (``raw`` is its UTF-8), in order.

    For ASCII text the regex runs only inside the stretches of number characters long enough to
    hold a match (found with bytes operations), not over all the text. A stretch is bounded by
    non-number characters, so every match over the whole text lies inside one; a run is greedy and
    ends at the stretch's last digit, so a stretch holds at most one: one search, not a finditer.
    """
    runs = raw.translate(_RUN_CLASSES)
    pos = runs.find(_RUN_HINT)
    if pos < 0:
        return
    if len(raw) != len(text):  # non-ASCII: byte offsets are not character offsets
        yield from _NUMBER_RUN_RE.finditer(text)
        return
    size = len(text)
    while pos >= 0:
        # ``pos`` is where a stretch starts: the search began at 0 or at a non-number character,
        # and the first hint found is the stretch's first seven characters.
        end = runs.find(b"x", pos)
        if end < 0:
            end = size
        run = _NUMBER_RUN_RE.search(text, pos, end)
        if run is not None:
            yield run
        pos = runs.find(_RUN_HINT, end)


class Redactor:
    """Replaces PII in text with ``[REDACTED:KIND]`` markers.

    ``kinds`` selects built-in detectors (default: all of ``KINDS``); ``custom_patterns`` maps a
    name to a regular expression whose matches become ``[REDACTED:NAME]``. Callable, so it can be
    passed wherever a ``Callable[[str], str]`` is expected.
    """

    def __init__(
        self,
        kinds: Iterable[str] | None = None,
        custom_patterns: Mapping[str, str | re.Pattern[str]] | None = None,
    ) -> None:
        selected = KINDS if kinds is None else tuple(kinds)
        for kind in selected:
            if kind not in KINDS:
                raise ValueError(f"unknown redaction kind {kind!r}; expected one of {', '.join(KINDS)}")
        self.kinds: frozenset[str] = frozenset(selected)
        self._numbers = bool(self.kinds & {"card", "ip", "phone"})
        self._custom: list[tuple[re.Pattern[str], str]] = []
        for name, pattern in (custom_patterns or {}).items():
            if not name or not re.fullmatch(r"[A-Za-z0-9_]+", name):
                raise ValueError(f"custom_patterns: bad name {name!r} (letters, digits and _ only)")
            try:
                compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
            except re.error as exc:
                raise ValueError(f"custom_patterns[{name!r}]: invalid regular expression: {exc}") from exc
            self._custom.append((compiled, f"[REDACTED:{name.upper()}]"))

    def redact(self, text: str) -> str:
        """Return ``text`` with every detected PII span replaced by its marker."""
        kinds = self.kinds
        if "token" in kinds:
            if "eyJ" in text:
                text = _JWT_RE.sub("[REDACTED:TOKEN]", text)
            if "earer" in text or "EARER" in text:
                text = _BEARER_RE.sub(_keep_bearer, text)
        if "api_key" in kinds:
            # Every key format has "_" or "-" except AWS/Google ones: one cheap test rules most text out.
            hint = "_" in text or "-" in text or "AKIA" in text or "AIza" in text
            if hint and any(p in text for p in _API_KEY_PREFIXES):
                text = _API_KEY_RE.sub(_api_key_replace, text)
            if ("=" in text or ":" in text) and _has_keyed_word(text.lower()):
                text = _KEYED_RE.sub(_keep_key_name, text)
        if "email" in kinds and "@" in text:
            text = _redact_emails(text)
        raw = text.encode("utf-8", "surrogatepass")
        encoded = text  # the text ``raw`` encodes (IBAN and IP steps may replace parts)
        digits = len(raw) - len(raw.translate(None, _DIGITS))
        if "iban" in kinds and digits >= 10 and _IBAN_HINT in raw.translate(_IBAN_CLASSES):
            text = _IBAN_RE.sub(_iban_replace, text)
        if "ip" in kinds and text.count(":") >= 2:
            text = _IPV6_RE.sub(_ipv6_replace, text)
        if self._numbers and digits >= 4:
            if text is not encoded:
                raw = text.encode("utf-8", "surrogatepass")
            text = self._redact_numbers(text, raw)
        for pattern, marker in self._custom:
            text = pattern.sub(marker, text)
        return text

    __call__ = redact

    def _redact_numbers(self, text: str, raw: bytes) -> str:
        """Card, IP and phone numbers, looked for only inside runs of number characters.
        ``raw`` is ``text`` encoded as UTF-8."""
        out: list[str] = []
        done = 0
        size = len(text)
        marker_of = self._number_marker
        for run in _number_runs(text, raw):
            run_end = run.end()
            # A run glued to a word ("…1234567abc") is part of an identifier: left alone.
            if run_end < size and (text[run_end].isalnum() or text[run_end] == "_"):
                continue
            for m in _NUMBER_RE.finditer(text, run.start(), run_end):
                marker = marker_of(m)
                if marker is not None:
                    out.append(text[done : m.start()])
                    out.append(marker)
                    done = m.end()
        if not out:
            return text
        out.append(text[done:])
        return "".join(out)

    def _number_marker(self, m: re.Match[str]) -> str | None:
        whole = m.group(0)
        start = m.start()
        if start and m.string[start - 1] in _NUMBER_GLUE:
            return None
        kind = m.lastgroup
        kinds = self.kinds
        if kind == "card":
            if "card" in kinds and _card_valid(whole):
                return "[REDACTED:CARD]"
            # A long digit run can be a phone number written without "+" (0044 20 7946 0958).
            if "phone" in kinds and _PHONE_RE.fullmatch(whole) and _phone_valid(whole):
                return "[REDACTED:PHONE]"
        elif kind == "ipv4":
            if "ip" in kinds and _ipv4_valid(m.string[max(0, start - 12) : start]):
                return "[REDACTED:IP]"
        elif kind == "phone" and "phone" in kinds and _phone_valid(whole):
            return "[REDACTED:PHONE]"
        return None


def _keep_prefix(marker: str) -> Callable[[re.Match[str]], str]:
    """Replacement keeping the text before group 1 ("Bearer ", "api_key=") so the text reads on."""

    def replace(m: re.Match[str]) -> str:
        return m.group(0)[: m.start(1) - m.start()] + marker

    return replace


_keep_bearer: Final = _keep_prefix("[REDACTED:TOKEN]")
_keep_key_name: Final = _keep_prefix("[REDACTED:API_KEY]")


def _has_keyed_word(lowered: str) -> bool:
    return any(word in lowered for word in _KEYED_WORDS)


def _api_key_replace(m: re.Match[str]) -> str:
    start = m.start()
    if start and (m.string[start - 1].isalnum() or m.string[start - 1] in "_-"):
        return m.group(0)
    return "[REDACTED:API_KEY]"


def _iban_replace(m: re.Match[str]) -> str:
    start = m.start()
    candidate = m.group(0)
    if start and m.string[start - 1].isalnum():
        return candidate
    # The pattern may run on into the next word ("ES91… by"): drop trailing chunks until valid.
    head = candidate
    while True:
        if iban_valid(head):
            return "[REDACTED:IBAN]" + candidate[len(head) :]
        if " " not in head:
            return candidate
        head = head.rsplit(" ", 1)[0]


def _ipv6_replace(m: re.Match[str]) -> str:
    start = m.start()
    if start and (m.string[start - 1].isalnum() or m.string[start - 1] in "_:"):
        return m.group(0)
    return "[REDACTED:IP]" if _ipv6_valid(m.group(0)) else m.group(0)


def _redact_emails(text: str) -> str:
    # Anchor on each "@" (found at C speed) and grow the address both ways, instead of letting a
    # pattern that starts with a character class try every position of the text.
    out: list[str] = []
    done = 0
    at = text.find("@")
    while at != -1:
        start = at
        floor = max(done, at - 64)
        while start > floor and (text[start - 1] in _EMAIL_LOCAL_CHARS or text[start - 1].isalnum()):
            start -= 1
        domain = _EMAIL_DOMAIN_RE.match(text, at + 1)
        if start < at and domain is not None and text[start] != ".":
            out.append(text[done:start])
            out.append("[REDACTED:EMAIL]")
            done = domain.end()
        at = text.find("@", max(at + 1, done))
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


_default: Redactor | None = None


def redact(text: str) -> str:
    """Redact ``text`` with every built-in detector."""
    global _default
    if _default is None:
        _default = Redactor()
    return _default.redact(text)

