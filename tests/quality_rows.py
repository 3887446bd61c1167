"""Rows of the quality loop for tests: turns through the real writer, judge scores and reviews by SQL."""

from __future__ import annotations

from pathlib import Path

import psycopg
from store_factories import feedback, trace_id, turn

from otel_chatbot.records import FeedbackRow, NormalisedBatch, TurnRow
from otel_chatbot.store.writer import BatchWriter

INTENTS_FILE = Path(__file__).parent / "testdata" / "failure_intents.tsv"


def labelled_messages() -> list[tuple[str, str]]:
    """(intent, message) pairs of tests/testdata/failure_intents.tsv, in file order."""
    pairs = []
    for line in INTENTS_FILE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            intent, message = line.split("\t")
            pairs.append((intent, message))
    return pairs


def problem_turn(turn_id: str, message: str, start_ns: int, *, session: str | None = None,
                 service: str = "bot", source: str = "website", reply: str = "Sorry, I can't help with that.",
                 **flags: bool) -> TurnRow:
    """A turn keyed ``turn_id``; pass flags (fallback=True…) to make it a problem on its own."""
    return turn(trace_id(), turn_id=turn_id, auto=False, start_ns=start_ns, session=session,
                user_message=message, bot_response=reply, service=service, source=source, **flags)


def write(writer: BatchWriter, turns: list[TurnRow], ratings: list[FeedbackRow] | None = None) -> None:
    writer.write(NormalisedBatch(turns=turns, feedback=ratings or []))


def thumbs(turn_id: str, rating: str, time_ns: int, comment: str | None = None) -> FeedbackRow:
    return feedback(turn_id, rating, time_ns, comment=comment)


def evaluate(url: str, turn_id: str, *, accuracy: float = 8, relevance: float = 8, clarity: float = 8,
             groundedness: float | None = 8, hallucinated: bool | None = False,
             judge_version: str = "v1") -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "INSERT INTO evaluations (turn_id, evaluator, model, accuracy, relevance, clarity, groundedness, "
            "hallucinated, judge_version) VALUES (%s, 'judge', 'test-model', %s, %s, %s, %s, %s, %s)",
            (turn_id, accuracy, relevance, clarity, groundedness, hallucinated, judge_version))


def review(url: str, turn_id: str, *, rating: str | None = None, corrected_reply: str | None = None,
           reviewer: str = "ana") -> None:
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO turn_reviews (turn_id, reviewer, rating, corrected_reply) "
                     "VALUES (%s, %s, %s, %s)", (turn_id, reviewer, rating, corrected_reply))
