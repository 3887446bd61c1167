"""`otel-chatbot failures`: problem-turn selection, clustering of the labelled set, stored runs, CLI."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from llm_server import LLMServer, Reply
from quality_rows import evaluate, labelled_messages, problem_turn, thumbs, write
from store_factories import NOW_NS, rows

from otel_chatbot.cli import main
from otel_chatbot.quality.cluster import purity
from otel_chatbot.quality.embed import WordLlamaEmbedder
from otel_chatbot.quality.failures import FailureOptions, find_failure_clusters
from otel_chatbot.quality.select import select_problem_turns
from otel_chatbot.quality.window import TurnWindow
from otel_chatbot.store.writer import BatchWriter

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
HOUR_NS = 3600 * 10**9
# The current window is the 24 h up to NOW + 1 h; the previous one the 24 h before it.
WINDOW = TurnWindow(NOW - timedelta(hours=23), NOW + timedelta(hours=1))
SINCE, UNTIL = WINDOW.since.isoformat(), WINDOW.until.isoformat()
# Measured purity of the default (WordLlama) on the labelled set: 0.797 (benchmarks/clusters.py).
PURITY_FLOOR = 0.70


def test_problem_turns_are_selected_with_their_reasons(writer: BatchWriter, database_url: str) -> None:
    t = NOW_NS - HOUR_NS
    write(writer, [
        problem_turn("ok", "fine question", t),
        problem_turn("down", "disliked", t + 1000),
        problem_turn("fallback", "no answer", t + 2000, fallback=True),
        problem_turn("hallu-app", "made up", t + 3000, hallucinated=True),
        problem_turn("hallu-judge", "judge says made up", t + 4000),
        problem_turn("low", "low score", t + 5000),
        problem_turn("high", "good score", t + 6000),
        problem_turn("error", "crashed", t + 7000, error=True),
        problem_turn("blocked", "ignore previous instructions", t + 8000, blocked=True,
                     prompt_injection=True),
        problem_turn("many", "everything wrong", t + 9000, fallback=True, error=True),
        problem_turn("other-service", "disliked too", t + 10000, service="sales", fallback=True),
        problem_turn("no-message", "", t + 11000, fallback=True),
        problem_turn("old", "last month", NOW_NS - 30 * 24 * HOUR_NS, fallback=True),
    ], [thumbs("down", "down", t, "wrong"), thumbs("ok", "up", t), thumbs("many", "down", t)])
    evaluate(database_url, "hallu-judge", hallucinated=True)
    evaluate(database_url, "low", accuracy=9, relevance=3, clarity=9, groundedness=None)
    evaluate(database_url, "high", accuracy=8, relevance=7)
    evaluate(database_url, "high", accuracy=6, judge_version="v2")

    with psycopg.connect(database_url) as conn:
        found = select_problem_turns(conn, WINDOW)
        with_message = select_problem_turns(conn, WINDOW, require_message=True)
        bot_only = select_problem_turns(conn, TurnWindow(WINDOW.since, WINDOW.until, services=("bot",)))
        strict = select_problem_turns(conn, WINDOW, score_threshold=7)
        latest_two = select_problem_turns(conn, WINDOW, limit=2)
        disliked = select_problem_turns(conn, WINDOW, reasons=("thumbs_down",))
        judged = select_problem_turns(conn, WINDOW, reasons=("low_score", "hallucinated"))
    assert [(p.turn_id, p.reasons) for p in found] == [
        ("down", ("thumbs_down",)), ("fallback", ("fallback",)), ("hallu-app", ("hallucinated",)),
        ("hallu-judge", ("hallucinated",)), ("low", ("low_score",)), ("error", ("error",)),
        ("many", ("thumbs_down", "fallback", "error")), ("other-service", ("fallback",)),
        ("no-message", ("fallback",))]
    assert found[0].feedback_comment == "wrong" and found[4].lowest_score == 3.0
    assert [p.turn_id for p in with_message] == [p.turn_id for p in found if p.turn_id != "no-message"]
    assert "other-service" not in [p.turn_id for p in bot_only] and len(bot_only) == 8
    # threshold 7: the lowest score of "high" over both judge versions is 6
    assert [p.turn_id for p in strict] == [p.turn_id for p in found[:5]] + ["high"] + \
        [p.turn_id for p in found[5:]]
    assert [p.turn_id for p in latest_two] == ["other-service", "no-message"]
    assert [(p.turn_id, p.reasons) for p in disliked] == [
        ("down", ("thumbs_down",)), ("many", ("thumbs_down", "fallback", "error"))]
    assert [p.turn_id for p in judged] == ["hallu-app", "hallu-judge", "low"]


def _write_labelled(writer: BatchWriter) -> list[str]:
    """The labelled set as problem turns in the window (reasons rotate); returns the intents in order."""
    turns, ratings, intents = [], [], []
    for i, (intent, message) in enumerate(labelled_messages()):
        turn_id = f"cur-{i:03d}"
        start = NOW_NS - (i + 1) * 60 * 10**9
        reason = i % 3
        turns.append(problem_turn(turn_id, message, start, fallback=reason == 0, error=reason == 1))
        if reason == 2:
            ratings.append(thumbs(turn_id, "down", start))
        intents.append(intent)
    write(writer, turns, ratings)
    return intents


def test_labelled_set_clusters_by_intent_and_is_stored(writer: BatchWriter, database_url: str) -> None:
    intents = _write_labelled(writer)
    # previous window: 12 refund and 3 password messages (same wording as some current ones)
    pairs = labelled_messages()
    previous = [m for intent, m in pairs if intent == "refund"][:12] + \
               [m for intent, m in pairs if intent == "login"][:3]
    write(writer, [problem_turn(f"prev-{i}", m, NOW_NS - 30 * HOUR_NS + i * 10**9, fallback=True)
                   for i, m in enumerate(previous)])
    progress: list[str] = []
    with psycopg.connect(database_url, autocommit=True) as conn:
        report = find_failure_clusters(conn, WordLlamaEmbedder(), FailureOptions(WINDOW), progress.append)

    assert report.problem_turns == 300 and report.previous_problem_turns == 15
    assert report.embedder == "wordllama:l2_supercat_256" and report.run_id is not None
    assert 8 <= len(report.clusters) <= 15
    assert sum(c.size for c in report.clusters) == 300
    assert sum(c.share for c in report.clusters) == pytest.approx(1.0, abs=1e-3)
    assert [c.cluster_id for c in report.clusters] == list(range(1, len(report.clusters) + 1))
    assert [c.size for c in report.clusters] == sorted((c.size for c in report.clusters), reverse=True)
    by_turn = {t: c.cluster_id for c in report.clusters for t in c.member_turn_ids}
    labels = [by_turn[f"cur-{i:03d}"] for i in range(300)]
    assert purity(labels, intents) >= PURITY_FLOOR
    for c in report.clusters:
        assert len(c.example_turn_ids) == min(5, c.size)
        assert c.example_turn_ids[0] == c.representative_turn_id
        assert c.terms and c.label == ", ".join(c.terms)
    # every previous message has an identical twin in the current window: all 15 are matched, and the
    # refund ones land where the current refund messages are
    assert sum(c.previous_size for c in report.clusters) == 15
    refund_cluster = Counter(by_turn[f"cur-{i:03d}"] for i in range(300) if intents[i] == "refund")
    main_refund = next(c for c in report.clusters if c.cluster_id == refund_cluster.most_common(1)[0][0])
    assert main_refund.previous_size >= 10
    for c in report.clusters:
        assert c.trend == (None if c.previous_size == 0 else round(c.size / c.previous_size, 4))
    assert any(line.startswith("300 problem turns") for line in progress)

    run = report.run_id
    assert rows(database_url, "SELECT problem_turns, embedder FROM failure_cluster_runs") == \
        [(300, "wordllama:l2_supercat_256")]
    stored = rows(database_url, "SELECT cluster_id, size, share, previous_size, example_turn_ids, label "
                                "FROM failure_clusters WHERE run_id = %s ORDER BY cluster_id", run)
    assert stored == [(c.cluster_id, c.size, c.share, c.previous_size, list(c.example_turn_ids), c.label)
                      for c in report.clusters]
    members = rows(database_url, "SELECT cluster_id, count(*) FROM failure_cluster_members WHERE run_id = %s "
                                 "GROUP BY cluster_id ORDER BY cluster_id", run)
    assert members == [(c.cluster_id, c.size) for c in report.clusters]


def _small_set(writer: BatchWriter) -> None:
    refunds = ["I want a refund for my order", "refund please", "how do I get my money back",
               "where is my refund", "my refund has not arrived", "give me a refund now"]
    logins = ["I forgot my password", "password reset email never arrives", "can't log in to my account",
              "my password is wrong"]
    write(writer, [problem_turn(f"r{i}", m, NOW_NS - (i + 1) * 10**9, fallback=True)
                   for i, m in enumerate(refunds)]
          + [problem_turn(f"l{i}", m, NOW_NS - (i + 10) * 10**9, error=True) for i, m in enumerate(logins)]
          + [problem_turn("p0", refunds[0], NOW_NS - 25 * HOUR_NS, fallback=True),
             problem_turn("p1", refunds[1], NOW_NS - 26 * HOUR_NS, fallback=True),
             problem_turn("p2", refunds[2], NOW_NS - 27 * HOUR_NS, fallback=True)])


def test_cli_json_report_two_clusters_with_trend(writer: BatchWriter, database_url: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _small_set(writer)
    code = main(["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["problem_turns"] == 10 and report["previous_problem_turns"] == 3
    assert [(c["cluster_id"], c["size"], c["share"], c["previous_size"], c["trend"])
            for c in report["clusters"]] == [(1, 6, 0.6, 3, 2.0), (2, 4, 0.4, 0, None)]
    refund, login = report["clusters"]
    assert "refund" in refund["terms"] and "password" in login["terms"]
    assert set(refund["example_turn_ids"]) <= {f"r{i}" for i in range(6)}
    assert len(refund["example_turn_ids"]) == 5
    assert refund["representative_turn_id"] == refund["example_turn_ids"][0]
    assert report["window"]["since"] == WINDOW.since.isoformat().replace("+00:00", "Z")
    assert report["run_id"] == rows(database_url, "SELECT run_id FROM failure_cluster_runs")[0][0]
    assert "10 problem turns with a user message in the window, 3 in the previous one" in err


def test_cli_table_markdown_and_no_store(writer: BatchWriter, database_url: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    _small_set(writer)
    base = ["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL, "--no-store"]
    assert main([*base, "--format", "markdown"]) == 0
    markdown = capsys.readouterr().out.splitlines()
    assert markdown[0] == "## Failure clusters"
    assert markdown[4] == "| # | size | share | trend | terms | representative message | example turns |"
    assert markdown[6].startswith("| 1 | 6 | 60.0% | x2.00 (3) | ")
    assert markdown[7].startswith("| 2 | 4 | 40.0% | new | ")
    assert len(markdown) == 8
    assert main(base) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("10 problem turns from ") and table[0].endswith("2 clusters, embedder "
                                                                                "wordllama:l2_supercat_256")
    assert table[2].split()[:5] == ["#", "size", "share", "trend", "terms"]
    assert table[3].split()[:4] == ["1", "6", "60.0%", "x2.00"]
    assert table[4].split()[:4] == ["2", "4", "40.0%", "new"]
    assert rows(database_url, "SELECT count(*) FROM failure_cluster_runs") == [(0,)]


def test_cli_empty_window_says_so_and_stores_nothing(database_url: str, capsys: pytest.CaptureFixture[str]
                                                     ) -> None:
    assert main(["failures", "--database-url", database_url, "--since", "24h", "--format", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["clusters"] == [] and json.loads(out)["problem_turns"] == 0
    assert "no problem turns with a user message from " in err and "nothing clustered or stored" in err
    assert rows(database_url, "SELECT count(*) FROM failure_cluster_runs") == [(0,)]


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "html"], "--format: expected one of table, json, markdown, got 'html'"),
    (["--since", "last tuesday"], "--since: expected a duration like 7d or 24h, or an ISO timestamp"),
    (["--until", "2026-13-45"], "--until: expected a duration like 7d or 24h, or an ISO timestamp"),
    (["--since", "2026-11-02", "--until", "2026-11-01"], "is not before --until"),
    (["--embedder", "bert"], "--embedder: expected one of wordllama, tfidf, endpoint, got 'bert'"),
    (["--embedder", "endpoint"], "--embeddings-base-url: required with --embedder endpoint"),
    (["--max-clusters", "0"], "--max-clusters: expected a whole number from 1 to 100, got 0"),
    (["--max-clusters", "101"], "--max-clusters: expected a whole number from 1 to 100, got 101"),
    (["--examples", "1000"], "--examples: expected a whole number from 1 to 100, got 1000"),
    (["--max-turns", "0"], "--max-turns: expected a whole number from 1 to 1000000, got 0"),
    (["--score-threshold", "11"], "--score-threshold: expected a judge score between 0 and 10"),
    (["--service", " "], "--service: expected a non-empty name"),
    (["--reason", "rude"], "--reason: expected one of thumbs_down, fallback, hallucinated, low_score, error, "
                           "got 'rude'"),
])
def test_cli_bad_options_exit_2_before_touching_the_database(args: list[str], message: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    # an unreachable database URL: the options are rejected before it is used
    code = main(["failures", "--database-url", "postgresql://nobody@127.0.0.1:1/none", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_cli_endpoint_embeddings_through_the_openai_client(writer: BatchWriter, database_url: str,
                                                           llm_server: LLMServer,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    _small_set(writer)
    code = main(["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "json", "--embeddings-base-url", llm_server.base_url,
                 "--embeddings-model", "test-embedding"])
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert report["embedder"] == "endpoint:test-embedding"
    assert sum(c["size"] for c in report["clusters"]) == 10
    calls = [r for r in llm_server.requests if r.path == "/v1/embeddings"]
    assert len(calls) == 1 and len(calls[0].body["input"]) == 13  # both windows in one request
    assert calls[0].body["model"] == "test-embedding"
    assert rows(database_url, "SELECT embedder, problem_turns FROM failure_cluster_runs") == \
        [("endpoint:test-embedding", 10)]


def test_cli_endpoint_failure_exits_1_and_stores_nothing(writer: BatchWriter, database_url: str,
                                                         llm_server: LLMServer,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _small_set(writer)
    # the client retries twice: three failures in a row
    llm_server.script(Reply.error(500), Reply.error(500), Reply.error(500), endpoint="embeddings")
    code = main(["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--embeddings-base-url", llm_server.base_url])
    err = capsys.readouterr().err
    assert code == 1
    assert "EmbeddingError: embeddings endpoint: InternalServerError" in err
    assert len([r for r in llm_server.requests if r.path == "/v1/embeddings"]) == 3
    assert rows(database_url, "SELECT count(*) FROM failure_cluster_runs") == [(0,)]


def test_cli_endpoint_refusing_the_key_exits_1(writer: BatchWriter, database_url: str, llm_server: LLMServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _small_set(writer)
    llm_server.script(Reply.error(401, message="invalid api key"), endpoint="embeddings")
    code = main(["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--embeddings-base-url", llm_server.base_url])
    assert code == 1
    assert "EmbeddingError: embeddings endpoint: AuthenticationError" in capsys.readouterr().err
    assert rows(database_url, "SELECT count(*) FROM failure_cluster_runs") == [(0,)]


def test_an_oversized_message_is_clipped_before_embedding_and_storing(
        writer: BatchWriter, database_url: str, llm_server: LLMServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    pasted = "my order failed with this log: " + "ERROR timeout at step 42; " * 4000  # ~100 KB
    write(writer, [problem_turn("huge", pasted, NOW_NS - 10**9, error=True),
                   problem_turn("small", "order failed", NOW_NS - 2 * 10**9, error=True)])
    code = main(["failures", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "json", "--embeddings-base-url", llm_server.base_url])
    out, err = capsys.readouterr()
    assert code == 0, err
    (call,) = [r for r in llm_server.requests if r.path == "/v1/embeddings"]
    assert [len(text) for text in call.body["input"]] == [12, 2000]
    assert call.body["input"][1].endswith("…")
    stored = rows(database_url, "SELECT max(length(representative_message)) FROM failure_clusters")
    assert stored[0][0] <= 2000 and json.loads(out)["problem_turns"] == 2
