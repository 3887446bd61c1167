"""What Grafana does to a query before its datasource runs it, reproduced for the tests (no Grafana binary).

- Template variables (frontend templateSrv): ``$name``, ``${name}``, ``${name:format}``, ``[[name]]``.
  The SQL datasources format a value with ``interpolateVariable`` (SqlDatasource.ts): a multi-value or
  include-All variable's values are quoted literals joined with ``,``; a plain single value has its
  quotes doubled and is not wrapped. The Prometheus datasource escapes regex characters of multi/All
  values and joins several as ``(a|b)``. A custom All value (``allValue``) is inserted as is.
- Built-ins: ``$__interval``, ``$__interval_ms``, ``$__rate_interval`` (max(interval + scrape
  interval, 4 x scrape interval)), ``$__range``, ``$__range_s``.
- Postgres macros (backend, pkg/tsdb/grafana-postgresql-datasource/macros.go): ``$__time``,
  ``$__timeEpoch``, ``$__timeFilter``, ``$__timeFrom``, ``$__timeTo``, ``$__timeGroup``,
  ``$__timeGroupAlias``, ``$__unixEpochFilter``; times as UTC RFC 3339 with trimmed nanoseconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

ALL = "$__all"
_VARIABLE_RE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]")
_MACRO_RE = re.compile(r"\$(__\w+)\(([^)]*)\)")
_REGEX_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}/])")
_PROM_SPECIAL = re.compile(r"([\\^$*+?.()|\[\]{}])")
_DURATION_RE = re.compile(r"^(\d+)(ms|s|m|h|d|w|y)$")
_DURATION_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> int:
        return round((self.end - self.start).total_seconds())


def rfc3339nano(moment: datetime) -> str:
    """Go's time.RFC3339Nano of a UTC time: fraction with trailing zeros removed, "Z"."""
    moment = moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    if moment.microsecond:
        text += "." + f"{moment.microsecond:06d}".rstrip("0")
    return text + "Z"


def duration_seconds(text: str) -> float:
    match = _DURATION_RE.match(text.strip())
    if match is None:
        raise ValueError(f"not a Grafana interval: {text!r}")
    return int(match.group(1)) * _DURATION_S[match.group(2)]


def _number(value: float) -> str:
    """Go's %v of a float64 (integral values without a fraction)."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def expand_postgres_macros(sql: str, time_range: TimeRange) -> str:
    """The backend's macro engine: every ``$__name(args)`` replaced, an unknown one is an error."""
    start, end = rfc3339nano(time_range.start), rfc3339nano(time_range.end)

    def macro(match: re.Match[str]) -> str:
        name = match.group(1)
        args = [a.strip() for a in match.group(2).split(",")]
        if name == "__time":
            return f'{args[0]} AS "time"'
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{start}' AND '{end}'"
        if name == "__timeFrom":
            return f"'{start}'"
        if name == "__timeTo":
            return f"'{end}'"
        if name in ("__timeGroup", "__timeGroupAlias"):
            if len(args) < 2:
                raise ValueError(f"macro {name} needs a time column and an interval")
            seconds = _number(duration_seconds(args[1].strip("'")))
            group = f"floor(extract(epoch from {args[0]})/{seconds})*{seconds}"
            # Grafana also treats $__timeGroup(...) directly followed by "," as the alias form.
            after = sql[match.end():match.end() + 1]
            return group + (' AS "time"' if name == "__timeGroupAlias" or after == "," else "")
        if name == "__unixEpochFilter":
            s, e = int(time_range.start.timestamp()), int(time_range.end.timestamp())
            return f"{args[0]} >= {s} AND {args[0]} <= {e}"
        raise ValueError(f"unknown macro {name!r}")

    return _MACRO_RE.sub(macro, sql)


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def format_value(value: str | list[str], variable: dict[str, Any], fmt: str | None, datasource: str) -> str:
    """One variable's value as Grafana inserts it into a query of ``datasource`` (postgres|prometheus)."""
    multi = bool(variable.get("multi") or variable.get("includeAll"))
    if fmt == "raw":
        return ",".join(value) if isinstance(value, list) else value
    if fmt == "regex":
        values = value if isinstance(value, list) else [value]
        escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt is not None:
        raise ValueError(f"format {fmt!r} is not reproduced by these tests")
    if datasource == "postgres":
        if isinstance(value, list):
            return ",".join(_sql_literal(v) for v in value)
        return _sql_literal(value) if multi else value.replace("'", "''")
    if not multi:
        return value if isinstance(value, str) else ",".join(value)
    values = [value] if isinstance(value, str) else value
    escaped = [_PROM_SPECIAL.sub(r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(text: str, variables: dict[str, dict[str, Any]], selected: dict[str, str | list[str]],
                options: dict[str, list[str]], builtins: dict[str, str], datasource: str) -> str:
    """Replace template variables: ``selected[name]`` is a value, a list, or ``ALL``."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name in builtins:
            return builtins[name]
        if name.startswith("__"):
            return match.group(0)  # a macro, expanded by the backend
        if name not in variables:
            raise KeyError(f"query uses undefined variable ${name}")
        variable, value = variables[name], selected[name]
        if value == ALL:
            if variable.get("allValue"):
                return str(variable["allValue"])  # a custom All value is inserted as is
            value = options[name]
        return format_value(value, variable, fmt, datasource)

    return _VARIABLE_RE.sub(replace, text)


def builtins(time_range: TimeRange, interval: str, scrape_interval_s: float) -> dict[str, str]:
    interval_s = duration_seconds(interval)
    rate_s = max(interval_s + scrape_interval_s, 4 * scrape_interval_s)
    return {
        "__interval": interval, "__interval_ms": str(int(interval_s * 1000)),
        "__rate_interval": f"{int(rate_s * 1000)}ms", "__range": f"{time_range.seconds}s",
        "__range_s": str(time_range.seconds), "__range_ms": str(time_range.seconds * 1000),
    }


def round_interval(seconds: float) -> str:
    """Grafana's kbn.roundInterval for ``range / max data points``, in the units it picks."""
    steps = ((0.015, "10ms"), (0.035, "20ms"), (0.075, "50ms"), (0.15, "100ms"), (0.35, "200ms"),
             (0.75, "500ms"), (1.5, "1s"), (3.5, "2s"), (7.5, "5s"), (12.5, "10s"), (17.5, "15s"),
             (25, "20s"), (45, "30s"), (90, "1m"), (210, "2m"), (450, "5m"), (750, "10m"),
             (1050, "15m"), (1500, "20m"), (2700, "30m"), (5400, "1h"), (9000, "2h"), (16200, "3h"),
             (32400, "6h"), (86400, "12h"), (604800, "24h"), (1814400, "1w"), (3628800, "30d"))
    for limit, text in steps:
        if seconds < limit:
            return text
    return "1y"


def dashboard_targets(dashboard: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) of every query of a dashboard."""
    return [(panel, target) for panel in dashboard["panels"] for target in panel.get("targets", [])]
