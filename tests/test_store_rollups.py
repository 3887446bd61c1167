"""The window functions of migration 0015 against the views they stand for, on a generated history:
before any rollup (all live), after the rollup job, after late turns for closed days (and again after
the job has rebuilt those days), with today's partial day live throughout. Every dashboard panel that
moved to a function gives the rows of its view-based form; the feedback API's lookup, the conversation
drill-down and the turn lookup by id give what chat_turns holds.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import yaml
from grafana_support import ALL, TimeRange, builtins, dashboard_targets, expand_postgres_macros, interpolate
from rollup_support import History, closed_days, generate, late_arrivals
from tools import ROOT

from otel_chatbot.quality.window import TurnWindow
from otel_chatbot.store.queries import turn_exists
from otel_chatbot.store.retention import purge_older_than
from otel_chatbot.store.rollup import refresh_rollups
from otel_chatbot.store.stats_queries import group_stats

DAY_VIEWS = ("engagement_conversations_daily", "engagement_turns_per_conversation",
             "engagement_returning_users", "engagement_csat_daily", "business_outcomes_daily")
TIME_VIEWS = {"engagement_conversations": "started_at", "engagement_dropoff": "last_turn_at"}
RULES = yaml.safe_load((ROOT / "grafana" / "provisioning" / "alerting" / "quality_rules.yml").read_text())
BOARDS = {name: json.loads((ROOT / "grafana" / "dashboards" / f"{name}.json").read_text())
          for name in ("engagement", "quality", "conversations")}


def _rows(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    return sorted(conn.execute(query, params).fetchall(), key=repr)  # type: ignore[call-overload]


def _day_windows(history: History) -> list[tuple[date, date]]:
    today = history.today
    return [(today - timedelta(days=7), today), (today - timedelta(days=2), today - timedelta(days=1)),
            (today, today), (today - timedelta(days=41), today - timedelta(days=39)),
            (date(1970, 1, 1), date(9999, 12, 31))]


def _time_windows(history: History) -> list[tuple[datetime, datetime]]:
    now = history.now
    return [(now - timedelta(hours=24), now), (now - timedelta(days=3, hours=5), now - timedelta(hours=21)),
            (now - timedelta(hours=3), now), (datetime(1970, 1, 1, tzinfo=UTC), now + timedelta(days=1))]


def _compare_views(conn: psycopg.Connection[Any], history: History) -> int:
    """Every window function equals its view over the same window; returns the rows compared."""
    compared = 0
    for first, last in _day_windows(history):
        for view in DAY_VIEWS:
            expected = _rows(conn, f"SELECT * FROM {view} WHERE day BETWEEN %s AND %s", (first, last))
            got = _rows(conn, f"SELECT * FROM {view}_between(%s, %s)", (first, last))
            assert got == expected, (view, first, last)
            compared += len(got)
    for start, end in _time_windows(history):
        for view, column in TIME_VIEWS.items():
            expected = _rows(conn, f"SELECT * FROM {view} WHERE {column} BETWEEN %s AND %s", (start, end))
            got = _rows(conn, f"SELECT * FROM {view}_between(%s, %s)", (start, end))
            assert got == expected, (view, start, end)
            compared += len(got)
    return compared


def _compare_lookups(conn: psycopg.Connection[Any], history: History) -> None:
    ids = [t["turn_id"] for t in history.turns]
    for chunk in (ids[:5], ids[::9], ids[-3:], [*ids[:2], "no-such-turn"], []):
        assert (_rows(conn, "SELECT * FROM chat_turns_by_id(%s)", (chunk,))
                == _rows(conn, "SELECT * FROM chat_turns WHERE turn_id = ANY(%s)", (chunk,)))
    for session in {*history.sessions, "s-today", "s-old", "no-such-session"}:
        assert (_rows(conn, "SELECT * FROM conversation_turns(%s)", (session,))
                == _rows(conn, "SELECT * FROM chat_turns WHERE session_id = %s", (session,)))
    assert all(turn_exists(conn, i) for i in ids)
    assert not turn_exists(conn, "no-such-turn")


def _reference(text: str) -> str:
    """A panel's query in its view-based form: each window function call becomes its view, filtered."""
    calls = {f"{v}_between": "day BETWEEN {0} AND {1}" for v in DAY_VIEWS}
    calls |= {f"{v}_between": f"{c} BETWEEN {{0}} AND {{1}}" for v, c in TIME_VIEWS.items()}
    out = text
    for name, condition in calls.items():
        while (at := out.find(name + "(")) >= 0:
            args, end = _arguments(out, at + len(name))
            view = name.removesuffix("_between")
            out = out[:at] + f"(SELECT * FROM {view} WHERE {condition.format(*args)}) v" + out[end:]
    while (at := out.find("chat_turns_by_id(")) >= 0:
        out = out[:at] + "chat_turns" + out[_arguments(out, at + len("chat_turns_by_id"))[1]:]
    return re.sub(r"conversation_turns\(('[^']*')\)", r"(SELECT * FROM chat_turns WHERE session_id = \1)",
                  out)


def _arguments(text: str, opening: int) -> tuple[list[str], int]:
    """The top-level comma-separated arguments of the call whose '(' is at ``opening``; and the end."""
    depth, args, current = 0, [], ""
    for i in range(opening, len(text)):
        char = text[i]
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return [*args, current.strip()], i + 1
        if char == "," and depth == 1:
            args.append(current.strip())
            current = ""
        elif i > opening:
            current += char
    raise ValueError(f"unbalanced call at {opening}")


def _compare_panels(conn: psycopg.Connection[Any], history: History) -> int:
    """Every Postgres panel of the engagement, quality and conversations dashboards returns the rows of
    its view-based form, over a few ranges; returns the number of panels whose query changed."""
    changed = rows = 0
    session = max(history.sessions, key=history.sessions.count)
    for board in BOARDS.values():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        options = {name: [str(r[0]) for r in conn.execute(v["query"])] for name, v in variables.items()
                   if v["type"] == "query"}
        selected: dict[str, str | list[str]] = {n: (session if v["type"] == "textbox" else ALL)
                                                for n, v in variables.items()}
        for panel, target in dashboard_targets(board):
            if target["datasource"]["uid"] != "postgres":
                continue
            raw = target["rawSql"]
            changed += _reference(raw) != raw
            for start, end in _time_windows(history)[:3]:
                time_range = TimeRange(start, end)
                text = interpolate(raw, variables, selected, options, builtins(time_range, "1h", 60),
                                   "postgres")
                new = expand_postgres_macros(text, time_range)
                old = expand_postgres_macros(_reference(text), time_range)
                got = _rows(conn, new)
                assert got == _rows(conn, old), (panel["title"], start, end)
                rows += len(got)
    assert rows > 200
    return changed


def _compare_alert_rules(conn: psycopg.Connection[Any]) -> None:
    """The alert rules that join ratings and judge scores to their turns, against their join."""
    changed = 0
    for group in RULES["groups"]:
        for rule in group["rules"]:
            raw = next(d for d in rule["data"] if d["refId"] == "A")["model"]["rawSql"]
            changed += _reference(raw) != raw
            assert _rows(conn, raw) == _rows(conn, _reference(raw)), rule["title"]
    assert changed == 2


def _compare_all(conn: psycopg.Connection[Any], history: History) -> int:
    compared = _compare_views(conn, history)
    _compare_lookups(conn, history)
    assert _compare_panels(conn, history) == 18
    _compare_alert_rules(conn)
    return compared


def test_window_functions_equal_the_views_before_and_after_rollups(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        history = generate(conn)
        before = _compare_all(conn, history)  # nothing rolled up: everything live
        assert before > 300

        run = refresh_rollups(database_url)
        closed = closed_days(conn, history)
        assert run.refreshed == closed and run.dropped == [] and run.live_from == history.today
        assert conn.execute("SELECT count(*) FROM rollup_turn_index").fetchone() == (
            sum(t["at"].date() < history.today for t in history.turns),)
        assert _compare_all(conn, history) == before

        # Late turns, a settled flag and a deletion on closed days: rebuilt at the next run, those days only.
        changed_days = late_arrivals(conn, history)
        run = refresh_rollups(database_url)
        old_day = (history.now - timedelta(days=40)).date()
        # The earliest late turn falls before the daily partitions: the DEFAULT partition changed, so
        # its other day is rebuilt too.
        assert min(changed_days) < history.today - timedelta(days=7)
        assert run.refreshed == sorted({*changed_days, old_day})
        assert _compare_all(conn, history) > before
        assert refresh_rollups(database_url).refreshed == []  # nothing changed since

        # Retention deletes the DEFAULT partition's old day: the next run forgets it.
        assert purge_older_than(database_url, 30) == []
        assert refresh_rollups(database_url).dropped == [old_day]
        history.turns = [t for t in history.turns if t["at"].date() != old_day]
        assert conn.execute("SELECT count(*) FROM rollup_conversation_days WHERE day = %s",
                            (old_day,)).fetchone() == (0,)
        _compare_all(conn, history)


def test_returning_users_of_stats_look_back_through_the_rollups(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        history = generate(conn, seed=3)
        windows = [TurnWindow(history.now - timedelta(days=d), history.now) for d in (1, 2, 4)]
        windows.append(TurnWindow(history.now - timedelta(days=3, hours=7), history.now - timedelta(days=1)))
        expected = [_returning(conn, w) for w in windows]
        assert [_returning_stats(conn, w) for w in windows] == expected  # all live
        refresh_rollups(database_url)
        assert [_returning_stats(conn, w) for w in windows] == expected
        assert any(expected) and expected[0] != expected[2]


def _returning(conn: psycopg.Connection[Any], window: TurnWindow) -> int:
    row = conn.execute(
        "SELECT count(DISTINCT w.user_id) FROM chat_turns w"
        " WHERE w.started_at >= %(s)s AND w.started_at < %(u)s"
        " AND EXISTS (SELECT 1 FROM chat_turns p WHERE p.user_id = w.user_id AND p.started_at < %(s)s)",
        {"s": window.since, "u": window.until}).fetchone()
    assert row is not None
    return int(row[0])


def _returning_stats(conn: psycopg.Connection[Any], window: TurnWindow) -> int:
    (group,) = group_stats(conn, window, by=None)
    return group.returning_users


def test_rollup_job_takes_turns_in_order_and_one_run_at_a_time(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        generate(conn, seed=5)
        conn.execute("SELECT pg_advisory_lock(%s, %s)", (0x6F74656C, 0x726F6C6C))
        assert refresh_rollups(database_url).skipped  # another process holds the job's lock
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (0x6F74656C, 0x726F6C6C))
        assert not refresh_rollups(database_url).skipped
