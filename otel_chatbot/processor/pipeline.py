"""The ingest pipeline: decoded batches → a bounded queue → ONE writer thread → futures resolved after commit.

Receivers decode in their own thread or event loop and ``submit()`` the batch; the writer thread
takes every queued batch (up to ``write_batch_spans``) and commits them in one ``BatchWriter.write()``
(group commit: one fsync for many requests), so decoding request N+1 overlaps committing N.
Each submitter's future resolves only after its spans are committed.

Refusals are immediate and retryable: ``QueueFull`` when the spans not yet committed would exceed
``queue_max_spans`` (memory stays bounded), ``Unavailable`` while the database is down (the writer
thread reconnects with backoff; ``ready`` is False meanwhile) or after ``close_intake()``.
When a group fails (``PermanentError``, or ``Unavailable`` while the database still answers), its
requests are committed one by one so only the one at fault fails; ``shutdown(timeout)`` keeps one
deadline and cancels the write in progress at it (its requests get ``Unavailable``);
any other exception is a bug: logged, and the group's requests fail with ``InternalError``.
A request whose receiver stopped waiting (``request_timeout``, processor/commit_wait.py) has its future
cancelled: still queued, it is skipped; being written, its answer is dropped. Either way it is counted
refused with reason ``timeout``.
Errors are those of ``otel_chatbot.errors`` (the receivers map them to status codes).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import Protocol

from otel_chatbot.errors import (
    CommitTimeout,
    InternalError,
    PermanentError,
    QueueFull,
    RetryableError,
    Unavailable,
)
from otel_chatbot.records import CommitResult, NormalisedBatch

_log = logging.getLogger(__name__)

_BACKOFF_MIN_S = 0.1
_BACKOFF_MAX_S = 5.0
# How often each writer thread hands settled turns to the metrics (BatchWriter.settle), busy or idle.
_SETTLE_EVERY_S = 1.0
_CANCEL_MARGIN_S = 0.5  # before the shutdown deadline: time for a cancelled write to return


class Writer(Protocol):
    def start(self) -> None: ...
    def write(self, batch: NormalisedBatch) -> CommitResult: ...
    def settle(self, until_ns: int | None = None) -> CommitResult: ...
    def cancel(self) -> None: ...
    def shutdown(self) -> None: ...


class PipelineMetrics(Protocol):
    def observe_commit(self, result: CommitResult) -> None: ...
    def spans_accepted(self, n: int, transport: str) -> None: ...
    def spans_refused(self, n: int, transport: str, reason: str) -> None: ...
    def set_queue_depth(self, spans: int) -> None: ...
    def observe_write(self, seconds: float, spans: int) -> None: ...
    def database_error(self) -> None: ...


class _Item:
    __slots__ = ("batch", "future", "size", "transport")

    def __init__(self, batch: NormalisedBatch, transport: str, size: int) -> None:
        self.batch = batch
        self.transport = transport
        self.size = size
        self.future: Future[CommitResult] = Future()


class Pipeline:
    """``submit(batch, transport) -> Future[CommitResult]``; each writer has its own thread."""

    def __init__(self, writers: Writer | Sequence[Writer], metrics: PipelineMetrics, *,
                 queue_max_spans: int = 50_000, write_batch_spans: int = 8_192,
                 on_commit: Callable[[CommitResult], None] | None = None) -> None:
        self._writers: list[Writer] = list(writers) if isinstance(writers, Sequence) else [writers]
        if not self._writers:
            raise ValueError("writers: at least one writer is needed")
        self._metrics = metrics
        self._on_commit = on_commit  # e.g. the online judge's offer(): must not block
        self._max = queue_max_spans
        self._group_max = write_batch_spans
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Item] = deque()
        self._pending = 0  # spans queued or being written (the bound of queue_max_spans)
        self._intake_open = False
        self._stopping = False
        self._down_reason: str | None = "not started"
        self._threads: list[threading.Thread] = []
        self._in_progress: list[_Item] = []  # taken by a writer thread, not resolved yet

    # --- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect the writer (if the database is down, keep retrying in the background) and run."""
        with self._cond:
            if self._threads:
                return
            self._stopping = False
        down: str | None = None
        for writer in self._writers:
            try:
                writer.start()
            except Unavailable as exc:
                down = str(exc)
                self._metrics.database_error()
                _log.warning("database unavailable at start, retrying in the background: %s", exc)
                break
        with self._cond:
            self._down_reason = down
            self._intake_open = True
            self._threads = [threading.Thread(target=self._run, args=(writer,), daemon=True,
                                              name=f"otel-chatbot-writer-{i}")
                             for i, writer in enumerate(self._writers)]
            for thread in self._threads:
                thread.start()

    def close_intake(self) -> None:
        """Refuse new batches (503) while what is queued still gets committed."""
        with self._cond:
            self._intake_open = False

    def shutdown(self, timeout: float = 30.0) -> None:
        """Stop intake, commit what is queued (up to ``timeout``), stop the writer. Safe twice."""
        with self._cond:
            self._intake_open = False
            self._stopping = True
            threads, self._threads = self._threads, []
            self._cond.notify_all()
        # One deadline for the whole drain. Near it, a write still in progress is cancelled (its
        # requests get 503 and are retried by their clients), so shutdown never outlives ``timeout``.
        deadline = time.monotonic() + timeout
        cancel_at = deadline - min(_CANCEL_MARGIN_S, timeout / 4)
        for thread in threads:
            thread.join(max(0.0, cancel_at - time.monotonic()))
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            for writer in self._writers:
                writer.cancel()
            for thread in threads:
                thread.join(min(0.05, max(0.0, deadline - time.monotonic())))
        if any(t.is_alive() for t in threads):
            _log.error("writer did not stop within %.1f s; failing what is left", timeout)
            # Answer the requests of the write still running: if it commits after all, their retry
            # is a no-op (writes are idempotent), so nothing is lost or stored twice.
            with self._cond:
                stuck = [item for item in self._in_progress if not item.future.done()]
            self._resolve(stuck, None, Unavailable("the processor is shutting down", 1), count=False)
        else:
            _log.info("pipeline drained in %.2f s (deadline %.1f s)", time.monotonic() - deadline + timeout,
                      timeout)
        self._fail_queued(Unavailable("the processor is shutting down", 1))
        for writer in self._writers:
            writer.shutdown()

    # --- state -----------------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self._down_reason is None and self._intake_open

    @property
    def down_reason(self) -> str | None:
        """Why the database is considered unavailable (None when it is not)."""
        return self._down_reason

    @property
    def pending_spans(self) -> int:
        return self._pending

    # --- intake ----------------------------------------------------------------------------------
    def submit(self, batch: NormalisedBatch, transport: str) -> Future[CommitResult]:
        """Queue ``batch``; raises QueueFull / Unavailable (retryable) instead of waiting for room."""
        if not batch.spans and not batch.feedback and not batch.turns and not batch.outcomes:
            # Nothing to store (e.g. ordinary log lines on /v1/logs): no transaction for it.
            done: Future[CommitResult] = Future()
            done.set_result(CommitResult())
            return done
        size = len(batch)  # spans + feedback rows: what the queue bound counts
        item = _Item(batch, transport, size)
        with self._cond:
            refusal = self._refusal(size)
            if refusal is None:
                self._queue.append(item)
                self._pending += size
                pending = self._pending
                self._cond.notify()
        if refusal is not None:
            self._metrics.spans_refused(len(batch.spans), transport, refusal.reason)
            raise refusal
        self._metrics.set_queue_depth(pending)
        return item.future

    def check_room(self, spans: int, transport: str) -> None:
        """Raise (and count) the refusal ``submit()`` would give a request of ``spans`` now: a receiver
        asks after parsing and before normalising, which is most of a request's cost, so that under
        overload the refused requests do not take the CPU the accepted ones need."""
        with self._cond:
            refusal = self._refusal(spans)
        if refusal is not None:
            self._metrics.spans_refused(spans, transport, refusal.reason)
            raise refusal

    def _refusal(self, size: int) -> RetryableError | None:
        if not self._intake_open:
            return Unavailable("the processor is shutting down" if self._stopping or not self._threads
                               else "the processor is not accepting data", 1)
        if self._down_reason is not None:
            return Unavailable(f"database unavailable: {self._down_reason}", 5)
        # An oversized single batch is still taken when the queue is empty, so it cannot wait forever.
        if self._pending and self._pending + size > self._max:
            return QueueFull(f"ingest queue full ({self._pending} spans waiting, limit {self._max})", 1)
        return None

    # --- the writer thread -----------------------------------------------------------------------
    def _run(self, writer: Writer) -> None:
        backoff = _BACKOFF_MIN_S
        next_settle = time.monotonic() + _SETTLE_EVERY_S
        while True:
            if self._down_reason is not None:
                if self._stopping:
                    return
                if self._reconnect(writer):
                    backoff = _BACKOFF_MIN_S
                else:
                    with self._cond:
                        self._cond.wait_for(lambda: self._stopping, backoff)
                    backoff = min(backoff * 2, _BACKOFF_MAX_S)
                continue
            group = self._take_group(max(0.0, next_settle - time.monotonic()))
            if group is None:
                self._settle(writer)  # what the last writes left due
                return
            if group:
                with self._cond:
                    self._in_progress.extend(group)
                try:
                    self._commit(group, writer)
                finally:
                    with self._cond:
                        for item in group:
                            self._in_progress.remove(item)
            if time.monotonic() >= next_settle:
                self._settle(writer)
                next_settle = time.monotonic() + _SETTLE_EVERY_S

    def _take_group(self, timeout: float) -> list[_Item] | None:
        """The next group of queued batches; [] when ``timeout`` passes first; None when stopping."""
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                if not self._cond.wait(timeout):
                    return []
            group: list[_Item] = []
            abandoned: list[_Item] = []
            spans = 0
            while self._queue and (not group or spans + self._queue[0].size <= self._group_max):
                item = self._queue.popleft()
                if item.future.cancelled():  # its request timed out: nobody waits for this write
                    abandoned.append(item)
                    continue
                spans += item.size
                group.append(item)
        if abandoned:
            self._resolve(abandoned, None, None)
        return group

    def _commit(self, group: list[_Item], writer: Writer) -> None:
        if len(group) == 1:
            batch = group[0].batch
        else:
            batch = NormalisedBatch()
            for item in group:
                batch.extend(item.batch)
        started = time.perf_counter()
        try:
            result = writer.write(batch)
        except Unavailable as exc:
            self._metrics.database_error()
            if len(group) > 1 and not self._stopping:
                # It may be this group's size or one request's data (not the database): commit each
                # request alone so the others still succeed; the first one failing alike marks it down.
                _log.warning("group of %d requests failed (%s); committing them one by one", len(group), exc)
                self._commit_one_by_one(group, writer)
                return
            _log.warning("database unavailable: %s", exc)
            with self._cond:
                self._down_reason = str(exc)
            error = Unavailable(f"database unavailable: {exc}", 5)
            self._resolve(group, None, error)
            self._fail_queued(error)
            return
        except PermanentError as exc:
            self._metrics.database_error()
            if len(group) > 1:
                self._commit_one_by_one(group, writer)  # find the culprit; the others still succeed
                return
            _log.warning("database rejected a batch: %s", exc)
            self._resolve(group, None, exc)
            return
        except Exception as exc:  # a bug must fail the requests (500, not 400), not kill the writer thread
            _log.exception("unexpected error while writing a batch")
            self._resolve(group, None, InternalError(f"internal error while writing: {exc!r}"))
            return
        self._metrics.observe_write(time.perf_counter() - started, len(batch.spans))
        try:
            self._metrics.observe_commit(result)
        except Exception:
            _log.exception("observe_commit failed")  # metrics must never fail a committed request
        if self._on_commit is not None:
            try:
                self._on_commit(result)
            except Exception:
                _log.exception("on_commit failed")
        self._resolve(group, result, None)

    def _settle(self, writer: Writer) -> None:
        """Count the turns that became final. Failures only delay the count: the turns stay due."""
        try:
            result = writer.settle()
        except Unavailable as exc:
            _log.warning("settling turns: %s", exc)  # the next write notices the outage
            return
        except Exception:
            _log.exception("unexpected error while settling turns")
            return
        if result.new_turns or result.corrected_turns or result.new_sessions:
            try:
                self._metrics.observe_commit(result)
            except Exception:
                _log.exception("observe_commit failed")
        if result.new_turns and self._on_commit is not None:  # e.g. the online judge: final turns
            try:
                self._on_commit(result)
            except Exception:
                _log.exception("on_commit failed")

    def _commit_one_by_one(self, group: list[_Item], writer: Writer) -> None:
        for i, item in enumerate(group):
            if self._down_reason is not None:  # the database went down meanwhile: no point trying each
                self._resolve(group[i:], None, Unavailable(f"database unavailable: {self._down_reason}", 5))
                return
            self._commit([item], writer)

    def _resolve(self, group: list[_Item], result: CommitResult | None, error: Exception | None,
                 *, count: bool = True) -> None:
        """Resolve the items' futures (those not resolved already); ``count=False``: the items stay
        counted as pending (their write is still running and will resolve them again, as a no-op)."""
        if count:
            with self._cond:
                self._pending -= sum(item.size for item in group)
                pending = self._pending
            self._metrics.set_queue_depth(pending)
        accepted: dict[str, int] = {}
        for item in group:
            if item.future.cancelled():  # its receiver stopped waiting (request_timeout): refused there
                if count:
                    self._metrics.spans_refused(len(item.batch.spans), item.transport, CommitTimeout.reason)
                continue
            if item.future.done():  # answered at the shutdown deadline
                continue
            spans = len(item.batch.spans)
            try:
                if error is None:
                    item.future.set_result(result)  # type: ignore[arg-type]  # not None without error
                    accepted[item.transport] = accepted.get(item.transport, 0) + spans
                else:
                    item.future.set_exception(error)
                    reason = getattr(error, "reason", InternalError.reason)
                    self._metrics.spans_refused(spans, item.transport, reason)
            except InvalidStateError:
                continue  # cancelled meanwhile (its client went away)
        for transport, n in accepted.items():
            self._metrics.spans_accepted(n, transport)

    def _fail_queued(self, error: Exception) -> None:
        with self._cond:
            items = list(self._queue)
            self._queue.clear()
        if items:
            self._resolve(items, None, error)

    def _reconnect(self, writer: Writer) -> bool:
        try:
            writer.start()
        except Unavailable as exc:
            self._metrics.database_error()
            with self._cond:
                self._down_reason = str(exc)
            return False
        _log.info("database reachable again")
        with self._cond:
            self._down_reason = None
        return True
