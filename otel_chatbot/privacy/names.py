"""Person names introduced by a cue: "my name is", "this is", "I'm", titles, "for <name>", sign-offs.

Strong cues ("my name is", "name:", "Mr."/"Dr.") take the capitalised words that follow; weak cues
("this is", "I'm", "for", a sign-off) take them only when the first is a known given name or a
second capitalised word follows, so "this is Urgent" or "I'm Happy" stay as they are.
"""

from __future__ import annotations

import re
from typing import Final

from otel_chatbot.privacy.first_names import FIRST_NAMES
from otel_chatbot.privacy.spans import Found

_CAP: Final = r"[A-ZÀ-ÝŁŚŻ][a-zà-ÿłśżćńó'’-]+"
_PARTICLE: Final = r"(?:(?:de|da|del|della|di|van|von|der|den|le|la|du|dos|das|bin|ibn|al)[ -])"
_FULL_NAME: Final = rf"{_CAP}(?: {_PARTICLE}?(?:Mc|Mac|O')?{_CAP}){{0,2}}"
_STRONG_RE: Final = re.compile(
    r"(?i:\b(?:my name(?:'s| is)|name ?:|full name(?: is| ?:)|i am called|people call me|je m'appelle|je suis"
    r"|me llamo|mi nombre es|ich hei(?:ß|ss)e|mein name ist|mi chiamo|name on the (?:card|account|booking)"
    r"(?: is)?|(?:card|account) ?holder(?: is| ?:)?)[,:]?\s+)"
    rf"(?P<name>{_FULL_NAME})"
)
# After "my name is" people also write their name in lower case: "my name is maria gonzalez".
_LOWER_RE: Final = re.compile(
    r"(?i:\bmy name is\s+)(?P<name>[a-z][a-z'-]+(?: [a-z][a-z'-]+)?)\b"
)
_TITLE_RE: Final = re.compile(rf"\b(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sr|Sra|Mme|Mlle|Herr|Frau)\.? (?P<name>{_FULL_NAME})")
_WEAK_RE: Final = re.compile(
    r"(?i:(?:\b(?:best regards|kind regards|warm regards|many thanks|thanks again|this is|it's|it is|i'm"
    r"|i am|im|for|from|with|by|contact|dear|hi|hello|hey|ask for|speak (?:to|with)|spoke (?:to|with)|signed"
    r"|sincerely|regards|cheers|thanks|thank you|best|love|yours)\b|[-—])[,:]?\s+)"
    rf"(?P<name>{_FULL_NAME})"
)
# "…, Nadia Gonzalez here", "Tom speaking"
_HERE_RE: Final = re.compile(rf"(?:^|[,.!]\s*)(?P<name>{_FULL_NAME}) (?:here|speaking)\b")
_NOT_NAMES: Final = frozenset("""
i im the a an it this that these those my your our their his her its we you they he she me us them
not very so just still also really here there sorry happy glad sure fine good okay ok urgent important
interested looking trying going calling writing unable done new back ready available confused frustrated
angry upset satisfied monday tuesday wednesday thursday friday saturday sunday january february march
april may june july august september october november december english spanish french german support
customer service team sales billing help admin manager please hello hi hey thanks thank regards best
yes no when where what why how which who order account card booking delivery refund payment premium pro
basic plan app website chat bot email phone iphone android windows mac google amazon apple microsoft
paypal visa mastercard uber netflix spotify whatsapp instagram facebook twitter slack today tomorrow
yesterday morning evening night week month year christmas easter
""".split())
_NAME_HINTS: Final = ("name", "Name", "NAME", "this is", "This is", "I'm", "I am", "i'm", "Mr", "Ms",
                      "Mrs", "Dr", "Miss", "Prof", "for ", "For ", "Thank", "thank", "Regards", "regards",
                      "Cheers", "Best", "Sincerely", "- ", "Hi ", "Hello ", "Dear ", "from ", "speak", "spoke",
                      "ask for", "holder", "llamo", "appelle", "heiße", "heisse", "chiamo", "suis", "it's",
                      "It's", "with ", "by ", "Love", "Yours", "signed", "Signed", "— ", "Frau", "Herr", "Mme",
                      "Sra", "Sr")


def names(text: str) -> list[Found]:
    if not any(hint in text for hint in _NAME_HINTS):
        return []
    found: list[Found] = []
    for m in _LOWER_RE.finditer(text):
        words = m.group("name").split()
        if words[0] not in _NOT_NAMES:
            end = m.start("name") + len(words[0]) if words[-1] in _NOT_NAMES else m.end("name")
            found.append(Found(m.start("name"), end, "NAME"))
    for m in _TITLE_RE.finditer(text):
        found.append(Found(m.start("name"), m.end("name"), "NAME"))
    found += _cued(_STRONG_RE, text, strong=True)
    found += _cued(_WEAK_RE, text, strong=False)
    found += _cued(_HERE_RE, text, strong=False)
    return found


def _cued(pattern: re.Pattern[str], text: str, strong: bool) -> list[Found]:
    """Names after each cue of ``pattern``. A capitalised word that turns out to be no name may be
    the next cue ("Hello, Thanks, Grace"), so the search resumes at it rather than after it."""
    found: list[Found] = []
    pos = 0
    while True:
        m = pattern.search(text, pos)
        if m is None:
            return found
        span = _trim(m.group("name"), m.start("name"), strong)
        if span is None:
            pos = m.start("name")
        else:
            found.append(Found(span[0], span[1], "NAME"))
            pos = span[1]


def _trim(name: str, start: int, strong: bool) -> tuple[int, int] | None:
    """The name's span without trailing non-name words; None when it is no name at all."""
    words = name.split(" ")
    while words and words[-1].lower().strip("'’") in _NOT_NAMES:
        words.pop()
    if not words or words[0].lower() in _NOT_NAMES:
        return None
    capitalised = [w for w in words if w[:1].isupper()]
    if not strong and words[0].lower() not in FIRST_NAMES and len(capitalised) < 2:
        return None
    return start, start + len(" ".join(words))
