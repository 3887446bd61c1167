"""Every dashboard query and alert-rule query, expanded the way Grafana expands it, against real data.

PromQL targets run on a real Prometheus (the shipped rules loaded, 1 s scrapes) scraping a real
processor fed by the demo's simulated chatbot; SQL targets run on the real Postgres as the read-only
role otel_chatbot_reader. Each must parse and return series/rows. No Grafana binary is involved:
tests/grafana_support.py reproduces its variable interpolation and Postgres macros.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
import yaml
from grafana_stack import (
    CLUSTERS_LATEST,
    JUDGE_SCORES,
    SCRAPE_S,
    insert_quality_rows,
    otlp_request,
    past_conversations,
    post_otlp,
    prometheus_api,
    refuse_some,
    run_demo_traffic,
    wait_judged,
    wait_scraped,
    write_prometheus_config,
)
from grafana_support import (
    ALL,
    TimeRange,
    builtins,
    dashboard_targets,
    expand_postgres_macros,
    interpolate,
    round_interval,
)
from judge_support import scores
from llm_server import LLMServer, Reply
from psycopg import sql as pgsql
from server_support import make_processor
from tools import ROOT, free_port, prometheus, stop_process, wait_for

pytestmark = pytest.mark.slow

GRAFANA = ROOT / "grafana"
DASHBOARDS = {p.stem: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}
RULES = yaml.safe_load((GRAFANA / "provisioning" / "alerting" / "quality_rules.yml").read_text())
ALERT_RULES = {r["title"]: r for g in RULES["groups"] for r in g["rules"]}


def _kind(target: dict[str, Any]) -> str:
    return str(target["datasource"]["uid"])


def _cases(kind: str) -> list[Any]:
    return [pytest.param(name, panel["id"], target["refId"], id=f"{name}-{panel['id']}{target['refId']}")
            for name, board in DASHBOARDS.items() for panel, target in dashboard_targets(board)
            if _kind(target) == kind]


@dataclass
class Stack:
    prom_port: int
    database_url: str
    prom_range: TimeRange
    sql_range: TimeRange
    session: str
    refused_requests: int
    options: dict[tuple[str, str], list[str]] = field(default_factory=dict)

    def reader(self) -> psycopg.Connection[Any]:
        conn = psycopg.connect(self.database_url)
        conn.execute("SET ROLE otel_chatbot_reader")
        return conn


@pytest.fixture(scope="module")
def stack(pg_admin_url: str, _migrated_template: str,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = f"t_grafana_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(pgsql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            pgsql.Identifier(name), pgsql.Identifier(_migrated_template)))
    head, _, query = pg_admin_url.partition("?")
    url = f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    tmp = tmp_path_factory.mktemp("grafana-stack")
    judge = LLMServer().start()
    judge.respond_with(lambda _body: Reply(scores(**JUDGE_SCORES)))
    # label_cap 4 folds the fifth channel into "other"; a one-span queue makes concurrent requests
    # wait; the online judge scores every new turn.
    processor = make_processor(url, label_cap=4, queue_max_spans=1, judge_sample_rate=1.0,
                               judge_base_url=judge.base_url, judge_queue_max=10_000)
    prom: subprocess.Popen[bytes] | None = None
    try:
        processor.start()
        prom_port = free_port()
        write_prometheus_config(tmp / "prometheus.yml", processor.metrics_address)
        with (tmp / "prometheus.log").open("wb") as log:
            prom = subprocess.Popen(
                [prometheus(), f"--config.file={tmp / 'prometheus.yml'}",
                 f"--storage.tsdb.path={tmp / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        prom_started = datetime.now(UTC)
        wait_for(lambda: prometheus_api(prom_port, "query", query="up")["data"]["result"], 30,
                 "Prometheus to scrape the processor")
        host, port = processor.http_address
        now = datetime.now(UTC)
        assert post_otlp(f"http://{host}:{port}", otlp_request(past_conversations(now))) == 200
        run_demo_traffic(processor, seconds=10.0, rate=30.0, seed=11)
        with psycopg.connect(url) as conn:
            insert_quality_rows(conn, datetime.now(UTC))
        refused = refuse_some(processor)
        judged = wait_judged(url)
        with psycopg.connect(url) as conn:
            turns = conn.execute("SELECT count(*) FROM chat_turns").fetchone()
            session = conn.execute(
                "SELECT session_id FROM chat_turns WHERE session_id LIKE 'sess-%%' GROUP BY 1"
                " ORDER BY count(*) DESC, 1 LIMIT 1").fetchone()
        assert turns is not None and session is not None
        wait_scraped(prom_port, turns[0], judged)
        end = datetime.now(UTC)
        yield Stack(prom_port, url, TimeRange(prom_started, end), TimeRange(end - timedelta(days=2), end),
                    session[0], refused)
    finally:
        if prom is not None:
            stop_process(prom)
        processor.shutdown()
        judge.shutdown()
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(pgsql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(pgsql.Identifier(name)))


# --- variables --------------------------------------------------------------------------------------------
def _variable_options(stack: Stack, board: str) -> dict[str, list[str]]:
    """Every query variable's options, from its own query (Prometheus label values or SQL rows)."""
    options: dict[str, list[str]] = {}
    for variable in DASHBOARDS[board]["templating"]["list"]:
        key = (board, variable["name"])
        if key not in stack.options:
            stack.options[key] = _options_of(stack, variable)
        options[variable["name"]] = stack.options[key]
    return options


def _options_of(stack: Stack, variable: dict[str, Any]) -> list[str]:
    if variable["type"] == "textbox":
        return [stack.session]
    if variable["datasource"]["uid"] == "prometheus":
        query = variable["query"]["query"].removeprefix("label_values(").removesuffix(")")
        metric, label = query.rsplit(", ", 1)
        metric = metric.replace("$service", ".*")
        values = prometheus_api(stack.prom_port, f"label/{label}/values", **{"match[]": metric})["data"]
        return [str(v) for v in values]
    with stack.reader() as conn:
        return [str(r[0]) for r in conn.execute(variable["query"])]


def _selection(board: str, stack: Stack, pick: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    variables = {v["name"]: v for v in DASHBOARDS[board]["templating"]["list"]}
    selected: dict[str, Any] = {}
    for name, variable in variables.items():
        if variable["type"] == "textbox":
            selected[name] = stack.session
        elif pick == "all":
            selected[name] = ALL
        else:  # two values of a multi-value variable (Grafana sends a list)
            options = stack.options[(board, name)]
            selected[name] = options[:2] if variable.get("multi") else ALL
    return variables, selected


def test_every_variable_query_returns_values(stack: Stack) -> None:
    for board in DASHBOARDS:
        for name, values in _variable_options(stack, board).items():
            assert values, f"{board}: variable {name} has no values"
    assert "support-bot-demo" in stack.options[("overview", "service")]
    assert set(stack.options[("quality", "channel")]) == {"website", "whatsapp", "instagram", "slack", "api"}


# --- PromQL ----------------------------------------------------------------------------------------------
def _panel_target(board: str, panel_id: int, ref: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return next((p, t) for p, t in dashboard_targets(DASHBOARDS[board])
                if p["id"] == panel_id and t["refId"] == ref)


@pytest.mark.parametrize(("board", "panel_id", "ref"), _cases("prometheus"))
def test_promql_target_returns_series(stack: Stack, board: str, panel_id: int, ref: str) -> None:
    panel, target = _panel_target(board, panel_id, ref)
    options = _variable_options(stack, board)
    variables, selected = _selection(board, stack, "all")
    time_range = stack.prom_range
    interval = max(round_interval(time_range.seconds / 1000), "1s", key=lambda s: _seconds(s))
    expr = interpolate(target["expr"], variables, selected, options,
                       builtins(time_range, interval, SCRAPE_S), "prometheus")
    assert not re.search(r"\$\{?\w", expr), expr
    if target.get("instant"):
        data = prometheus_api(stack.prom_port, "query", query=expr, time=f"{time_range.end.timestamp():.3f}")
    else:
        data = prometheus_api(stack.prom_port, "query_range", query=expr,
                              start=f"{time_range.start.timestamp():.3f}",
                              end=f"{time_range.end.timestamp():.3f}",
                              step=f"{_seconds(interval):g}")
    assert data["status"] == "success"
    assert data["data"]["result"], f"{board} / {panel['title']} / {ref}: no series for {expr}"


def _seconds(interval: str) -> float:
    from grafana_support import duration_seconds

    return duration_seconds(interval)


# --- SQL -------------------------------------------------------------------------------------------------
def _run_sql(stack: Stack, board: str, raw: str, pick: str) -> list[tuple[Any, ...]]:
    options = _variable_options(stack, board)
    variables, selected = _selection(board, stack, pick)
    time_range = stack.sql_range
    interval = max(round_interval(time_range.seconds / 1000), "1m", key=_seconds)  # datasource minimum 1m
    text = interpolate(raw, variables, selected, options, builtins(time_range, interval, 60), "postgres")
    text = expand_postgres_macros(text, time_range)
    assert not re.search(r"\$\{?\w", text), text
    with stack.reader() as conn:
        return conn.execute(text).fetchall()  # type: ignore[call-overload, no-any-return]


@pytest.mark.parametrize(("board", "panel_id", "ref"), _cases("postgres"))
def test_sql_target_returns_rows_as_the_reader_role(stack: Stack, board: str, panel_id: int,
                                                    ref: str) -> None:
    panel, target = _panel_target(board, panel_id, ref)
    rows = _run_sql(stack, board, target["rawSql"], "all")
    assert rows, f"{board} / {panel['title']}: no rows"
    if target["format"] == "time_series":
        assert all(isinstance(r[0], (int, float, datetime)) or r[0] is not None for r in rows)
    # Two values of each multi-value variable: Grafana's quoted list must still be valid SQL.
    _run_sql(stack, board, target["rawSql"], "two")


def test_conversation_drilldown_shows_the_whole_session_in_order(stack: Stack) -> None:
    board = DASHBOARDS["conversations"]
    turns_panel = next(p for p in board["panels"] if p["title"].endswith("turn by turn"))
    rows = _run_sql(stack, "conversations", turns_panel["targets"][0]["rawSql"], "all")
    with stack.reader() as conn:
        expected = conn.execute("SELECT count(*) FROM chat_turns WHERE session_id = %s",
                                (stack.session,)).fetchone()
    assert expected is not None and len(rows) == expected[0] >= 2
    assert [r[1] for r in rows] == list(range(1, len(rows) + 1))
    assert [r[0] for r in rows] == sorted(r[0] for r in rows)


def test_processor_refused_some_spans(stack: Stack) -> None:
    assert stack.refused_requests >= 1


# --- alert rules -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("title", sorted(ALERT_RULES))
def test_alert_rule_query_returns_rows_as_the_reader_role(stack: Stack, title: str) -> None:
    rule = ALERT_RULES[title]
    query = next(d for d in rule["data"] if d["refId"] == "A")
    assert query["datasourceUid"] == "postgres"
    start = stack.sql_range.end - timedelta(seconds=query["relativeTimeRange"]["from"])
    text = expand_postgres_macros(query["model"]["rawSql"], TimeRange(start, stack.sql_range.end))
    with stack.reader() as conn:
        rows = conn.execute(text).fetchall()  # type: ignore[call-overload]
    assert rows, f"{title}: no rows"
    condition = next(d for d in rule["data"] if d["refId"] == rule["condition"])["model"]
    evaluator = condition["conditions"][0]["evaluator"]
    firing = {r[:-1] for r in rows if _breaches(float(r[-1]), evaluator["type"], evaluator["params"][0])}
    if title == "ChatbotJudgeScoresLow":
        assert {r[1]: float(r[2]) for r in rows} == JUDGE_SCORES
        assert firing == {("support-bot-demo", "clarity")}
    if title == "ChatbotFailureClusterSpike":
        growth = {r[0]: round(float(r[1]), 3) for r in rows}
        assert growth == {label: round(size / previous if previous else size, 3)
                          for _, label, size, previous in CLUSTERS_LATEST}
        assert firing == {("refund double charge",), ("password reset",)}
    if title == "ChatbotThumbsDownDaily":
        assert all(0.0 <= float(r[2]) <= 1.0 for r in rows)


def _breaches(value: float, kind: str, limit: float) -> bool:
    return value > limit if kind == "gt" else value < limit


def test_alert_rules_link_to_existing_panels() -> None:
    for title, rule in ALERT_RULES.items():
        board = next(b for b in DASHBOARDS.values() if b["uid"] == rule["dashboardUid"])
        ids = {p["id"]: p for p in board["panels"]}
        assert rule["panelId"] in ids, title
        assert rule["annotations"]["runbook_url"].endswith("#" + title.lower())
        # No "$" in annotations: the provisioning loader would take it for an environment variable.
        assert not any("$" in text for text in rule["annotations"].values()), title
