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
# Letters and digits, groups joined by one "-" or space ("D1234-56789-01234", "QQ 12 34 56 C").
_ID_TOKEN_RE: Final = re.compile(r"[A-Z0-9](?:[A-Z0-9]|[- ](?=[A-Z0-9])){4,20}")
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
