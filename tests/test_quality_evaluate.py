"""The LLM judge against the real openai client, the local OpenAI-compatible server and real Postgres."""

from __future__ import annotations

import hashlib
import json

import pytest
from judge_support import (
    HOUR_NS,
    PAST_NS,
    ConcurrencyProbe,
    by_user_message,
    make_judge,
    scores,
    store_turn,
    user_text,
)
from llm_server import LLMServer, Reply
from store_factories import rows

from otel_chatbot.quality.evaluate import EvaluateOptions, evaluate
from otel_chatbot.quality.llm import RetryPolicy
from otel_chatbot.quality.rubric import JUDGE_VERSION, MAX_MESSAGE_CHARS, SESSION_JUDGE_VERSION
from otel_chatbot.store.evaluations import TurnFilter
from otel_chatbot.store.writer import BatchWriter

# gpt-4o-mini in the packaged price table: USD 0.15 / 0.60 per million input / output tokens.
MINI_IN, MINI_OUT = 0.15, 0.60

EVALUATION_COLUMNS = ("SELECT turn_id, evaluator, judge_version, model, accuracy, relevance, clarity, "
                      "groundedness, hallucinated, rationale, input_tokens, output_tokens, cost_usd "
                      "FROM evaluations ORDER BY turn_id")


def test_scores_tokens_and_cost_are_stored_exactly(writer: BatchWriter, database_url: str,
                                                   llm_server: LLMServer) -> None:
    a = store_turn(writer, "where is my parcel", "it left the depot today")
    b = store_turn(writer, "cancel my order", "done, it is cancelled", start_ns=PAST_NS + 10**9)
    verdicts = {"parcel": scores(8, 9, 7.5, rationale="correct and direct"),
                "cancel": scores(3, 6, 10, rationale="claims an action it cannot take")}
    llm_server.respond_with(by_user_message(verdicts))
    summary = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions())

    requests = [r.body for r in llm_server.chat_requests()]
    assert len(requests) == 2
    expected = {}
    for body, turn_row in ((next(r for r in requests if key in user_text(r)), t)
                           for key, t in (("parcel", a), ("cancel", b))):
        assert turn_row.user_message in user_text(body) and str(turn_row.bot_response) in user_text(body)
        verdict = verdicts["parcel" if turn_row is a else "cancel"]
        # The server counts words: of the prompt messages, and of the JSON it answered.
        prompt_tokens = sum(len(str(m["content"]).split()) for m in body["messages"])
        completion_tokens = len(json.dumps(verdict).split())
        expected[turn_row.turn_id] = (
            "llm-judge", JUDGE_VERSION, "gpt-4o-mini", verdict["accuracy"], verdict["relevance"],
            verdict["clarity"], None, None, verdict["rationale"], prompt_tokens, completion_tokens,
            pytest.approx((prompt_tokens * MINI_IN + completion_tokens * MINI_OUT) / 1e6))
    assert {r[0]: r[1:] for r in rows(database_url, EVALUATION_COLUMNS)} == expected
    # No retrieval: the schema asks for no groundedness, strict structured output.
    fmt = requests[0]["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert sorted(fmt["json_schema"]["schema"]["required"]) == [
        "accuracy", "clarity", "rationale", "relevance"]
    assert requests[0]["temperature"] == 0 and requests[0]["model"] == "gpt-4o-mini"
    # The summary adds up what is stored.
    assert (summary.matched, summary.selected, summary.judged, summary.failed) == (2, 2, 2, 0)
    totals = rows(database_url,
                  "SELECT sum(input_tokens), sum(output_tokens), sum(cost_usd) FROM evaluations")
    assert (summary.input_tokens, summary.output_tokens) == (totals[0][0], totals[0][1])
    assert summary.cost_usd == pytest.approx(totals[0][2])
    dist = summary.distribution()
    assert dist["accuracy"] == {"n": 2, "mean": 5.5, "min": 3.0, "p25": 4.25, "p50": 5.5, "p75": 6.75,
                                "max": 8.0}
    assert dist["clarity"]["mean"] == 8.75


def test_malformed_answer_is_repaired_once(writer: BatchWriter, database_url: str,
                                           llm_server: LLMServer) -> None:
    t = store_turn(writer, "opening hours?", "9 to 5")
    llm_server.script(Reply("Sure! The scores are: accuracy 9", prompt_tokens=40, completion_tokens=8),
                      Reply(scores(9, 9, 9), prompt_tokens=60, completion_tokens=20))
    summary = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions())
    assert (summary.judged, summary.failed) == (1, 0)
    first, second = (r.body for r in llm_server.chat_requests())
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2] == {"role": "assistant", "content": "Sure! The scores are: accuracy 9"}
    assert second["messages"][3]["role"] == "user"
    assert "not valid JSON" in second["messages"][3]["content"]
    # Both calls are paid for.
    assert rows(database_url, "SELECT turn_id, accuracy, input_tokens, output_tokens FROM evaluations") == [
        (t.turn_id, 9.0, 100, 28)]


def test_second_invalid_answer_fails_the_turn_and_stores_nothing(writer: BatchWriter, database_url: str,
                                                                 llm_server: LLMServer) -> None:
    store_turn(writer, "opening hours?", "9 to 5")
    good = store_turn(writer, "refund policy?", "30 days", start_ns=PAST_NS + 10**9)
    llm_server.script(Reply("not json at all", prompt_tokens=10, completion_tokens=4),
                      Reply(scores(14, 9, 9), prompt_tokens=20, completion_tokens=6))
    llm_server.respond_with(lambda body: Reply(scores(7, 7, 7)))
    summary = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions(concurrency=1))
    assert (summary.selected, summary.judged, summary.failed) == (2, 1, 1)
    ((_, reason),) = summary.failures
    assert "accuracy: 14 is greater than the maximum of 10" in reason
    assert rows(database_url, "SELECT turn_id FROM evaluations") == [(good.turn_id,)]
    assert summary.input_tokens >= 30 and summary.output_tokens >= 10  # the failed calls are counted too


def test_429_waits_retry_after_and_500_is_retried(writer: BatchWriter, database_url: str,
                                                  llm_server: LLMServer) -> None:
    t = store_turn(writer, "hello", "hi")
    llm_server.script(Reply.error(429, retry_after=1.2), Reply.error(500), Reply(scores(6, 6, 6)))
    # Backoff alone would wait at most 0.05 s: only Retry-After explains a wait of 1.2 s.
    judge = make_judge(llm_server.base_url,
                       retry=RetryPolicy(max_retries=3, base_delay_s=0.01, max_delay_s=0.05))
    summary = evaluate(database_url, judge, EvaluateOptions())
    first, second, third = llm_server.chat_requests()
    assert second.at - first.at >= 1.2
    assert third.at - second.at < 1.0
    assert (summary.judged, summary.failed) == (1, 0)
    assert rows(database_url, "SELECT turn_id, accuracy FROM evaluations") == [(t.turn_id, 6.0)]


def test_server_errors_beyond_max_retries_fail_the_turn(writer: BatchWriter, database_url: str,
                                                        llm_server: LLMServer) -> None:
    store_turn(writer, "hello", "hi")
    llm_server.script(*[Reply.error(503, message="overloaded")] * 3)
    judge = make_judge(llm_server.base_url, retry=RetryPolicy(max_retries=2, base_delay_s=0.01))
    summary = evaluate(database_url, judge, EvaluateOptions())
    assert len(llm_server.chat_requests()) == 3
    assert summary.failed == 1 and summary.judged == 0
    assert summary.failures[0][1] == "the judge kept failing (HTTP 503 after 3 attempts): overloaded"
    assert rows(database_url, "SELECT count(*) FROM evaluations") == [(0,)]


def _expected_sample(ids: list[str], rate: float) -> set[str]:
    return {i for i in ids if int.from_bytes(hashlib.blake2b(i.encode(), digest_size=8).digest(), "big")
            / 2**64 < rate}


def test_sampling_is_deterministic_and_judged_turns_are_skipped(writer: BatchWriter, database_url: str,
                                                                llm_server: LLMServer) -> None:
    ids = [store_turn(writer, f"question {i}", f"answer {i}", start_ns=PAST_NS + i * 10**6).turn_id
           for i in range(40)]
    llm_server.respond_with(lambda body: Reply(scores(5, 5, 5)))
    judge = make_judge(llm_server.base_url)
    quarter, half = _expected_sample(ids, 0.25), _expected_sample(ids, 0.5)
    assert 0 < len(quarter) < len(half) < 40  # the hash spreads these ids (a fixed property of them)

    first = evaluate(database_url, judge, EvaluateOptions(sample=0.25))
    assert (first.matched, first.judged, first.not_sampled, first.already_judged) == (
        40, len(quarter), 40 - len(quarter), 0)
    assert {r[0] for r in rows(database_url, "SELECT turn_id FROM evaluations")} == quarter

    again = evaluate(database_url, judge, EvaluateOptions(sample=0.25))
    assert (again.judged, again.already_judged, again.not_sampled) == (0, len(quarter), 40 - len(quarter))
    assert len(llm_server.chat_requests()) == len(quarter)

    wider = evaluate(database_url, judge, EvaluateOptions(sample=0.5))
    assert (wider.judged, wider.already_judged) == (len(half - quarter), len(quarter))
    assert {r[0] for r in rows(database_url, "SELECT turn_id FROM evaluations")} == half

    # Another evaluator name is another judge: it scores the same turns again.
    other = evaluate(database_url, make_judge(llm_server.base_url, evaluator="judge-b"),
                     EvaluateOptions(sample=0.25))
    assert (other.judged, other.already_judged) == (len(quarter), 0)


def test_filters_and_limit(writer: BatchWriter, database_url: str, llm_server: LLMServer) -> None:
    from datetime import UTC, datetime

    old = store_turn(writer, "old", start_ns=PAST_NS - 48 * HOUR_NS)
    web = store_turn(writer, "web", start_ns=PAST_NS)
    store_turn(writer, "wa", start_ns=PAST_NS + 1000, source="whatsapp")
    store_turn(writer, "other service", start_ns=PAST_NS + 2000, service="sales")
    store_turn(writer, "no reply", None, start_ns=PAST_NS + 3000)
    llm_server.respond_with(lambda body: Reply(scores(5, 5, 5)))
    since = datetime.fromtimestamp((PAST_NS - HOUR_NS) / 1e9, UTC)
    summary = evaluate(database_url, make_judge(llm_server.base_url),
                       EvaluateOptions(where=TurnFilter(since=since, service="bot", source="website")))
    assert summary.matched == 1
    assert rows(database_url, "SELECT turn_id FROM evaluations") == [(web.turn_id,)]
    until = datetime.fromtimestamp((PAST_NS - HOUR_NS) / 1e9, UTC)
    limited = evaluate(database_url, make_judge(llm_server.base_url),
                       EvaluateOptions(where=TurnFilter(until=until), limit=1))
    assert (limited.matched, limited.judged) == (1, 1)
    assert rows(database_url, "SELECT turn_id FROM evaluations WHERE turn_id = %s", old.turn_id) == [
        (old.turn_id,)]


def test_concurrency_is_bounded(writer: BatchWriter, database_url: str, llm_server: LLMServer) -> None:
    for i in range(12):
        store_turn(writer, f"q{i}", start_ns=PAST_NS + i * 1000)
    probe = ConcurrencyProbe(scores(5, 5, 5), hold_s=0.15)
    llm_server.respond_with(probe)
    summary = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions(concurrency=3))
    assert summary.judged == 12
    assert probe.max_in_flight == 3


def test_retrieved_documents_ground_the_reply_and_low_groundedness_flags_a_hallucination(
        writer: BatchWriter, database_url: str, llm_server: LLMServer) -> None:
    invented = store_turn(writer, "how long do refunds take", "refunds are instant and include a bonus",
                          documents=["Refunds are processed within 5 business days.", "No bonus is paid."])
    grounded = store_turn(writer, "do you ship to Canada", "yes, in 7 days", start_ns=PAST_NS + 1000,
                          documents=["We ship to Canada in 7 days."])
    flagged_by_app = store_turn(writer, "price of plan B", "it is free", start_ns=PAST_NS + 2000,
                                documents=["Plan B costs 10 USD."], hallucinated=True,
                                hallucination_source="app")
    no_context = store_turn(writer, "tell me a joke", "why did the span cross the trace",
                            start_ns=PAST_NS + 3000)
    llm_server.respond_with(by_user_message({
        "refunds take": scores(2, 8, 9, groundedness=1, rationale="contradicts document 1"),
        "Canada": scores(9, 9, 9, groundedness=9),
        "plan B": scores(1, 8, 9, groundedness=0),
        "joke": scores(7, 8, 9),
    }))
    summary = evaluate(database_url, make_judge(llm_server.base_url, threshold=5), EvaluateOptions())

    refund_request = next(r.body for r in llm_server.chat_requests() if "refunds take" in user_text(r.body))
    prompt = user_text(refund_request)
    first_doc = prompt.index("RETRIEVED DOCUMENT 1:\nRefunds are processed within 5 business days.")
    assert first_doc < prompt.index("RETRIEVED DOCUMENT 2:\nNo bonus is paid.")
    schema = refund_request["response_format"]["json_schema"]["schema"]
    assert "groundedness" in schema["required"]
    joke_request = next(r.body for r in llm_server.chat_requests() if "joke" in user_text(r.body))
    assert "groundedness" not in joke_request["response_format"]["json_schema"]["schema"]["properties"]

    assert rows(database_url,
                "SELECT turn_id, groundedness, hallucinated FROM evaluations ORDER BY groundedness") == [
                    (flagged_by_app.turn_id, 0.0, True), (invented.turn_id, 1.0, True),
                    (grounded.turn_id, 9.0, False), (no_context.turn_id, None, None)]
    flags = rows(database_url, "SELECT turn_id, hallucinated, hallucination_source FROM chat_turns")
    assert sorted(flags) == sorted([
        (invented.turn_id, True, "judge"), (grounded.turn_id, False, None),
        (flagged_by_app.turn_id, True, "app"), (no_context.turn_id, False, None)])
    assert summary.newly_hallucinated == 1  # the app had flagged plan B already


def test_long_messages_are_clipped_before_judging(writer: BatchWriter, database_url: str,
                                                  llm_server: LLMServer) -> None:
    store_turn(writer, "paste " + "x" * 200_000, "y" * 100_000)
    llm_server.respond_with(lambda body: Reply(scores(5, 5, 5)))
    evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions())
    (request,) = llm_server.chat_requests()
    assert len(user_text(request.body)) < 2 * MAX_MESSAGE_CHARS + 200


def test_session_level(writer: BatchWriter, database_url: str, llm_server: LLMServer) -> None:
    for i, (user, bot) in enumerate([("I want a refund", "Sure, what is the order number?"),
                                     ("A-123", "Refund issued for A-123."), ("thanks", "You're welcome!")]):
        store_turn(writer, user, bot, session="happy", start_ns=PAST_NS + i * 10**9)
    for i in range(2):
        store_turn(writer, f"agent please {i}", "I did not understand", session="angry",
                   start_ns=PAST_NS + (10 + i) * 10**9)
    import time
    store_turn(writer, "still typing", "ok", session="ongoing", start_ns=time.time_ns() - 60 * 10**9)
    llm_server.respond_with(by_user_message({
        "refund": {"goal_completion": 10, "coherence": 9, "frustration": 0, "goal_completed": True,
                   "rationale": "resolved in three turns"},
        "agent please": {"goal_completion": 1, "coherence": 4, "frustration": 9, "goal_completed": False,
                         "rationale": "the user asks for a human twice"},
    }))
    summary = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions(level="session"))
    assert (summary.matched, summary.judged, summary.judge_version) == (2, 2, SESSION_JUDGE_VERSION)
    assert rows(database_url,
                "SELECT session_id, judge_version, goal_completion, coherence, frustration, goal_completed, "
                "rationale, turns FROM session_evaluations ORDER BY session_id") == [
        ("angry", SESSION_JUDGE_VERSION, 1.0, 4.0, 9.0, False, "the user asks for a human twice", 2),
        ("happy", SESSION_JUDGE_VERSION, 10.0, 9.0, 0.0, True, "resolved in three turns", 3)]
    happy = next(user_text(r.body) for r in llm_server.chat_requests() if "refund" in user_text(r.body))
    assert happy.index("TURN 1\nUSER: I want a refund") < happy.index("TURN 2\nUSER: A-123") < happy.index(
        "TURN 3\nUSER: thanks\nBOT: You're welcome!")
    again = evaluate(database_url, make_judge(llm_server.base_url), EvaluateOptions(level="session"))
    assert (again.judged, again.already_judged) == (0, 2)


def test_a_judge_call_that_times_out_is_retried(writer: BatchWriter, database_url: str,
                                                llm_server: LLMServer) -> None:
    t = store_turn(writer, "hello", "hi")
    llm_server.script(Reply.slow(3.0, scores(1, 1, 1)), Reply(scores(8, 8, 8)))
    summary = evaluate(database_url, make_judge(llm_server.base_url, timeout_s=0.5), EvaluateOptions())
    assert (summary.judged, summary.failed) == (1, 0)
    assert len(llm_server.chat_requests()) == 2
    assert rows(database_url, "SELECT turn_id, accuracy FROM evaluations") == [(t.turn_id, 8.0)]


def test_timeouts_beyond_max_retries_fail_the_turn(writer: BatchWriter, database_url: str,
                                                   llm_server: LLMServer) -> None:
    store_turn(writer, "hello", "hi")
    llm_server.script(*[Reply.slow(2.0, scores(1, 1, 1))] * 2)
    judge = make_judge(llm_server.base_url, timeout_s=0.3,
                       retry=RetryPolicy(max_retries=1, base_delay_s=0.01))
    summary = evaluate(database_url, judge, EvaluateOptions())
    assert summary.failed == 1 and summary.failures[0][1] == "the judge did not answer in time"
    assert rows(database_url, "SELECT count(*) FROM evaluations") == [(0,)]
