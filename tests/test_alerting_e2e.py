"""End to end: OTLP spans → processor /metrics → real Prometheus → real Alertmanager → webhook.

Runs the shipped rules and alertmanager.yml with only the timings shortened: scrape and evaluation
every 1 s, the fallback alert's 10-minute window and its `for:` cut down (test copies generated from
the real files), Alertmanager's group timers at 1 s, and every receiver (PagerDuty, Slack, Discord via
its Slack endpoint, webhook) pointed at a local HTTP receiver through the same secret files production
uses. Raising fallbacks above the threshold must deliver a firing page; stopping them must deliver
the resolution. The time from the spike to the webhook is printed and recorded.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from server_support import base_url, running
from tools import PROMETHEUS_DIR, alertmanager, free_port, prometheus, stop_process, wait_for

from otel_chatbot.processor.app import Processor

FALLBACK_WINDOW = "20s"  # production: 10m; long enough for 1 s scrapes, short enough to resolve soon
SERVICE = "e2e-support-bot"
WEBHOOK_TOKEN = "e2e-webhook-token"

pytestmark = pytest.mark.slow


# --- the local receiver ---------------------------------------------------------------------------
@dataclass
class Delivery:
    at: float
    path: str
    body: dict[str, Any]
    authorization: str | None


@dataclass
class Receiver:
    """Records every notification Alertmanager sends, whatever integration it came through."""

    deliveries: list[Delivery] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def wait(self, match: Callable[[Delivery], bool], timeout: float, what: str) -> Delivery:
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for delivery in self.deliveries:
                    if match(delivery):
                        return delivery
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(d.path, d.body.get("status")) for d in self.deliveries]
                    raise AssertionError(f"no {what} within {timeout:.0f} s; received {seen}")
                self.changed.wait(left)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    record = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            delivery = Delivery(time.monotonic(), self.path, json.loads(body or b"{}"),
                                self.headers.get("Authorization"))
            with record.changed:
                record.deliveries.append(delivery)
                record.changed.notify_all()
            # PagerDuty's events API answers 202 with a status; Slack answers 200 "ok".
            status, reply = (202, b'{"status":"success"}') if "pagerduty" in self.path else (200, b"ok")
            self.send_response(status)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield record, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- test copies of the shipped configuration -----------------------------------------------------
def write_test_rules(directory: Path) -> list[Path]:
    """The shipped rules, with only the fallback alert's window and `for:` shortened."""
    directory.mkdir(parents=True)
    written = []
    changed = {"record": False, "alert": False}
    for source in sorted((PROMETHEUS_DIR / "rules").glob("*.yml")):
        doc = yaml.safe_load(source.read_text())
        for group in doc["groups"]:
            for rule in group["rules"]:
                if rule.get("record") == "service:chatbot_fallbacks:increase10m":
                    assert "[10m]" in rule["expr"]
                    rule["expr"] = rule["expr"].replace("[10m]", f"[{FALLBACK_WINDOW}]")
                    changed["record"] = True
                if rule.get("alert") == "ChatbotFallbackSpike":
                    rule["for"] = "0s"
                    changed["alert"] = True
        target = directory / source.name
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
        written.append(target)
    assert all(changed.values()), f"the shipped rules changed shape: {changed}"
    return written


def write_prometheus_config(path: Path, rules: list[Path], metrics: tuple[str, int], am_port: int) -> None:
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(p) for p in rules]
    config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] = [f"127.0.0.1:{am_port}"]
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "otel-chatbot")
    job["static_configs"][0]["targets"] = [f"{metrics[0]}:{metrics[1]}"]
    config["scrape_configs"] = [job]
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def write_alertmanager_config(directory: Path, receiver_url: str) -> Path:
    """The shipped alertmanager.yml; secrets and endpoints point at the local receiver."""
    secrets = directory / "secrets"
    secrets.mkdir(parents=True)
    (secrets / "pagerduty_routing_key").write_text("e2e-routing-key")
    (secrets / "slack_api_url").write_text(f"{receiver_url}/slack")
    (secrets / "discord_webhook_url").write_text(f"{receiver_url}/discord/slack")
    (secrets / "webhook_token").write_text(WEBHOOK_TOKEN)
    text = (PROMETHEUS_DIR / "alertmanager.yml").read_text()
    assert "/etc/alertmanager/secrets/" in text
    config = yaml.safe_load(text.replace("/etc/alertmanager/secrets/", f"{secrets}/"))
    config["global"]["pagerduty_url"] = f"{receiver_url}/pagerduty"
    config["route"].update(group_wait="1s", group_interval="1s")
    webhook = next(r for r in config["receivers"] if r["name"] == "webhook")
    webhook["webhook_configs"][0]["url"] = f"{receiver_url}/webhook"
    shutil.copytree(PROMETHEUS_DIR / "templates", directory / "templates")
    path = directory / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def start(args: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=5) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
        return result


# --- feeding the processor ------------------------------------------------------------------------
class ChatTraffic:
    """A chatbot's spans, exported over real OTLP/HTTP to the processor."""

    def __init__(self, endpoint: str, service: str = SERVICE) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider(resource=Resource.create({"service.name": service}))
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{endpoint}/v1/traces")))
        self.tracer = self.provider.get_tracer("e2e")

    def turns(self, count: int, fallback: bool) -> None:
        for _ in range(count):
            attributes: dict[str, Any] = {
                "chat.turn.id": uuid.uuid4().hex, "session.id": "e2e-session", "chat.source": "website",
                "input.value": "where is my parcel?",
                "output.value": "Sorry, I can't help with that." if fallback else "It arrives tomorrow.",
            }
            if fallback:
                attributes.update({"chat.fallback": True, "chat.fallback.reason": "retrieval_empty"})
            with self.tracer.start_as_current_span("chat.turn", attributes=attributes):
                pass
        assert self.provider.force_flush(10_000), "OTLP export did not complete"

    def shutdown(self) -> None:
        self.provider.shutdown()


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url) as proc:
        yield proc


# --- the test ---------------------------------------------------------------------------------------
def test_fallback_spike_pages_through_prometheus_and_alertmanager_then_resolves(
        tmp_path: Path, receiver: tuple[Receiver, str], processor: Processor,
        record_property: Callable[[str, object], None]) -> None:
    record, receiver_url = receiver
    prom_port, am_port = free_port(), free_port()
    rules = write_test_rules(tmp_path / "rules")
    write_prometheus_config(tmp_path / "prometheus.yml", rules, processor.metrics_address, am_port)
    am_config = write_alertmanager_config(tmp_path / "am", receiver_url)
    traffic = ChatTraffic(base_url(processor))
    children: list[subprocess.Popen[bytes]] = []
    try:
        children.append(start(
            [alertmanager(), f"--config.file={am_config}", f"--storage.path={tmp_path / 'am' / 'data'}",
             f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
            tmp_path / "am", tmp_path / "alertmanager.log"))
        children.append(start(
            [prometheus(), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'prom-data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
            tmp_path, tmp_path / "prometheus.log"))
        wait_for(lambda: http_ok(f"http://127.0.0.1:{am_port}/-/ready"), 30, "alertmanager ready")
        wait_for(lambda: http_ok(f"http://127.0.0.1:{prom_port}/-/ready"), 30, "prometheus ready")

        # Normal traffic first: the turn series exists and is scraped before anything goes wrong.
        traffic.turns(5, fallback=False)
        wait_for(lambda: prometheus_query(prom_port, f'chatbot_turns_total{{service="{SERVICE}"}} >= 5'),
                 30, "prometheus to scrape the processor's turns")
        assert not prometheus_query(prom_port, 'ALERTS{alertname="ChatbotFallbackSpike"}')

        # The spike: fallbacks well above "more than 5 in the window", kept up until the page arrives.
        spike_started = time.monotonic()
        firing: Delivery | None = None
        while firing is None:
            assert time.monotonic() - spike_started < 90, f"no page within 90 s: {record.deliveries}"
            traffic.turns(3, fallback=True)
            try:
                firing = record.wait(_is("webhook", "firing"), 0.5, "firing webhook")
            except AssertionError:
                continue
        spike_to_webhook = firing.at - spike_started
        print(f"\nfallback spike -> firing webhook: {spike_to_webhook:.1f} s")
        record_property("spike_to_webhook_seconds", round(spike_to_webhook, 2))

        alert = next(a for a in firing.body["alerts"] if a["labels"]["alertname"] == "ChatbotFallbackSpike")
        assert alert["labels"]["service"] == SERVICE and alert["labels"]["severity"] == "page"
        summary = alert["annotations"]["summary"]  # "<service>: <figure> fallback answers in 10 minutes"
        assert summary.startswith(f"{SERVICE}: ") and "fallback answers" in summary
        assert float(summary.split(": ")[1].split()[0]) > 5, summary
        assert alert["annotations"]["runbook_url"].endswith("docs/alerts.md#chatbotfallbackspike")
        assert firing.authorization == f"Bearer {WEBHOOK_TOKEN}"
        # The page also went to PagerDuty and Slack (not Discord: that route is for tickets).
        pagerduty = record.wait(_is("pagerduty", None), 30, "PagerDuty event")
        assert pagerduty.body["routing_key"] == "e2e-routing-key"
        assert pagerduty.body["event_action"] == "trigger" and SERVICE in pagerduty.body["payload"]["summary"]
        slack = record.wait(_is("slack", None), 30, "Slack message")
        assert "ChatbotFallbackSpike" in json.dumps(slack.body) and "runbook" in json.dumps(slack.body)

        # Calm: normal turns only. Once the spike leaves the window the alert resolves.
        calm_started = time.monotonic()
        resolved: Delivery | None = None
        while resolved is None:
            assert time.monotonic() - calm_started < 120, f"no resolution within 120 s: {record.deliveries}"
            traffic.turns(1, fallback=False)
            try:
                resolved = record.wait(_is("webhook", "resolved"), 1.0, "resolved webhook")
            except AssertionError:
                continue
        calm_to_resolved = resolved.at - calm_started
        print(f"fallbacks stopped -> resolved webhook: {calm_to_resolved:.1f} s")
        record_property("calm_to_resolved_seconds", round(calm_to_resolved, 2))
        assert resolved.body["alerts"][0]["labels"]["alertname"] == "ChatbotFallbackSpike"
        assert not any(d.path.startswith("/discord") for d in record.deliveries)
    finally:
        traffic.shutdown()
        for child in reversed(children):
            stop_process(child)


def _is(path: str, status: str | None) -> Callable[[Delivery], bool]:
    """A delivery of the fallback alert to ``path`` (with ``status``, for webhook payloads)."""
    def match(delivery: Delivery) -> bool:
        if not delivery.path.startswith("/" + path):
            return False
        if "ChatbotFallbackSpike" not in json.dumps(delivery.body):
            return False
        return status is None or delivery.body.get("status") == status
    return match
