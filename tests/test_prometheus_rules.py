"""prometheus/: config and rules pass promtool, the rule unit tests pass, every alert is documented."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from tools import PROMETHEUS_DIR, ROOT, promtool, run

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
TEST_FILES = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
ALERTS_DOC = ROOT / "docs" / "alerts.md"


def _alert_rules() -> list[dict[str, Any]]:
    rules = []
    for path in RULE_FILES:
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


def _github_anchors(markdown: str) -> set[str]:
    anchors = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*$", markdown, re.M):
        anchor = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        anchors.add(anchor)
    return anchors


def test_promtool_check_config_passes() -> None:
    result = run([promtool(), "check", "config", str(PROMETHEUS_DIR / "prometheus.yml")])
    assert result.returncode == 0, result.stdout + result.stderr
    # check config follows rule_files: every rule file must be listed, or it is silently not loaded.
    for path in RULE_FILES:
        assert f"rules/{path.name}" in result.stdout, f"{path.name} is not in prometheus.yml rule_files"


def test_promtool_check_rules_passes() -> None:
    result = run([promtool(), "check", "rules", *map(str, RULE_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(RULE_FILES)


def test_promtool_rule_unit_tests_pass() -> None:
    result = run([promtool(), "test", "rules", *map(str, TEST_FILES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout


def test_promtool_unit_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    # Guards the wrapper above: a test that expects the fallback alert at exactly 5 fallbacks (the
    # threshold is "more than 5") must fail, so a passing run means the thresholds hold.
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "wrong_test.yml").write_text(yaml.safe_dump({
        "rule_files": ["../rules/thresholds.yml", "../rules/chatbot_recording.yml",
                       "../rules/chatbot_alerts.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{
                "series": 'chatbot_fallbacks_total{service="support",source="web",reason="x"}',
                "values": "0x15 5x20",
            }],
            "alert_rule_test": [{
                "eval_time": "18m", "alertname": "ChatbotFallbackSpike",
                "exp_alerts": [{"exp_labels": {"severity": "page", "service": "support"}}],
            }],
        }],
    }))
    result = run([promtool(), "test", "rules", str(tmp_path / "tests" / "wrong_test.yml")])
    assert result.returncode != 0
    assert "ChatbotFallbackSpike" in result.stdout + result.stderr


def test_promtool_check_rules_rejects_a_broken_rule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: sum(rate(x[5m]\n")
    result = run([promtool(), "check", "rules", str(bad)])
    assert result.returncode != 0
    assert "bad.yml" in result.stdout + result.stderr


def test_every_alert_has_severity_annotations_and_a_documented_runbook() -> None:
    anchors = _github_anchors(ALERTS_DOC.read_text())
    rules = _alert_rules()
    assert len({r["alert"] for r in rules}) >= 14
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert "$value" in notes["summary"] + notes["description"] or "absent" in rule["expr"], \
            f"{name}: the message must carry the figure"
        url = notes["runbook_url"]
        assert url.endswith("docs/alerts.md#" + name.lower()), url
        assert name.lower() in anchors, f"docs/alerts.md has no section for {name}"


def test_every_alert_has_a_firing_and_a_silent_unit_test_case() -> None:
    """Each alert fires in some case and, in the same tests, some subject (service or instance) or
    some evaluation time stays silent: the 'just under the threshold' cases."""
    fires: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for case in yaml.safe_load(path.read_text())["tests"]:
            subjects = set()
            for series in case["input_series"]:
                subjects.update(re.findall(r'(?:service|instance)="([^"]+)"', series["series"]))
            for check in case.get("alert_rule_test", []):
                name, expected = check["alertname"], check.get("exp_alerts") or []
                if not expected:
                    silent.add(name)
                    continue
                fires.add(name)
                firing = {a["exp_labels"].get("instance", a["exp_labels"].get("service")) for a in expected}
                if subjects - firing:
                    silent.add(name)
    names = {rule["alert"] for rule in _alert_rules()}
    assert names - fires == set(), "alerts never shown firing"
    assert names - silent == set(), "alerts never shown staying silent"


def test_alerts_doc_sections_match_the_rules() -> None:
    """No stale runbook sections: every ## section of docs/alerts.md names an existing alert."""
    text = ALERTS_DOC.read_text()
    sections = re.findall(r"^## (Chatbot\w+)\s*$", text, re.M)
    names = {rule["alert"] for rule in _alert_rules()}
    # Grafana-managed alert rules (queries on Postgres) have their runbook sections here too.
    for path in sorted((ROOT / "grafana" / "provisioning" / "alerting").glob("*_rules.yml")):
        names |= {r["title"] for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]}
    assert set(sections) == names
