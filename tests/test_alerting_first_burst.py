"""A counter's first burst reaches the alert rules: a new service, and again right after a restart.

A series born at its first value (say 8 fallbacks in one batch) gives Prometheus nothing to compare
against, so ``increase()`` sees no increase and "more than 5 fallbacks in 10 minutes" never fires. The
processor exposes a new series at 0 and holds its first increment until a scrape has read that zero
(docs/metrics.md). Here a real Prometheus (1 s scrape and evaluation, the shipped rules with the fallback
window shortened as in test_alerting_e2e) scrapes the real processor on real sockets and an app's first
batch, sent with the real OTLP exporter, is a burst of fallbacks: the shipped alert must fire within the
window, for a brand-new service and again for the same service right after the processor restarts.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from server_support import base_url, make_processor
from test_alerting_e2e import (
    FALLBACK_WINDOW,
    ChatTraffic,
    http_ok,
    prometheus_query,
    start,
    write_prometheus_config,
    write_test_rules,
)
from tools import free_port, prometheus, stop_process, wait_for

from otel_chatbot.processor.app import Processor

pytestmark = pytest.mark.slow

BURST = 8  # fallbacks in the app's first batch; the shipped threshold is "more than 5"
WINDOW_S = float(FALLBACK_WINDOW.rstrip("s"))


def _firing(prom_port: int, service: str) -> Callable[[], bool]:
    query = f'ALERTS{{alertname="ChatbotFallbackSpike",alertstate="firing",service="{service}"}}'
    return lambda: bool(prometheus_query(prom_port, query))


def _burst(processor: Processor, service: str) -> float:
    """One OTLP export holding ``BURST`` fallback turns of ``service``; returns when it was answered."""
    traffic = ChatTraffic(base_url(processor), service=service)
    try:
        traffic.turns(BURST, fallback=True)  # one force_flush: one export request, one batch
    finally:
        traffic.shutdown()
    return time.monotonic()


def test_first_fallback_burst_fires_for_a_new_service_and_after_a_restart(
        tmp_path: Path, database_url: str, record_property: Callable[[str, object], None]) -> None:
    metrics_port, prom_port = free_port(), free_port()
    settings = {"metrics": f"127.0.0.1:{metrics_port}"}
    rules = write_test_rules(tmp_path / "rules")
    write_prometheus_config(tmp_path / "prometheus.yml", rules, ("127.0.0.1", metrics_port), free_port())
    service = f"burst-bot-{uuid.uuid4().hex[:8]}"
    processor = make_processor(database_url, **settings)
    processor.start()
    prom = None
    try:
        prom = start([prometheus(), f"--config.file={tmp_path / 'prometheus.yml'}",
                      f"--storage.tsdb.path={tmp_path / 'prom-data'}",
                      f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path, tmp_path / "prometheus.log")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{prom_port}/-/ready"), 30, "prometheus ready")
        wait_for(lambda: prometheus_query(prom_port, 'up{job="otel-chatbot"} == 1'), 30, "a first scrape")

        # 1. A service never seen before: its very first batch is the burst.
        sent = _burst(processor, service)
        wait_for(_firing(prom_port, service), WINDOW_S, f"the alert for {service}'s first burst")
        first = time.monotonic() - sent
        print(f"\nnew service, first burst -> alert firing: {first:.1f} s (window {FALLBACK_WINDOW})")
        record_property("new_service_burst_to_firing_seconds", round(first, 2))

        # Let the burst leave the window so the alert resolves before the restart.
        wait_for(lambda: not _firing(prom_port, service)(), WINDOW_S + 30, "the alert to resolve")

        # 2. Restart the processor on the same metrics port; the first batch after it is a burst again
        # of the same size, so the new series starts at exactly the value Prometheus last saw.
        processor.shutdown()
        processor = make_processor(database_url, **settings)
        processor.start()
        sent = _burst(processor, service)
        wait_for(_firing(prom_port, service), WINDOW_S, f"the alert for {service}'s burst after a restart")
        second = time.monotonic() - sent
        print(f"after a restart, first burst -> alert firing: {second:.1f} s (window {FALLBACK_WINDOW})")
        record_property("restart_burst_to_firing_seconds", round(second, 2))
        value = prometheus_query(prom_port, f'service:chatbot_fallbacks:increase10m{{service="{service}"}}')
        assert float(value[0]["value"][1]) >= BURST, value
    finally:
        processor.shutdown()
        if prom is not None:
            stop_process(prom)
