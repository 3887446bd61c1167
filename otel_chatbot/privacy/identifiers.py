"""National identity numbers, passports and driving licences.

Shapes distinctive enough to stand alone (UK National Insurance, Italian codice fiscale, Spanish
DNI/NIE with its control letter, French NIR with its key) are taken anywhere; generic ones (passport
and licence numbers, German ID cards, Dutch BSN, Aadhaar, PAN) only after a cue word nearby, which
is also what keeps "passport no. 829415939" apart from "order no. 829415939".
"""

from __future__ import annotations

import re
from typing import Final

from otel_chatbot.privacy.checksums import spanish_dni_valid
from otel_chatbot.privacy.spans import Found

_NINO_RE: Final = re.compile(
    r"\b[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?[0-9]{2} ?[0-9]{2} ?[0-9]{2} ?[A-D]\b"
)
_CODICE_FISCALE_RE: Final = re.compile(r"\b[A-Z]{6}[0-9]{2}[A-EHLMPR-T][0-9]{2}[A-Z][0-9]{3}[A-Z]\b")
_DNI_RE: Final = re.compile(r"\b(?:[0-9]{8}|[XYZ][0-9]{7})-?[A-Z]\b")
_NIR_RE: Final = re.compile(r"\b[12] ?[0-9]{2} ?[0-9]{2} ?(?:[0-9]{2}|2A|2B) ?[0-9]{3} ?[0-9]{3} ?[0-9]{2}\b")
# Cue phrase → marker; the value is the first id-like token within a few words after it.
_CUE_RE: Final = re.compile(
    r"(?i:\b(?P<passport>passport|passeport|reisepass|pasaporte|passaporto)"
    r"|\b(?P<id>driver'?s? licen[cs]e|driving licen[cs]e|licen[cs]e (?:no|number|#)|\bDL\b"
    r"|national id|identity card|id card|id number|id no|personalausweis|ausweis(?:nummer)?"
    r"|carte d'identit[ée]|\bdni\b|\bnie\b|\bnif\b|\bbsn\b|aadhaa?r|\bpan\b(?= (?:card|no|number|is|:))"
    r"|\bcnp\b|\bpesel\b|\bcpf\b|\bsin\b|\bnino\b|\bnational insurance))"
)
_ID_TOKEN_RE: Final = re.compile(r"(?=[A-Z0-9-]*[0-9])[A-Z0-9](?:[A-Z0-9]|-(?=[A-Z0-9])){4,14}")
_CUE_SPAN: Final = 36  # characters after a cue in which its value is looked for


def identifiers(text: str, kinds: frozenset[str]) -> list[Found]:
    found: list[Found] = []
    if not any(ch.isdigit() for ch in text):
        return found
    if "national_id" in kinds:
        for m in _NINO_RE.finditer(text):
            found.append(Found(m.start(), m.end(), "ID"))
        for m in _CODICE_FISCALE_RE.finditer(text):
            found.append(Found(m.start(), m.end(), "ID"))
        for m in _DNI_RE.finditer(text):
            if spanish_dni_valid(m.group(0)):
                found.append(Found(m.start(), m.end(), "ID"))
        for m in _NIR_RE.finditer(text):
            if _nir_valid(m.group(0)):
                found.append(Found(m.start(), m.end(), "ID"))
    lowered = text.lower()
    if ("passport" in kinds or "national_id" in kinds) and _has_any_cue(lowered):
        for m in _CUE_RE.finditer(text):
            kind = "PASSPORT" if m.group("passport") else "ID"
            if (kind == "PASSPORT" and "passport" not in kinds) or (kind == "ID" and "national_id" not in kinds):
                continue
            value = _value_after(text, m.end())
            if value is not None:
                found.append(Found(value[0], value[1], kind))
    return found


_CUE_HINTS: Final = ("pass", "licen", "ausweis", "id", "dni", "nie", "nif", "bsn", "aadha", "pan",
                     "cnp", "pesel", "cpf", "sin", "nino", "insurance", "dl", "identit")


def _has_any_cue(lowered: str) -> bool:
    return any(hint in lowered for hint in _CUE_HINTS)


def _value_after(text: str, pos: int) -> tuple[int, int] | None:
    """The id-like token (letters/digits with at least one digit, 5-15 long) soon after ``pos``."""
    limit = min(len(text), pos + _CUE_SPAN)
    i = pos
    while i < limit:
        m = _ID_TOKEN_RE.match(text, i)
        if m is not None and (m.end() == len(text) or not text[m.end()].isalnum()) \
                and not (i and text[i - 1].isalnum()):
            value = m.group(0)
            digits = sum(ch.isdigit() for ch in value)
            if digits >= 4 and not (len(value) == 4 and value.isdigit()):  # a year is not an id
                if _aadhaar_like(text, m.start(), m.end()):
                    return _aadhaar_span(text, m.start())
                return m.start(), m.end()
        i += 1
    return None


_AADHAAR_RE: Final = re.compile(r"[0-9]{4} [0-9]{4} [0-9]{4}\b")


def _aadhaar_like(text: str, start: int, end: int) -> bool:
    return end - start == 4 and _AADHAAR_RE.match(text, start) is not None


def _aadhaar_span(text: str, start: int) -> tuple[int, int] | None:
    m = _AADHAAR_RE.match(text, start)
    if m is None:
        return None
    # After a cue the number is personal whether or not its Verhoeff check digit is right (a typo).
    return start, m.end()


def _nir_valid(value: str) -> bool:
    compact = value.replace(" ", "").upper()
    body, key = compact[:13], compact[13:]
    body = body.replace("2A", "19").replace("2B", "18")
    if not (body.isdigit() and key.isdigit()):
        return False
    return 97 - int(body) % 97 == int(key)
