"""Person names introduced by a cue: "my name is", "this is", "I'm", titles, "for <name>", sign-offs.

Strong cues ("my name is", "name:", "Mr."/"Dr.") take the capitalised words that follow; weak cues
("this is", "I'm", "for", a sign-off) take them only when the first is a known given name or a
second capitalised word follows, so "this is Urgent" or "I'm Happy" stay as they are.

Fast path: the capitalised words are found with one regex (a leading character class, which the
engine scans for quickly), and only for those the few words before are looked up in the cue sets.
"""

from __future__ import annotations

import re
from typing import Final

from otel_chatbot.privacy.first_names import FIRST_NAMES
from otel_chatbot.privacy.spans import Found
from otel_chatbot.privacy.view import TextView, gate

_APOSTROPHES: Final = "'\u2019"  # ASCII and typographic
_CAP: Final = rf"[A-ZÀ-ÝŁŚŻ][a-zà-ÿłśżćńó{_APOSTROPHES}-]+"
_PARTICLE: Final = r"(?:(?:de|da|del|della|di|van|von|der|den|le|la|du|dos|das|bin|ibn|al)[ -])"
_CAP_RE: Final = re.compile(_CAP)
_FULL_NAME_RE: Final = re.compile(rf"{_CAP}(?: {_PARTICLE}?(?:Mc|Mac|O')?{_CAP}){{0,2}}")
_HERE_RE: Final = re.compile(rf"({_CAP}(?: {_CAP})?) (?:here|speaking)\b")
_LOWER_NAME_RE: Final = re.compile(r"[a-z][a-z'-]+(?: [a-z][a-z'-]+)?\b")

_STRONG_CUES: Final = frozenset(
    {
        "my name is",
        "my name's",
        "name is",
        "name:",
        "full name",
        "full name is",
        "full name:",
        "i am called",
        "people call me",
        "je m'appelle",
        "me llamo",
        "mi nombre es",
        "ich heiße",
        "ich heisse",
        "mein name ist",
        "mi chiamo",
        "name on the card is",
        "name on the card",
        "name on the account is",
        "name on the booking is",
        "card holder",
        "cardholder",
        "account holder",
        "card holder is",
        "cardholder is",
        "account holder is",
        "cardholder:",
        "named",
        "name of",
        "in the name of",
        "under the name",
        "under the name of",
        "mr.",
        "mrs.",
        "ms.",
        "dr.",
        "prof.",
        "mr",
        "mrs",
        "ms",
        "miss",
        "mx",
        "dr",
        "prof",
        "sr",
        "sra",
        "sr.",
        "sra.",
        "mme",
        "mlle",
        "herr",
        "frau",
    }
)
_WEAK_CUES: Final = frozenset(
    {
        "this is",
        "it's",
        "it is",
        "i'm",
        "i am",
        "im",
        "je suis",
        "for",
        "from",
        "with",
        "by",
        "contact",
        "dear",
        "hi",
        "hello",
        "hey",
        "ask for",
        "speak to",
        "speak with",
        "spoke to",
        "spoke with",
        "talk to",
        "talked to",
        "signed",
        "sincerely",
        "regards",
        "best regards",
        "kind regards",
        "warm regards",
        "cheers",
        "thanks",
        "thank you",
        "many thanks",
        "best",
        "love",
        "yours",
        "-",
        "—",
        "called",
        "agent",
        "call me",
        # How replies address the user by name: "Noted, Maria Gonzalez." "Sure, Tom!"
        "noted",
        "sure",
        "okay",
        "ok",
        "certainly",
        "of course",
        "welcome",
        "sorry",
        "great",
        "got it",
        "understood",
        "good morning",
        "good afternoon",
        "good evening",
        "no problem",
        "absolutely",
        "--",
        # People named through their relation to the writer: "my wife Emily Carter placed the order".
        "my wife",
        "my husband",
        "my son",
        "my daughter",
        "my mother",
        "my father",
        "my mom",
        "my dad",
        "my partner",
        "my friend",
        "my colleague",
        "my boss",
        "my brother",
        "my sister",
        "my manager",
    }
)
_CUE_LAST_WORDS: Final = frozenset(
    phrase.split()[-1].strip(":.,") for phrase in _STRONG_CUES | _WEAK_CUES
) | {"name"}
_GATE: Final = gate(
    "name names this it i im for from with by contact dear hi hello hey ask speak spoke talk talked signed "
    "sincerely regards cheers thanks thank best love yours mr mrs ms miss mx dr prof sr sra mme mlle herr "
    "frau call called named holder cardholder appelle suis llamo nombre heiße heisse chiamo agent here "
    "speaking noted sure okay ok certainly course welcome sorry great got understood morning afternoon "
    "evening problem absolutely i'm it's wife husband son daughter mother father mom dad partner friend "
    "colleague boss brother sister manager"
)
_NOT_NAMES: Final = frozenset(str.split("""
i im the a an it this that these those my your our their his her its we you they he she me us them
not very so just still also really here there sorry happy glad sure fine good okay ok urgent
important interested looking trying going calling writing unable done new back ready available
confused frustrated angry upset satisfied monday tuesday wednesday thursday friday saturday sunday
january february march april may june july august september october november december english
spanish french german support customer service team sales billing help admin manager please hello hi
hey thanks thank regards best yes no when where what why how which who order account card booking
delivery refund payment premium pro basic plan app website chat bot email phone iphone android
windows mac google amazon apple microsoft paypal visa mastercard uber netflix spotify whatsapp
instagram facebook twitter slack today tomorrow yesterday morning evening night week month year
christmas easter black great awesome
"""))
_STRIP: Final = ',;"()[]'


def names(view: TextView) -> list[Found]:
    if not (view.words & _GATE) and "-" not in view.text and "—" not in view.text:
        return []
    text = view.text
    found: list[Found] = []
    done = 0
    for m in _CAP_RE.finditer(text):
        start = m.start()
        if start < done:
            continue
        strength = _cue_before(text, start)
        if strength is None:
            continue
        name = _FULL_NAME_RE.match(text, start)
        if name is None:
            continue
        span = _trim(name.group(0), start, strong=strength)
        if span is not None:
            found.append(Found(span[0], span[1], "NAME"))
            done = span[1]
    if b"here" in view.words or b"speaking" in view.words:
        for m in _HERE_RE.finditer(text):
            span = _trim(m.group(1), m.start(1), strong=False)
            if (
                span is not None
                and (m.start() == 0 or text[m.start() - 1] in " \n\t")
                and _ends_clause(text, m.start())
            ):
                found.append(Found(span[0], span[1], "NAME"))
    if b"name" in view.words:
        found += _lower_case_names(text)
    return found


def _ends_clause(text: str, start: int) -> bool:
    """True when ``start`` opens a clause ("…, Nadia here", "Hi! Tom speaking")."""
    before = text[:start].rstrip()
    return not before or before[-1] in ",.!?:;\n"


def _cue_before(text: str, start: int) -> bool | None:
    """True (strong cue), False (weak cue) or None (no cue) for the words just before ``start``."""
    if start == 0 or not text[start - 1].isspace():
        return None
    # Cheap first look: the word just before must be one that ends a cue phrase.
    before = text[max(0, start - 26) : start].rstrip()
    if not before:
        return None
    last_word = before.rsplit(None, 1)[-1].lower().strip(_STRIP + ":.")
    if last_word not in _CUE_LAST_WORDS:
        return None
    window = before.lower().split()
    if not window:
        return None
    last = window[-1]
    if last[-1] in ".!?" and last.rstrip(".") not in _TITLES:
        return None  # the previous sentence ended; a new one starts with a capital anyway
    words = [w.strip(_STRIP) for w in window[-4:]]
    for n in (4, 3, 2, 1):
        if len(words) >= n:
            phrase = " ".join(words[-n:]).rstrip(",")
            if phrase in _STRONG_CUES:
                return True
            if phrase in _WEAK_CUES:
                return False
    return None


_TITLES: Final = frozenset({"mr", "mrs", "ms", "dr", "prof", "sr", "sra"})


def _lower_case_names(text: str) -> list[Found]:
    """After "my name is" people also write their name in lower case: "my name is maria gonzalez"."""
    found: list[Found] = []
    lowered = text.lower()
    at = lowered.find("my name is ")
    while at >= 0:
        pos = at + len("my name is ")
        m = _LOWER_NAME_RE.match(text, pos)
        if m is not None:
            words = m.group(0).split()
            if words[0] not in _NOT_NAMES:
                end = pos + len(words[0]) if words[-1] in _NOT_NAMES else m.end()
                found.append(Found(pos, end, "NAME"))
        at = lowered.find("my name is ", pos)
    return found


def _trim(name: str, start: int, strong: bool) -> tuple[int, int] | None:
    """The name's span without trailing non-name words; None when it is no name at all."""
    words = name.split(" ")
    while words and words[-1].lower().strip(_APOSTROPHES) in _NOT_NAMES:
        words.pop()
    if not words or words[0].lower() in _NOT_NAMES:
        return None
    capitalised = [w for w in words if w[:1].isupper()]
    if not strong and words[0].lower() not in FIRST_NAMES and len(capitalised) < 2:
        return None
    return start, start + len(" ".join(words))
