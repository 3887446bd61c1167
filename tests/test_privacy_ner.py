"""The optional named-entity backend (Presidio + a packaged spaCy model) and the processor settings."""

from __future__ import annotations

import pytest
from server_support import make_processor

from otel_chatbot.privacy import Redactor
from otel_chatbot.privacy.ner import NerFinder, NerUnavailable
from otel_chatbot.processor.config import ConfigError, load_config


@pytest.fixture(scope="module")
def ner() -> NerFinder:
    return NerFinder()


def test_model_finds_names_and_places_the_rules_have_no_cue_for(ner: NerFinder) -> None:
    text = "Jonas Becker said the parcel went to Lisbon instead of order 88231's address"
    assert Redactor()(text) == text  # no cue: the rules leave it
    assert Redactor(extra_finders=[ner])(text) == (
        "[REDACTED:NAME] said the parcel went to [REDACTED:ADDRESS] instead of order 88231's address")


def test_model_and_rules_together_keep_business_numbers(ner: NerFinder) -> None:
    redactor = Redactor(extra_finders=[ner])
    assert redactor("order 12345678901234565 and ticket 7781234 are still open") == \
        "order 12345678901234565 and ticket 7781234 are still open"
    assert redactor("call me on 9177762521") == "call me on [REDACTED:PHONE]"


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(NerUnavailable, match="spaCy model 'xx_no_such_model' is not installed"):
        NerFinder("xx_no_such_model")


def test_processor_builds_its_redactor_from_the_settings(database_url: str) -> None:
    processor = make_processor(database_url, redact=True, redact_ner=True, redact_ner_model="xx_missing")
    try:
        with pytest.raises(ConfigError, match="redact_ner: spaCy model 'xx_missing' is not installed"):
            processor.start()
    finally:
        processor.shutdown()


@pytest.mark.parametrize(("flags", "message"), [
    ({"redact_ner": True}, "redact_ner: takes effect only with redact on"),
    ({"pseudonym_key": "k" * 20}, "pseudonym_key: takes effect only with redact on"),
    ({"redact": True, "pseudonym_key": "short"}, "pseudonym_key: at least 16 bytes"),
])
def test_bad_privacy_settings_name_the_key(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(flags, {}, None)
