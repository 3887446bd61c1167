""".github/workflows/stack.yml (runs the compose stack on a hosted runner; Docker is not available here):
valid for GitHub's workflow schema, its shell steps parse, and what it checks matches the compose file
and the provisioned dashboards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from compose_support import resolved_model
from tools import ROOT

WORKFLOW = ROOT / ".github/workflows/stack.yml"


def _check_workflow(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(WORKFLOW.read_text())
    return data


def _steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = workflow["jobs"]["compose"]["steps"]
    return steps


def test_workflow_matches_the_github_workflow_schema(tmp_path: Path) -> None:
    done = _check_workflow(WORKFLOW)
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "stack.yml"
    broken.write_text(WORKFLOW.read_text().replace("runs-on:", "run-on:"))
    assert _check_workflow(broken).returncode != 0


def test_every_shell_step_parses(workflow: dict[str, Any]) -> None:
    for step in _steps(workflow):
        if "run" in step:
            done = subprocess.run(["bash", "-n", "-c", step["run"]], capture_output=True, text=True,
                                  check=False)
            assert done.returncode == 0, (step.get("name"), done.stderr)


def test_workflow_brings_the_stack_up_and_waits(workflow: dict[str, Any]) -> None:
    runs = [step.get("run", "") for step in _steps(workflow)]
    assert "docker compose --profile demo up --build --detach --wait --wait-timeout 300" in runs
    assert any("down --volumes" in r for r in runs)
    assert workflow["jobs"]["compose"]["timeout-minutes"] <= 30
    # The .env it writes defines every variable the compose file requires.
    env_step = next(s["run"] for s in _steps(workflow) if s.get("name", "").startswith("Write a .env"))
    written = set(re.findall(r'echo "([A-Z_]+)=', env_step))
    required = set(re.findall(r"\$\{([A-Z_]+):\?", (ROOT / "docker-compose.yml").read_text()))
    compose_secrets = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["secrets"]
    secrets = {s["environment"] for s in compose_secrets.values()}
    assert written == required | secrets


def test_one_shot_services_are_adopted_so_wait_exits_zero() -> None:
    """`up --wait` treats an exited container as a failure unless a running service depends on it with
    service_completed_successfully."""
    services = resolved_model(profiles=("demo",))["services"]
    one_shots = {name for name, s in services.items() if s.get("restart") == "no" and name != "demo"}
    assert one_shots == {"migrate", "collector-queue-owner"}
    for name in one_shots:
        adopters = [n for n, s in services.items() if (s.get("depends_on") or {}).get(name, {}).get(
            "condition") == "service_completed_successfully"]
        assert adopters, name


def test_checked_urls_are_the_published_ports(workflow: dict[str, Any]) -> None:
    services = resolved_model(profiles=("demo",))["services"]
    published = {name: {int(p["published"]) for p in s.get("ports", [])} for name, s in services.items()}
    text = "\n".join(step.get("run", "") for step in _steps(workflow))
    assert set(map(int, re.findall(r"http://127\.0\.0\.1:(\d+)/api/", text))) == \
        published["grafana"] | published["prometheus"]
    assert '"datasource":{"uid":"postgres"}' in text


def test_checked_dashboard_is_provisioned(workflow: dict[str, Any]) -> None:
    text = "\n".join(step.get("run", "") for step in _steps(workflow))
    uid, title = "otel-chatbot-overview", "otel-chatbot / Overview"
    assert f"/api/dashboards/uid/{uid}" in text and title in text
    dashboards = {d["uid"]: d["title"] for d in
                  (json.loads(p.read_text()) for p in (ROOT / "grafana/dashboards").glob("*.json"))}
    # The dashboards arrive with the Grafana part of the stack; once any exist, the checked one must.
    assert not dashboards or dashboards.get(uid) == title, dashboards
