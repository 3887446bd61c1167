"""The failure-cluster report as a terminal table, JSON or Markdown."""

from __future__ import annotations

import json

from otel_chatbot.quality.failures import FailureCluster, FailureReport

FORMATS = ("table", "json", "markdown")
_MESSAGE_WIDTH = 60


def render(report: FailureReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.as_dict(), indent=2, ensure_ascii=False)
    if fmt == "markdown":
        return _markdown(report)
    if fmt == "table":
        return _table(report)
    raise ValueError(f"--format: expected one of {', '.join(FORMATS)}, got {fmt!r}")


def _trend(cluster: FailureCluster) -> str:
    if cluster.trend is None:
        return "new"
    return f"x{cluster.trend:.2f} ({cluster.previous_size})"


def _short(text: str, width: int = _MESSAGE_WIDTH) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[:width - 1] + "…"


def _heading(report: FailureReport) -> str:
    d = report.as_dict()
    run = f", run {report.run_id}" if report.run_id is not None else ""
    return (f"{report.problem_turns} problem turns from {d['window']['since']} to {d['window']['until']} "
            f"({report.previous_problem_turns} in the previous window), {len(report.clusters)} clusters, "
            f"embedder {report.embedder}{run}")


def _table(report: FailureReport) -> str:
    header = ("#", "size", "share", "trend", "terms", "representative message", "examples")
    rows = [(str(c.cluster_id), str(c.size), f"{c.share:.1%}", _trend(c), _short(c.label, 40),
             _short(c.representative_message), " ".join(c.example_turn_ids[:3])) for c in report.clusters]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [_heading(report), ""]
    for row in [header, *rows]:
        lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _markdown(report: FailureReport) -> str:
    lines = ["## Failure clusters", "", _heading(report), "",
             "| # | size | share | trend | terms | representative message | example turns |",
             "|---:|---:|---:|---|---|---|---|"]
    for c in report.clusters:
        examples = ", ".join(f"`{t}`" for t in c.example_turn_ids)
        lines.append(f"| {c.cluster_id} | {c.size} | {c.share:.1%} | {_trend(c)} | {_cell(c.label)} | "
                     f"{_cell(_short(c.representative_message, 120))} | {examples} |")
    return "\n".join(lines)
