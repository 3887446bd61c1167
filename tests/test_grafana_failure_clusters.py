"""The quality dashboard's failure-cluster panels (the latest run's clusters with example messages, and
cluster sizes across runs) and the engagement dashboard's lead panels: their SQL, taken from the
generated dashboard JSON and expanded as Grafana expands it, run on real Postgres as the read-only role
otel_chatbot_reader against stored runs, outcomes and turns; exact rows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from grafana_support import ALL, TimeRange, expand_postgres_macros, interpolate
from quality_rows import problem_turn, write
from store_factories import NOW_NS
from tools import ROOT

from otel_chatbot.store.writer import BatchWriter

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
S = 10**9
DASHBOARDS = ROOT / "grafana" / "dashboards"


def _panel_sql(url: str, board: str, title: str) -> str:
    """The panel's SQL with every variable at All, its options from the variable's own query."""
    dashboard = json.loads((DASHBOARDS / f"{board}.json").read_text())
    panel = next(p for p in dashboard["panels"] if p["title"] == title)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE otel_chatbot_reader")
        options = {name: [str(r[0]) for r in conn.execute(v["query"])] for name, v in variables.items()}
    return interpolate(panel["targets"][0]["rawSql"], variables, dict.fromkeys(variables, ALL), options, {},
                       "postgres")


def _run(url: str, text: str, time_range: TimeRange) -> list[tuple[Any, ...]]:
    text = expand_postgres_macros(text, time_range)
    assert not re.search(r"\$\{?\w", text), text
    with psycopg.connect(url) as conn:
        conn.execute("SET ROLE otel_chatbot_reader")
        return conn.execute(text).fetchall()  # type: ignore[call-overload, no-any-return]


def _store_runs(writer: BatchWriter, url: str) -> tuple[datetime, datetime, datetime]:
    """Three stored `failures` runs: one ended three days ago, two in the last day; their window ends."""
    t = NOW_NS - 2 * 3600 * S
    write(writer, [
        problem_turn("r1", "My card was charged twice", t, fallback=True),
        problem_turn("r2", "Refund the double charge please " + "x" * 200, t + S, fallback=True),
        problem_turn("r3", "charged two times for order 42", t + 2 * S, fallback=True),
        problem_turn("r4", "double payment", t + 3 * S, fallback=True),
        problem_turn("p1", "I forgot my password", t + 4 * S, fallback=True),
    ])
    old, before, latest = NOW - timedelta(days=3), NOW - timedelta(hours=5), NOW - timedelta(minutes=5)
    runs = [
        (old, [(0, "refund double charge", 1, None, []), (1, "password reset", 8, None, [])]),
        (before, [(0, "password reset", 4, 8, ["p1"]), (1, "refund double charge", 3, 1, ["r1"])]),
        (latest, [(0, "refund double charge", 9, 3, ["r3", "r2", "r1", "r4"]),
                  (1, "password reset", 2, 4, ["p1"]), (2, "order tracking", 5, None, ["gone"])]),
    ]
    with psycopg.connect(url) as conn:
        for window_end, clusters in runs:
            total = sum(c[2] for c in clusters)
            row = conn.execute("INSERT INTO failure_cluster_runs (window_start, window_end, embedder, "
                               "problem_turns) VALUES (%s, %s, 'tfidf', %s) RETURNING run_id",
                               (window_end - timedelta(days=1), window_end, total)).fetchone()
            assert row is not None
            for cluster_id, label, size, previous, examples in clusters:
                conn.execute("INSERT INTO failure_clusters (run_id, cluster_id, label,"
                             " representative_message, size, share, previous_size, trend, example_turn_ids)"
                             " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                             (row[0], cluster_id, label, f"about {label}", size, size / total, previous,
                              None if previous is None else size / previous, examples))
    return old, before, latest


def test_latest_run_clusters_with_example_messages(writer: BatchWriter, database_url: str) -> None:
    _, before, latest = _store_runs(writer, database_url)
    rows = _run(database_url, _panel_sql(database_url, "quality", "Failure clusters (latest run)"),
                TimeRange(NOW - timedelta(days=1), NOW))
    assert [(r[0], r[1], round(r[2], 3), r[3], r[4], r[5], r[8]) for r in rows] == [
        # the first three example turns, most central first, each message cut at 160 characters
        ("refund double charge", 9, 0.562, 3, 3.0, "about refund double charge",
         "charged two times for order 42 | " + ("Refund the double charge please " + "x" * 200)[:160]
         + " | My card was charged twice"),
        ("order tracking", 5, 0.312, None, None, "about order tracking", None),  # its turn is gone
        ("password reset", 2, 0.125, 4, 0.5, "about password reset", "I forgot my password"),
    ]
    assert {r[7] for r in rows} == {latest}
    # A range that ends before the latest run shows the run before it.
    earlier = _run(database_url, _panel_sql(database_url, "quality", "Failure clusters (latest run)"),
                   TimeRange(NOW - timedelta(days=1), NOW - timedelta(hours=1)))
    assert [(r[0], r[1], r[7], r[8]) for r in earlier] == [
        ("password reset", 4, before, "I forgot my password"),
        ("refund double charge", 3, before, "My card was charged twice")]


def test_cluster_sizes_across_runs(writer: BatchWriter, database_url: str) -> None:
    old, before, latest = _store_runs(writer, database_url)
    sizes = _panel_sql(database_url, "quality", "Failure cluster sizes across runs")
    assert _run(database_url, sizes, TimeRange(NOW - timedelta(days=1), NOW)) == [
        (before, "password reset", 4), (before, "refund double charge", 3),
        (latest, "order tracking", 5), (latest, "password reset", 2), (latest, "refund double charge", 9)]
    assert _run(database_url, sizes, TimeRange(NOW - timedelta(days=7), NOW))[:2] == [
        (old, "password reset", 8), (old, "refund double charge", 1)]
    assert _run(database_url, sizes, TimeRange(NOW - timedelta(days=30), NOW - timedelta(days=20))) == []


@pytest.mark.parametrize("title", ["Lead rate by channel", "Leads and conversions per day"])
def test_lead_panels(writer: BatchWriter, database_url: str, title: str) -> None:
    t = NOW_NS - 3600 * S
    write(writer, [problem_turn(f"t{i}", "hi", t + i * S, session=f"s{i}", source=source)
                   for i, source in enumerate(("website", "website", "website", "whatsapp"))])
    with psycopg.connect(database_url) as conn:
        for session, kind in (("s0", "lead"), ("s0", "lead"), ("s1", "conversion"), ("s3", "lead")):
            conn.execute("INSERT INTO outcomes (session_id, kind, origin, recorded_at)"
                         " VALUES (%s, %s, 'api', now())", (session, kind))
    rows = _run(database_url, _panel_sql(database_url, "engagement", title),
                TimeRange(NOW - timedelta(days=1), NOW))
    day = datetime.combine(NOW.date(), datetime.min.time(), UTC)
    if title == "Lead rate by channel":
        assert rows == [(day, "website", 1 / 3), (day, "whatsapp", 1.0)]
    else:
        assert rows == [(day, 2, 1)]
