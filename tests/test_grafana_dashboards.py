"""The provisioned Grafana files: generated and up to date, well-formed, consistent with each other and
with the Prometheus rules; and the reproduction of Grafana's query expansion the query tests rely on."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_support import (
    ALL,
    TimeRange,
    builtins,
    dashboard_targets,
    expand_postgres_macros,
    format_value,
    interpolate,
    rfc3339nano,
    round_interval,
)
from tools import PROMETHEUS_DIR, ROOT

GRAFANA = ROOT / "grafana"
PROVISIONING = GRAFANA / "provisioning"
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
EXPECTED_UIDS = {
    "overview": "otel-chatbot-overview", "quality": "otel-chatbot-quality",
    "engagement": "otel-chatbot-engagement", "cost": "otel-chatbot-cost",
    "security": "otel-chatbot-security", "conversations": "otel-chatbot-conversations",
    "processor": "otel-chatbot-processor",
}
UNITS = {"short", "none", "s", "reqps", "ops", "percentunit", "currencyUSD", "dateTimeAsIso"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def test_generated_files_are_up_to_date() -> None:
    result = subprocess.run([sys.executable, str(GRAFANA / "build.py"), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr


def test_check_names_a_stale_file(tmp_path: Path) -> None:
    copy = tmp_path / "grafana"
    shutil.copytree(GRAFANA, copy, ignore=shutil.ignore_patterns("__pycache__"))
    stale = copy / "dashboards" / "cost.json"
    stale.write_text(stale.read_text().replace("Spend in range", "Spent"))
    result = subprocess.run([sys.executable, str(copy / "build.py"), "--check"], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "grafana/dashboards/cost.json" in result.stderr and "quality.json" not in result.stderr


def test_dashboards_have_their_stable_uids() -> None:
    assert {name: board["uid"] for name, board in DASHBOARDS.items()} == EXPECTED_UIDS
    for board in DASHBOARDS.values():
        assert board["tags"] == ["otel-chatbot"] and board["title"].startswith("otel-chatbot / ")
        assert board["links"][0]["type"] == "dashboards" and board["links"][0]["tags"] == ["otel-chatbot"]


def test_every_panel_has_a_title_a_unit_and_a_datasource() -> None:
    for name, board in DASHBOARDS.items():
        ids = [p["id"] for p in board["panels"]]
        assert ids == list(range(1, len(ids) + 1)), name
        for panel in board["panels"]:
            where = f"{name} / {panel.get('title')!r}"
            assert panel["title"].strip() and panel["description"].strip(), where
            assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, where
            assert panel["datasource"]["uid"] in ("prometheus", "postgres"), where
            assert panel["targets"], where
            for target in panel["targets"]:
                assert target["datasource"] == panel["datasource"], where
                assert (target.get("expr") or target.get("rawSql") or "").strip(), where
                # PromQL: a table panel wants one row per series, the others one frame per series.
                # SQL: rows as a time series only for time-series panels.
                table = panel["type"] == "table" if "expr" in target else panel["type"] != "timeseries"
                assert target["format"] == ("table" if table else "time_series"), where


def test_panels_fit_the_grid_without_overlap() -> None:
    for name, board in DASHBOARDS.items():
        cells: set[tuple[int, int]] = set()
        for panel in board["panels"]:
            pos = panel["gridPos"]
            assert pos["x"] + pos["w"] <= 24, (name, panel["title"])
            area = {(x, y) for x in range(pos["x"], pos["x"] + pos["w"])
                    for y in range(pos["y"], pos["y"] + pos["h"])}
            assert not cells & area, (name, panel["title"])
            cells |= area


def test_template_variables() -> None:
    names = {name: [v["name"] for v in board["templating"]["list"]] for name, board in DASHBOARDS.items()}
    assert names == {
        "overview": ["service", "source", "model"], "quality": ["service", "channel", "model"],
        "engagement": ["service", "channel"], "cost": ["service", "model"], "security": ["service", "source"],
        "conversations": ["service", "channel", "session"], "processor": ["instance"],
    }
    for board in DASHBOARDS.values():
        for variable in board["templating"]["list"]:
            if variable["type"] != "query":
                continue
            assert variable["includeAll"] is True
            if variable["datasource"]["uid"] == "prometheus":
                assert variable["allValue"] == ".*" and variable["multi"] is False
            else:
                assert "allValue" not in variable and variable["multi"] is True


def _links(board: dict[str, Any]) -> list[str]:
    urls = [link["url"] for p in board["panels"] for link in p["links"]]
    for panel in board["panels"]:
        for override in panel["fieldConfig"]["overrides"]:
            for prop in override["properties"]:
                if prop["id"] == "links":
                    urls += [link["url"] for link in prop["value"]]
    return urls


def test_links_point_at_existing_dashboards_and_sessions_drill_down() -> None:
    uids = set(EXPECTED_UIDS.values())
    drilldowns = 0
    for board in DASHBOARDS.values():
        for url in _links(board):
            match = re.match(r"^/d/([\w-]+)/[\w-]+\?\$\{__url_time_range\}(&.*)?$", url)
            assert match and match.group(1) in uids, url
            if "var-session=${__value.raw}" in url:
                assert match.group(1) == EXPECTED_UIDS["conversations"]
                drilldowns += 1
    # Conversations (recent turns), Quality (worst turns), Engagement (abandoned conversations).
    assert drilldowns == 3
    overview_links = {u.split("/")[2] for u in _links(DASHBOARDS["overview"])}
    assert overview_links == {EXPECTED_UIDS[n] for n in ("quality", "cost", "conversations")}


def _recorded_names() -> set[str]:
    names = set()
    for path in (PROMETHEUS_DIR / "rules").glob("*.yml"):
        for group in _yaml(path)["groups"]:
            names |= {rule["record"] for rule in group["rules"] if "record" in rule}
    return names


def test_dashboards_read_recorded_series_that_the_rules_define() -> None:
    recorded = _recorded_names()
    used = {m for board in DASHBOARDS.values() for _, t in dashboard_targets(board)
            for m in re.findall(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b|\bchatbot_(?:threshold|budget):\w+",
                                t.get("expr", ""))}
    assert used and used <= recorded, used - recorded
    thresholds = {m for m in used if m.startswith(("chatbot_threshold:", "chatbot_budget:"))}
    assert len(thresholds) == 9, thresholds


def test_datasources_provisioning() -> None:
    doc = _yaml(PROVISIONING / "datasources" / "datasources.yml")
    by_uid = {d["uid"]: d for d in doc["datasources"]}
    assert set(by_uid) == {"prometheus", "postgres", "alertmanager"}
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["alertmanager"]["url"] == "http://alertmanager:9093"
    postgres = by_uid["postgres"]
    assert postgres["type"] == "grafana-postgresql-datasource" and postgres["url"] == "postgres:5432"
    assert postgres["user"] == "otel_chatbot_reader" and postgres["jsonData"]["database"] == "otel_chatbot"
    assert postgres["secureJsonData"]["password"] == "${OTEL_CHATBOT_READER_PASSWORD}"
    types = {d["uid"]: d["type"] for d in doc["datasources"]}
    for board in DASHBOARDS.values():
        for panel in board["panels"]:
            assert types[panel["datasource"]["uid"]] == panel["datasource"]["type"]


def test_laptop_provisioning_matches_the_stack_and_the_printed_settings() -> None:
    stack = {d["uid"]: d for d in _yaml(PROVISIONING / "datasources" / "datasources.yml")["datasources"]}
    laptop_file = GRAFANA / "laptop" / "datasources" / "datasources.yml"
    laptop = {d["uid"]: d for d in _yaml(laptop_file)["datasources"]}
    assert {uid: d["type"] for uid, d in laptop.items()} == {uid: d["type"] for uid, d in stack.items()}
    postgres = laptop["postgres"]
    assert postgres["url"] == "127.0.0.1:5433" and postgres["jsonData"]["database"] == "postgres"
    assert postgres["user"] == "otel_chatbot_reader"
    assert postgres["secureJsonData"]["password"] == "${OTEL_CHATBOT_READER_PASSWORD}"
    provider = _yaml(GRAFANA / "laptop" / "dashboards" / "otel-chatbot.yml")["providers"][0]
    assert provider["options"]["path"] == "${OTEL_CHATBOT_GRAFANA_DIR}/dashboards"
    readme = (ROOT / "README.md").read_text()
    assert "--db-listen 127.0.0.1:5433" in readme and "GF_PATHS_PROVISIONING=$PWD/grafana/laptop" in readme


def test_dashboard_provider_and_alerting_provisioning() -> None:
    provider = _yaml(PROVISIONING / "dashboards" / "otel-chatbot.yml")["providers"][0]
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert provider["folder"] == "otel-chatbot"
    contact = _yaml(PROVISIONING / "alerting" / "contact_points.yml")
    receiver = contact["contactPoints"][0]["receivers"][0]
    assert receiver["type"] == "prometheus-alertmanager"
    assert receiver["settings"]["url"] == "http://alertmanager:9093"
    assert contact["policies"][0]["receiver"] == contact["contactPoints"][0]["name"]
    rules = _yaml(PROVISIONING / "alerting" / "quality_rules.yml")["groups"][0]["rules"]
    assert [r["title"] for r in rules] == ["ChatbotThumbsDownDaily", "ChatbotJudgeScoresLow",
                                          "ChatbotFailureClusterSpike"]
    for rule in rules:
        assert rule["labels"]["severity"] in ("page", "ticket")
        assert rule["data"][0]["datasourceUid"] == "postgres"


def test_alerts_doc_names_every_dashboard_and_grafana_rule() -> None:
    text = (ROOT / "docs" / "alerts.md").read_text()
    for uid in EXPECTED_UIDS.values():
        assert uid in text
    for rule in _yaml(PROVISIONING / "alerting" / "quality_rules.yml")["groups"][0]["rules"]:
        assert f"## {rule['title']}" in text


# --- the reproduction of Grafana's expansion ----------------------------------------------------------------
RANGE = TimeRange(datetime(2026, 3, 1, 10, 0, tzinfo=UTC), datetime(2026, 3, 1, 16, 0, 0, 250000, tzinfo=UTC))


def test_rfc3339nano_trims_like_go() -> None:
    assert rfc3339nano(RANGE.start) == "2026-03-01T10:00:00Z"
    assert rfc3339nano(RANGE.end) == "2026-03-01T16:00:00.25Z"


@pytest.mark.parametrize(("macro", "expanded"), [
    ("$__timeFilter(t.started_at)",
     "t.started_at BETWEEN '2026-03-01T10:00:00Z' AND '2026-03-01T16:00:00.25Z'"),
    ("$__timeFrom()", "'2026-03-01T10:00:00Z'"),
    ("$__timeTo()", "'2026-03-01T16:00:00.25Z'"),
    ("$__time(given_at)", 'given_at AS "time"'),
    ("$__timeEpoch(given_at)", 'extract(epoch from given_at) as "time"'),
    ("$__timeGroup(created_at, '5m')", "floor(extract(epoch from created_at)/300)*300"),
    ("$__timeGroupAlias(created_at, 1h)", 'floor(extract(epoch from created_at)/3600)*3600 AS "time"'),
    ("$__timeGroup(created_at, 1m), x", 'floor(extract(epoch from created_at)/60)*60 AS "time", x'),
    ("$__unixEpochFilter(ts)", "ts >= 1772359200 AND ts <= 1772380800"),
])
def test_postgres_macros_expand_like_grafana(macro: str, expanded: str) -> None:
    assert expand_postgres_macros(macro, RANGE) == expanded


def test_unknown_macro_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown macro"):
        expand_postgres_macros("$__nope(x)", RANGE)


def test_variable_formats_like_grafana() -> None:
    multi = {"multi": True, "includeAll": True}
    single = {"multi": False, "includeAll": False}
    assert format_value(["web", "o'brien"], multi, None, "postgres") == "'web','o''brien'"
    assert format_value("web", multi, None, "postgres") == "'web'"
    assert format_value("o'brien", single, None, "postgres") == "o''brien"
    assert format_value(["a.b", "c"], multi, "regex", "postgres") == "(a\\.b|c)"
    assert format_value(["a.b"], multi, "regex", "postgres") == "a\\.b"
    assert format_value(["a", "b"], multi, None, "prometheus") == "(a|b)"
    variables = {"service": {"multi": False, "includeAll": True, "allValue": ".*"}, "channel": multi}
    text = interpolate('x{service=~"$service"} IN ($channel) ${service:raw} [[channel]]', variables,
                       {"service": ALL, "channel": ALL}, {"channel": ["api", "web"]}, {}, "postgres")
    assert text == "x{service=~\".*\"} IN ('api','web') .* 'api','web'"
    with pytest.raises(KeyError, match="undefined variable"):
        interpolate("$nope", {}, {}, {}, {}, "postgres")


def test_builtin_intervals() -> None:
    values = builtins(RANGE, "2s", scrape_interval_s=1.0)
    assert values["__rate_interval"] == "4000ms" and values["__range"] == "21600s"
    assert builtins(RANGE, "1m", scrape_interval_s=15.0)["__rate_interval"] == "75000ms"
    assert round_interval(21600 / 1000) == "20s" and round_interval(172800 / 1000) == "2m"
