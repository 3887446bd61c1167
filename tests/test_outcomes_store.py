"""Outcome spans and turn extras through normalise and the real writer: what becomes an outcome, what is
dropped, a retried batch stored once, escalation and versions from any span of the turn."""

from __future__ import annotations

import threading

from store_factories import NOW_NS, rows, trace_id, turn
from test_normalise_conventions import normalise

from otel_chatbot.records import CommitResult, NormalisedBatch, OutcomeRow
from otel_chatbot.store.writer import BatchWriter

TURN = {"chat.turn.id": "t-1", "session.id": "s-1", "chat.source": "website", "input.value": "hi",
        "output.value": "hello"}


def test_outcome_spans_become_outcomes_not_turns_and_bad_ones_are_counted() -> None:
    batch = normalise(
        {"name": "chat.outcome", "id": b"\x01" * 8,
         "attrs": {"chat.outcome.kind": "conversion", "chat.outcome.value": 19.5,
                   "chat.outcome.label": "signup", "session.id": "s-1", "chat.source": "website"}},
        {"name": "chat.outcome", "attrs": {"chat.outcome.kind": "csat", "chat.outcome.value": 9,
                                           "session.id": "s-1"}},  # CSAT is 1-5
        {"name": "chat.outcome", "attrs": {"chat.outcome.kind": "refund", "session.id": "s-1"}},
        {"name": "chat.outcome", "attrs": {"chat.outcome.kind": "lead"}},  # no session, no turn
    )
    assert batch.turns == [] and len(batch.spans) == 4  # the spans are stored all the same
    assert batch.invalid_outcomes == 3
    [outcome] = batch.outcomes
    assert (outcome.kind, outcome.value, outcome.label, outcome.session_id, outcome.turn_id, outcome.origin,
            outcome.service, outcome.source) == ("conversion", 19.5, "signup", "s-1", None, "span", "bot",
                                                 "website")
    assert outcome.key == f"span:{'0a' * 16}:{'01' * 8}"


def test_escalation_and_prompt_version_from_a_child_span_and_app_version_from_the_resource() -> None:
    batch = normalise(
        {"id": b"\x02" * 8, "start": 0, "attrs": TURN},
        {"parent": b"\x02" * 8, "start": 10, "attrs": {
            "chat.in_turn": "t-1", "llm.prompt_template.version": "p-7", "chat.escalation.reason": "legal"}},
        service="bot")
    [turn] = batch.turns
    assert (turn.escalated, turn.escalation_reason, turn.prompt_version, turn.app_version) == (
        True, "legal", "p-7", None)
    assert batch.turn_extras == []  # the turn carries them itself


def test_a_retried_batch_stores_its_outcomes_and_escalation_once(writer: BatchWriter,
                                                                  database_url: str) -> None:
    batch = normalise(
        {"id": b"\x02" * 8, "attrs": {**TURN, "chat.escalated": True, "chat.prompt.version": "v3"}},
        {"name": "chat.outcome", "trace": b"\x0b" * 16,
         "attrs": {"chat.outcome.kind": "nps", "chat.outcome.value": 3, "chat.turn.id": "t-1"}})
    first = writer.write(batch)
    again = writer.write(batch)
    assert [(o.kind, o.value, o.session_id, o.service, o.source) for o in first.new_outcomes] == [
        ("nps", 3.0, "s-1", "bot", "website")]
    # The turn was stored escalated: counted from the new turn, not as a later escalation.
    assert [(t.escalated, t.prompt_version) for t in first.new_turns] == [(True, "v3")]
    assert first.new_escalations == []
    assert again == CommitResult(duplicate_spans=2, span_count=2)
    assert rows(database_url, "SELECT escalated, prompt_version FROM chat_turns") == [(True, "v3")]
    assert rows(database_url, "SELECT kind, turn_id, session_id, pending FROM outcomes") == [
        ("nps", "t-1", "s-1", False)]


def test_an_outcome_and_its_turn_committed_at_once_by_two_writers_meet_exactly_once(
        database_url: str) -> None:
    # Two writers stand for two replicas: each pair (outcome naming a turn on one, the turn on the other)
    # starts together; the outcome is either stored with the turn's session or parked and then attached.
    writers = [BatchWriter(database_url), BatchWriter(database_url)]
    for w in writers:
        w.start()
    pairs = 30
    results: list[list[CommitResult]] = [[], []]
    barrier = threading.Barrier(2)

    def run(side: int) -> None:
        for i in range(pairs):
            outcome = OutcomeRow("conversion", None, "signup", None, f"race-{i}", "api", NOW_NS)
            batch = (NormalisedBatch(outcomes=[outcome]) if side == 0
                     else NormalisedBatch(turns=[turn(trace_id(), turn_id=f"race-{i}", auto=False,
                                                      session=f"s-{i}", service="shop-bot")]))
            barrier.wait(timeout=30)
            results[side].append(writers[side].write(batch))

    threads = [threading.Thread(target=run, args=(side,)) for side in (0, 1)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for w in writers:
            w.shutdown()
    counted = [o for side in results for r in side for o in r.new_outcomes]
    assert sorted(o.turn_id or "" for o in counted) == sorted(f"race-{i}" for i in range(pairs))
    assert {o.service for o in counted} == {"shop-bot"}
    parked = sum(r.parked_outcomes for r in results[0])
    attached = sum(len(r.new_outcomes) for r in results[1])
    assert parked == attached  # each parked outcome was attached by its turn's write, no other
    assert rows(database_url, "SELECT count(*) FROM outcomes WHERE pending") == [(0,)]
    assert rows(database_url, "SELECT count(*) FROM outcomes WHERE session_id = 's-' || substr(turn_id, 6)"
                ) == [(pairs,)]
