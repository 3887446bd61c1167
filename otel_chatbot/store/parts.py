"""Turn parts: what a batch's spans add to their turns, per (trace, turn scope), and a turn's values
from the stored parts of its trace (pure functions of the writer).

A turn's tokens, cost, model and flags are a function of its trace's parts only, never of which
batch brought which span: the writer COPYs a new turn with ``turn_values`` computed here, and
REFRESH_TURNS (merge_sql) recomputes stored turns by the same rule in SQL. The rule:
an auto turn takes the unclaimed scope ""; an SDK turn takes its own scope, plus "" when it is the only
SDK turn of its trace. Sums add, flags OR, a reason is the earliest-starting one (then the smaller
text), the model is the one of the latest-starting span naming one (then the greater name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from otel_chatbot.records import FlagRow, SpanRow, TurnRow

PartKey = tuple[str, str]  # (trace_id, scope)


class PartDelta:
    """What one batch adds to one (trace, scope): usage of its NEW LLM spans, flags of all its spans."""

    __slots__ = ("blocked", "cost_usd", "fallback", "fallback_reason", "hallucinated", "hallucination_source",
                 "input_tokens", "last_us", "llm_spans", "model", "model_us", "output_tokens",
                 "prompt_injection", "rate_limited", "reason_us", "source_us")

    def __init__(self) -> None:
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.llm_spans = 0
        self.model: str | None = None
        self.model_us = 0
        self.fallback = self.hallucinated = self.prompt_injection = self.blocked = self.rate_limited = False
        self.fallback_reason: str | None = None
        self.reason_us = 0
        self.hallucination_source: str | None = None
        self.source_us = 0
        self.last_us = 0

    def add_flags(self, f: FlagRow | TurnRow, start_us: int) -> None:
        self.fallback |= f.fallback
        self.hallucinated |= f.hallucinated
        self.prompt_injection |= f.prompt_injection
        self.blocked |= f.blocked
        self.rate_limited |= f.rate_limited
        reason, source = f.fallback_reason, f.hallucination_source
        if reason and (self.fallback_reason is None
                       or (start_us, reason) < (self.reason_us, self.fallback_reason)):
            self.fallback_reason, self.reason_us = reason, start_us
        if source and (self.hallucination_source is None
                       or (start_us, source) < (self.source_us, self.hallucination_source)):
            self.hallucination_source, self.source_us = source, start_us
        self.last_us = max(self.last_us, start_us)


def part_deltas(new_spans: Iterable[SpanRow], flags: Iterable[FlagRow],
                turns: Iterable[TurnRow] = ()) -> dict[PartKey, PartDelta]:
    """Usage of the LLM spans (a token count or a cost present) among ``new_spans`` and the latest model
    any of them names (the turn's own span included: a turn's model is its parts' only); the flags of
    ``flags``. A turn's own flags count only when the batch has no FlagRow for its scope: normalise
    derives them from those FlagRows (adding them again would date the reasons at the turn's start),
    while records built directly (an import, a test) carry their flags on the turn alone."""
    deltas: dict[PartKey, PartDelta] = {}
    for s in new_spans:
        tokens_in, tokens_out, cost, model = s.input_tokens, s.output_tokens, s.cost_usd, s.model
        usage = tokens_in is not None or tokens_out is not None or cost is not None
        if not usage and model is None:
            continue
        d = _delta(deltas, (s.trace_id, s.turn_scope))
        if usage:
            d.llm_spans += 1
            d.input_tokens += tokens_in or 0
            d.output_tokens += tokens_out or 0
            d.cost_usd += cost or 0.0
        start_us = s.start_ns // 1000
        if model is not None and (d.model is None or (start_us, model) > (d.model_us, d.model)):
            d.model, d.model_us = model, start_us
        d.last_us = max(d.last_us, start_us)
    flagged: set[PartKey] = set()
    for f in flags:
        key = (f.trace_id, f.turn_scope)
        flagged.add(key)
        _delta(deltas, key).add_flags(f, f.start_ns // 1000)
    for t in turns:
        key = (t.trace_id, "" if t.auto else t.turn_id)
        if key not in flagged and (t.fallback or t.hallucinated or t.prompt_injection or t.blocked
                                   or t.rate_limited or t.fallback_reason or t.hallucination_source):
            _delta(deltas, key).add_flags(t, t.start_ns // 1000)
    return deltas


def _delta(deltas: dict[PartKey, PartDelta], key: PartKey) -> PartDelta:
    d = deltas.get(key)
    if d is None:
        d = deltas[key] = PartDelta()
    return d


def parts_json(deltas: Mapping[PartKey, PartDelta]) -> str:
    """UPSERT_PARTS's parameter, sorted by key (rows locked in one global order)."""
    return orjson.dumps([
        {"t": trace, "s": scope, "i": d.input_tokens, "o": d.output_tokens, "c": d.cost_usd, "n": d.llm_spans,
         "m": d.model, "ma": d.model_us if d.model is not None else None,
         "f": d.fallback, "fr": d.fallback_reason, "fra": d.reason_us if d.fallback_reason else None,
         "h": d.hallucinated, "hs": d.hallucination_source,
         "hsa": d.source_us if d.hallucination_source else None,
         "pi": d.prompt_injection, "b": d.blocked, "rl": d.rate_limited, "la": d.last_us}
        for (trace, scope), d in sorted(deltas.items())]).decode()


@dataclass(slots=True)
class StoredPart:
    """One row of turn_parts as PARTS_OF_TRACES reads it (times in Unix microseconds)."""

    input_tokens: int
    output_tokens: int
    cost_usd: float
    model: str | None
    model_us: int | None
    fallback: bool
    fallback_reason: str | None
    reason_us: int | None
    hallucinated: bool
    hallucination_source: str | None
    source_us: int | None
    prompt_injection: bool
    blocked: bool
    rate_limited: bool


@dataclass(slots=True)
class TurnValues:
    """The columns of a turn that come from its parts."""

    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    model: str | None = None
    fallback: bool = False
    fallback_reason: str | None = None
    hallucinated: bool = False
    hallucination_source: str | None = None
    prompt_injection: bool = False
    blocked: bool = False
    rate_limited: bool = False


def turn_values(turn: TurnRow, parts: Mapping[str, StoredPart], sdk_turns_in_trace: int) -> TurnValues:
    """``turn``'s values from ``parts`` (its trace's stored parts by scope), by the module's rule."""
    scopes = [""] if turn.auto else [turn.turn_id, ""] if sdk_turns_in_trace == 1 else [turn.turn_id]
    v = TurnValues()
    model_key: tuple[int, str] | None = None
    reason_key: tuple[int, str] | None = None
    source_key: tuple[int, str] | None = None
    for scope in dict.fromkeys(scopes):
        p = parts.get(scope)
        if p is None:
            continue
        v.input_tokens += p.input_tokens
        v.output_tokens += p.output_tokens
        v.cost_usd += p.cost_usd
        v.fallback |= p.fallback
        v.hallucinated |= p.hallucinated
        v.prompt_injection |= p.prompt_injection
        v.blocked |= p.blocked
        v.rate_limited |= p.rate_limited
        if p.model is not None and (model_key is None or (p.model_us or 0, p.model) > model_key):
            model_key = (p.model_us or 0, p.model)
        if p.fallback_reason is not None and (
                reason_key is None or (p.reason_us or 0, p.fallback_reason) < reason_key):
            reason_key = (p.reason_us or 0, p.fallback_reason)
        if p.hallucination_source is not None and (
                source_key is None or (p.source_us or 0, p.hallucination_source) < source_key):
            source_key = (p.source_us or 0, p.hallucination_source)
    v.model = model_key[1] if model_key is not None else None
    v.fallback_reason = reason_key[1] if reason_key is not None else None
    v.hallucination_source = source_key[1] if source_key is not None else None
    return v


def needed_parts(turns: Iterable[TurnRow]) -> set[PartKey]:
    """The parts ``turn_values`` may read for ``turns`` (an SDK turn: its own and the unclaimed one)."""
    keys: set[PartKey] = set()
    for t in turns:
        keys.add((t.trace_id, ""))
        if not t.auto:
            keys.add((t.trace_id, t.turn_id))
    return keys


def stored_parts(rows: Iterable[tuple[Any, ...]]) -> dict[str, dict[str, StoredPart]]:
    """PARTS_OF_TRACES rows → trace → scope → part."""
    parts: dict[str, dict[str, StoredPart]] = {}
    for r in rows:
        parts.setdefault(str(r[0]), {})[str(r[1])] = StoredPart(
            int(r[2]), int(r[3]), float(r[4]), r[5], r[6], bool(r[7]), r[8], r[9], bool(r[10]), r[11], r[12],
            bool(r[13]), bool(r[14]), bool(r[15]))
    return parts
