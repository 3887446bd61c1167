"""`otel-chatbot export --format openai-finetune --max-tokens`: exact token counts, long conversations
split at turn boundaries into windows, turns over the limit skipped and counted."""

from __future__ import annotations

import gzip
import importlib.resources
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from quality_rows import problem_turn, write
from store_factories import NOW_NS

from otel_chatbot.cli import main
from otel_chatbot.quality.finetune import FinetuneFormatError, validate_line
from otel_chatbot.quality.finetune_windows import Window, plan_windows
from otel_chatbot.quality.tokens import openai_counter, utf8_bound_counter
from otel_chatbot.store.writer import BatchWriter

NOW = datetime.fromtimestamp(NOW_NS / 1e9, UTC)
S = 10**9
SINCE, UNTIL = (NOW - timedelta(hours=23)).isoformat(), (NOW + timedelta(hours=1)).isoformat()
SYSTEM = "Be brief."


def _question(i: int) -> str:
    return f"Question {i}: when do you open on day {i}?"


def _answer(i: int) -> str:
    return f"On day {i} we open at nine."


def _o200k_from_tiktoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """tiktoken's own o200k_base definition (pattern, special tokens, the published file's sha256),
    reading the BPE file shipped in the bpe-openai wheel instead of downloading it: tiktoken checks
    the hash, so this is OpenAI's file byte for byte."""
    import tiktoken
    import tiktoken.load
    import tiktoken_ext.openai_public as public

    local = tmp_path / "o200k_base.tiktoken"
    packaged = importlib.resources.files("bpe_openai.data") / "o200k_base.tiktoken.gz"
    local.write_bytes(gzip.decompress(packaged.read_bytes()))
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # no cache: read the local file, check its hash
    monkeypatch.setattr(public, "load_tiktoken_bpe", lambda _url, expected_hash:
                        tiktoken.load.load_tiktoken_bpe(str(local), expected_hash=expected_hash))
    return tiktoken.Encoding(**public.o200k_base())


def test_exact_counts_match_tiktoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    reference = _o200k_from_tiktoken(monkeypatch, tmp_path)
    counter = openai_counter()
    assert counter.exact and counter.name == "o200k_base"
    rng = random.Random(7)
    alphabet = "abcdefghij KLMNOP 0123456789 .,;'!?\n\t-é日😀ßçø/\\"
    texts = ["Hello, world!", "A" * 5000, "  spaces\n\n\ttabs  ", "Ünïcödé — 日本語のテキスト 😀👍🏽",
             "order #82761 costs $49.99", "don't I'LL we've", "<|endoftext|> is text here",
             _question(1), _answer(1), SYSTEM]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 300))) for _ in range(1000)]
    assert [counter.count_text(t) for t in texts] == [len(reference.encode_ordinary(t)) for t in texts]
    # The texts of the windows test below, counted by tiktoken: 13 + 9 tokens, so a turn costs 30.
    assert [len(reference.encode_ordinary(t)) for t in (_question(1), _answer(1))] == [13, 9]
    assert counter.message("user", _question(1)) + counter.message("assistant", _answer(1)) == 30
    assert counter.example([{"role": "system", "content": SYSTEM}]) == 3 + 3 + 1 + 3


def test_byte_bound_is_never_below_the_exact_count() -> None:
    exact, bound = openai_counter(), utf8_bound_counter()
    assert not bound.exact
    for text in ("Hello, world!", "日本語のテキスト 😀", "A" * 999, " \n\t"):
        assert bound.count_text(text) >= exact.count_text(text)
    assert bound.count_text("日本") == 6


@pytest.mark.parametrize(("costs", "fixed", "limit", "windows", "skipped"), [
    ([30] * 3, 10, 130, [Window(range(0), range(0, 3))], 0),                   # fits: one line
    ([30] * 7, 10, 130, [Window(range(0), range(0, 4)), Window(range(3, 4), range(4, 7))], 0),
    # 129: a turn (30) is over a quarter of the room (29), but the one just before a window still goes
    ([30] * 7, 10, 129, [Window(range(0), range(0, 3)), Window(range(2, 3), range(3, 5)),
                         Window(range(4, 5), range(5, 7))], 0),
    ([10, 200, 10, 10], 10, 130, [Window(range(0), range(0, 1)), Window(range(0), range(2, 4))], 1),
    ([200, 200], 10, 130, [], 2),
    # context is the newest turns within a quarter of the room: 10 + 5 + 5 + 10 <= 30, 40 more is not
    ([40, 10, 5, 5, 10, 70], 10, 130, [Window(range(0), range(0, 5)), Window(range(1, 5), range(5, 6))], 0),
])
def test_plan_windows(costs: list[int], fixed: int, limit: int, windows: list[Window], skipped: int) -> None:
    assert plan_windows(costs, fixed, limit) == (windows, skipped)


def _long_conversations(writer: BatchWriter) -> None:
    t = NOW_NS - 3600 * S
    turns = [problem_turn(f"l{i}", _question(i), t + i * S, session="long", reply=_answer(i))
             for i in range(1, 8)]
    turns += [
        problem_turn("h1", "Hi", t + 100 * S, session="huge", reply="Hello."),
        problem_turn("h2", "refund " * 120, t + 101 * S, session="huge", reply="No."),
        problem_turn("h3", "Thanks", t + 102 * S, session="huge", reply="You're welcome."),
    ]
    write(writer, turns)


def _export(tmp_path: Path, url: str, *args: str) -> tuple[int, list[dict[str, Any]]]:
    out = tmp_path / "train.jsonl"
    code = main(["export", "--database-url", url, "--since", SINCE, "--until", UNTIL, "--output", str(out),
                 "--format", "openai-finetune", *args])
    lines = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    return code, lines


def _user(i: int) -> dict[str, Any]:
    return {"role": "user", "content": _question(i)}


def _assistant(i: int, **weight: int) -> dict[str, Any]:
    return {"role": "assistant", "content": _answer(i), **weight}


def test_long_conversation_split_into_windows(writer: BatchWriter, database_url: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    _long_conversations(writer)
    code, lines = _export(tmp_path, database_url, "--system-prompt", SYSTEM, "--max-tokens", "130")
    assert code == 0
    system = {"role": "system", "content": SYSTEM}
    assert lines == [
        # 10 (system prompt and priming) + 4 turns of 30 = 130
        {"messages": [system, _user(1), _assistant(1), _user(2), _assistant(2), _user(3), _assistant(3),
                      _user(4), _assistant(4)]},
        # turn 4 again as context, not trained on; then 5, 6, 7: 130 again
        {"messages": [system, _user(4), _assistant(4, weight=0), _user(5), _assistant(5), _user(6),
                      _assistant(6), _user(7), _assistant(7)]},
        {"messages": [system, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]},
        # the 120-word turn is over the limit on its own; no context reaches across it
        {"messages": [system, {"role": "user", "content": "Thanks"},
                      {"role": "assistant", "content": "You're welcome."}]},
    ]
    counter = openai_counter()
    assert [counter.example(line["messages"]) for line in lines] == [130, 130, 21, 22]
    for line in lines:
        validate_line(line)
    err = capsys.readouterr().err
    assert "10 turns in the window, 10 chosen (0 with a reviewer's corrected reply, 0 skipped for an empty " \
           "message or reply), 4 lines" in err
    assert "token limit 130 per line (counted as o200k_base): 2 conversations split into windows, 1 turns " \
           "skipped as longer than the limit on their own, longest line 130 tokens" in err
    assert "wrote 4 fine-tuning lines" in err


def test_default_limit_keeps_whole_conversations(writer: BatchWriter, database_url: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _long_conversations(writer)
    code, lines = _export(tmp_path, database_url)
    assert code == 0
    assert [len(line["messages"]) for line in lines] == [14, 6]
    assert not any("weight" in m for line in lines for m in line["messages"])
    assert "token limit 65536 per line (counted as o200k_base): 0 conversations split into windows, " \
           "0 turns skipped" in capsys.readouterr().err


def test_byte_bound_counter_windows_stay_valid(writer: BatchWriter, database_url: str) -> None:
    import psycopg

    from otel_chatbot.quality.export import FinetuneSelection, finetune_lines
    from otel_chatbot.quality.window import TurnWindow

    _long_conversations(writer)
    window = TurnWindow(since=NOW - timedelta(hours=23), until=NOW + timedelta(hours=1))
    with psycopg.connect(database_url) as conn:
        lines, counts = finetune_lines(conn, FinetuneSelection(window, max_tokens=130), SYSTEM,
                                       utf8_bound_counter())
    bound = utf8_bound_counter()
    assert counts.counter == "utf-8 bytes (upper bound)"
    assert all(bound.example(line["messages"]) <= 130 for line in lines)
    # Bytes overcount: a turn costs 82 here (45 + 37 bytes with framing) and the system prompt with the
    # priming 21 (3 + 3 + 6 + 9); 21 + 2 * 82 > 130, so each line holds one turn and no context.
    assert bound.example(lines[0]["messages"]) == 21 + 82
    assert [[m["content"] for m in line["messages"] if m["role"] == "assistant" and "weight" not in m]
            for line in lines[:7]] == [[_answer(i)] for i in range(1, 8)]
    assert (counts.lines, counts.conversations_split, counts.turns_too_long) == (9, 2, 1)


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "openai-finetune", "--max-tokens", "0"], "--max-tokens: expected 64 to 10000000, got 0"),
    (["--format", "openai-finetune", "--max-tokens", "10000001"],
     "--max-tokens: expected 64 to 10000000, got 10000001"),
    (["--format", "csv", "--max-tokens", "100"], "--max-tokens: only applies to --format openai-finetune"),
    (["--format", "openai-finetune", "--max-tokens", "64", "--system-prompt", "word " * 60],
     # 3 priming + 3 framing + 1 for the role + 61 for the text (60 words and the trailing space)
     "--max-tokens: 64 leaves no room for a turn after the system prompt (68 tokens with the line's "
     "framing)"),
])
def test_max_tokens_bad_values_exit_2(args: list[str], message: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "--database-url", "postgresql://nobody@127.0.0.1:1/none", *args]) == 2
    assert message in capsys.readouterr().err


def test_max_tokens_not_a_number_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["export", "--format", "openai-finetune", "--max-tokens", "lots"])
    assert exited.value.code == 2
    assert "argument --max-tokens: invalid int value: 'lots'" in capsys.readouterr().err


@pytest.mark.parametrize(("line", "message"), [
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": 0}]},
     "the last assistant message must be trained on"),
    ({"messages": [{"role": "user", "content": "q", "weight": 0}, {"role": "assistant", "content": "a"}]},
     "messages[0].weight: expected 0 or 1 on an assistant message"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "weight": True}]},
     "messages[1].weight: expected 0 or 1"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a", "name": "x"}]},
     "messages[1]: expected an object with 'role' and 'content'"),
])
def test_weight_is_checked(line: dict[str, Any], message: str) -> None:
    with pytest.raises(FinetuneFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_line(line)
