"""``otel-chatbot demo``: the processor on embedded Postgres plus a simulated, instrumented chatbot."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from otel_chatbot.demo.simulator import SimStats, Simulator
from otel_chatbot.sdk.tracing import _build_exporter, force_flush, instrument
from otel_chatbot.sdk.tracing import shutdown as sdk_shutdown

if TYPE_CHECKING:
    from otel_chatbot.processor.config import ProcessorConfig

__all__ = ["DEFAULT_DURATION", "run_demo", "send_demo_traffic"]

DEFAULT_DURATION = 20.0
DEMO_SERVICE = "support-bot-demo"
DEMO_VERSION = "1.0.0"  # the app version stored per turn (resource service.version)


class _Progress:
    """One progress line, rewritten in place on a terminal, printed every 5 s otherwise."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._tty = bool(getattr(out, "isatty", lambda: False)())
        self._last = 0.0

    def __call__(self, stats: SimStats) -> None:
        if self._tty:
            self._out.write("\r" + stats.line() + "\033[K")
            self._out.flush()
        elif time.monotonic() - self._last >= 5.0:
            self._out.write(stats.line() + "\n")
            self._out.flush()
            self._last = time.monotonic()

    def finish(self, stats: SimStats) -> None:
        self._out.write(("\r" if self._tty else "") + stats.line() + ("\033[K\n" if self._tty else "\n"))
        self._out.flush()


def _summary_text(database_url: str) -> str:
    import psycopg

    from otel_chatbot.store.queries import chat_summary, format_summary

    with psycopg.connect(database_url) as conn:
        return format_summary(chat_summary(conn))


def run_demo(config: ProcessorConfig, *, duration: float | None, rate: float, once: bool,
             out: TextIO = sys.stdout, seed: int | None = None, latency_scale: float | None = None) -> int:
    """Run the processor and the simulated chatbot; print a summary; serve until Ctrl-C unless ``once``.

    ``duration`` is how long traffic is generated (None: ``DEFAULT_DURATION`` seconds); ``rate`` is
    turns per second. Returns the process exit code (0, or 130 when interrupted before the summary).
    """
    seconds = DEFAULT_DURATION if duration is None else duration
    if seconds <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    simulator = Simulator(rate, seed=seed, latency_scale=latency_scale)  # validates rate
    # The OpenInference LangChain tracer trips a LangChain deprecation warning on every LLM span.
    warnings.filterwarnings("ignore", message=r"Calling \.text\(\) as a method is deprecated")

    from otel_chatbot.processor.app import Processor, grafana_hint

    processor = Processor(config)
    stop = threading.Event()
    out.write("starting the processor (embedded Postgres when no database URL is set)…\n")
    out.flush()
    processor.start()
    try:
        http_host, http_port = processor.http_address
        headers = {"authorization": f"Bearer {config.auth_token}"} if config.auth_token else None
        instrument(DEMO_SERVICE, DEMO_VERSION, endpoint=f"http://{http_host}:{http_port}", headers=headers,
                   instrument_libraries=["langchain"], set_global=False)
        out.write(f"simulating a support chatbot: {rate:g} turns/s for {seconds:g} s "
                  f"(OTLP/HTTP → http://{http_host}:{http_port})\n")
        progress = _Progress(out)
        try:
            stats = asyncio.run(simulator.run(seconds, should_stop=stop.is_set, on_tick=progress))
        except KeyboardInterrupt:
            out.write("\ninterrupted; stopping\n")
            return 130
        progress.finish(stats)
        if not force_flush(30_000):
            out.write("warning: some spans could not be delivered to the processor\n")
        metrics_host, metrics_port = processor.metrics_address
        out.write("\n" + _summary_text(processor.database_url) + "\n\n")
        out.write(f"Prometheus metrics: http://{metrics_host}:{metrics_port}/metrics\n")
        out.write(f"Database:           {processor.database_url}\n")
        out.write(f"OTLP/HTTP:          http://{http_host}:{http_port}/v1/traces\n")
        out.write(f"Review page:        http://{http_host}:{http_port}/ui/\n")
        grpc_host, grpc_port = processor.grpc_address
        out.write(f"OTLP/gRPC:          {grpc_host}:{grpc_port}\n")
        hint = grafana_hint(config)
        if hint is not None:
            out.write(hint + "\n")
        if once:
            return 0
        out.write("\nstill serving: point your own app or Grafana at the addresses above; Ctrl-C to stop.\n")
        out.flush()
        try:
            while not stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            out.write("\nstopping\n")
        return 0
    finally:
        sdk_shutdown()
        processor.shutdown()
        out.flush()


def send_demo_traffic(endpoint: str, *, duration: float | None, rate: float, auth_token: str | None = None,
                      out: TextIO = sys.stdout, seed: int | None = None) -> int:
    """Send the simulated chatbot's spans to ``endpoint`` (an OTLP/HTTP base URL: a Collector or a
    processor that is already running) instead of starting a processor; no summary (the data is
    elsewhere). Returns 0, or 1 when spans could not be delivered, 130 when interrupted."""
    seconds = DEFAULT_DURATION if duration is None else duration
    if seconds <= 0:
        raise ValueError(f"duration must be > 0 seconds, got {duration}")
    if not endpoint.startswith(("http://", "https://")):
        raise ValueError(f"send-to: expected an http:// or https:// OTLP/HTTP base URL, got {endpoint!r}")
    simulator = Simulator(rate, seed=seed)  # validates rate
    warnings.filterwarnings("ignore", message=r"Calling \.text\(\) as a method is deprecated")
    headers = {"authorization": f"Bearer {auth_token}"} if auth_token else None
    exporter = _DeliveryCounter(_build_exporter(endpoint.rstrip("/"), "http", headers))
    instrument(DEMO_SERVICE, DEMO_VERSION, exporter=exporter, instrument_libraries=["langchain"],
               set_global=False)
    try:
        out.write(f"simulating a support chatbot: {rate:g} turns/s for {seconds:g} s "
                  f"(OTLP/HTTP → {endpoint})\n")
        progress = _Progress(out)
        try:
            stats = asyncio.run(simulator.run(seconds, on_tick=progress))
        except KeyboardInterrupt:
            out.write("\ninterrupted; stopping\n")
            return 130
        progress.finish(stats)
        if not force_flush(30_000) or exporter.failed:
            out.write(f"error: some spans could not be delivered to {endpoint}\n")
            return 1
        return 0
    finally:
        sdk_shutdown()
        out.flush()


class _DeliveryCounter(SpanExporter):
    """Delegates to the OTLP exporter and remembers whether any export failed (flush alone can't tell)."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner
        self.failed = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        result = self._inner.export(spans)
        if result is not SpanExportResult.SUCCESS:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return self._inner.force_flush(timeout_millis)
