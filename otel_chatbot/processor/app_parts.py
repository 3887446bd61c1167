"""Pieces the processor builds from its settings: the online judge, the redactor, the sweep
interval of pending feedback, and the one deadline its shutdown stages share."""

from __future__ import annotations

import time
from typing import Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.processor.pricing import PriceTable


class Deadline:
    """Seconds left until a deadline set at creation (never negative)."""

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds

    def __call__(self) -> float:
        return max(0.0, self._at - time.monotonic())


def sweep_interval(max_age_s: float) -> float:
    """How often expired pending feedback is swept: a quarter of its age limit, at most every 30 s."""
    return min(max(max_age_s / 4, 0.05), 30.0)


def online_judge(config: ProcessorConfig, url: str, metrics: ProcessorMetrics, prices: PriceTable) -> Any:
    """The started online judge, or None when judge_sample_rate is 0 (quality/ imported only then)."""
    if config.judge_sample_rate <= 0:
        return None
    from otel_chatbot.quality.llm import JudgeUnavailable
    from otel_chatbot.quality.online import build_online_judge

    try:
        judge = build_online_judge(config, url, metrics, prices)
    except JudgeUnavailable as exc:
        raise ConfigError(f"judge_sample_rate: {exc}") from None
    if judge is not None:
        judge.start()
    return judge


def build_redactor(config: ProcessorConfig) -> Any:
    from otel_chatbot.privacy import Redactor

    finders = []
    if config.redact_ner:
        from otel_chatbot.privacy.ner import NerFinder, NerUnavailable

        try:
            finders.append(NerFinder(config.redact_ner_model))
        except NerUnavailable as exc:
            raise ConfigError(str(exc)) from None
    return Redactor(pseudonym_key=config.pseudonym_key, extra_finders=finders)


