"""PII redaction: measured recall/precision on a corpus, checksums, options and bad input."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from otel_chatbot.privacy import KINDS, Redactor, iban_valid, luhn_valid, redact

CORPUS = Path(__file__).parent / "testdata" / "pii_corpus.tsv"
KIND_LABELS = {"EMAIL", "PHONE", "CARD", "IBAN", "IP", "API_KEY", "TOKEN"}


def _corpus() -> list[tuple[str, str, str]]:
    rows = []
    for line in CORPUS.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        kind, text, secret = line.split("\t")
        rows.append((kind, text, secret))
    return rows


def test_corpus_is_big_and_covers_every_kind() -> None:
    rows = _corpus()
    assert len(rows) >= 200
    kinds = {kind for kind, _, _ in rows}
    assert kinds == KIND_LABELS | {"NONE"}
    assert sum(kind == "NONE" for kind, _, _ in rows) >= 50, "near-misses must be well represented"


def test_corpus_recall_and_precision() -> None:
    redactor = Redactor()
    true_pos = false_neg = false_pos = true_neg = 0
    misses: list[str] = []
    per_kind: dict[str, list[int]] = {}
    for kind, text, secret in _corpus():
        out = redactor.redact(text)
        if kind == "NONE":
            if "[REDACTED:" in out:
                false_pos += 1
                misses.append(f"false positive: {text!r} -> {out!r}")
            else:
                true_neg += 1
                assert out == text
            continue
        hit = secret not in out and f"[REDACTED:{kind}]" in out
        per_kind.setdefault(kind, [0, 0])[0 if hit else 1] += 1
        if hit:
            true_pos += 1
        else:
            false_neg += 1
            misses.append(f"missed {kind}: {text!r} -> {out!r}")
    recall = true_pos / (true_pos + false_neg)
    precision = true_pos / (true_pos + false_pos)
    print(f"\nPII corpus: recall {recall:.3f} precision {precision:.3f} "
          f"(tp={true_pos} fn={false_neg} fp={false_pos} tn={true_neg}); per kind {per_kind}")
    assert recall >= 0.95, misses
    assert precision >= 0.95, misses
    for kind, (hits, missed) in per_kind.items():
        assert hits / (hits + missed) >= 0.9, (kind, misses)


def test_card_numbers_need_a_valid_luhn_checksum() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")
    assert redact("pay with 4111 1111 1111 1111 now") == "pay with [REDACTED:CARD] now"
    assert redact("pay with 4111 1111 1111 1112 now") == "pay with 4111 1111 1111 1112 now"


def test_iban_needs_mod97_and_country_length() -> None:
    assert iban_valid("GB82 WEST 1234 5698 7654 32")
    assert not iban_valid("GB82 WEST 1234 5698 7654 33")  # checksum
    assert not iban_valid("GB82 WEST 1234 5698 7654")  # wrong length for GB
    assert not iban_valid("ZZ82WEST12345698765432")  # unknown country
    assert redact("to GB82 WEST 1234 5698 7654 32 by Friday") == "to [REDACTED:IBAN] by Friday"


def test_prefix_of_keyed_secrets_and_bearer_is_kept() -> None:
    assert redact("Authorization: Bearer abcdefghijklmnop1234") == "Authorization: Bearer [REDACTED:TOKEN]"
    assert redact("api_key=abcd1234efgh5678 rest") == "api_key=[REDACTED:API_KEY] rest"


def test_version_strings_dates_and_ids_survive() -> None:
    for text in ("version 1.2.3.4", "on 2024-01-15", "uuid 123e4567-e89b-12d3-a456-426614174000",
                 "v2.10.3.1", "at 12:30:45", "std::vector", "order 88231"):
        assert redact(text) == text


def test_kinds_restrict_the_detectors() -> None:
    only_email = Redactor(kinds=["email"])
    text = "a@example.com +44 20 7946 0958"
    assert only_email.redact(text) == "[REDACTED:EMAIL] +44 20 7946 0958"
    assert Redactor(kinds=[]).redact(text) == text
    assert set(KINDS) == {"email", "phone", "card", "iban", "ip", "api_key", "token", "ssn", "national_id",
                          "passport", "dob", "address", "name"}


def test_custom_patterns_are_applied_with_their_name() -> None:
    redactor = Redactor(custom_patterns={"employee_id": r"\bEMP-\d{6}\b", "case": re.compile(r"CASE#\d+")})
    assert redactor("ticket for EMP-123456 about CASE#77") == \
        "ticket for [REDACTED:EMPLOYEE_ID] about [REDACTED:CASE]"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kinds": ["email", "zip"]}, "unknown redaction kind 'zip'"),
        ({"custom_patterns": {"bad name": "x"}}, "bad name"),
        ({"custom_patterns": {"broken": "(unclosed"}},
         "custom_patterns['broken']: invalid regular expression"),
    ],
)
def test_bad_configuration_names_the_problem(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        Redactor(**kwargs)  # type: ignore[arg-type]


def test_empty_and_unicode_text() -> None:
    assert redact("") == ""
    # A non-ASCII local part is redacted whole, not cut at the first accented letter.
    assert redact("Grüße, schreib an jürgen@example.de") == "Grüße, schreib an [REDACTED:EMAIL]"


def test_numbers_are_found_in_every_stretch_of_long_text_ascii_or_not() -> None:
    # The number detectors run only inside stretches of number characters found with byte
    # operations (ASCII text) or over the whole text (non-ASCII): both must find every number.
    filler = "we checked the order and the parcel left on the 3rd, version 1.2.3 of the app. " * 6
    text = (f"{filler}call +44 20 7946 0958 {filler}card 4111 1111 1111 1111 {filler}"
            f"or (415) 555-0123 at 10.1.2.3")
    for sample in (text, "déjà vu: " + text):
        redacted = Redactor().redact(sample)
        assert redacted.count("[REDACTED:PHONE]") == 2, redacted
        assert "[REDACTED:CARD]" in redacted and "[REDACTED:IP]" in redacted
        assert "4111" not in redacted and "7946" not in redacted and "555-0123" not in redacted
        assert "version 1.2.3" in redacted and "the 3rd" in redacted
