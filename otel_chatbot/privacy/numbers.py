"""Detectors for PII written as numbers: payment cards, IPv4, phone numbers and US SSNs.

They run only inside runs of number characters (found with bytes operations for ASCII text), and
each candidate is checked before it is taken: cards by Luhn and issuer length, SSNs by the issuing
rules, IPv4 against version words, bare digit runs only after a phone or SSN cue. Numbers after
order, tracking, invoice and similar words are business identifiers and are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Final

from otel_chatbot.privacy.checksums import card_issuer_length_valid, luhn_valid, ssn_valid
from otel_chatbot.privacy.cues import BUSINESS_WORDS, PHONE_WORDS, SSN_WORDS, nearest_cue
from otel_chatbot.privacy.spans import Found
from otel_chatbot.privacy.view import TextView

# Runs of digits and number punctuation; each run is then searched with _NUMBER_RE.
_NUMBER_RUN_RE: Final = re.compile(r"[0-9+(][0-9 ().+/-]{5,}[0-9]")
# Every alternative starts with a digit, "+" or "(".
_NUMBER_RE: Final = re.compile(
    r"(?P<ssn>[0-9]{3}(?P<sep>[- ])[0-9]{2}(?P=sep)[0-9]{4})(?![0-9])"
    r"|(?P<card>[0-9](?:[ -]?[0-9]){12,18})(?![0-9-]|\.[0-9])"
    r"|(?P<ipv4>(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))"
    r"(?![\w]|\.[0-9])"
    r"|(?P<phone>"
    r"\+[0-9]{1,3}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}"  # international: +44 20 7946 0958
    r"|\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"  # NANP: (415) 555-0123
    r"|[0-9]{3}[ .-][0-9]{3}[ .-][0-9]{4}"  # NANP: 415-555-0123
    r"|0[0-9]{1,4}(?:[ .-][0-9]{2,4}){2,4}"  # trunk prefix: 020 7946 0958, 06 12 34 56 78
    r"|0[0-9]{2,4}[ /-][0-9]{5,8}"  # area code + subscriber: 030 12345678
    r")(?![\w]|[.-][0-9])"
    r"|(?P<bare>[0-9]{9,12}|0[0-9]{4,5} [0-9]{5,6})(?![0-9])"  # needs a cue: 9177762521, 080012 28388
)
_PHONE_RE: Final = re.compile(
    r"\+?[0-9]{1,4}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}|\([0-9]{3}\) ?[0-9]{3}[ .-][0-9]{4}"
)
_RUN_CLASSES: Final = bytes(ord("0") if chr(i) in "0123456789 ().+/-" else ord("x") for i in range(256))
_RUN_HINT: Final = b"0000000"  # a number run is at least 7 consecutive number characters
# Characters that, just before a number, make it part of a larger token (an id, a version, a word).
_NUMBER_GLUE: Final = frozenset("0123456789.-+_/abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Words that make a dotted quad a version number rather than an address.
_VERSION_WORDS: Final = frozenset(
    {
        "version",
        "release",
        "build",
        "v",
        "ver",
        "python",
        "firmware",
        "rev",
        "update",
        "updated",
        "upgrade",
        "upgraded",
        "patch",
        "patched",
        "os",
        "app",
        "driver",
        "bios",
        "kernel",
    }
)
_PHONE, _BUSINESS, _SSN = 0, 1, 2


def _card_valid(text: str) -> bool:
    seps = {ch for ch in text if not ch.isdigit()}
    if len(seps) > 1:  # "1234-5678 9012 3456" mixes separators: not how cards are written
        return False
    digits = text.replace(" ", "").replace("-", "")
    return 13 <= len(digits) <= 19 and card_issuer_length_valid(digits) and luhn_valid(digits)


def _phone_valid(text: str) -> bool:
    digits = sum(ch.isdigit() for ch in text)
    if text.startswith("+"):
        return 8 <= digits <= 15
    if text.startswith("00"):  # international prefix written as digits: 0044 20 7946 0958
        return 10 <= digits <= 17
    return 9 <= digits <= 12


def _ipv4_valid(before: str) -> bool:
    """False when a version word stands within the few words before ("firmware to 4.19.2.1")."""
    words = before.lower().replace(":", " ").split()[-3:]
    return not (_VERSION_WORDS.intersection(words) or before.endswith(("v", "V")))


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
        end = runs.find(b"x", pos)
        if end < 0:
            end = size
        run = _NUMBER_RUN_RE.search(text, pos, end)
        if run is not None:
            yield run
        pos = runs.find(_RUN_HINT, end)


def numbers(view: TextView, kinds: frozenset[str]) -> list[Found]:
    """Cards, IPv4 addresses, phone numbers and SSNs (``kinds`` selects)."""
    text, raw = view.text, view.raw
    found: list[Found] = []
    size = len(text)
    for run in _number_runs(text, raw):
        run_end = run.end()
        # A run glued to a word ("…1234567abc") is part of an identifier: left alone.
        if run_end < size and (text[run_end].isalnum() or text[run_end] == "_"):
            continue
        for m in _NUMBER_RE.finditer(text, run.start(), run_end):
            start = m.start()
            if start and text[start - 1] in _NUMBER_GLUE:
                continue
            kind = _classify(m, kinds)
            if kind is not None:
                found.append(Found(start, m.end(), kind))
    return found


def _classify(m: re.Match[str], kinds: frozenset[str]) -> str | None:
    whole = m.group(0)
    text = m.string
    start = m.start()
    group = m.lastgroup
    if group == "ipv4":
        ok = "ip" in kinds and _ipv4_valid(text[max(0, start - 24) : start])
        return "IP" if ok else None
    cue = nearest_cue(text, start, PHONE_WORDS, BUSINESS_WORDS, SSN_WORDS)
    if cue == _BUSINESS:
        return None
    if m.group("ssn") is not None:
        digits = whole.replace("-", "").replace(" ", "")
        if "ssn" in kinds and ssn_valid(digits) and (m.group("sep") == "-" or cue != _PHONE):
            return "SSN"
        return None
    if group == "card":
        if "card" in kinds and _card_valid(whole):
            return "CARD"
        # A long digit run can be a phone number written without "+" (0044 20 7946 0958).
        if "phone" in kinds and _PHONE_RE.fullmatch(whole) and _phone_valid(whole):
            return "PHONE"
        return None
    if group == "phone":
        return "PHONE" if "phone" in kinds and _phone_valid(whole) else None
    # A bare run of digits: only a cue says what it is.
    if cue == _SSN:
        return "SSN" if "ssn" in kinds and ssn_valid(whole) else None
    if cue == _PHONE and "phone" in kinds:
        count = sum(ch.isdigit() for ch in whole)
        return "PHONE" if 10 <= count <= 12 else None
    return None
