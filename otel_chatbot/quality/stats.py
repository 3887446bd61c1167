"""The ``otel-chatbot stats`` subcommand: quality, business and engagement figures per group.

Imported by cli.py at start, so only the standard library is imported at module level (``--help`` must
work without the server extra). The figures come from store/stats_queries.py.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING, Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig

if TYPE_CHECKING:
    from otel_chatbot.store.engagement import ChannelEngagement
    from otel_chatbot.store.stats_queries import GroupStats

# Kept in step with store/stats_queries.DIMENSIONS (not imported: that module needs psycopg).
DIMENSIONS = ("service", "source", "model", "prompt_version", "app_version")
DEFAULT_DAYS = 7.0

_EXAMPLES = """\
examples:
  otel-chatbot stats
  otel-chatbot stats --since 24h --by source
  otel-chatbot stats --since 2025-06-01 --until 2025-06-08 --service shop-bot --by prompt_version
  otel-chatbot stats --by app_version --format json

Rates are shares of the group's turns (thumbs-down: of its rated turns). Conversion rate: conversations
with a conversion outcome / conversations. CSAT (1-5) and NPS (0-10): mean of the recorded answers.
Judge scores: mean of the evaluations of the group's turns (otel-chatbot evaluate). Drop-off: share of
conversations whose last turn went wrong (error, fallback or thumbs-down). Returning users: users who had
a turn before --since. Compare two prompt versions after a change with --by prompt_version.
"""


def add_parser(commands: Any, add_database: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``stats`` on the subparsers ``commands`` (``add_database``: the shared DB options)."""
    p = commands.add_parser(
        "stats", help="print quality, business and engagement figures of the stored chat data",
        epilog=_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turns, conversations, latency p50/p95/p99, error/fallback/hallucination/injection/"
                    "escalation rates, thumbs-down, judge scores, tokens, cost, conversion rate, CSAT and "
                    "NPS, turns per conversation, returning users and drop-off, read from Postgres; per "
                    "service, channel, model, prompt version or app version with --by.")
    add_database(p)
    p.add_argument("--since", default=None, metavar="WHEN",
                   help="turns started at or after WHEN: a duration back from now (30m, 24h, 7d), an ISO "
                        f"timestamp, or 'all' (default {DEFAULT_DAYS:g} days back from --until; a window "
                        "reads a few daily partitions, 'all' the whole history)")
    p.add_argument("--until", default=None, metavar="WHEN", help="turns started before WHEN (default now)")
    p.add_argument("--service", action="append", metavar="NAME", help="only this service (repeatable)")
    p.add_argument("--source", action="append", metavar="CHANNEL",
                   help="only this channel: website, whatsapp, … (repeatable)")
    p.add_argument("--by", choices=DIMENSIONS, default=None,
                   help="one column per value of this dimension (default: all turns together)")
    p.add_argument("--format", choices=("table", "json"), default="table",
                   help="output format (default table)")


def run(args: argparse.Namespace, config: ProcessorConfig, database_url: Any) -> int:
    """Run ``stats``; ``database_url(config)`` is cli.py's context manager yielding the URL."""
    import psycopg

    from otel_chatbot.quality.window import WindowError, window_from_options
    from otel_chatbot.store.engagement import engagement_by_channel, format_engagement
    from otel_chatbot.store.stats_queries import group_stats

    try:
        window = window_from_options(args.since, args.until, args.service, args.source,
                                     default_days=DEFAULT_DAYS, allow_all=True)
    except WindowError as exc:
        raise ConfigError(str(exc)) from None
    since, until = window.since, window.until
    with database_url(config) as url, psycopg.connect(url) as conn:
        groups = group_stats(conn, window, by=args.by)
        # Engagement by channel (the engagement views' window functions), over the window's UTC days.
        channels = engagement_by_channel(conn, since, until, window.services, window.sources)
    if args.format == "json":
        print(format_json(groups, channels, since=since, until=until, by=args.by))
    else:
        print(format_table(groups, since=since, until=until, by=args.by))
        print()
        print(format_engagement(channels))
    return 0


def format_json(groups: Sequence[GroupStats], channels: Sequence[ChannelEngagement], *, since: datetime,
                until: datetime, by: str | None) -> str:
    return json.dumps({"since": since.isoformat(), "until": until.isoformat(), "by": by,
                       "groups": [asdict(g) for g in groups],
                       "engagement_by_channel": [asdict(c) for c in channels]}, indent=2)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


# (row label, cell of a group)
_ROWS: tuple[tuple[str, Callable[[GroupStats], str]], ...] = (
    ("turns", lambda g: str(g.turns)),
    ("conversations", lambda g: str(g.conversations)),
    ("turns/conversation", lambda g: _num(g.turns_per_conversation)),
    ("users", lambda g: str(g.users)),
    ("returning users", lambda g: str(g.returning_users)),
    ("drop-off", lambda g: _pct(g.drop_off_rate)),
    ("latency p50", lambda g: _secs(g.latency_p50_s)),
    ("latency p95", lambda g: _secs(g.latency_p95_s)),
    ("latency p99", lambda g: _secs(g.latency_p99_s)),
    ("error rate", lambda g: _pct(g.error_rate)),
    ("fallback rate", lambda g: _pct(g.fallback_rate)),
    ("hallucination rate", lambda g: _pct(g.hallucination_rate)),
    ("injection rate", lambda g: _pct(g.injection_rate)),
    ("escalation rate", lambda g: _pct(g.escalation_rate)),
    ("thumbs down", lambda g: f"{_pct(g.thumbs_down_rate)} of {g.rated_turns}"),
    ("judged turns", lambda g: str(g.judged_turns)),
    ("accuracy", lambda g: _num(g.accuracy)),
    ("relevance", lambda g: _num(g.relevance)),
    ("clarity", lambda g: _num(g.clarity)),
    ("groundedness", lambda g: _num(g.groundedness)),
    ("tokens in / out", lambda g: f"{g.input_tokens} / {g.output_tokens}"),
    ("cost", lambda g: f"${g.cost_usd:.4f}"),
    ("conversion rate", lambda g: f"{_pct(g.conversion_rate)} ({g.converted_conversations})"),
    ("CSAT (1-5)", lambda g: f"{_num(g.csat_average, 2)} of {g.csat_responses}"),
    ("NPS answers (0-10)", lambda g: f"{_num(g.nps_average, 2)} of {g.nps_responses}"),
)


def format_table(groups: Sequence[GroupStats], *, since: datetime, until: datetime, by: str | None) -> str:
    """One row per figure, one column per group."""
    window = f"{since.isoformat(timespec='seconds')} .. {until.isoformat(timespec='seconds')}"
    if not groups:
        return f"no turns between {window}"
    header = [by or "", *(g.group for g in groups)]
    rows = [[label, *(cell(g) for g in groups)] for label, cell in _ROWS]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = [f"turns started {window}" + (f", by {by}" if by else "")]
    if by:
        lines.append("  ".join(h.ljust(w) if i == 0 else h.rjust(w) for i, (h, w) in
                               enumerate(zip(header, widths, strict=True))).rstrip())
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                        enumerate(zip(r, widths, strict=True))).rstrip() for r in rows]
    return "\n".join(lines)
