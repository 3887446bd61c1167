"""prometheus/alertmanager.yml: valid, routes by severity, inhibits tickets, keeps secrets out."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from tools import PROMETHEUS_DIR, alertmanager, amtool, free_port, run, stop_process, wait_for

CONFIG = PROMETHEUS_DIR / "alertmanager.yml"


def _routes(*labels: str) -> list[str]:
    result = run([amtool(), "config", "routes", "test", f"--config.file={CONFIG}", *labels])
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


def test_amtool_check_config_passes() -> None:
    result = run([amtool(), "check-config", str(CONFIG)], cwd=PROMETHEUS_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 receivers" in result.stdout and "1 templates" in result.stdout


def test_amtool_check_config_rejects_a_route_to_an_unknown_receiver(tmp_path: Path) -> None:
    config = yaml.safe_load(CONFIG.read_text())
    config["route"]["routes"][0]["receiver"] = "nobody"
    bad = tmp_path / "alertmanager.yml"
    bad.write_text(yaml.safe_dump(config))
    shutil.copytree(PROMETHEUS_DIR / "templates", tmp_path / "templates")
    result = run([amtool(), "check-config", str(bad)], cwd=tmp_path)
    assert result.returncode != 0
    assert "nobody" in result.stdout + result.stderr


def test_pages_go_to_pagerduty_slack_and_the_webhook() -> None:
    assert _routes("severity=page", "alertname=ChatbotFallbackSpike", "service=support") == [
        "pagerduty", "slack-page", "webhook"]


def test_tickets_go_to_slack_discord_and_the_webhook() -> None:
    assert _routes("severity=ticket", "alertname=ChatbotSlowTurns", "service=support") == [
        "slack-ticket", "discord", "webhook"]


def test_alerts_without_severity_still_reach_the_webhook() -> None:
    assert _routes("alertname=Watchdog") == ["webhook"]


def test_no_secret_is_inline() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    for receiver in config["receivers"]:
        for kind, entries in receiver.items():
            if kind == "name":
                continue
            for entry in entries:
                for secret in ("routing_key", "service_key", "api_url", "webhook_url"):
                    assert secret not in entry, f"{receiver['name']}: {secret} must come from a *_file"
                authorization = entry.get("http_config", {}).get("authorization", {})
                assert "credentials" not in authorization, receiver["name"]
                if kind == "webhook_configs":
                    assert "credentials_file" in authorization
                else:
                    assert any(key.endswith("_file") for key in entry), receiver["name"]


def _template_data(status: str) -> dict[str, Any]:
    alert = {
        "status": status,
        "labels": {"alertname": "ChatbotFallbackSpike", "service": "support", "severity": "page"},
        "annotations": {
            "summary": "support: 7 fallback answers in 10 minutes",
            "description": "The chatbot support gave 7 fallback answers in the last 10 minutes.",
            "runbook_url": "https://example.test/docs/alerts.md#chatbotfallbackspike",
        },
        "startsAt": "2026-01-02T03:04:05Z", "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "", "fingerprint": "0",
    }
    return {
        "receiver": "slack-page", "status": status, "alerts": [alert],
        "groupLabels": {"alertname": "ChatbotFallbackSpike", "service": "support"},
        "commonLabels": alert["labels"], "commonAnnotations": alert["annotations"],
        "externalURL": "http://alertmanager:9093",
    }


@pytest.mark.parametrize("status", ["firing", "resolved"])
def test_message_template_names_service_figure_and_runbook(tmp_path: Path, status: str) -> None:
    data = tmp_path / "data.json"
    data.write_text(json.dumps(_template_data(status)))
    templates = PROMETHEUS_DIR / "templates" / "*.tmpl"
    result = run([amtool(), "template", "render", f"--template.glob={templates}", f"--template.data={data}",
                  '--template.text={{ template "chatbot.title" . }}\n{{ template "chatbot.text" . }}'])
    assert result.returncode == 0, result.stderr
    title, _, text = result.stdout.partition("\n")
    assert title.startswith(f"[{status.upper()}") and "ChatbotFallbackSpike" in title and "support" in title
    assert "7 fallback answers" in text  # the figure
    assert "service: support" in text
    assert "runbook: https://example.test/docs/alerts.md#chatbotfallbackspike" in text


@pytest.mark.slow
def test_a_page_inhibits_its_ticket_in_a_running_alertmanager(tmp_path: Path) -> None:
    port = free_port()
    shutil.copytree(PROMETHEUS_DIR / "templates", tmp_path / "templates")
    shutil.copy(CONFIG, tmp_path / "alertmanager.yml")
    proc = subprocess.Popen(
        [alertmanager(), f"--config.file={tmp_path / 'alertmanager.yml'}",
         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--cluster.listen-address="],  # empty: no gossip port, so parallel tests don't collide
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}/api/v2"
    try:
        wait_for(lambda: urllib.request.urlopen(base + "/status", timeout=2).status == 200, 30,
                 "alertmanager to start")

        def post(severity: str, service: str) -> None:
            body = json.dumps([{"labels": {"alertname": "ChatbotAvailabilityBudgetBurn", "service": service,
                                           "severity": severity, "slo": "availability"}}]).encode()
            request = urllib.request.Request(base + "/alerts", data=body,
                                             headers={"Content-Type": "application/json"})
            assert urllib.request.urlopen(request, timeout=5).status == 200

        post("page", "support")
        post("ticket", "support")
        post("ticket", "sales")  # no page for sales: its ticket must stay active

        def states() -> dict[tuple[str, str], str] | None:
            alerts = json.load(urllib.request.urlopen(base + "/alerts", timeout=5))
            found = {(a["labels"]["service"], a["labels"]["severity"]): a["status"]["state"] for a in alerts}
            return found if len(found) == 3 and "unprocessed" not in found.values() else None

        found = wait_for(states, 30, "alertmanager to process the alerts")
        assert found == {("support", "page"): "active", ("support", "ticket"): "suppressed",
                         ("sales", "ticket"): "active"}
    finally:
        stop_process(proc)
