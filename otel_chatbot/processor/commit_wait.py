"""A request waits for its commit at most ``request_timeout`` seconds, then is answered retryable.

A database that is slow or stuck (a lock held elsewhere, a saturated disk) must not hold receiver
threads, connections and in-flight bytes without end: past the timeout the request's future is
cancelled (the writer skips it if it is still queued) and the client gets ``CommitTimeout`` (HTTP 503 /
gRPC UNAVAILABLE with a retry delay). If its write is already running and commits after all, the
client's retry is a no-op: writes are idempotent on (trace_id, span_id).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from concurrent.futures import Future

from otel_chatbot.errors import CommitTimeout
from otel_chatbot.records import CommitResult

RETRY_AFTER_S = 5


def _timed_out(timeout: float) -> CommitTimeout:
    return CommitTimeout(f"not committed within request_timeout ({timeout:g} s): the database is slow "
                         "or stuck; retry later", RETRY_AFTER_S)


def wait_for_commit(future: Future[CommitResult], timeout: float | None) -> CommitResult:
    """The commit's result (or its error), or CommitTimeout after ``timeout`` seconds (None: no limit)."""
    done, _ = concurrent.futures.wait([future], timeout)
    if not done and timeout is not None and future.cancel():
        raise _timed_out(timeout)
    return future.result()  # resolved meanwhile (cancel() lost the race): its own outcome


async def wait_for_commit_async(future: Future[CommitResult], timeout: float | None) -> CommitResult:
    """``wait_for_commit`` for an event loop (the OTLP/HTTP receiver)."""
    wrapped = asyncio.wrap_future(future)
    try:
        done, _ = await asyncio.wait({wrapped}, timeout=timeout)
    except asyncio.CancelledError:
        future.cancel()  # nobody waits for it any more: the writer skips it if still queued
        raise
    if not done and timeout is not None and future.cancel():
        raise _timed_out(timeout)
    return await wrapped
