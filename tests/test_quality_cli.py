"""`otel-chatbot evaluate`: output formats, progress, the API key, and bad input."""

from __future__ import annotations

import json
import socket

import pytest
from judge_support import PAST_NS, scores, store_turn
from llm_server import LLMServer, Reply
from store_factories import rows

from otel_chatbot.cli import main
from otel_chatbot.store.writer import BatchWriter


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "otel-chatbot evaluate" in out and "examples:" in out and "--database-url" in out
    assert "chatbot_evaluation_score" in out  # says where the metric comes from


def test_json_summary_progress_and_key(writer: BatchWriter, database_url: str, llm_server: LLMServer,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CHATBOT_JUDGE_API_KEY", "judge-key")
    monkeypatch.setenv("OPENAI_API_KEY", "other-key")
    for i in range(3):
        store_turn(writer, f"question {i}", start_ns=PAST_NS + i * 1000)
    llm_server.respond_with(lambda body: Reply(scores(6, 7, 8), prompt_tokens=100, completion_tokens=20))
    argv = ["evaluate", "--database-url", database_url, "--base-url", llm_server.base_url, "--since", "1d",
            "--format", "json", "--progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert {k: summary[k] for k in ("level", "evaluator", "model", "matched", "selected", "judged", "failed",
                                    "already_judged", "input_tokens", "output_tokens")} == {
        "level": "turn", "evaluator": "llm-judge", "model": "gpt-4o-mini", "matched": 3, "selected": 3,
        "judged": 3, "failed": 0, "already_judged": 0, "input_tokens": 300, "output_tokens": 60}
    assert summary["cost_usd"] == pytest.approx((300 * 0.15 + 60 * 0.6) / 1e6)
    assert summary["scores"]["relevance"] == {"n": 3, "mean": 7.0, "min": 7.0, "p25": 7.0, "p50": 7.0,
                                              "p75": 7.0, "max": 7.0}
    assert "judged 3/3" in captured.err.splitlines()
    assert {r.headers["authorization"] for r in llm_server.chat_requests()} == {"Bearer judge-key"}

    # A rerun skips them; the table says so.
    assert main(argv[:-3]) == 0
    table = capsys.readouterr().out
    assert "already judged      3 (skipped)" in table and "judged              0 of 0" in table
    assert len(llm_server.chat_requests()) == 3


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "argument --since: expected a duration like 7d or 24h, or an ISO timestamp"),
    (["--until", "2025-13-01"], "argument --until: expected a duration"),
    (["--sample", "0"], "argument --sample: expected a fraction greater than 0 and at most 1, got '0'"),
    (["--sample", "1.5"], "argument --sample: expected a fraction greater than 0 and at most 1, got '1.5'"),
    (["--sample", "lots"], "argument --sample: expected a fraction between 0 and 1 such as 0.1"),
    (["--concurrency", "0"], "argument --concurrency: expected an integer from 1 to 64, got 0"),
    (["--groundedness-threshold", "11"], "argument --groundedness-threshold: expected a score from 0 to 10"),
    (["--level", "trace"], "argument --level: invalid choice: 'trace'"),
    (["--timeout", "-1"], "argument --timeout: expected a number of seconds"),
])
def test_bad_arguments_exit_2(args: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["evaluate", *args])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_settings_exit_2_before_any_call(database_url: str, llm_server: LLMServer,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    base = ["evaluate", "--database-url", database_url]
    assert main([*base, "--base-url", llm_server.base_url, "--since", "1d", "--until", "2d"]) == 2
    assert "otel-chatbot: error: until: must be later than --since" in capsys.readouterr().err
    assert main([*base, "--base-url", "ftp://judge.example.com"]) == 2
    assert "base_url: expected an http(s):// URL, got 'ftp://judge.example.com'" in capsys.readouterr().err
    for name in ("OTEL_CHATBOT_JUDGE_API_KEY", "OPENAI_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert main(base) == 2
    assert ("no API key for the judge: set OTEL_CHATBOT_JUDGE_API_KEY or OPENAI_API_KEY"
            in capsys.readouterr().err)
    assert llm_server.requests == []


def test_unreachable_endpoint_exits_1_with_a_clear_error(writer: BatchWriter, database_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    store_turn(writer, "hello")
    url = _closed_port_url()
    assert main(["evaluate", "--database-url", database_url, "--base-url", url, "--max-retries", "1"]) == 1
    err = capsys.readouterr().err
    assert f"otel-chatbot evaluate: error: cannot reach the judge endpoint {url}" in err
    assert rows(database_url, "SELECT count(*) FROM evaluations") == [(0,)]


def test_refused_key_exits_1(writer: BatchWriter, database_url: str, llm_server: LLMServer,
                             capsys: pytest.CaptureFixture[str]) -> None:
    store_turn(writer, "hello")
    llm_server.script(Reply.error(401, message="Incorrect API key provided"))
    assert main(["evaluate", "--database-url", database_url, "--base-url", llm_server.base_url]) == 1
    assert ("otel-chatbot evaluate: error: the judge endpoint refused the API key (HTTP 401): "
            "Incorrect API key provided") in capsys.readouterr().err
    assert len(llm_server.chat_requests()) == 1  # not retried
    assert rows(database_url, "SELECT count(*) FROM evaluations") == [(0,)]


def test_session_level_from_the_command_line(writer: BatchWriter, database_url: str, llm_server: LLMServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    store_turn(writer, "hi", "hello", session="s-cli")
    store_turn(writer, "bye", "goodbye", session="s-cli", start_ns=PAST_NS + 10**9)
    llm_server.respond_with(lambda body: Reply({"goal_completion": 8, "coherence": 9, "frustration": 1,
                                                "goal_completed": True, "rationale": "polite"}))
    assert main(["evaluate", "--database-url", database_url, "--base-url", llm_server.base_url,
                 "--level", "session", "--idle", "1h"]) == 0
    out = capsys.readouterr().out
    assert "sessions matched    1" in out and "judged              1 of 1" in out
    assert rows(database_url, "SELECT session_id, turns, goal_completion FROM session_evaluations") == [
        ("s-cli", 2, 8.0)]
