"""``otel-chatbot trace TRACE_ID``: print one stored trace as a tree (or JSON), from either span layout.

Imported by cli.py at start, so only the standard library is imported at module level (``--help`` must
work without the server extra). The spans come from store/trace_fetch.py's reader.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig

if TYPE_CHECKING:
    from otel_chatbot.store.span_blocks import StoredSpan

NOT_FOUND = 3  # exit status for a well-formed id with no stored span
_TRACE_ID = re.compile(r"^[0-9a-fA-F]{32}$")
# Attributes worth a glance in the tree (all of them are in --format json).
_KEY_ATTRIBUTES = ("openinference.span.kind", "gen_ai.operation.name", "chat.turn.id", "session.id",
                   "user.id", "chat.source", "http.route", "db.system", "error.type")
_STATUS = {0: "unset", 1: "ok", 2: "ERROR"}

_EXAMPLES = """\
examples:
  otel-chatbot trace 5b8efff798038103d269b633813fc60c
  otel-chatbot trace 5b8efff798038103d269b633813fc60c --format json | jq '.spans[].name'
  otel-chatbot trace 5b8efff798038103d269b633813fc60c --database-url postgresql://otel@db/otel

The trace id is the 32 hexadecimal characters of chat_turns.trace_id (or any OTLP trace id). Works with
either span layout (span_storage: blocks or rows). Exit status: 0 printed, 1 database error, 2 bad trace
id or option, 3 no span of that trace is stored.
"""


def add_parser(commands: Any, add_database: Callable[[argparse.ArgumentParser], None]) -> None:
    p = commands.add_parser(
        "trace", help="print a stored trace as a tree of spans (or JSON)", epilog=_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Read every stored span of one trace and print it as a tree: name, service, start "
                    "offset, duration, status, model and tokens of LLM calls and a few key attributes; "
                    "--format json prints every field and attribute.")
    add_database(p)
    p.add_argument("trace_id", metavar="TRACE_ID", help="32 hexadecimal characters")
    p.add_argument("--span-storage", dest="span_storage", metavar="LAYOUT", default=None,
                   help="the layout serve writes (rows or blocks; default rows): read first, the other "
                        "one for spans stored before a change")
    p.add_argument("--format", choices=("tree", "json"), default="tree", help="output format (default tree)")


def parse_trace_id(text: str) -> str:
    if not _TRACE_ID.match(text.strip()):
        raise ConfigError(f"trace_id: expected 32 hexadecimal characters, got {text[:80]!r}")
    return text.strip().lower()


def run(args: argparse.Namespace, config: ProcessorConfig,
        database_url: Callable[[ProcessorConfig], AbstractContextManager[str]]) -> int:
    trace_id = parse_trace_id(args.trace_id)  # before any database is opened
    import psycopg

    from otel_chatbot.store.trace_fetch import span_reader

    with database_url(config) as url:
        try:
            with psycopg.connect(url, connect_timeout=10) as conn:
                spans = span_reader(config.span_storage).trace(conn, trace_id)
        except psycopg.OperationalError as exc:
            print(f"otel-chatbot trace: cannot read the database: {exc}".rstrip(), file=sys.stderr)
            return 1
    if not spans:
        print(f"otel-chatbot trace: no span of trace {trace_id} is stored", file=sys.stderr)
        return NOT_FOUND
    print(render_json(trace_id, spans) if args.format == "json" else render_tree(trace_id, spans))
    return 0


def render_json(trace_id: str, spans: list[StoredSpan]) -> str:
    out = []
    for s in spans:
        item = asdict(s)
        item["duration_ms"] = s.duration_ms
        item["start_time"] = _iso(s.start_ns)
        out.append(item)
    return json.dumps({"trace_id": trace_id, "span_count": len(spans), "spans": out}, ensure_ascii=False,
                      indent=2)


def render_tree(trace_id: str, spans: list[StoredSpan]) -> str:
    """The spans under their parents (a span whose parent is not stored is a root), in start order."""
    ids = {s.span_id for s in spans}
    children: dict[str | None, list[StoredSpan]] = {}
    for s in spans:
        children.setdefault(s.parent_span_id if s.parent_span_id in ids else None, []).append(s)
    t0 = min(s.start_ns for s in spans)
    end = max(s.end_ns for s in spans)
    services = sorted({s.service for s in spans})
    lines = [f"trace {trace_id}: {len(spans)} span(s), {', '.join(services)}, started {_iso(t0)}, "
             f"{(end - t0) / 1e6:.1f} ms"]

    def walk(parent: str | None, prefix: str) -> Iterator[str]:
        kids = children.get(parent, [])
        for i, s in enumerate(kids):
            last = i == len(kids) - 1
            yield prefix + ("└─ " if last else "├─ ") + _describe(s, t0)
            yield from walk(s.span_id, prefix + ("   " if last else "│  "))

    lines += walk(None, "")
    return "\n".join(lines)


def _describe(s: StoredSpan, t0: int) -> str:
    status = _STATUS.get(s.status_code, str(s.status_code))
    if s.status_code == 2 and s.status_message:
        status += f": {s.status_message}"
    parts = [f"{s.name} [{s.service}]", f"+{(s.start_ns - t0) / 1e6:.1f} ms", f"{s.duration_ms:.1f} ms",
             status, f"span {s.span_id}"]
    if s.model is not None or s.input_tokens is not None or s.output_tokens is not None:
        usage = f"{s.model or '?'} {s.input_tokens or 0}→{s.output_tokens or 0} tokens"
        if s.cost_usd is not None:
            usage += f" ${s.cost_usd:.6f}"
        parts.append(usage)
    shown = [f"{k}={_short(s.attributes[k])}" for k in _KEY_ATTRIBUTES if k in s.attributes]
    return "  ".join(parts + shown)


def _short(value: object, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds")
