"""The summary of an ``otel-chatbot evaluate`` run: counts, score distributions, tokens and cost."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from typing import Any

_MAX_FAILURES_LISTED = 20


@dataclass
class RunSummary:
    level: str  # "turn" | "session"
    evaluator: str
    judge_version: str
    model: str
    matched: int = 0  # turns (sessions) within the filters
    already_judged: int = 0  # skipped: this evaluator and version scored them before
    not_sampled: int = 0
    selected: int = 0  # what this run set out to judge
    judged: int = 0
    failed: int = 0
    newly_hallucinated: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float | None = None  # None: the judge model has no price in the table
    scores: dict[str, list[float]] = field(default_factory=dict)
    failures: list[tuple[str, str]] = field(default_factory=list)  # (id, reason), the first few
    seconds: float = 0.0

    def add_usage(self, input_tokens: int, output_tokens: int, cost_usd: float | None) -> None:
        self.input_tokens += input_tokens
        self.output_tokens += output_tokens
        if cost_usd is not None:
            self.cost_usd = (self.cost_usd or 0.0) + cost_usd

    def add_scores(self, scores: dict[str, float]) -> None:
        for dimension, value in scores.items():
            self.scores.setdefault(dimension, []).append(value)

    def add_failure(self, item_id: str, reason: str) -> None:
        self.failed += 1
        if len(self.failures) < _MAX_FAILURES_LISTED:
            self.failures.append((item_id, reason))

    def distribution(self) -> dict[str, dict[str, float]]:
        """Per dimension: n, mean, min, p25, p50, p75, max (p* by linear interpolation)."""
        out: dict[str, dict[str, float]] = {}
        for dimension, values in self.scores.items():
            ordered = sorted(values)
            quartiles = statistics.quantiles(ordered, n=4, method="inclusive") if len(ordered) > 1 \
                else [ordered[0]] * 3
            out[dimension] = {"n": len(ordered), "mean": round(statistics.fmean(ordered), 3),
                              "min": ordered[0], "p25": round(quartiles[0], 3), "p50": round(quartiles[1], 3),
                              "p75": round(quartiles[2], 3), "max": ordered[-1]}
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level, "evaluator": self.evaluator, "judge_version": self.judge_version,
            "model": self.model, "matched": self.matched, "already_judged": self.already_judged,
            "not_sampled": self.not_sampled, "selected": self.selected, "judged": self.judged,
            "failed": self.failed, "newly_hallucinated": self.newly_hallucinated,
            "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
            "cost_usd": None if self.cost_usd is None else round(self.cost_usd, 6),
            "scores": self.distribution(),
            "failures": [{"id": i, "reason": r} for i, r in self.failures],
            "seconds": round(self.seconds, 3),
        }


def format_json(summary: RunSummary) -> str:
    return json.dumps(summary.as_dict(), indent=2)


def format_table(summary: RunSummary) -> str:
    things = "turns" if summary.level == "turn" else "sessions"
    cost = "n/a (model not in the price table)" if summary.cost_usd is None else f"${summary.cost_usd:.6f}"
    lines = [
        f"judge {summary.evaluator} {summary.judge_version}, model {summary.model}, level {summary.level}",
        f"{things + ' matched':<20}{summary.matched}",
        f"{'already judged':<20}{summary.already_judged} (skipped)",
        f"{'not sampled':<20}{summary.not_sampled}",
        f"{'judged':<20}{summary.judged} of {summary.selected}",
        f"{'failed':<20}{summary.failed}",
    ]
    if summary.level == "turn":
        lines.append(f"{'newly hallucinated':<20}{summary.newly_hallucinated}")
    lines += [f"{'judge tokens in/out':<20}{summary.input_tokens} / {summary.output_tokens}",
              f"{'judge cost':<20}{cost}",
              f"{'took':<20}{summary.seconds:.1f} s"]
    distribution = summary.distribution()
    if distribution:
        width = max(len(d) for d in distribution)
        lines.append(f"{'score':<{width}}  {'n':>5}  {'mean':>5}  {'min':>4}  {'p25':>4}  {'p50':>4}  "
                     f"{'p75':>4}  {'max':>4}")
        for dimension, d in distribution.items():
            lines.append(f"{dimension:<{width}}  {d['n']:>5}  {d['mean']:>5.2f}  {d['min']:>4g}  "
                         f"{d['p25']:>4g}  {d['p50']:>4g}  {d['p75']:>4g}  {d['max']:>4g}")
    if summary.failures:
        lines.append("failures:")
        lines += [f"  {item}: {reason}" for item, reason in summary.failures]
        if summary.failed > len(summary.failures):
            lines.append(f"  … and {summary.failed - len(summary.failures)} more")
    return "\n".join(lines)
