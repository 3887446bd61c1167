"""Building blocks of the dashboards: datasources, targets, panels, variables, a grid layout.

Plain dicts in Grafana's dashboard JSON model (schemaVersion 39), so the output is exactly what
Grafana stores and what the tests read back. Panel ids and refIds are assigned in order, so they stay
stable as long as panels are not reordered (alert rules link to a panel by its id).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

PROMETHEUS: JSON = {"type": "prometheus", "uid": "prometheus"}
POSTGRES: JSON = {"type": "grafana-postgresql-datasource", "uid": "postgres"}
TAG = "otel-chatbot"
SCHEMA_VERSION = 39
GRID_WIDTH = 24

# Stable dashboard uids: links, alert rules and docs refer to them.
UIDS = {
    "overview": "otel-chatbot-overview",
    "quality": "otel-chatbot-quality",
    "engagement": "otel-chatbot-engagement",
    "cost": "otel-chatbot-cost",
    "security": "otel-chatbot-security",
    "conversations": "otel-chatbot-conversations",
    "processor": "otel-chatbot-processor",
}


def dashboard_url(name: str, query: str = "") -> str:
    """A relative link to one of our dashboards, keeping the time range."""
    uid = UIDS[name]
    extra = f"&{query}" if query else ""
    return f"/d/{uid}/{uid}?${{__url_time_range}}{extra}"


# --- targets ---------------------------------------------------------------------------------------
def prom(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> JSON:
    """A PromQL target; ``instant`` evaluates at the range's end; ``table`` for table panels (one row
    per series) instead of one frame per series (what stat and bar gauge panels reduce)."""
    target: JSON = {"datasource": PROMETHEUS, "editorMode": "code", "expr": " ".join(expr.split()),
                    "legendFormat": legend or "__auto", "range": not (instant or table),
                    "instant": instant or table, "format": "table" if table else "time_series"}
    return target


def sql(raw: str, *, table: bool = False) -> JSON:
    """A Postgres target in code mode; ``table`` for rows, else a time series (a "time" column)."""
    text = "\n".join(line.rstrip() for line in raw.strip().splitlines())
    return {"datasource": POSTGRES, "editorMode": "code", "rawQuery": True, "rawSql": text,
            "format": "table" if table else "time_series"}


# --- variables --------------------------------------------------------------------------------------
def prom_variable(name: str, label: str, metric: str, *, selector: str = "") -> JSON:
    """A single-select Prometheus label variable; All is the regex ``.*``."""
    definition = f"label_values({metric}{selector}, {name})"
    return {"type": "query", "name": name, "label": label, "datasource": PROMETHEUS,
            "definition": definition, "query": {"query": definition, "refId": "PrometheusVariableQuery"},
            "includeAll": True, "allValue": ".*", "multi": False, "refresh": 2, "sort": 1,
            "current": {"selected": True, "text": "All", "value": "$__all"}}


def sql_variable(name: str, label: str, query: str) -> JSON:
    """A multi-value Postgres variable; All expands to every value, quoted (use ``IN ($name)``)."""
    return {"type": "query", "name": name, "label": label, "datasource": POSTGRES,
            "definition": query, "query": query, "includeAll": True, "multi": True, "refresh": 2,
            "sort": 1, "current": {"selected": True, "text": ["All"], "value": ["$__all"]}}


def textbox(name: str, label: str, default: str = "") -> JSON:
    return {"type": "textbox", "name": name, "label": label, "query": default,
            "current": {"selected": False, "text": default, "value": default}}


# --- panels -----------------------------------------------------------------------------------------
def threshold_steps(*steps: tuple[float | None, str]) -> JSON:
    return {"mode": "absolute", "steps": [{"color": color, "value": value} for value, color in steps]}


_DEFAULT_STEPS = threshold_steps((None, "green"))


def threshold_line(legend: str = "alert threshold") -> JSON:
    """Override drawing the series named ``legend`` as a dashed red line (the alert's threshold)."""
    return {"matcher": {"id": "byName", "options": legend},
            "properties": [{"id": "color", "value": {"fixedColor": "red", "mode": "fixed"}},
                           {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
                           {"id": "custom.fillOpacity", "value": 0}]}


def column(name: str, unit: str | None = None, *, link: JSON | None = None, width: int | None = None,
           display: str | None = None) -> JSON:
    """Override for one table column (by its name): unit, a data link, width, cell display mode."""
    props: list[JSON] = []
    if unit is not None:
        props.append({"id": "unit", "value": unit})
    if link is not None:
        props.append({"id": "links", "value": [link]})
    if width is not None:
        props.append({"id": "custom.width", "value": width})
    if display is not None:
        props.append({"id": "custom.cellOptions", "value": {"type": display}})
    return {"matcher": {"id": "byName", "options": name}, "properties": props}


@dataclass
class Panel:
    kind: str  # timeseries, stat, table, barchart, bargauge, piechart
    title: str
    description: str
    unit: str
    targets: list[JSON]
    width: int = 12
    height: int = 8
    steps: JSON | None = None
    overrides: list[JSON] = field(default_factory=list)
    links: list[JSON] = field(default_factory=list)
    options: JSON = field(default_factory=dict)
    transformations: list[JSON] = field(default_factory=list)
    custom: JSON = field(default_factory=dict)
    decimals: int | None = None
    min: float | None = None
    max: float | None = None

    def render(self, panel_id: int, x: int, y: int) -> JSON:
        datasources = {t["datasource"]["uid"] for t in self.targets}
        if len(datasources) != 1:
            raise ValueError(f"panel {self.title!r}: one datasource per panel, got {sorted(datasources)}")
        targets = [dict(t, refId=chr(ord("A") + i)) for i, t in enumerate(self.targets)]
        defaults: JSON = {"unit": self.unit, "thresholds": self.steps or _DEFAULT_STEPS,
                          "color": {"mode": "palette-classic" if self.kind == "timeseries" else "thresholds"}}
        if self.decimals is not None:
            defaults["decimals"] = self.decimals
        if self.min is not None:
            defaults["min"] = self.min
        if self.max is not None:
            defaults["max"] = self.max
        custom = dict(self.custom)
        if self.kind == "timeseries":
            custom = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                      "spanNulls": True, **custom}
        if self.kind == "table":
            custom = {"align": "auto", "inspect": True, **custom}
        if custom:
            defaults["custom"] = custom
        options = dict(self.options)
        if self.kind == "timeseries":
            options.setdefault("tooltip", {"mode": "multi", "sort": "desc"})
            options.setdefault("legend", {"displayMode": "list", "placement": "bottom", "showLegend": True})
        if self.kind == "stat":
            options.setdefault("reduceOptions", {"calcs": ["lastNotNull"], "fields": "", "values": False})
            options.setdefault("colorMode", "value")
        return {
            "id": panel_id, "type": self.kind, "title": self.title, "description": self.description,
            "datasource": targets[0]["datasource"], "targets": targets,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": options, "links": self.links, "transformations": self.transformations,
        }


def panel_link(title: str, name: str, query: str = "") -> JSON:
    return {"title": title, "url": dashboard_url(name, query)}


@dataclass
class Dashboard:
    name: str  # key of UIDS
    title: str
    description: str
    variables: list[JSON]
    rows: list[list[Panel]]
    refresh: str = "30s"
    time_from: str = "now-6h"

    def render(self) -> JSON:
        panels: list[JSON] = []
        y = 0
        for row in self.rows:
            if sum(p.width for p in row) > GRID_WIDTH:
                raise ValueError(f"{self.name}: a row is wider than {GRID_WIDTH}: {[p.title for p in row]}")
            x = 0
            for p in row:
                panels.append(p.render(len(panels) + 1, x, y))
                x += p.width
            y += max(p.height for p in row)
        return {
            "uid": UIDS[self.name], "title": self.title, "description": self.description,
            "tags": [TAG], "timezone": "browser", "editable": True, "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION, "version": 1, "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "links": [{"type": "dashboards", "tags": [TAG], "asDropdown": True, "title": "otel-chatbot",
                       "includeVars": False, "keepTime": True, "icon": "external link",
                       "targetBlank": False, "tooltip": "", "url": ""}],
            "templating": {"list": self.variables},
            "panels": panels,
        }


def panel_id(dashboard: Dashboard, title: str) -> int:
    """The id ``render()`` gives the panel titled ``title`` (alert rules link to it)."""
    titles = [p.title for row in dashboard.rows for p in row]
    return titles.index(title) + 1
