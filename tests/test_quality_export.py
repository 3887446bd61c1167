"""`otel-chatbot export`: fine-tuning JSONL, problem turns as JSONL/CSV, synthesis per failure cluster."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from llm_server import LLMServer, Reply
from quality_rows import evaluate, problem_turn, review, thumbs, write
from store_factories import NOW_NS, rows

from otel_chatbot.cli import main
from otel_chatbot.quality.embed import WordLlamaEmbedder
from otel_chatbot.quality.failures import FailureOptions, find_failure_clusters
from otel_chatbot.quality.finetune import FinetuneFormatError, validate_line
from otel_chatbot.quality.window import TurnWindow
from otel_chatbot.store.writer import BatchWriter

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
S = 10**9
SINCE, UNTIL = (NOW - timedelta(hours=23)).isoformat(), (NOW + timedelta(hours=1)).isoformat()
SYSTEM = "You are Acme's support assistant."


def _conversations(writer: BatchWriter, url: str) -> None:
    """Two sessions and a lone turn, with ratings, problems, a judge score and reviews."""
    t = NOW_NS - 3600 * S
    write(writer, [
        problem_turn("a1", "hi, my email is ana@example.com", t, session="sa", reply="Hello Ana!"),
        problem_turn("a2", "when do you open?", t + 10 * S, session="sa", reply="We open at 8."),
        problem_turn("a3", "and on sundays?", t + 20 * S, session="sa", reply="Closed, sorry", fallback=True),
        problem_turn("b1", "refund my order", t + 5 * S, session="sb", reply="I can't do that."),
        problem_turn("b2", "why not?", t + 15 * S, session="sb", reply="Policy.", error=True),
        problem_turn("c1", "do you ship to Spain?", t + 30 * S, session=None, reply="Yes, in 3 days."),
        problem_turn("d1", "", t + 40 * S, session="sd", reply="Hello?"),
        problem_turn("old", "last month", NOW_NS - 40 * 24 * 3600 * S, session="so", reply="old answer"),
    ], [thumbs("a1", "up", t), thumbs("a2", "up", t), thumbs("b1", "down", t), thumbs("c1", "up", t)])
    evaluate(url, "c1", accuracy=2)  # rated up by the user, but the judge scores it 2: a problem
    review(url, "a3", rating="down", corrected_reply="On Sundays we open 10-14. Call +1 415 555 0100.")
    review(url, "b1", rating="down", corrected_reply="Sure: refunds take 5 days.")
    review(url, "a2", rating="down")  # a reviewer disagrees with the user's thumbs-up, no correction


def _export(tmp_path: Path, url: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    out = tmp_path / "train.jsonl"
    code = main(["export", "--database-url", url, "--since", SINCE, "--until", UNTIL, "--output", str(out),
                 *args])
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, lines


def _pairs(line: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in line["messages"]]


def test_finetune_assembles_sessions_with_corrections_and_redaction(
        writer: BatchWriter, database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _conversations(writer, database_url)
    code, lines = _export(tmp_path, database_url, "--format", "openai-finetune", "--system-prompt", SYSTEM)
    assert code == 0
    assert [_pairs(line) for line in lines] == [
        [("system", SYSTEM), ("user", "hi, my email is [REDACTED:EMAIL]"),
         ("assistant", "Hello [REDACTED:NAME]!"), ("user", "when do you open?"),
         ("assistant", "We open at 8."),
         ("user", "and on sundays?"), ("assistant", "On Sundays we open 10-14. Call [REDACTED:PHONE].")],
        [("system", SYSTEM), ("user", "refund my order"), ("assistant", "Sure: refunds take 5 days."),
         ("user", "why not?"), ("assistant", "Policy.")],
        [("system", SYSTEM), ("user", "do you ship to Spain?"), ("assistant", "Yes, in 3 days.")],
    ]
    for line in lines:
        validate_line(line)
    err = capsys.readouterr().err
    assert "7 turns in the window, 6 chosen (2 with a reviewer's corrected reply, 1 skipped" in err
    assert "wrote 3 fine-tuning lines" in err


def test_finetune_rating_up_and_exclude_problems(writer: BatchWriter, database_url: str,
                                                 tmp_path: Path) -> None:
    _conversations(writer, database_url)
    code, up = _export(tmp_path, database_url, "--format", "openai-finetune", "--rating", "up")
    assert code == 0
    # a2's thumbs-up is overruled by the reviewer; corrected turns count as up
    assert [_pairs(line) for line in up] == [
        [("user", "hi, my email is [REDACTED:EMAIL]"), ("assistant", "Hello [REDACTED:NAME]!"),
         ("user", "and on sundays?"), ("assistant", "On Sundays we open 10-14. Call [REDACTED:PHONE].")],
        [("user", "refund my order"), ("assistant", "Sure: refunds take 5 days.")],
        [("user", "do you ship to Spain?"), ("assistant", "Yes, in 3 days.")],
    ]
    code, clean = _export(tmp_path, database_url, "--format", "openai-finetune", "--exclude-problems")
    assert code == 0
    # out: a2 (reviewer down), b2 (error), c1 (judge score 2); corrected a3 and b1 stay
    assert [[m["content"] for m in line["messages"] if m["role"] == "user"] for line in clean] == [
        ["hi, my email is [REDACTED:EMAIL]", "and on sundays?"], ["refund my order"]]


def test_finetune_to_stdout_and_empty_window(writer: BatchWriter, database_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    _conversations(writer, database_url)
    assert main(["export", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "openai-finetune", "--rating", "up", "--exclude-problems"]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 2 and json.loads(out.splitlines()[1])["messages"][0]["role"] == "user"
    assert main(["export", "--database-url", database_url, "--since", "2020-01-01", "--until", "2020-01-02",
                 "--format", "openai-finetune"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and "wrote 0 fine-tuning lines (no turn matched)" in captured.err


@pytest.mark.parametrize(("line", "message"), [
    ([], "exactly one key, 'messages'"),
    ({"messages": [], "metadata": {}}, "exactly one key"),
    ({"messages": []}, "messages: expected a non-empty list"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "the last message must be the assistant's"),
    ({"messages": [{"role": "assistant", "content": "hi"}]}, "messages[0].role: expected 'user'"),
    ({"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]},
     "messages[0].content: expected non-empty text"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role: expected one of system, user"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
     "messages[1].role: expected 'assistant'"),
    ({"messages": [{"role": "user", "content": "a"}, {"role": "system", "content": "b"}]},
     "messages[1].role: expected 'assistant', got 'system'"),
    ({"messages": [{"role": "user", "content": "a", "name": "x"}]}, "expected an object with 'role'"),
])
def test_validate_line_rejects_what_the_format_forbids(line: Any, message: str) -> None:
    with pytest.raises(FinetuneFormatError) as caught:
        validate_line(line)
    assert message in str(caught.value)


def test_problem_turns_as_jsonl_and_csv(writer: BatchWriter, database_url: str, tmp_path: Path) -> None:
    _conversations(writer, database_url)
    out = tmp_path / "problems.jsonl"
    assert main(["export", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "jsonl", "--output", str(out)]) == 0
    problems = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(p["turn_id"], p["reasons"]) for p in problems] == [
        ("b1", ["thumbs_down"]), ("b2", ["error"]), ("a3", ["fallback"]), ("c1", ["low_score"])]
    a3 = problems[2]
    assert a3["corrected_reply"] == "On Sundays we open 10-14. Call [REDACTED:PHONE]."
    assert a3["review_rating"] == "down"
    assert problems[3]["lowest_score"] == 2.0 and problems[3]["cluster_id"] is None
    assert set(a3) == {"turn_id", "started_at", "session_id", "service", "source", "reasons", "lowest_score",
                       "user_message", "bot_response", "feedback_comment", "review_rating", "corrected_reply",
                       "cluster_id", "cluster_label"}
    out_csv = tmp_path / "problems.csv"
    assert main(["export", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "csv", "--output", str(out_csv), "--service", "bot"]) == 0
    with out_csv.open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["turn_id"] for r in table] == ["b1", "b2", "a3", "c1"]
    assert table[0]["reasons"] == "thumbs_down" and table[0]["cluster_id"] == ""
    assert table[3]["lowest_score"] == "2.0"
    assert main(["export", "--database-url", database_url, "--since", SINCE, "--until", UNTIL,
                 "--format", "csv", "--output", str(out_csv), "--reason", "error",
                 "--reason", "fallback"]) == 0
    with out_csv.open(newline="") as f:
        assert [r["turn_id"] for r in csv.DictReader(f)] == ["b2", "a3"]


def _clustered_with_corrections(writer: BatchWriter, url: str) -> int:
    refunds = ["I want a refund for my order", "refund please", "how do I get my money back",
               "where is my refund, mail me at bo@example.com"]
    logins = ["I forgot my password", "password reset email never arrives", "can't log in to my account"]
    write(writer, [problem_turn(f"r{i}", m, NOW_NS - (i + 1) * S, fallback=True)
                   for i, m in enumerate(refunds)]
          + [problem_turn(f"l{i}", m, NOW_NS - (i + 10) * S, error=True) for i, m in enumerate(logins)])
    review(url, "r0", corrected_reply="Refunds go back to your card within 5 working days.")
    review(url, "r3", corrected_reply="Your refund was sent; write to refunds@acme.example if not.")
    window = TurnWindow(NOW - timedelta(hours=23), NOW + timedelta(hours=1))
    with psycopg.connect(url, autocommit=True) as conn:
        report = find_failure_clusters(conn, WordLlamaEmbedder(), FailureOptions(window), lambda _: None)
    assert [c.size for c in report.clusters] == [4, 3]
    assert report.run_id is not None
    return report.run_id


def _examples(n: int, start: int = 0) -> dict[str, Any]:
    return {"examples": [{"user": f"question {i}", "assistant": f"Refunds take 5 days ({i})."}
                         for i in range(start, start + n)]}


def test_synthesize_writes_grounded_variations_apart(writer: BatchWriter, database_url: str, tmp_path: Path,
                                                     llm_server: LLMServer,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _clustered_with_corrections(writer, database_url)
    llm_server.script(Reply(_examples(3)))
    synthetic = tmp_path / "synthetic.jsonl"
    code, real = _export(tmp_path, database_url, "--format", "openai-finetune", "--system-prompt", SYSTEM,
                         "--synthesize", "3", "--synthetic-output", str(synthetic),
                         "--llm-base-url", llm_server.base_url, "--llm-model", "test-model")
    err = capsys.readouterr().err
    assert code == 0, err
    assert len(real) == 7  # every real turn is its own conversation (no sessions)
    lines = [json.loads(line) for line in synthetic.read_text().splitlines()]
    assert [_pairs(line) for line in lines] == [
        [("system", SYSTEM), ("user", f"question {i}"), ("assistant", f"Refunds take 5 days ({i}).")]
        for i in range(3)]
    meta = [json.loads(line) for line in Path(str(synthetic) + ".meta.jsonl").read_text().splitlines()]
    assert [(m["line"], m["synthetic"], m["run_id"], m["cluster_id"], m["seed_turn_ids"]) for m in meta] == \
        [(i, True, run_id, 1, ["r0", "r3"]) for i in (1, 2, 3)]
    assert "cluster 2 (" in err and "skipped, no reviewer corrections" in err
    (request,) = llm_server.chat_requests()
    assert request.body["model"] == "test-model"
    assert request.body["response_format"] == {"type": "json_object"}
    prompt = request.body["messages"][1]["content"]
    assert "Refunds go back to your card within 5 working days." in prompt
    assert "bo@example.com" not in prompt and "refunds@acme.example" not in prompt
    assert "[REDACTED:EMAIL]" in prompt
    assert "exactly 3 items" in request.body["messages"][0]["content"]


def test_synthesize_repairs_one_malformed_answer(writer: BatchWriter, database_url: str, tmp_path: Path,
                                                 llm_server: LLMServer) -> None:
    _clustered_with_corrections(writer, database_url)
    llm_server.script(Reply('{"examples": [{"user": "q"'), Reply(_examples(2)))
    synthetic = tmp_path / "synthetic.jsonl"
    code, _ = _export(tmp_path, database_url, "--format", "openai-finetune", "--synthesize", "2",
                      "--synthetic-output", str(synthetic), "--llm-base-url", llm_server.base_url)
    assert code == 0
    assert len(synthetic.read_text().splitlines()) == 2
    _, repair = llm_server.chat_requests()
    assert len(repair.body["messages"]) == 4
    assert repair.body["messages"][2] == {"role": "assistant", "content": '{"examples": [{"user": "q"'}
    assert repair.body["messages"][3]["content"].startswith(
        "That answer is invalid: the answer is not valid JSON")


@pytest.mark.parametrize(("bad", "problem"), [
    ("not json at all", "the answer is not valid JSON"),
    (json.dumps(_examples(1)), '"examples" has 1 items, 2 were asked for'),
    (json.dumps({"examples": [{"user": "q", "assistant": ""}, {"user": "q", "assistant": "a"}]}),
     'examples[0] needs non-empty "user" and "assistant" strings'),
    (json.dumps({"answers": []}), 'the answer has no "examples" list'),
])
def test_synthesize_fails_after_a_second_bad_answer(writer: BatchWriter, database_url: str, tmp_path: Path,
                                                    llm_server: LLMServer, bad: str, problem: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _clustered_with_corrections(writer, database_url)
    llm_server.script(Reply(bad), Reply(bad))
    synthetic = tmp_path / "synthetic.jsonl"
    code, real = _export(tmp_path, database_url, "--format", "openai-finetune", "--synthesize", "2",
                         "--synthetic-output", str(synthetic), "--llm-base-url", llm_server.base_url)
    err = capsys.readouterr().err
    assert code == 1
    assert ("SynthesisError: cluster 1: the model's answer was invalid after one repair request: "
            + problem) in err
    assert len(llm_server.chat_requests()) == 2
    assert real == [] and not synthetic.exists()  # nothing half-written


def test_synthesize_without_a_stored_run_writes_no_synthetic_lines(
        writer: BatchWriter, database_url: str, tmp_path: Path, llm_server: LLMServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    _conversations(writer, database_url)
    synthetic = tmp_path / "synthetic.jsonl"
    code, real = _export(tmp_path, database_url, "--format", "openai-finetune", "--synthesize", "5",
                         "--synthetic-output", str(synthetic), "--llm-base-url", llm_server.base_url)
    assert code == 0 and len(real) == 3 and synthetic.read_text() == ""
    assert "no stored failure clusters (run `otel-chatbot failures` first)" in capsys.readouterr().err
    assert llm_server.chat_requests() == []


def test_synthesize_refused_key_exits_1(writer: BatchWriter, database_url: str, tmp_path: Path,
                                        llm_server: LLMServer, capsys: pytest.CaptureFixture[str]) -> None:
    _clustered_with_corrections(writer, database_url)
    llm_server.script(Reply.error(401, message="invalid api key"))
    synthetic = tmp_path / "synthetic.jsonl"
    code, real = _export(tmp_path, database_url, "--format", "openai-finetune", "--synthesize", "2",
                         "--synthetic-output", str(synthetic), "--llm-base-url", llm_server.base_url)
    assert code == 1
    assert "SynthesisError: cluster 1: AuthenticationError" in capsys.readouterr().err
    assert real == [] and not synthetic.exists()


def test_synthesis_prompt_clips_oversized_corrections(writer: BatchWriter, database_url: str, tmp_path: Path,
                                                      llm_server: LLMServer) -> None:
    _clustered_with_corrections(writer, database_url)
    with psycopg.connect(database_url) as conn:
        conn.execute("UPDATE turn_reviews SET corrected_reply = %s WHERE turn_id = 'r0'", ("x" * 100_000,))
    llm_server.script(Reply(_examples(1)))
    code, _ = _export(tmp_path, database_url, "--format", "openai-finetune", "--synthesize", "1",
                      "--synthetic-output", str(tmp_path / "s.jsonl"), "--llm-base-url", llm_server.base_url)
    assert code == 0
    (request,) = llm_server.chat_requests()
    prompt = request.body["messages"][1]["content"]
    assert "x" * 1999 + "…" in prompt and len(prompt) < 3000


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "parquet"], "--format: expected one of openai-finetune, jsonl, csv, got 'parquet'"),
    (["--format", "csv", "--rating", "up"], "--rating: only applies to --format openai-finetune"),
    (["--format", "jsonl", "--exclude-problems"],
     "--exclude-problems: only applies to --format openai-finetune"),
    (["--format", "openai-finetune", "--reason", "error"],
     "--reason: only applies to --format jsonl or csv (problem turns)"),
    (["--format", "csv", "--reason", "slow"], "--reason: expected one of thumbs_down"),
    (["--format", "openai-finetune", "--rating", "down"], "--rating: expected one of any, up, got 'down'"),
    (["--format", "openai-finetune", "--since", "yesterday"],
     "--since: expected a duration like 7d or 24h, or an ISO timestamp"),
    (["--format", "openai-finetune", "--synthesize", "3"], "--synthetic-output: required with --synthesize"),
    (["--format", "openai-finetune", "--synthesize", "0", "--synthetic-output", "s.jsonl"],
     "--synthesize: expected 1 to 20 examples per cluster, got 0"),
    (["--format", "openai-finetune", "--synthesize", "21", "--synthetic-output", "s.jsonl"],
     "--synthesize: expected 1 to 20 examples per cluster, got 21"),
    (["--format", "openai-finetune", "--synthetic-output", "s.jsonl"],
     "--synthetic-output: only applies with --synthesize"),
    (["--format", "openai-finetune", "--system-prompt", " "], "--system-prompt: expected non-empty text"),
    (["--format", "openai-finetune", "--output", "/no/such/dir/out.jsonl"],
     "--output: directory /no/such/dir does not exist"),
    (["--format", "openai-finetune", "--output", "same.jsonl", "--synthesize", "2",
      "--synthetic-output", "same.jsonl"], "--synthetic-output: must differ from --output"),
])
def test_export_bad_options_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["export", "--database-url", "postgresql://nobody@127.0.0.1:1/none", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_export_requires_a_format(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export"])
    assert exited.value.code == 2
    assert "the following arguments are required: --format" in capsys.readouterr().err


def test_stored_rows_unchanged_by_export(writer: BatchWriter, database_url: str, tmp_path: Path) -> None:
    _conversations(writer, database_url)
    before = rows(database_url, "SELECT turn_id, user_message, bot_response FROM chat_turns ORDER BY turn_id")
    assert _export(tmp_path, database_url, "--format", "openai-finetune")[0] == 0
    assert rows(database_url, "SELECT turn_id, user_message, bot_response FROM chat_turns ORDER BY turn_id") \
        == before
