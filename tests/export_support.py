"""Send spans through the real OpenTelemetry SDK and OTLP exporters (HTTP or gRPC) to a processor."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.trace import Tracer


def http_exporter(endpoint: str, **kwargs: Any) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, **kwargs)


def grpc_exporter(endpoint: str, **kwargs: Any) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint, **kwargs)


class ExportFailed(AssertionError):
    pass


@contextmanager
def exporting(exporter: SpanExporter, resource: Mapping[str, Any] | None = None) -> Iterator[Tracer]:
    """A tracer whose spans go through ``exporter``; on exit they are flushed, and the exporter's
    answer must have been success (the processor answers 200 only after commit)."""
    results: list[Any] = []

    class Recording(SpanExporter):
        def export(self, spans: Any) -> Any:
            result = exporter.export(spans)
            results.append(result)
            return result

        def shutdown(self) -> None:
            exporter.shutdown()

    provider = TracerProvider(resource=Resource.create(dict(resource or {"service.name": "test-bot"})))
    provider.add_span_processor(BatchSpanProcessor(Recording(), schedule_delay_millis=60_000))
    try:
        yield provider.get_tracer("otel-chatbot-tests")
        provider.force_flush(60_000)
    finally:
        provider.shutdown()
    if not results or any(r.name != "SUCCESS" for r in results):
        raise ExportFailed(f"export results: {[r.name for r in results]}")
