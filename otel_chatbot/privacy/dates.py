"""Dates of birth: a date next to a birth word ("born", "DOB", "date of birth", "birthday").

A date alone is not personal (delivery dates, timestamps), so only dates within a few words of a
birth cue, before or after, are taken.
"""

from __future__ import annotations

import re
from typing import Final

from otel_chatbot.privacy.spans import Found
from otel_chatbot.privacy.view import TextView, gate

_MONTH: Final = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY: Final = r"(?:[0-3]?[0-9])(?:st|nd|rd|th)?"
_DATE_RE: Final = re.compile(
    r"(?i:\b(?:"
    r"[0-9]{4}[-/.][01]?[0-9][-/.][0-3]?[0-9]"  # 1993-04-09
    r"|[0-3]?[0-9][-/.][0-3]?[0-9][-/.](?:[0-9]{4}|[0-9]{2})"  # 9/4/93, 09.04.1993
    rf"|{_DAY} (?:of )?{_MONTH},? (?:[0-9]{{4}}|'?[0-9]{{2}})"  # 4 September 1993, 4th of Sept '93
    rf"|{_MONTH} {_DAY},? (?:[0-9]{{4}}|'?[0-9]{{2}})"  # September 4, 1993
    rf"|{_MONTH},? [0-9]{{4}}"  # September 1993
    r")(?![0-9]))"
)
_CUE_RE: Final = re.compile(
    r"(?i:\b(?:born|birth|birthdate|birthday|dob|d\.o\.b|date of birth|geboren|geburtsdatum|n[ée]e?\b"
    r"|date de naissance|fecha de nacimiento|nacid[oa]|data di nascita))"
)
_GATE: Final = gate(
    "born birth birthdate birthday dob d o b geboren geburtsdatum né née naissance nacimiento "
    "nacido nacida nascita"
)
_WINDOW: Final = 40  # characters between the cue and the date


def dates_of_birth(view: TextView) -> list[Found]:
    if not (view.words & _GATE):
        return []
    text = view.text
    cues = [(m.start(), m.end()) for m in _CUE_RE.finditer(text)]
    if not cues:
        return []
    found: list[Found] = []
    for m in _DATE_RE.finditer(text):
        start, end = m.start(), m.end()
        if any(
            0 <= start - cue_end <= _WINDOW or 0 <= cue_start - end <= _WINDOW // 2
            for cue_start, cue_end in cues
        ):
            found.append(Found(start, end, "DOB"))
    return found
