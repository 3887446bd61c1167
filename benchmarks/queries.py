"""Read-query scaling: every read query of the store, `otel-chatbot stats` and the dashboard-style
panels, timed on a small and a large history in one run; prints the large/small time ratio per query.

The history grows the way a deployment's does: the same traffic per day (20,000 turns), kept for
longer (100k turns = 5 days, 2M turns = 100 days). A query that reads a time window or looks up one
id should then cost about the same at both sizes (partition pruning, indexes); the target is a ratio
of at most 3. Rows are generated inside Postgres (INSERT … SELECT over generate_series, one statement
per table), with one span per turn, feedback on 5% of turns and a session every 5 turns.

When grafana/dashboards/*.json exist, their Postgres panel queries are timed too (Grafana macros
expanded over the last 24 hours, variables at "All").

After generating a history the rollup job runs once, as inside `serve` (store/rollup.py: the closed
days' rollups that the window functions read); its time is printed, and that of a second run with
nothing changed (what each run of the job costs in steady state).

    python benchmarks/queries.py [--small 100000] [--large 2000000] [--per-day 20000] [--repeat 7]
                                 [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from support import postgres

from otel_chatbot.store.evaluations import TurnFilter, turn_candidates
from otel_chatbot.store.migrate import migrate
from otel_chatbot.store.partitions import create_partitions
from otel_chatbot.store.queries import chat_summary, turn_exists
from otel_chatbot.store.rollup import refresh_rollups

ROOT = Path(__file__).resolve().parent.parent
# The generated history ends now (the feedback API's lookup looks at recent days first).
END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
TARGET = 3.0

_TURNS = """
INSERT INTO chat_turns (turn_id, started_at, trace_id, span_id, session_id, user_id, source, service,
    latency_seconds, user_message, bot_response, model, input_tokens, output_tokens, cost_usd, fallback,
    fallback_reason, hallucinated, prompt_injection, error)
SELECT 't' || g, %(start)s + g::bigint * %(step)s::bigint * interval '1 microsecond', md5('t' || g),
       substr(md5('s' || g), 1, 16),
       's' || (g / 5), 'u' || (g / 25) %% 50000, (ARRAY['website', 'whatsapp', 'slack', 'api'])[1 + g %% 4],
       (ARRAY['support', 'sales'])[1 + g %% 2], 0.2 + (g %% 1000) / 200.0, 'question number ' || g,
       'the answer to question ' || g, (ARRAY['gpt-4o-mini', 'gpt-4o', 'claude-3-5-haiku'])[1 + g %% 3],
       100 + g %% 50, 20 + g %% 30, 0.0001 * (g %% 7), g %% 20 = 0,
       CASE WHEN g %% 20 = 0 THEN 'no_answer_in_kb' END, g %% 50 = 0, g %% 200 = 0, g %% 100 = 0
FROM generate_series(0, %(n)s - 1) g"""
_SPANS = """
INSERT INTO spans (trace_id, span_id, name, kind, start_time, end_time, duration_ms, status_code, service,
    model, input_tokens, output_tokens, attributes, resource)
SELECT md5('t' || g), substr(md5('s' || g), 1, 16), 'chat.turn', 2,
       %(start)s + g::bigint * %(step)s::bigint * interval '1 microsecond',
       %(start)s + g::bigint * %(step)s::bigint * interval '1 microsecond' + interval '800 milliseconds',
       800, 0,
       (ARRAY['support', 'sales'])[1 + g %% 2], 'gpt-4o-mini', 100, 20,
       jsonb_build_object('chat.turn.id', 't' || g, 'session.id', 's' || (g / 5),
                          'input.value', 'question ' || g),
       '{"service.name": "support"}'
FROM generate_series(0, %(n)s - 1) g"""
_FEEDBACK = """
INSERT INTO feedback (turn_id, rating, origin, given_at, service)
SELECT 't' || g, CASE WHEN g %% 40 = 0 THEN 'down' ELSE 'up' END, 'api',
       %(start)s + g::bigint * %(step)s::bigint * interval '1 microsecond' + interval '1 minute', 'support'
FROM generate_series(0, %(n)s - 1, 20) g"""
_SESSIONS = """
INSERT INTO sessions (session_id, service, source, first_seen)
SELECT 's' || (g / 5), (ARRAY['support', 'sales'])[1 + g %% 2], 'website',
       %(start)s + g::bigint * %(step)s::bigint * interval '1 microsecond'
FROM generate_series(0, %(n)s - 1, 5) g"""

# Dashboard-style panels over the store (what the review page, Grafana and the quality commands ask);
# day/week are now - 24h / now - 7d.
PANELS: dict[str, str] = {
    "turns per hour by service, 24h": """
        SELECT date_trunc('hour', started_at), service, count(*) FROM chat_turns
        WHERE started_at >= %(day)s AND started_at < %(now)s GROUP BY 1, 2 ORDER BY 1""",
    "latency p50/p95 by service, 24h": """
        SELECT service, percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_seconds),
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_seconds)
        FROM chat_turns WHERE started_at >= %(day)s AND started_at < %(now)s GROUP BY 1""",
    "thumbs-down rate, 24h": """
        SELECT count(*) FILTER (WHERE f.rating = 'down')::float / greatest(count(*), 1)
        FROM feedback f JOIN chat_turns t ON t.turn_id = f.turn_id
        WHERE t.started_at >= %(day)s AND t.started_at < %(now)s""",
    "cost by model, 7d": """
        SELECT model, sum(cost_usd), sum(input_tokens), sum(output_tokens) FROM chat_turns
        WHERE started_at >= %(week)s AND started_at < %(now)s GROUP BY 1""",
    "fallback reasons, 24h": """
        SELECT fallback_reason, count(*) FROM chat_turns WHERE fallback
        AND started_at >= %(day)s AND started_at < %(now)s GROUP BY 1 ORDER BY 2 DESC""",
    "problem turns (review queue), 24h": """
        SELECT t.turn_id, t.started_at FROM chat_turns t LEFT JOIN feedback f ON f.turn_id = t.turn_id
        WHERE t.started_at >= %(day)s AND t.started_at < %(now)s
          AND (t.fallback OR t.error OR t.hallucinated OR f.rating = 'down')
        ORDER BY t.started_at DESC LIMIT 50""",
    "new sessions per day, 7d": """
        SELECT date_trunc('day', first_seen), count(*) FROM sessions
        WHERE first_seen >= %(week)s AND first_seen < %(now)s GROUP BY 1 ORDER BY 1""",
    "one conversation (session's turns, 7d)": """
        SELECT turn_id, started_at, user_message, bot_response FROM chat_turns
        WHERE session_id = %(session)s AND started_at >= %(week)s ORDER BY started_at""",
    "one trace's spans (trace view, 7d)": """
        SELECT span_id, name, start_time, duration_ms FROM spans
        WHERE trace_id = %(trace)s AND start_time >= %(week)s ORDER BY start_time""",
}


def _generate(url: str, turns: int, per_day: int) -> float:
    step_us = 86_400 * 1_000_000 // per_day
    days = -(-turns // per_day)
    start = END - timedelta(days=days)
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as conn:
        first = start.date()
        for table in ("spans", "chat_turns"):
            create_partitions(conn, table, [first + timedelta(days=d) for d in range(days + 1)])
        params = {"start": start, "step": step_us, "n": turns}
        for statement in (_TURNS, _SPANS, _FEEDBACK, _SESSIONS):
            conn.execute(statement, params)  # type: ignore[arg-type]
        conn.execute("ANALYZE")
        conn.execute("SELECT pg_stat_force_next_flush()")  # row counters for the rollup job, now
    return time.perf_counter() - started


def _rollups(url: str) -> tuple[float, int, float]:
    """The rollup job's first run (every closed day) and a second one (nothing changed): seconds, days."""
    started = time.perf_counter()
    first = refresh_rollups(url)
    middle = time.perf_counter()
    refresh_rollups(url)
    return middle - started, len(first.refreshed), time.perf_counter() - middle


def _timed(run: Callable[[], object], repeat: int) -> float:
    run()  # warm the cache and the plan
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _queries(url: str, turns: int, per_day: int) -> dict[str, Callable[[psycopg.Connection[Any]], object]]:
    """Name → a function running the query on a connection. Ids looked up are recent ones (what a
    user clicks on) and old ones (what an auditor asks for)."""
    recent = f"t{turns - 100}"
    old = f"t{turns // 2}"
    now = END
    out: dict[str, Callable[[psycopg.Connection[Any]], object]] = {
        "stats (default window, 7d)": lambda c: chat_summary(c, now - timedelta(days=7)),
        "feedback API: turn exists (recent turn)": lambda c: turn_exists(c, recent),
        "feedback API: turn exists (old turn)": lambda c: turn_exists(c, old),
        "feedback API: unknown turn": lambda c: turn_exists(c, "t-none"),
        "evaluate: turn candidates, 24h": lambda c: turn_candidates(
            c, TurnFilter(since=now - timedelta(hours=24), until=now), "llm", "v1"),
    }
    # Bounds computed here, as Grafana's $__timeFilter does: literal timestamps let the planner prune
    # partitions at plan time (an expression like now() - interval '1 day' is pruned only at run time,
    # after planning every partition).
    params = {"now": now, "day": now - timedelta(hours=24), "week": now - timedelta(days=7),
              "session": f"s{(turns - 100) // 5}", "trace": _md5(recent)}
    for name, query in PANELS.items():
        out[name] = lambda c, q=query: c.execute(q, params).fetchall()  # type: ignore[misc]
    for name, query in _dashboard_queries(now, params["session"]):
        out[name] = lambda c, q=query: c.execute(q).fetchall()  # type: ignore[misc]
    return out


def _md5(text: str) -> str:
    import hashlib

    return hashlib.md5(text.encode()).hexdigest()


def _dashboard_queries(now: datetime, session: str) -> list[tuple[str, str]]:
    """(panel title, SQL) of the Postgres panels of grafana/dashboards/*.json, macros expanded."""
    found = []
    for path in sorted((ROOT / "grafana" / "dashboards").glob("*.json")):
        dashboard = json.loads(path.read_text())
        for panel in _panels(dashboard):
            for target in panel.get("targets", []):
                raw = target.get("rawSql")
                if raw and "postgres" in json.dumps(target.get("datasource", panel.get("datasource", ""))):
                    found.append((f"{path.stem}: {panel.get('title', '?')}", _expand(raw, now, session)))
    return found


def _panels(node: Any) -> list[dict[str, Any]]:
    out = []
    if isinstance(node, dict):
        if "targets" in node:
            out.append(node)
        for value in node.values():
            out += _panels(value)
    elif isinstance(node, list):
        for value in node:
            out += _panels(value)
    return out


def _expand(raw: str, now: datetime, session: str) -> str:
    """Grafana's Postgres macros over [now - 24h, now]; multi-value variables at "All" (their IN filter
    always true), ``$session`` a recent conversation."""
    start, end = (now - timedelta(hours=24)).isoformat(), now.isoformat()
    raw = re.sub(r"[\w.]+(\([^()]*\))? IN \(\$\{?\w+\}?\)", "true", raw)
    raw = re.sub(r"\^\(\$\{?\w+(:\w+)?\}?\)\$", "^(.*)$", raw)  # regex filters: the All value .*
    raw = raw.replace("$session", session).replace("${session}", session)
    text = re.sub(r"\$__timeFilter\(([^)]+)\)", rf"\1 BETWEEN '{start}' AND '{end}'", raw)
    text = re.sub(r"\$__timeGroupAlias\(([^,]+),[^)]+\)", r"date_trunc('hour', \1) AS time", text)
    text = re.sub(r"\$__timeGroup\(([^,]+),[^)]+\)", r"date_trunc('hour', \1)", text)
    text = re.sub(r"\$__time\(([^)]+)\)", r"\1 AS time", text)
    text = text.replace("$__timeFrom()", f"'{start}'").replace("$__timeTo()", f"'{end}'")
    text = re.sub(r"'?\$\{?[a-z_]+(:[a-z]+)?\}?'?", "'%'", text)  # variables: a pattern matching all
    return text


def _measure(url: str, turns: int, per_day: int, repeat: int) -> tuple[float, dict[str, float]]:
    generation = _generate(url, turns, per_day)
    first, days, again = _rollups(url)
    print(f"{turns} turns: rollup job {first:.1f} s for {days} closed days, then {again * 1000:.0f} ms "
          "with nothing changed", flush=True)
    times: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, query in _queries(url, turns, per_day).items():
            try:
                times[name] = _timed(lambda q=query: q(conn), repeat)  # type: ignore[misc]
            except psycopg.Error as exc:  # a dashboard query our macro expansion does not fit
                print(f"{name}: failed: {str(exc).strip().splitlines()[0]}", flush=True)
    # `otel-chatbot stats` itself, as a user runs it (process start included, 3 runs).
    times["otel-chatbot stats (command)"] = _command_time(url, 3)
    return generation, times


def _command_time(url: str, repeat: int) -> float:
    command = [sys.executable, "-m", "otel_chatbot.cli", "stats", "--database-url", url]
    subprocess.run(command, check=True, capture_output=True)
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def _database(admin_url: str, name: str) -> str:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    head, _, query = admin_url.partition("?")
    url = f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")
    migrate(url)
    return url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--large", type=int, default=2_000_000)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--database-url", help="admin URL of a server to create the databases on")
    args = parser.parse_args()

    with postgres(args.database_url) as server:
        admin = server.admin_url
        results = {}
        for turns in (args.small, args.large):
            url = _database(admin, f"bench_{turns}_{uuid.uuid4().hex[:6]}")
            generation, times = _measure(url, turns, args.per_day, args.repeat)
            days = -(-turns // args.per_day)
            print(f"{turns} turns ({days} days): generated in {generation:.1f} s", flush=True)
            results[turns] = times
        small, large = results[args.small], results[args.large]
        width = max(len(name) for name in small)
        print(f"\n{'query':<{width}}  {args.small:>9}  {args.large:>9}  ratio")
        missed = 0
        for name in (n for n in small if n in large):
            ratio = large[name] / small[name]
            missed += ratio > TARGET
            flag = "" if ratio <= TARGET else f"  > {TARGET:g}"
            print(f"{name:<{width}}  {small[name] * 1000:>7.2f}ms  {large[name] * 1000:>7.2f}ms  "
                  f"{ratio:5.2f}{flag}")
        print(f"\n{len(small) - missed} of {len(small)} queries within a ratio of {TARGET:g}")


if __name__ == "__main__":
    main()
