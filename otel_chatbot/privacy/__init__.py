"""PII redaction for message text, shared by the SDK (before export) and the processor.

Detectors by family: fixed shapes (``structured``: e-mail, API keys, tokens, IBAN, IPv6), numbers
(``numbers``: cards, IPv4, phones, US SSNs), national ids and passports (``identifiers``), dates of
birth (``dates``), street addresses (``addresses``) and person names (``names``). Candidates that
need a checksum (Luhn, mod 97, DNI letter, SSN issuing rules) or a context cue ("call me on", "born",
"my name is"; and "order", "tracking", "invoice" for what is *not* personal) are checked before they
are taken, so near-misses such as an invalid card, ``version 1.2.3.4`` or an order number survive.
The optional named-entity backend (``ner``, processor side) adds model-found names and places.
"""

from __future__ import annotations

from otel_chatbot.privacy.checksums import iban_valid, luhn_valid, ssn_valid
from otel_chatbot.privacy.pseudonym import Pseudonymiser
from otel_chatbot.privacy.redactor import KINDS, Finder, Redactor, redact
from otel_chatbot.privacy.spans import Found

__all__ = [
    "KINDS",
    "Finder",
    "Found",
    "Pseudonymiser",
    "Redactor",
    "iban_valid",
    "luhn_valid",
    "redact",
    "ssn_valid",
]
