"""The judge inside ``serve``: a sampled fraction of newly committed turns scored in the background.

``offer()`` runs on the writer thread right after a commit, so it never blocks: sampled turn ids go
into a bounded queue and, when it is full, are dropped and counted (``otel_chatbot_judge_dropped_total``)
rather than slowing ingest. Worker threads read each turn back (its reply and the documents its trace
retrieved), judge it, store the verdict and feed ``chatbot_evaluation_score`` and, for a newly flagged
hallucination, ``chatbot_hallucinations_total``. Turns still queued at shutdown are not judged (an
``otel-chatbot evaluate`` run catches up on them: the same sample rate picks the same turns).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Protocol

import psycopg

from otel_chatbot.quality.judge import Judge
from otel_chatbot.quality.llm import JudgeCallFailed, JudgeUnavailable
from otel_chatbot.quality.selection import sampled
from otel_chatbot.records import CommitResult
from otel_chatbot.store import evaluations as store

_log = logging.getLogger(__name__)
_POLL_S = 0.2
_UNAVAILABLE_PAUSE_S = 5.0  # after the endpoint failed for good: don't spin through the queue


class JudgeMetrics(Protocol):
    def observe_evaluation(self, dimension: str, score: float) -> None: ...
    def judge_hallucination(self, service: str, source: str | None) -> None: ...
    def judge_dropped(self, n: int) -> None: ...
    def judge_failed(self) -> None: ...


class OnlineJudge:
    """``start()``, ``offer(commit_result)`` (non-blocking), ``shutdown()`` (safe twice)."""

    def __init__(self, judge: Judge, database_url: str, metrics: JudgeMetrics, *, sample_rate: float,
                 queue_max: int, workers: int = 2, stop: threading.Event | None = None) -> None:
        if not 0 < sample_rate <= 1:
            raise ValueError(f"judge_sample_rate: expected a fraction in (0, 1], got {sample_rate}")
        if queue_max < 1 or workers < 1:
            raise ValueError("judge_queue_max and workers must be at least 1")
        self.judge = judge
        self._url = database_url
        self._metrics = metrics
        self._rate = sample_rate
        self._queue: queue.Queue[str] = queue.Queue(maxsize=queue_max)
        self._workers = workers
        self._stop = stop or threading.Event()  # shared with the judge client: cuts retry waits short
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self.judged = 0  # verdicts stored by this process (tests and logs)

    def start(self) -> None:
        with self._lock:
            if self._threads:
                return
            self._stop.clear()
            self._threads = [threading.Thread(target=self._run, name=f"otel-chatbot-online-judge-{i}",
                                              daemon=True) for i in range(self._workers)]
            for thread in self._threads:
                thread.start()

    def shutdown(self, timeout: float = 5.0) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        self._stop.set()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        left = 0
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            left += 1
        if left:
            _log.info("online judge stopped with %d sampled turn(s) not judged", left)
        self.judge.client.close()

    def offer(self, result: CommitResult) -> None:
        """Queue the sampled new turns of a commit; never waits (a full queue drops and counts)."""
        dropped = 0
        for turn in result.new_turns:
            if not sampled(turn.turn_id, self._rate) or not turn.bot_response:
                continue
            try:
                self._queue.put_nowait(turn.turn_id)
            except queue.Full:
                dropped += 1
        if dropped:
            self._metrics.judge_dropped(dropped)

    def _run(self) -> None:
        conn: psycopg.Connection[Any] | None = None
        try:
            while not self._stop.is_set():
                try:
                    turn_id = self._queue.get(timeout=_POLL_S)
                except queue.Empty:
                    continue
                try:
                    if conn is None or conn.closed:
                        conn = psycopg.connect(self._url, autocommit=True)
                    self._judge_one(conn, turn_id)
                except psycopg.Error as exc:
                    self._metrics.judge_failed()
                    _log.warning("online judge: database error on turn %s: %s", turn_id, exc)
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stop.wait(1.0)
                except Exception:  # a bug must cost one verdict, not the worker thread
                    self._metrics.judge_failed()
                    _log.exception("online judge: unexpected error on turn %s", turn_id)
        finally:
            if conn is not None:
                conn.close()

    def _judge_one(self, conn: psycopg.Connection[Any], turn_id: str) -> None:
        turns = store.turns_to_judge(conn, [turn_id])
        if not turns:
            return  # gone (merged into an ancestor turn, or purged) before its turn came
        turn = turns[0]
        try:
            row = self.judge.judge_turn(turn)
        except JudgeCallFailed as exc:
            self._metrics.judge_failed()
            if not self._stop.is_set():
                _log.warning("online judge: could not judge turn %s: %s", turn_id, exc)
            return
        except JudgeUnavailable as exc:
            self._metrics.judge_failed()
            _log.warning("online judge: %s", exc)
            self._stop.wait(_UNAVAILABLE_PAUSE_S)
            return
        stored, newly_hallucinated = store.save_turn_evaluation(conn, row)
        if not stored:
            return
        self.judged += 1
        for dimension, score in row.scores.items():
            self._metrics.observe_evaluation(dimension, score)
        if newly_hallucinated:
            self._metrics.judge_hallucination(turn.service, turn.source)


def build_online_judge(config: Any, database_url: str, metrics: JudgeMetrics,
                       prices: Any) -> OnlineJudge | None:
    """The online judge the settings ask for (``config``: a ProcessorConfig), or None when off.

    A missing API key raises JudgeUnavailable so ``serve`` refuses to start rather than failing
    every turn later.
    """
    if config.judge_sample_rate <= 0:
        return None
    from otel_chatbot.quality.llm import JudgeClient

    stop = threading.Event()
    client = JudgeClient(config.judge_model, base_url=config.judge_base_url, stop=stop)
    judge = Judge(client, prices, groundedness_threshold=config.judge_groundedness_threshold)
    return OnlineJudge(judge, database_url, metrics, sample_rate=config.judge_sample_rate,
                       queue_max=config.judge_queue_max, stop=stop)
