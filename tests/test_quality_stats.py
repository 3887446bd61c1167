"""`otel-chatbot stats` on a hand-worked history in the real Postgres: exact figures per prompt version
(table and json), by service, filters, and bad input (exit 2 with a message)."""

from __future__ import annotations

import json
import re
from datetime import date

import psycopg
import pytest

from otel_chatbot.cli import main
from otel_chatbot.store.partitions import create_partitions

DAY = "2025-03-10"
WINDOW = ["--since", f"{DAY}T00:00:00Z", "--until", "2025-03-11T00:00:00Z"]

# turn, day, hour, session, user, source, service, latency, flags, prompt, app, tokens in/out, cost
TURNS = [
    ("a1", DAY, 9, "s1", "u-1", "website", "shop", 1.0, "", "v1", "1.0", 100, 50, 0.01),
    ("a2", DAY, 10, "s1", "u-1", "website", "shop", 2.0, "fallback escalated", "v1", "1.0", 100, 50, 0.01),
    ("a3", DAY, 9, "s2", "u-2", "whatsapp", "shop", 3.0, "error", "v1", "1.0", 100, 50, 0.01),
    ("a4", DAY, 10, "s2", "u-2", "whatsapp", "shop", 4.0, "", "v1", "1.0", 100, 50, 0.01),
    ("b1", DAY, 11, "s3", "u-3", "website", "shop", 1.0, "", "v2", "1.1", 200, 100, 0.02),
    ("b2", DAY, 12, "s3", "u-3", "website", "shop", 1.0, "", "v2", "1.1", 200, 100, 0.02),
    ("b3", DAY, 11, "s4", "u-1", "website", "shop", 2.0, "hallucinated", "v2", "1.1", 0, 0, 0.0),
    ("b4", DAY, 12, "s4", "u-1", "website", "shop", 2.0, "", "v2", "1.1", 0, 0, 0.0),
    # o1 started before --since (its user returns in the window); x1 is of another service.
    ("o1", "2025-03-09", 9, "s0", "u-1", "website", "shop", 5.0, "", "v1", "1.0", 0, 0, 0.0),
    ("x1", DAY, 9, "s9", "u-9", "api", "other", 7.0, "", "v2", "1.1", 0, 0, 0.0),
]
FEEDBACK = [("a1", "up"), ("a2", "down"), ("b4", "down")]
# turn, accuracy, relevance, clarity, groundedness
EVALUATIONS = [("a1", 8, 6, 7, 9), ("a3", 4, 8, 5, 5), ("b1", 9, 9, 9, None)]
# session, turn, kind, value, label, pending
OUTCOMES = [("s1", None, "conversion", 30.0, "purchase", False),
            ("s3", None, "conversion", None, None, False),
            ("s3", None, "conversion", 12.0, None, False), ("s4", "b4", "conversion", None, None, False),
            ("s1", None, "csat", 5.0, None, False), ("s4", None, "csat", 2.0, None, False),
            ("s2", None, "nps", 9.0, None, False), ("s3", None, "nps", 6.0, None, False),
            (None, "t-unknown", "conversion", None, None, True), ("s9", None, "csat", 1.0, None, False)]


@pytest.fixture
def history(database_url: str) -> str:
    with psycopg.connect(database_url, autocommit=True) as conn:
        create_partitions(conn, "chat_turns", [date(2025, 3, 9), date(2025, 3, 10)])
        for (turn, day, hour, session, user, source, service, latency, flags, prompt, app, tokens_in,
             tokens_out, cost) in TURNS:
            conn.execute(
                "INSERT INTO chat_turns (turn_id, started_at, trace_id, span_id, session_id, user_id, source,"
                " service, latency_seconds, fallback, error, hallucinated, escalated, escalation_reason,"
                " prompt_version, app_version, input_tokens, output_tokens, cost_usd)"
                " VALUES (%s, %s, %s, 'span', %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (turn, f"{day}T{hour:02d}:00:00Z", f"trace-{turn}", session, user, source, service, latency,
                 "fallback" in flags, "error" in flags, "hallucinated" in flags, "escalated" in flags,
                 "billing" if "escalated" in flags else None, prompt, app, tokens_in, tokens_out, cost))
        for turn, rating in FEEDBACK:
            conn.execute("INSERT INTO feedback (turn_id, rating, origin, given_at)"
                         " VALUES (%s, %s, 'api', now())", (turn, rating))
        for turn, accuracy, relevance, clarity, groundedness in EVALUATIONS:
            conn.execute("INSERT INTO evaluations (turn_id, evaluator, judge_version, accuracy, relevance,"
                         " clarity, groundedness) VALUES (%s, 'llm-judge', 'v1', %s, %s, %s, %s)",
                         (turn, accuracy, relevance, clarity, groundedness))
        for session, turn, kind, value, label, pending in OUTCOMES:
            conn.execute("INSERT INTO outcomes (session_id, turn_id, kind, value, label, origin, recorded_at,"
                         " pending) VALUES (%s, %s, %s, %s, %s, 'api', now(), %s)",
                         (session, turn, kind, value, label, pending))
    return database_url


def stats_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["stats", *args, "--format", "json"]) == 0
    data: dict[str, object] = json.loads(capsys.readouterr().out)
    return data


def test_stats_by_prompt_version_compares_the_old_and_the_new_prompt(
        history: str, capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, "--database-url", history, *WINDOW, "--service", "shop",
                      "--by", "prompt_version")
    assert data["by"] == "prompt_version"
    # Engagement by channel (views of migration 0006): conversations by their first day, user-days,
    # abandoned on a bad last turn (s1: fallback, s4: rated down), share of rated turns rated up.
    assert data["engagement_by_channel"] == [
        {"source": "website", "conversations": 3, "turns_per_conversation": 2.0, "user_days": 2,
         "returning_user_days": 1, "abandoned": 2, "csat": pytest.approx(1 / 3)},
        {"source": "whatsapp", "conversations": 1, "turns_per_conversation": 2.0, "user_days": 1,
         "returning_user_days": 0, "abandoned": 0, "csat": None}]
    assert data["since"] == "2025-03-10T00:00:00+00:00" and data["until"] == "2025-03-11T00:00:00+00:00"
    groups = data["groups"]
    assert isinstance(groups, list) and [g["group"] for g in groups] == ["v1", "v2"]
    v1, v2 = groups
    assert v1 == {
        "group": "v1", "turns": 4, "conversations": 2, "users": 2, "returning_users": 1,
        "turns_per_conversation": 2.0, "drop_off_rate": 0.5, "latency_p50_s": 2.5,
        "latency_p95_s": pytest.approx(3.85), "latency_p99_s": pytest.approx(3.97), "error_rate": 0.25,
        "fallback_rate": 0.25, "hallucination_rate": 0.0, "injection_rate": 0.0, "escalation_rate": 0.25,
        "rated_turns": 2, "thumbs_down_rate": 0.5, "judged_turns": 2, "accuracy": 6.0, "relevance": 7.0,
        "clarity": 6.0, "groundedness": 7.0, "input_tokens": 400, "output_tokens": 200,
        "cost_usd": pytest.approx(0.04), "converted_conversations": 1, "conversion_rate": 0.5,
        "csat_responses": 1, "csat_average": 5.0, "nps_responses": 1, "nps_average": 9.0}
    assert v2 == {
        "group": "v2", "turns": 4, "conversations": 2, "users": 2, "returning_users": 1,
        "turns_per_conversation": 2.0, "drop_off_rate": 0.5, "latency_p50_s": 1.5, "latency_p95_s": 2.0,
        "latency_p99_s": 2.0, "error_rate": 0.0, "fallback_rate": 0.0, "hallucination_rate": 0.25,
        "injection_rate": 0.0, "escalation_rate": 0.0, "rated_turns": 1, "thumbs_down_rate": 1.0,
        "judged_turns": 1, "accuracy": 9.0, "relevance": 9.0, "clarity": 9.0, "groundedness": None,
        "input_tokens": 400, "output_tokens": 200, "cost_usd": pytest.approx(0.04),
        "converted_conversations": 2, "conversion_rate": 1.0, "csat_responses": 1, "csat_average": 2.0,
        "nps_responses": 1, "nps_average": 6.0}


def test_stats_table_by_prompt_version(history: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--database-url", history, *WINDOW, "--service", "shop",
                 "--by", "prompt_version"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == ("turns started 2025-03-10T00:00:00+00:00 .. 2025-03-11T00:00:00+00:00, "
                        "by prompt_version")
    assert re.fullmatch(r"prompt_version +v1 +v2", lines[1]), lines[1]
    expected = {
        "turns": ("4", "4"), "conversations": ("2", "2"), "returning users": ("1", "1"),
        "drop-off": ("50.0%", "50.0%"), "latency p50": ("2.50 s", "1.50 s"),
        "latency p95": ("3.85 s", "2.00 s"),
        "error rate": ("25.0%", "0.0%"), "escalation rate": ("25.0%", "0.0%"),
        "thumbs down": ("50.0% of 2", "100.0% of 1"), "accuracy": ("6.0", "9.0"),
        "groundedness": ("7.0", "n/a"),
        "tokens in / out": ("400 / 200", "400 / 200"), "cost": ("$0.0400", "$0.0400"),
        "conversion rate": ("50.0% (1)", "100.0% (2)"), "CSAT (1-5)": ("5.00 of 1", "2.00 of 1"),
        "NPS answers (0-10)": ("9.00 of 1", "6.00 of 1"),
    }
    blank = lines.index("")
    cells = {}
    for line in lines[2:blank]:
        label, first, second = re.split(r" {2,}", line.strip())
        cells[label] = (first, second)
    for label, values in expected.items():
        assert cells[label] == values, (label, out)
    assert len(cells) == 25
    # Then engagement by channel from the engagement views, over the window's days.
    assert lines[blank + 1].startswith("Engagement by channel")
    assert [line.split() for line in lines[blank + 3:]] == [
        ["website", "3", "2.0", "50.0%", "2", "33.3%"], ["whatsapp", "1", "2.0", "0.0%", "0", "n/a"]]


def test_stats_by_service_source_filter_and_no_grouping(history: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    data = stats_json(capsys, "--database-url", history, *WINDOW, "--by", "service")
    groups = data["groups"]
    assert isinstance(groups, list)
    assert [(g["group"], g["turns"], g["conversations"]) for g in groups] == [("shop", 8, 4), ("other", 1, 1)]
    assert groups[1]["csat_average"] == 1.0 and groups[1]["conversion_rate"] == 0.0
    data = stats_json(capsys, "--database-url", history, *WINDOW, "--source", "whatsapp", "--source", "api")
    groups = data["groups"]
    assert isinstance(groups, list)
    assert [(g["group"], g["turns"], g["conversations"], g["nps_average"]) for g in groups] == [
        ("all", 3, 2, 9.0)]
    data = stats_json(capsys, "--database-url", history, *WINDOW, "--by", "app_version", "--service", "shop")
    groups = data["groups"]
    assert isinstance(groups, list)
    assert [(g["group"], g["turns"]) for g in groups] == [("1.0", 4), ("1.1", 4)]
    # An empty window says so.
    assert main(["stats", "--database-url", history, "--since", "2020-01-01", "--until", "2020-01-02"]) == 0
    assert capsys.readouterr().out.startswith("no turns between 2020-01-01T00:00:00+00:00")


@pytest.mark.parametrize(("args", "message"), [
    (["--by", "user"], "argument --by: invalid choice: 'user'"),
    (["--format", "xml"], "argument --format: invalid choice: 'xml'"),
])
def test_stats_bad_choice_exits_2_with_a_message(args: list[str], message: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "last week"], "--since: expected a duration like 7d"),
    (["--until", "soon"], "--until: expected a duration like 7d"),
    (["--since", "1d", "--until", "2d"], "is not before --until"),
    (["--service", " "], "--service: expected a non-empty name"),
    (["--source", ""], "--source: expected a non-empty name"),
])
def test_stats_bad_window_exits_2_with_a_message_before_opening_the_database(
        args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    unreachable = "postgresql://postgres@/postgres?host=/nonexistent-otel-chatbot-socket-dir"
    assert main(["stats", "--database-url", unreachable, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("otel-chatbot: error: ") and message in err, err


def test_stats_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["stats", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "otel-chatbot stats --since 24h --by source" in out and "--by prompt_version" in out


def test_business_outcome_and_version_views_on_the_same_history(history: str) -> None:
    with psycopg.connect(history) as conn:
        outcomes = conn.execute(
            "SELECT day::date::text, service, source, conversations, converted_conversations,"
            " conversion_rate, turns, escalated_turns, escalation_rate, csat_average, nps_average"
            " FROM business_outcomes_daily ORDER BY 1, 2, 3").fetchall()
        versions = conn.execute(
            "SELECT day::date::text, service, prompt_version, app_version, turns, fallback_rate,"
            " escalation_rate, rated_turns, thumbs_down_rate FROM turns_by_version_daily ORDER BY 1, 2, 3"
        ).fetchall()
    assert outcomes == [
        ("2025-03-09", "shop", "website", 1, 0, 0.0, 1, 0, 0.0, None, None),
        ("2025-03-10", "other", "api", 1, 0, 0.0, 1, 0, 0.0, 1.0, None),
        ("2025-03-10", "shop", "website", 3, 3, 1.0, 6, 1, pytest.approx(1 / 6), 3.5, 6.0),
        ("2025-03-10", "shop", "whatsapp", 1, 0, 0.0, 2, 0, 0.0, None, 9.0)]
    assert versions == [
        ("2025-03-09", "shop", "v1", "1.0", 1, 0.0, 0.0, 0, None),
        ("2025-03-10", "other", "v2", "1.1", 1, 0.0, 0.0, 0, None),
        ("2025-03-10", "shop", "v1", "1.0", 4, 0.25, 0.25, 2, 0.5),
        ("2025-03-10", "shop", "v2", "1.1", 4, 0.0, 0.0, 1, 1.0)]
