"""The redactor on the generated + hand-written corpus (tests/pii_corpus.py), detector by detector."""

from __future__ import annotations

import re

import pytest
from pii_corpus import CATEGORIES, STRUCTURED, generate, handwritten

from otel_chatbot.privacy import Pseudonymiser, Redactor, redact, ssn_valid
from otel_chatbot.privacy.checksums import card_issuer_length_valid, spanish_dni_valid


def _score(redactor: Redactor, n_pii: int, n_clean: int) -> tuple[dict[str, float], float, int, list[str]]:
    hits: dict[str, list[int]] = {}
    changed = clean = 0
    misses: list[str] = []
    for message in generate(n_pii, n_clean, seed=11):
        out = redactor(message.text)
        if not message.pii:
            clean += 1
            if out != message.text:
                changed += 1
                misses.append(f"changed: {message.text!r} -> {out!r}")
            continue
        for kind, value in message.pii:
            ok = value not in out and ("[REDACTED:" in out)
            hits.setdefault(kind, [0, 0])[0 if ok else 1] += 1
            if not ok:
                misses.append(f"missed {kind}: {message.text!r} -> {out!r}")
    recall = {kind: h / (h + m) for kind, (h, m) in hits.items()}
    return recall, changed / clean, clean, misses


def test_corpus_is_large_with_distractors_in_a_third() -> None:
    messages = generate()
    clean = [m for m in messages if not m.pii]
    assert len(messages) >= 3000
    assert len(clean) / len(messages) >= 1 / 3
    assert {kind for m in messages for kind, _ in m.pii} == set(CATEGORIES)
    assert len(handwritten()) >= 80


def test_recall_per_category_and_untouched_clean_messages() -> None:
    recall, changed, clean, misses = _score(Redactor(), n_pii=1000, n_clean=500)
    assert clean == 500 + sum(1 for m in handwritten() if not m.pii)
    for kind in CATEGORIES:
        floor = 0.98 if kind in STRUCTURED else 0.90
        assert recall[kind] >= floor, (kind, recall[kind], misses[:10])
    assert changed <= 0.02, misses[:10]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("text me on 9177762521", "text me on [REDACTED:PHONE]"),
        ("my SSN is 339-15-9312", "my SSN is [REDACTED:SSN]"),
        ("it's 814 19 7635", "it's [REDACTED:SSN]"),
        ("my social is 159951469", "my social is [REDACTED:SSN]"),
        ("7098 Sunset Road, Apt 33D, Portland, OR 97209", "[REDACTED:ADDRESS]"),
        ("à 4 rue de la Paix, 33000 Bordeaux", "à [REDACTED:ADDRESS]"),
        ("my date of birth is 9/4/93", "my date of birth is [REDACTED:DOB]"),
        ("passport no. 829415939, issued 2019", "passport no. [REDACTED:PASSPORT], issued 2019"),
        ("this is Sarah Whitfield", "this is [REDACTED:NAME]"),
        ("my name is Maria Gonzalez", "my name is [REDACTED:NAME]"),
        ("Noted, Maria Gonzalez.", "Noted, [REDACTED:NAME]."),
        ("DNI 12345678Z", "DNI [REDACTED:ID]"),
    ],
)
def test_issue_examples_are_found(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 12345678901234565 still not here",  # 17 digits passing Luhn: no issuer uses that length
        "tracking 1Z999AA10123456784 stuck",
        "invoice no. 829415939 was charged twice",
        "SKU AB-12345",
        "ISBN 978-3-16-148410-0",
        "version 17.4.1",
        "at 2025-03-14 10:32:07 UTC",
        "it cost $1,299.99",
        "delivery was scheduled for 12/24/25",
        "I'm Happy with it",
        "this is Urgent",
        "Thanks, Great job!",
        "call me when order 8837261940 ships",
        "the store on Main Street was closed",
        "confirmation code 482913771",
        "SSN-like but void: 666-12-3456 and 900-12-3456",
        "123-45-6789 is the example number",
    ],
)
def test_business_numbers_and_look_alikes_survive(text: str) -> None:
    assert redact(text) == text


def test_issuing_rules_and_checksums() -> None:
    assert ssn_valid("339159312") and not ssn_valid("000159312") and not ssn_valid("666159312")
    assert not ssn_valid("900159312") and not ssn_valid("339009312") and not ssn_valid("339150000")
    assert card_issuer_length_valid("4539148803436467") and not card_issuer_length_valid("45391488034364670")
    assert card_issuer_length_valid("378282246310005") and not card_issuer_length_valid("3782822463100050")
    assert spanish_dni_valid("12345678Z") and not spanish_dni_valid("12345678A")
    assert spanish_dni_valid("X1234567L")


def test_pseudonyms_are_stable_keyed_and_normalised() -> None:
    key = "k" * 32
    redactor = Redactor(pseudonym_key=key)
    a = redactor("mail maria@example.com or MARIA@example.com, call (415) 555-0187 or 415.555.0187")
    tokens = re.findall(r"<([A-Z]+):([0-9a-f]{8})>", a)
    assert [kind for kind, _ in tokens] == ["EMAIL", "EMAIL", "PHONE", "PHONE"]
    assert tokens[0] == tokens[1] and tokens[2] == tokens[3]  # same value, same token
    other = Redactor(pseudonym_key="z" * 32)("mail maria@example.com")
    assert re.findall(r"<EMAIL:([0-9a-f]{8})>", other) != [tokens[0][1]]  # another key, another token
    assert (
        Pseudonymiser(key, hex_chars=4).token("EMAIL", "maria@example.com") == f"<EMAIL:{tokens[0][1][:4]}>"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pseudonym_key": "short"}, "pseudonym key: at least 16 bytes"),
        ({"pseudonym_key": "k" * 20, "kinds": ["nope"]}, "unknown redaction kind 'nope'"),
    ],
)
def test_bad_pseudonym_settings_name_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Redactor(**kwargs)  # type: ignore[arg-type]


def test_each_kind_can_be_switched_off() -> None:
    text = "my name is Maria Gonzalez, SSN 339-15-9312, born 9/4/93, 7098 Sunset Road, Portland"
    assert Redactor(kinds=["ssn"])(text) == (
        "my name is Maria Gonzalez, SSN [REDACTED:SSN], born 9/4/93, 7098 Sunset Road, Portland"
    )
    assert Redactor(kinds=["name", "dob"])(text) == (
        "my name is [REDACTED:NAME], SSN 339-15-9312, born [REDACTED:DOB], 7098 Sunset Road, Portland"
    )
    assert Redactor(kinds=["address"])(text).endswith("born 9/4/93, [REDACTED:ADDRESS]")
