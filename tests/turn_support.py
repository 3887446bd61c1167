"""Helpers of the turn-consistency tests: OTLP requests from span dicts, chat metric snapshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from store_factories import NOW_NS

from otel_chatbot.processor.decode import PROTOBUF, parse_traces
from otel_chatbot.processor.metrics import ProcessorMetrics
from otel_chatbot.processor.normalise import normalise_traces
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch

PRICES = PriceTable.load()
SEC = 10**9
ERROR = 2


def _value(value: Any) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=str(value))


def otlp(spans: Sequence[dict[str, Any]]) -> bytes:
    """An OTLP request of span dicts: trace, id, parent, name, start/end (ns after NOW_NS), status,
    attrs, service."""
    request = ExportTraceServiceRequest()
    by_service: dict[str, Any] = {}
    for spec in spans:
        service = spec.get("service", "bot")
        scope = by_service.get(service)
        if scope is None:
            rs = request.resource_spans.add()
            rs.resource.attributes.append(KeyValue(key="service.name", value=_value(service)))
            scope = by_service[service] = rs.scope_spans.add()
        span = scope.spans.add()
        span.trace_id = spec["trace"]
        span.span_id = spec["id"]
        span.parent_span_id = spec.get("parent") or b""
        span.name = spec.get("name", "span")
        span.start_time_unix_nano = NOW_NS + spec.get("start", 0)
        span.end_time_unix_nano = NOW_NS + spec.get("end", SEC)
        span.status.code = spec.get("status", 0)
        for key, value in spec.get("attrs", {}).items():
            span.attributes.append(KeyValue(key=key, value=_value(value)))
    return request.SerializeToString()


def normalised(spans: Sequence[dict[str, Any]]) -> NormalisedBatch:
    """``spans`` as the receivers hand them to the pipeline: protobuf → parse → normalise."""
    return normalise_traces(parse_traces(otlp(spans), PROTOBUF), PRICES)


def chat_metric_values(*replicas: ProcessorMetrics) -> dict[tuple[str, tuple[str, ...], int], float]:
    """The chat and GenAI metric samples of ``replicas`` added up (as a Prometheus sum() over the
    processor replicas would), flat: (metric, labels, i) → value, where i is 0 for a counter and the
    bucket index (the last: the sum) for a histogram; zeros left out."""
    out: dict[tuple[str, tuple[str, ...], int], float] = {}
    for metrics in replicas:
        families = [metrics.turns, metrics.errors, metrics.fallbacks, metrics.hallucinations,
                    metrics.injections, metrics.blocked, metrics.rate_limited, metrics.sessions,
                    metrics.feedback, metrics.tokens, metrics.cost]
        for family in families:
            # values: what a scrape reads; held: increments of new series waiting for the next scrape
            for labels, value in [*family.values.items(), *family.held.items()]:
                key = (family.name, labels, 0)
                out[key] = out.get(key, 0.0) + value
        for histogram in (metrics.turn_duration, metrics.gen_ai_tokens, metrics.gen_ai_duration):
            for labels, cell in [*histogram.values.items(), *histogram.held.items()]:
                for i, value in enumerate(cell):
                    key = (histogram.name, labels, i)
                    out[key] = out.get(key, 0.0) + value
    return {k: v for k, v in out.items() if v}


def metric_value(metrics: ProcessorMetrics, name: str, **labels: str) -> float:
    """One chat metric sample, held increments included (what the next scrapes will read): a counter by
    its name, a histogram's ``_count`` or ``_sum``."""
    base, _, part = name.rpartition("_")
    histogram = part in ("count", "sum") and base in ("chatbot_turn_duration_seconds",)
    family_name = base if histogram else name
    values = chat_metric_values(metrics)
    total = 0.0
    for (metric, label_values, i), value in values.items():
        if metric != family_name:
            continue
        family = next(f for f in (metrics.turns, metrics.errors, metrics.fallbacks, metrics.hallucinations,
                                  metrics.injections, metrics.blocked, metrics.rate_limited, metrics.sessions,
                                  metrics.feedback, metrics.tokens, metrics.cost, metrics.turn_duration)
                      if f.name == metric)
        if dict(zip(family.labelnames, label_values, strict=True)) != labels:
            continue
        if not histogram:
            total += value
        elif part == "sum":
            total += value if i == len(metrics.turn_duration.bounds) + 1 else 0.0
        elif i <= len(metrics.turn_duration.bounds):
            total += value
    return total


def counter_values(family: Any) -> dict[tuple[str, ...], float]:
    """A counter family's values with its held increments (zeros left out)."""
    out: dict[tuple[str, ...], float] = {}
    for labels, value in [*family.values.items(), *family.held.items()]:
        out[labels] = out.get(labels, 0.0) + value
    return {k: v for k, v in out.items() if v}
