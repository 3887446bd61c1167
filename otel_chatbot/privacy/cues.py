"""Context cues: the words just before a value that say what it is ("call me on", "order #")."""

from __future__ import annotations

import re
from typing import Final

_WORD_RE: Final = re.compile(r"[a-z]+|#")

# Numbers after these words are business identifiers, not personal data.
BUSINESS_WORDS: Final = frozenset(
    {
        "order",
        "orders",
        "tracking",
        "track",
        "invoice",
        "inv",
        "ticket",
        "ref",
        "reference",
        "confirmation",
        "booking",
        "receipt",
        "transaction",
        "txn",
        "shipment",
        "parcel",
        "package",
        "sku",
        "isbn",
        "case",
        "po",
        "item",
        "serial",
        "model",
        "part",
        "awb",
        "waybill",
        "cart",
        "product",
        "voucher",
        "coupon",
        "promo",
        "build",
        "version",
        "release",
        "claim",
        "rma",
        "job",
        "batch",
        "lot",
        "policy",
        "request",
        "incident",
        "issue",
        "bug",
        "pr",
        "isin",
        "ean",
        "upc",
        "asin",
        "imei",
        "vin",
    }
)
# Words that make a bare digit run a phone number.
PHONE_WORDS: Final = frozenset(
    {
        "call",
        "calls",
        "text",
        "sms",
        "phone",
        "mobile",
        "cell",
        "cellphone",
        "tel",
        "telephone",
        "whatsapp",
        "reach",
        "ring",
        "contact",
        "landline",
        "fax",
        "dial",
        "callback",
        "viber",
        "signal",
        "telegram",
        "ph",
        "mob",
        "cel",
        "tlf",
        "telefono",
        "teléfono",
        "téléphone",
        "handy",
        "portable",
    }
)
_POSSESSIVES: Final = frozenset({"my", "our", "his", "her", "their", "your"})
SSN_WORDS: Final = frozenset({"ssn", "social", "ss", "itin", "tin"})


def words_before(text: str, start: int, span: int = 32) -> list[str]:
    """The lower-case words (and "#") in the ``span`` characters before ``start``, nearest last.

    The window stops at the end of the previous sentence: a cue belongs to its own sentence.
    """
    window = text[max(0, start - span) : start]
    cut = max(window.rfind(". "), window.rfind("! "), window.rfind("? "), window.rfind("\n"))
    if cut >= 0:
        window = window[cut + 1 :]
    return _WORD_RE.findall(window.lower())


def nearest_cue(text: str, start: int, *cue_sets: frozenset[str], span: int = 32) -> int:
    """Index of the cue set whose word stands nearest before ``start``; -1 when no cue word does.

    Neutral words ("number", "is", "my") are skipped, so "phone number 9177762521" finds the phone
    cue and "order number 12345678901" the business one.
    """
    words = words_before(text, start, span)
    for i in range(len(words) - 1, -1, -1):
        word = words[i]
        if word == "number" and i and words[i - 1] in _POSSESSIVES:
            word = "phone"  # "my number is …": said of a phone, unlike "order number"
        for index, cues in enumerate(cue_sets):
            if word in cues:
                return index
    return -1


def has_cue(text: str, start: int, cues: frozenset[str], span: int = 40) -> bool:
    return any(word in cues for word in words_before(text, start, span))
