"""The LLM judge: one turn or one conversation in, a scored row (with what the judging cost) out.

Groundedness is scored only when the turn's trace retrieved documents; a score below
``groundedness_threshold`` marks the reply hallucinated (source ``judge``). Without documents there is
nothing to check the reply against, so ``hallucinated`` stays unassessed (NULL).
"""

from __future__ import annotations

from typing import Protocol

from otel_chatbot.quality.llm import JudgeClient
from otel_chatbot.quality.rubric import (
    JUDGE_VERSION,
    SESSION_DIMENSIONS,
    SESSION_JUDGE_VERSION,
    SESSION_SCHEMA,
    TranscriptTurn,
    session_messages,
    turn_messages,
    turn_schema,
)
from otel_chatbot.store.evaluations import SessionEvaluationRow, TurnEvaluationRow, TurnToJudge

DEFAULT_EVALUATOR = "llm-judge"
DEFAULT_GROUNDEDNESS_THRESHOLD = 5.0


class Prices(Protocol):
    def cost(self, model: str | None, input_tokens: int, output_tokens: int) -> float | None: ...


class Judge:
    """``judge_turn`` / ``judge_session``; raise JudgeCallFailed / JudgeUnavailable from the client."""

    def __init__(self, client: JudgeClient, prices: Prices, *, evaluator: str = DEFAULT_EVALUATOR,
                 groundedness_threshold: float = DEFAULT_GROUNDEDNESS_THRESHOLD) -> None:
        if not 0 <= groundedness_threshold <= 10:
            raise ValueError(f"groundedness threshold: expected 0-10, got {groundedness_threshold}")
        self.client = client
        self.prices = prices
        self.evaluator = evaluator
        self.groundedness_threshold = groundedness_threshold

    @property
    def model(self) -> str:
        return self.client.model

    def judge_turn(self, turn: TurnToJudge) -> TurnEvaluationRow:
        schema = turn_schema(with_context=bool(turn.documents))
        verdict, usage, model = self.client.ask(
            turn_messages(turn.user_message, turn.bot_response, turn.documents), schema, "turn_scores")
        scores = {k: float(v) for k, v in verdict.items() if k != "rationale"}
        grounded = scores.get("groundedness")
        return TurnEvaluationRow(
            turn_id=turn.turn_id, evaluator=self.evaluator, judge_version=JUDGE_VERSION, model=model,
            scores=scores, hallucinated=None if grounded is None else grounded < self.groundedness_threshold,
            rationale=str(verdict["rationale"]), input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cost_usd=self.prices.cost(model, usage.input_tokens, usage.output_tokens))

    def judge_session(self, session_id: str,
                      transcript: list[tuple[str | None, str | None]]) -> SessionEvaluationRow:
        turns = [TranscriptTurn(user, bot) for user, bot in transcript]
        verdict, usage, model = self.client.ask(session_messages(turns), SESSION_SCHEMA, "session_scores")
        return SessionEvaluationRow(
            session_id=session_id, evaluator=self.evaluator, judge_version=SESSION_JUDGE_VERSION,
            model=model, scores={k: float(verdict[k]) for k in SESSION_DIMENSIONS},
            goal_completed=bool(verdict["goal_completed"]), rationale=str(verdict["rationale"]),
            turns=len(turns), input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
            cost_usd=self.prices.cost(model, usage.input_tokens, usage.output_tokens))
