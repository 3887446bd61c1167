"""Detectors for PII with a fixed shape: e-mail addresses, API keys and tokens, IBANs, IPv6.

Python's regex engine is only fast when a pattern starts with a literal (it then jumps straight to
candidates); a leading character class or look-behind makes it try every position (~20 ns per
character per pattern). So each detector runs only when a C-speed check (``in``, a byte count)
says it can match, patterns start with literals, and left-boundary checks are done in code.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

from otel_chatbot.privacy.checksums import iban_valid
from otel_chatbot.privacy.spans import Found

_API_KEY_PREFIXES: Final = (
    "sk-",
    "AKIA",
    "gh",
    "github_pat_",
    "xox",
    "AIza",
    "_live_",
    "_test_",
    "glpat-",
    "hf_",
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


def tokens(text: str) -> list[Found]:
    """JSON Web Tokens and bearer tokens (the word "Bearer" is kept so the text reads on)."""
    found: list[Found] = []
    if "eyJ" in text:
        found.extend(Found(m.start(), m.end(), "TOKEN") for m in _JWT_RE.finditer(text))
    if "earer" in text or "EARER" in text:
        found.extend(Found(m.start(1), m.end(1), "TOKEN") for m in _BEARER_RE.finditer(text))
    return found


def api_keys(text: str) -> list[Found]:
    """Provider API keys by their prefixes, and the value of ``api_key=…``-style pairs."""
    found: list[Found] = []
    # Every key format has "_" or "-" except AWS/Google ones: one cheap test rules most text out.
    hint = "_" in text or "-" in text or "AKIA" in text or "AIza" in text
    if hint and any(p in text for p in _API_KEY_PREFIXES):
        for m in _API_KEY_RE.finditer(text):
            start = m.start()
            if not (start and (text[start - 1].isalnum() or text[start - 1] in "_-")):
                found.append(Found(start, m.end(), "API_KEY"))
    if ("=" in text or ":" in text) and any(word in text.lower() for word in _KEYED_WORDS):
        found.extend(Found(m.start(1), m.end(1), "API_KEY") for m in _KEYED_RE.finditer(text))
    return found


def emails(text: str) -> list[Found]:
    # Anchor on each "@" (found at C speed) and grow the address both ways, instead of letting a
    # pattern that starts with a character class try every position of the text.
    found: list[Found] = []
    done = 0
    at = text.find("@")
    while at != -1:
        start = at
        floor = max(done, at - 64)
        while start > floor and (text[start - 1] in _EMAIL_LOCAL_CHARS or text[start - 1].isalnum()):
            start -= 1
        domain = _EMAIL_DOMAIN_RE.match(text, at + 1)
        if start < at and domain is not None and text[start] != ".":
            found.append(Found(start, domain.end(), "EMAIL"))
            done = domain.end()
        at = text.find("@", max(at + 1, done))
    return found


def ibans(text: str) -> list[Found]:
    found: list[Found] = []
    for m in _IBAN_RE.finditer(text):
        start = m.start()
        if start and text[start - 1].isalnum():
            continue
        # The pattern may run on into the next word ("ES91… by"): drop trailing chunks until valid.
        head = m.group(0)
        while True:
            if iban_valid(head):
                found.append(Found(start, start + len(head), "IBAN"))
                break
            if " " not in head:
                break
            head = head.rsplit(" ", 1)[0]
    return found


def ipv6(text: str) -> list[Found]:
    found: list[Found] = []
    for m in _IPV6_RE.finditer(text):
        start = m.start()
        if start and (text[start - 1].isalnum() or text[start - 1] in "_:"):
            continue
        value = m.group(0)
        if sum(ch != ":" for ch in value) < 3:  # "::" and "a::b" are not addresses worth hiding
            continue
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            continue
        found.append(Found(start, m.end(), "IP"))
    return found
