"""One ``otel-chatbot evaluate`` run: select stored turns (or sessions), judge them in parallel, store.

The database is used from the calling thread only (select, load context, save each verdict as it
arrives); worker threads only wait on the judge. At most ``concurrency`` calls are in flight and a
bounded number of loaded items wait for a worker, so memory does not grow with the window. A verdict is
committed as soon as it arrives: an interrupted run keeps what it judged and a rerun skips it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg

from otel_chatbot.quality.judge import Judge
from otel_chatbot.quality.llm import JudgeCallFailed
from otel_chatbot.quality.report import RunSummary
from otel_chatbot.quality.rubric import JUDGE_VERSION, SESSION_JUDGE_VERSION
from otel_chatbot.quality.selection import sampled
from otel_chatbot.store import evaluations as store

_log = logging.getLogger(__name__)
_LOAD_CHUNK = 100

Progress = Callable[[int, int], None]  # (done, total)
Item = TypeVar("Item")
Row = TypeVar("Row")


@dataclass(frozen=True)
class EvaluateOptions:
    level: str = "turn"  # "turn" | "session"
    where: store.TurnFilter = field(default_factory=store.TurnFilter)
    sample: float = 1.0
    concurrency: int = 4
    limit: int | None = None  # most items judged in this run (after sampling), oldest first
    session_idle: timedelta = timedelta(minutes=30)  # a session is judged once quiet this long

    def validate(self) -> None:
        if self.level not in ("turn", "session"):
            raise ValueError(f"level: expected turn or session, got {self.level!r}")
        if not 0 < self.sample <= 1:
            raise ValueError(f"sample: expected a fraction in (0, 1], got {self.sample}")
        if not 1 <= self.concurrency <= 64:
            raise ValueError(f"concurrency: expected 1-64, got {self.concurrency}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit: expected at least 1, got {self.limit}")


def evaluate(database_url: str, judge: Judge, options: EvaluateOptions,
             progress: Progress | None = None) -> RunSummary:
    """Judge what the options select; JudgeUnavailable (endpoint down) ends the run early."""
    options.validate()
    started = time.monotonic()
    version = JUDGE_VERSION if options.level == "turn" else SESSION_JUDGE_VERSION
    summary = RunSummary(options.level, judge.evaluator, version, judge.model)
    with psycopg.connect(database_url, autocommit=True) as conn:
        if options.level == "turn":
            turns = store.turn_candidates(conn, options.where, judge.evaluator, version)
            ids = _select(summary, [(t.turn_id, t.already_judged) for t in turns], options)
            _judge_all(ids, lambda chunk: store.turns_to_judge(conn, chunk), judge.judge_turn,
                       lambda turn, row: _save_turn(conn, summary, row), lambda t: t.turn_id,
                       summary, options.concurrency, progress, judge)
        else:
            idle_before = datetime.now(UTC) - options.session_idle
            sessions = store.session_candidates(conn, options.where, idle_before, judge.evaluator, version)
            ids = _select(summary, [(s.session_id, s.already_judged) for s in sessions], options)
            _judge_all(ids, lambda chunk: [(s, store.session_transcript(conn, s)) for s in chunk],
                       lambda item: judge.judge_session(*item),
                       lambda item, row: _save_session(conn, summary, row), lambda item: item[0],
                       summary, options.concurrency, progress, judge)
    summary.seconds = time.monotonic() - started
    return summary


def _select(summary: RunSummary, candidates: Sequence[tuple[str, bool]],
            options: EvaluateOptions) -> list[str]:
    summary.matched = len(candidates)
    ids = []
    for item_id, done in candidates:
        if done:
            summary.already_judged += 1
        elif not sampled(item_id, options.sample):
            summary.not_sampled += 1
        else:
            ids.append(item_id)
    if options.limit is not None:
        ids = ids[:options.limit]
    summary.selected = len(ids)
    return ids


def _save_turn(conn: psycopg.Connection[Any], summary: RunSummary, row: store.TurnEvaluationRow) -> None:
    stored, newly = store.save_turn_evaluation(conn, row)
    summary.add_usage(row.input_tokens, row.output_tokens, row.cost_usd)
    if stored:
        summary.judged += 1
        summary.add_scores(row.scores)
        summary.newly_hallucinated += newly
    else:  # another run stored this turn's verdict meanwhile
        summary.already_judged += 1


def _save_session(conn: psycopg.Connection[Any], summary: RunSummary,
                  row: store.SessionEvaluationRow) -> None:
    summary.add_usage(row.input_tokens, row.output_tokens, row.cost_usd)
    if store.save_session_evaluation(conn, row):
        summary.judged += 1
        summary.add_scores(row.scores)
    else:
        summary.already_judged += 1


def _chunks(ids: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(ids), size):
        yield list(ids[i:i + size])


def _judge_all(ids: Sequence[str], load: Callable[[list[str]], Sequence[Item]],
               work: Callable[[Item], Row], save: Callable[[Item, Row], None],
               name: Callable[[Item], str], summary: RunSummary, concurrency: int,
               progress: Progress | None, judge: Judge) -> None:
    total = len(ids)
    done = 0
    pending: dict[Future[Row], Item] = {}

    def settle(block: bool) -> None:
        nonlocal done
        finished, _ = wait(pending, return_when=FIRST_COMPLETED) if block else (
            [f for f in pending if f.done()], None)
        for future in finished:
            item = pending.pop(future)
            try:
                save(item, future.result())
            except JudgeCallFailed as exc:
                usage = exc.usage
                summary.add_usage(usage.input_tokens, usage.output_tokens,
                                  judge.prices.cost(judge.model, usage.input_tokens, usage.output_tokens))
                summary.add_failure(name(item), str(exc))
                _log.warning("could not judge %s: %s", name(item), exc)
            done += 1
            if progress is not None:
                progress(done, total)

    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="otel-chatbot-judge")
    try:
        for chunk in _chunks(ids, _LOAD_CHUNK):
            for item in load(chunk):
                pending[pool.submit(work, item)] = item
                while len(pending) >= concurrency * 2:
                    settle(block=True)
                settle(block=False)
        while pending:
            settle(block=True)
        # Turns deleted between selection and loading count as neither judged nor failed.
        summary.selected -= total - done
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
