"""The chat metrics (``chatbot_*``, ``gen_ai_*``); the processor's own (``otel_chatbot_*``) are in
self_metrics.py.

Chat metrics are derived only from :class:`CommitResult` (what a write added for the first time), so a
span is counted once however often the Collector retries its batch. Counting is per batch: a commit is
folded into plain dicts first and applied under one lock, because per-observation calls into
prometheus_client would cost more than the rest of the hot path. Counters live in this process only and
reset on restart; the alert rules use ``rate()``/``increase()`` accordingly (docs/metrics.md).

First increments: ``increase()`` only sees growth between two samples, so a series whose first sample
is already 8 (a service's first burst of fallbacks in one batch, a new ``reason``, the first batch
after a restart) would count as no increase at all and the alerts would miss it. A chat series is
therefore born at 0 and its increments are held until a scrape has read that 0; the following scrape
reads them. The self-metrics' label sets are known in advance and are created at 0 at start.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Final

from prometheus_client import CollectorRegistry

from otel_chatbot.processor.metric_families import (
    OTHER,
    ChatCollector,
    CounterFamily,
    HistogramFamily,
    LabelCap,
    Labels,
)
from otel_chatbot.processor.self_metrics import SelfMetrics
from otel_chatbot.records import CommitResult

# Turn latency: 3.0 must stay a boundary, the latency SLO and the slow-turn alert read le="3.0".
TURN_DURATION_BUCKETS: Final = (0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0, 120.0)
# OpenTelemetry GenAI semantic conventions, gen_ai.client.token.usage / .operation.duration.
GEN_AI_TOKEN_BUCKETS: Final = tuple(float(4**i) for i in range(14))  # 1, 4, 16 … 67108864
GEN_AI_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)
EVALUATION_SCORE_BUCKETS: Final = tuple(float(i) for i in range(1, 11))  # judge scores are 0-10
CSAT_BUCKETS: Final = (1.0, 2.0, 3.0, 4.0, 5.0)  # CSAT is a 1-5 rating
NPS_BUCKETS: Final = tuple(float(i) for i in range(11))  # NPS answers are 0-10 (6 = detractor, 8 = passive)
UNKNOWN: Final = "unknown"
_MAX_LABEL_CHARS: Final = 128
_ERROR_STATUS: Final = 2  # OTLP STATUS_CODE_ERROR

def _clean(value: str | None) -> str:
    if not value:
        return UNKNOWN
    return value if len(value) <= _MAX_LABEL_CHARS else value[:_MAX_LABEL_CHARS]


class ProcessorMetrics(SelfMetrics):
    """The chat metrics, the GenAI semantic-convention metrics and the processor's self-metrics.

    ``label_cap`` bounds the distinct values of each label name (shared across metrics, so ``model``
    folds the same way everywhere); values beyond it become ``other`` and are counted in
    ``otel_chatbot_label_values_folded_total{label}``.
    """

    def __init__(self, registry: CollectorRegistry | None = None, label_cap: int = 50) -> None:
        if label_cap < 1:
            raise ValueError(f"label_cap: expected a positive integer, got {label_cap!r}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.label_cap = label_cap
        self._lock = threading.Lock()
        self._caps: dict[str, LabelCap] = {}
        self._folded: dict[str, int] = {}

        turn = ("service", "source")
        self.turns = CounterFamily("chatbot_turns_total", "Chat turns committed.", turn)
        self.errors = CounterFamily("chatbot_errors_total", "Turns that ended in an error.", turn)
        self.fallbacks = CounterFamily(
            "chatbot_fallbacks_total", "Turns answered with a fallback.", (*turn, "reason"))
        self.hallucinations = CounterFamily(
            "chatbot_hallucinations_total", "Turns flagged as hallucinated.", turn)
        self.injections = CounterFamily(
            "chatbot_prompt_injections_total", "Turns flagged as prompt injection.", turn)
        self.blocked = CounterFamily("chatbot_blocked_messages_total", "User messages blocked.", turn)
        self.rate_limited = CounterFamily(
            "chatbot_rate_limited_total", "Turns refused by a rate limit.", turn)
        self.sessions = CounterFamily(
            "chatbot_sessions_total", "Conversations seen for the first time.", turn)
        self.feedback = CounterFamily(
            "chatbot_feedback_total", "Feedback events that changed a turn's rating.", ("service", "rating"))
        self.tokens = CounterFamily(
            "chatbot_tokens_total", "LLM tokens used, by type input|output.", ("service", "type", "model"))
        self.cost = CounterFamily(
            "chatbot_cost_usd_total", "Estimated LLM cost in USD.", ("service", "model"))
        self.turn_duration = HistogramFamily(
            "chatbot_turn_duration_seconds", "Latency of a chat turn.", turn, TURN_DURATION_BUCKETS)
        self.evaluation_score = HistogramFamily(
            "chatbot_evaluation_score", "LLM-judge scores (0-10) by dimension.", ("dimension",),
            EVALUATION_SCORE_BUCKETS)
        genai = ("gen_ai_request_model", "gen_ai_provider_name", "gen_ai_operation_name")
        self.gen_ai_tokens = HistogramFamily(
            "gen_ai_client_token_usage", "Number of input and output tokens used (GenAI semconv).",
            ("gen_ai_token_type", *genai), GEN_AI_TOKEN_BUCKETS)
        self.gen_ai_duration = HistogramFamily(
            "gen_ai_client_operation_duration_seconds", "GenAI operation duration (GenAI semconv).",
            (*genai, "error_type"), GEN_AI_DURATION_BUCKETS)
        self.conversions = CounterFamily(
            "chatbot_conversions_total", "Conversion outcomes (sign-up, booking, purchase…) by goal.",
            (*turn, "goal"))
        # Leads apart from conversions: a captured contact is an earlier funnel stage than a purchase,
        # and counting it as a conversion would inflate the conversion rate.
        self.leads = CounterFamily(
            "chatbot_leads_total", "Lead outcomes (contact details, demo or quote requests…) by goal.",
            (*turn, "goal"))
        self.escalations = CounterFamily(
            "chatbot_escalations_total", "Turns handed to a human agent.", (*turn, "reason"))
        self.csat = HistogramFamily("chatbot_csat_score", "CSAT ratings (1-5).", ("service",), CSAT_BUCKETS)
        self.nps = HistogramFamily("chatbot_nps_score", "NPS answers (0-10).", ("service",), NPS_BUCKETS)
        self.turns_by_version = CounterFamily(
            "chatbot_turns_by_version_total", "Chat turns by prompt template version and app version.",
            ("service", "prompt_version", "app_version"))
        self.folded = CounterFamily(
            "otel_chatbot_label_values_folded_total",
            "Observations whose label value was replaced by 'other' (cardinality cap).", ("label",))
        self._flags = (self.errors, self.hallucinations, self.injections, self.blocked, self.rate_limited)
        families: list[CounterFamily | HistogramFamily] = [
            self.turns, *self._flags, self.fallbacks, self.sessions, self.feedback, self.tokens, self.cost,
            self.turn_duration, self.evaluation_score, self.gen_ai_tokens, self.gen_ai_duration, self.folded,
            self.conversions, self.escalations, self.csat, self.nps, self.turns_by_version, self.leads,
        ]
        self.chat_families: tuple[CounterFamily | HistogramFamily, ...] = tuple(families)
        self.registry.register(ChatCollector(self._lock, families))

        super().__init__(self.registry)

    # --- label folding (caller holds the lock) ------------------------------------------------
    def _fold(self, labelnames: Sequence[str], values: Labels, weight: int = 1) -> Labels:
        out: list[str] = []
        for name, value in zip(labelnames, values, strict=True):
            cap = self._caps.get(name)
            if cap is None:
                cap = self._caps[name] = LabelCap(self.label_cap)
            if cap.admit(value):
                out.append(value)
            else:
                out.append(OTHER)
                self.folded.add((name,), weight)
        return tuple(out)

    # --- chat metrics ----------------------------------------------------------------------------
    def observe_commit(self, result: CommitResult) -> None:
        """Count what a write (or a settle) committed for the first time: new turns in full, corrected
        turns by the flags they raised since they were counted (never the turn or its latency again)."""
        # Group first by raw attribute values (one tuple and a few appends per item), then clean,
        # fold and bucket once per group: per-value work in Python is what limits throughput.
        turn_groups: dict[tuple[str, str | None], list[int]] = {}  # -> [turns, *flags]
        turn_latency: dict[tuple[str, str | None], list[float]] = {}
        fallback_groups: dict[tuple[str, str | None, str | None], int] = {}
        corrected = result.corrected_turns
        for t in result.new_turns + corrected if corrected else result.new_turns:
            key = (t.service, t.source)
            counts = turn_groups.get(key)
            if counts is None:
                counts = turn_groups[key] = [0, 0, 0, 0, 0, 0]
                turn_latency[key] = []
            counts[1] += t.error
            counts[2] += t.hallucinated
            counts[3] += t.prompt_injection
            counts[4] += t.blocked
            counts[5] += t.rate_limited
            if t.fallback:
                fkey = (t.service, t.source, t.fallback_reason)
                fallback_groups[fkey] = fallback_groups.get(fkey, 0) + 1
        for t in result.new_turns:
            key = (t.service, t.source)
            turn_groups[key][0] += 1
            turn_latency[key].append(t.latency_s)

        # (service, model, provider, operation, failed) -> (input, output, duration ns, cost)
        llm_groups: dict[tuple[str, str | None, str | None, str | None, bool],
                         tuple[list[int | None], list[int | None], list[int], list[float | None]]] = {}
        for s in result.new_spans:
            if s.input_tokens is None and s.output_tokens is None:
                continue  # not an LLM span: the common case, keep it cheap
            gkey = (s.service, s.model, s.provider, s.operation, s.status_code == _ERROR_STATUS)
            group = llm_groups.get(gkey)
            if group is None:
                group = llm_groups[gkey] = ([], [], [], [])
            group[0].append(s.input_tokens)
            group[1].append(s.output_tokens)
            group[2].append(s.end_ns - s.start_ns)
            group[3].append(s.cost_usd)

        version_groups: dict[tuple[str, str | None, str | None], int] = {}
        # Turns escalated when first stored, then stored turns a later span escalated (once per turn).
        escalations = [(t.service, t.source, t.escalation_reason) for t in result.new_turns if t.escalated]
        escalations += result.new_escalations
        for t in result.new_turns:
            if t.prompt_version is not None or t.app_version is not None:
                vkey = (t.service, t.prompt_version, t.app_version)
                version_groups[vkey] = version_groups.get(vkey, 0) + 1
        feedback_groups: dict[tuple[str | None, str], int] = {}
        for f in result.new_feedback:
            fbkey = (f.service, f.rating)
            feedback_groups[fbkey] = feedback_groups.get(fbkey, 0) + 1
        session_groups: dict[tuple[str, str | None], int] = {}
        for _session, service, source in result.new_sessions:
            skey = (service, source)
            session_groups[skey] = session_groups.get(skey, 0) + 1

        td, gt, gd = self.turn_duration, self.gen_ai_tokens, self.gen_ai_duration
        with self._lock:
            for (service, source), counts in turn_groups.items():
                n = counts[0]
                labels = self._fold(self.turns.labelnames, (_clean(service), _clean(source)), n)
                self.turns.add(labels, n)
                for family, count in zip(self._flags, counts[1:], strict=True):
                    if count:
                        family.add(labels, count)
                    else:
                        family.touch(labels)
                latencies = turn_latency[(service, source)]
                if latencies:
                    td.merge(labels, td.cell_of(latencies))
            for (service, source, reason), n in fallback_groups.items():
                self.fallbacks.add(self._fold(
                    self.fallbacks.labelnames, (_clean(service), _clean(source), _clean(reason)), n), n)
            for (service, model, provider, operation, failed), group in llm_groups.items():
                inputs = [v for v in group[0] if v is not None]
                outputs = [v for v in group[1] if v is not None]
                costs = [v for v in group[3] if v is not None]
                spans = len(group[2])
                svc, mdl = self._fold(self.cost.labelnames, (_clean(service), _clean(model)), spans)
                self.tokens.add((svc, "input", mdl), sum(inputs))
                self.tokens.add((svc, "output", mdl), sum(outputs))
                if costs:
                    self.cost.add((svc, mdl), sum(costs))
                genai = self._fold(gd.labelnames[:3], (mdl, _clean(provider), _clean(operation)), spans)
                if inputs:
                    gt.merge(("input", *genai), gt.cell_of(inputs))
                if outputs:
                    gt.merge(("output", *genai), gt.cell_of(outputs))
                gd.merge((*genai, "_OTHER" if failed else ""), gd.cell_of(group[2], scale=1e-9))
            for (rated_service, rating), n in feedback_groups.items():
                labels = (_clean(rated_service), _clean(rating))
                self.feedback.add(self._fold(self.feedback.labelnames, labels, n), n)
            for (service, source), n in session_groups.items():
                labels = (_clean(service), _clean(source))
                self.sessions.add(self._fold(self.sessions.labelnames, labels, n), n)
            self._count_outcomes(result, version_groups, escalations)
        if result.new_spans:
            self._committed.inc(len(result.new_spans))
        if result.duplicate_spans:
            self._duplicates.inc(result.duplicate_spans)
        if result.out_of_range_spans:
            self._out_of_range.inc(result.out_of_range_spans)
        if result.parked_feedback:
            self._feedback_pending.inc(result.parked_feedback)
        if result.expired_feedback:
            self._feedback_expired.labels("cap").inc(result.expired_feedback)
        if result.parked_outcomes:
            self._outcomes_pending.inc(result.parked_outcomes)

    def _count_outcomes(self, result: CommitResult,
                        version_groups: dict[tuple[str, str | None, str | None], int],
                        escalations: list[tuple[str, str | None, str | None]]) -> None:
        """Conversions, leads, CSAT/NPS, escalations and turns by version of a commit (caller holds the
        lock)."""
        for (service, prompt_version, app_version), n in version_groups.items():
            labels = (_clean(service), _clean(prompt_version), _clean(app_version))
            self.turns_by_version.add(self._fold(self.turns_by_version.labelnames, labels, n), n)
        scores: dict[tuple[str, str | None], list[float]] = {}
        for o in result.new_outcomes:
            if o.kind in ("conversion", "lead"):
                counted = self.conversions if o.kind == "conversion" else self.leads
                labels = (_clean(o.service), _clean(o.source), _clean(o.label))
                counted.add(self._fold(counted.labelnames, labels), 1)
            elif o.kind in ("csat", "nps") and o.value is not None:
                scores.setdefault((o.kind, o.service), []).append(o.value)
        for (kind, scored_service), values in scores.items():
            family = self.csat if kind == "csat" else self.nps
            folded = self._fold(family.labelnames, (_clean(scored_service),), len(values))
            family.merge(folded, family.cell_of(values))
        for turn_service, source, reason in escalations:
            labels = (_clean(turn_service), _clean(source), _clean(reason))
            self.escalations.add(self._fold(self.escalations.labelnames, labels), 1)

    def observe_evaluation(self, dimension: str, score: float) -> None:
        """One LLM-judge score (0-10) for ``dimension`` (accuracy, relevance, clarity, groundedness)."""
        es = self.evaluation_score
        cell = es.cell_of((score,))
        with self._lock:
            es.merge(self._fold(es.labelnames, (_clean(dimension),)), cell)

    def judge_hallucination(self, service: str, source: str | None) -> None:
        """A turn the online judge flagged hallucinated (not flagged before): counted once, here."""
        labels = (_clean(service), _clean(source))
        with self._lock:
            self.hallucinations.add(self._fold(self.hallucinations.labelnames, labels), 1)
