"""Pure parts of the judge: verdict validation, prompts, time bounds, sampling, Retry-After parsing."""

from __future__ import annotations

import email.utils
import time
from datetime import UTC, datetime, timedelta

import pytest

from otel_chatbot.quality.llm import RetryPolicy, api_key, retry_after_seconds
from otel_chatbot.quality.rubric import (
    MAX_CONTEXT_CHARS,
    SESSION_SCHEMA,
    TranscriptTurn,
    VerdictInvalid,
    parse_verdict,
    session_messages,
    turn_messages,
    turn_schema,
)
from otel_chatbot.quality.selection import parse_duration, parse_rate, parse_when, sampled

GOOD = '{"accuracy": 7, "relevance": 8.5, "clarity": 10, "rationale": "ok"}'


def test_a_valid_verdict_and_a_fenced_one() -> None:
    expected = {"accuracy": 7, "relevance": 8.5, "clarity": 10, "rationale": "ok"}
    assert parse_verdict(GOOD, turn_schema(False)) == expected
    assert parse_verdict(f"```json\n{GOOD}\n```", turn_schema(False)) == expected


@pytest.mark.parametrize(("content", "with_context", "problem"), [
    (None, False, "not valid JSON (Expecting value at character 0)"),
    ("scores: 7", False, "not valid JSON (Expecting value at character 0)"),
    ('{"accuracy": NaN, "relevance": 1, "clarity": 1, "rationale": ""}', False,
     "not valid JSON (NaN is not a number JSON allows)"),
    ('{"accuracy": -1, "relevance": 1, "clarity": 1, "rationale": ""}', False,
     "accuracy: -1 is less than the minimum of 0"),
    ('{"accuracy": "high", "relevance": 1, "clarity": 1, "rationale": ""}', False,
     "accuracy: 'high' is not of type 'number'"),
    ('{"accuracy": true, "relevance": 1, "clarity": 1, "rationale": ""}', False,
     "accuracy: True is not of type 'number'"),
    ('{"accuracy": 1, "relevance": 1, "clarity": 1}', False,
     "the answer: 'rationale' is a required property"),
    (GOOD, True, "the answer: 'groundedness' is a required property"),
    ('{"accuracy": 1, "relevance": 1, "clarity": 1, "rationale": "", "mood": 3}', False,
     "the answer: Additional properties are not allowed ('mood' was unexpected)"),
    ("[1, 2]", False, "the answer: [1, 2] is not of type 'object'"),
])
def test_invalid_verdicts_say_what_is_wrong(content: str | None, with_context: bool, problem: str) -> None:
    with pytest.raises(VerdictInvalid) as info:
        parse_verdict(content, turn_schema(with_context))
    assert str(info.value) == problem


def test_session_schema_requires_the_goal_flag() -> None:
    with pytest.raises(VerdictInvalid, match="'goal_completed' is a required property"):
        parse_verdict('{"goal_completion": 1, "coherence": 1, "frustration": 1, "rationale": ""}',
                      SESSION_SCHEMA)


def test_prompts_carry_the_documents_within_a_budget() -> None:
    docs = ["a" * (MAX_CONTEXT_CHARS - 10), "b" * 100, "never shown"]
    system, user = turn_messages("q", "r", docs)
    assert "documents the bot retrieved" in system["content"]
    assert "RETRIEVED DOCUMENT 2:\n" + "b" * 10 + " […truncated]" in user["content"]
    assert "never shown" not in user["content"]
    system, user = turn_messages("q", None, [])
    assert "retrieved" not in system["content"] and user["content"] == "USER MESSAGE:\nq\n\nBOT REPLY:\n"


def test_long_sessions_keep_the_latest_turns() -> None:
    turns = [TranscriptTurn(f"u{i}", f"b{i}") for i in range(45)]
    content = session_messages(turns)[1]["content"]
    assert content.startswith("(the first 5 turns are omitted)\n\nTURN 6\nUSER: u5\nBOT: b5")
    assert content.endswith("TURN 45\nUSER: u44\nBOT: b44")


def test_time_bounds_and_rates() -> None:
    now = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_when("7d", now) == now - timedelta(days=7)
    assert parse_when("90m", now) == now - timedelta(minutes=90)
    assert parse_when("2025-02-01T00:00:00Z", now) == datetime(2025, 2, 1, tzinfo=UTC)
    assert parse_when("2025-02-01", now) == datetime(2025, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="expected a duration like 7d or 24h, or an ISO timestamp"):
        parse_when("last tuesday", now)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    with pytest.raises(ValueError, match="expected a duration like 30m, 24h or 7d, got '5 years'"):
        parse_duration("5 years")
    assert parse_rate("0.1") == 0.1 and parse_rate("25%") == 0.25 and parse_rate("1") == 1.0
    for bad in ("0", "-0.1", "1.01", "nan", "abc", "150%"):
        with pytest.raises(ValueError):
            parse_rate(bad)


def test_sampling_is_stable_and_nested() -> None:
    keys = [f"turn-{i}" for i in range(2000)]
    tenth = {k for k in keys if sampled(k, 0.1)}
    assert tenth == {k for k in keys if sampled(k, 0.1)}
    assert tenth <= {k for k in keys if sampled(k, 0.3)}
    assert 150 < len(tenth) < 250  # a hash, not a counter: about 200 of 2000
    assert all(sampled(k, 1.0) for k in keys) and not any(sampled(k, 0.0) for k in keys)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"Retry-After": "3"}) == 3.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= (retry_after_seconds({"Retry-After": in_ten}) or 0) <= 10


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4.0)
    for attempt, ceiling in ((0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (6, 4.0)):
        waits = [policy.backoff(attempt) for _ in range(50)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits)


def test_api_key_lookup() -> None:
    assert api_key({"OTEL_CHATBOT_JUDGE_API_KEY": "a", "OPENAI_API_KEY": "b"}, None) == "a"
    assert api_key({"OPENAI_API_KEY": "b"}, None) == "b"
    assert api_key({}, "http://localhost:8000/v1") == "unused"
