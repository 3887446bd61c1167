"""National identity numbers, passports and driving licences.

Shapes distinctive enough to stand alone (UK National Insurance, Italian codice fiscale, Spanish
DNI/NIE with its control letter, French NIR with its key) are taken anywhere; generic ones (passport
and licence numbers, German ID cards, Dutch BSN, Aadhaar, PAN) only after a cue word nearby, which
is also what keeps "passport no. 829415939" apart from "order no. 829415939".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Final

from otel_chatbot.privacy.checksums import spanish_dni_valid
from otel_chatbot.privacy.spans import Found
from otel_chatbot.privacy.view import TextView, gate

# Each starts with a plain character class (fast to scan for); the left boundary is checked in code.
_NINO_RE: Final = re.compile(r"[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b")
_CODICE_FISCALE_RE: Final = re.compile(r"[A-Z][A-Z]{5}[0-9]{2}[A-EHLMPR-T][0-9]{2}[A-Z][0-9]{3}[A-Z]\b")
_DNI_RE: Final = re.compile(r"[0-9XYZ][0-9]{7}-?[A-Z]\b")
_NIR_RE: Final = re.compile(r"[12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2A|2B) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}\b")
# Cue phrase → marker; the value is the first id-like token within a few words after it.
_CUE_RE: Final = re.compile(
    r"(?i:\b(?P<passport>passport|passeport|reisepass|pasaporte|passaporto)"
    r"|\b(?P<id>driver'?s? licen[cs]e|driving licen[cs]e|licen[cs]e (?:no|number|#)|\bDL\b"
    r"|national id|identity card|id card|id number|id no|personalausweis|ausweis(?:nummer)?"
    r"|carte d'identit[ée]|\bdni\b|\bnie\b|\bnif\b|\bbsn\b|aadhaa?r|\bpan\b(?= (?:card|no|number|is|:))"
    r"|\bcnp\b|\bpesel\b|\bcpf\b|\bsin\b|\bnino\b|\bnational insurance))"
)
# Letters and digits, groups joined by one "-" or space ("D1234-56789-01234", "QQ 12 34 56 C").
_ID_TOKEN_RE: Final = re.compile(r"[A-Z0-9](?:[A-Z0-9]|[- ](?=[A-Z0-9])){4,20}")
_CUE_SPAN: Final = 36  # characters after a cue in which its value is looked for


def identifiers(view: TextView, kinds: frozenset[str]) -> list[Found]:
    text = view.text
    found: list[Found] = []
    if "national_id" in kinds and view.digits >= 6:
        shape = view.raw.translate(_SHAPE)
        for pattern, valid, hints in _STANDALONE:
            if not any(hint in shape for hint in hints):
                continue
            for m in pattern.finditer(text):
                start = m.start()
                if (start == 0 or not text[start - 1].isalnum()) and valid(m.group(0)):
                    found.append(Found(start, m.end(), "ID"))
    if ("passport" in kinds or "national_id" in kinds) and view.words & _CUE_GATE:
        for m in _CUE_RE.finditer(text):
            kind = "PASSPORT" if m.group("passport") else "ID"
            if (kind == "PASSPORT" and "passport" not in kinds) or (
                kind == "ID" and "national_id" not in kinds
            ):
                continue
            value = _value_after(text, m.end())
            if value is not None:
                found.append(Found(value[0], value[1], kind))
    return found


_CUE_GATE: Final = gate(
    "passport passeport reisepass pasaporte passaporto licence license dl id identity personalausweis "
    "ausweis "
    "ausweisnummer carte identité identite dni nie nif bsn aadhar aadhaar pan cnp pesel cpf sin nino "
    "insurance"
)


def _value_after(text: str, pos: int) -> tuple[int, int] | None:
    """The id-like token (capitals and digits, at least four digits) soon after ``pos``."""
    limit = min(len(text), pos + _CUE_SPAN)
    for i in range(pos, limit):
        if i and text[i - 1].isalnum():
            continue
        m = _ID_TOKEN_RE.match(text, i)
        if m is None:
            continue
        value = m.group(0)
        # Trailing capitalised words are not part of it ("829415939 ON FILE"); a single letter is.
        groups = value.split(" ")
        while len(groups) > 1 and groups[-1].isalpha() and len(groups[-1]) > 1:
            groups.pop()
        end = i + len(" ".join(groups))
        # The last group may be the first letters of a word ("B4997885 Also"): not part of it.
        while len(groups) > 1 and end < len(text) and text[end].isalnum():
            groups.pop()
            end = i + len(" ".join(groups))
        value = text[i:end]
        if end < len(text) and text[end].isalnum():
            continue
        digits = sum(ch.isdigit() for ch in value)
        if digits >= 4 and not (len(value) == 4 and value.isdigit()):  # a year is not an id
            return i, end
    return None


def _nir_valid(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    body, key = compact[:13], compact[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    if not (body.isdigit() and key.isdigit()):
        return False
    return 97 - int(body) % 97 == int(key)


def _always(_value: str) -> bool:
    return True


# Each standalone pattern runs only when the text's shape (capitals → "A", digits → "0") holds one
# of its shapes: a bytes search, far cheaper than letting the regex try every capital or digit.
_SHAPE: Final = bytes(
    ord("A") if 65 <= i <= 90 else ord("0") if 48 <= i <= 57 else i if i in (32, 45) else ord("x")
    for i in range(256)
)
_STANDALONE: Final[tuple[tuple[re.Pattern[str], Callable[[str], bool], tuple[bytes, ...]], ...]] = (
    (_NINO_RE, _always, (b"AA000000A", b"AA 00 00 00 A", b"AA00 00 00A", b"AA 000000 A")),
    (_CODICE_FISCALE_RE, _always, (b"AAAAAA00A00A000A",)),
    (_DNI_RE, spanish_dni_valid, (b"0000000A", b"0000000-A")),
    (_NIR_RE, _nir_valid, (b"000000000000000", b"0 00 00 ")),
)
