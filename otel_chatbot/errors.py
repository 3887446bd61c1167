"""The errors that cross layers (store → pipeline → receivers), in three kinds.

Each receiver maps a kind to one answer, so the store and the pipeline never decide HTTP or gRPC codes:

- ``RetryableError``: the data is fine, the moment is not (queue full, database down, shutting down).
  HTTP 429 (``QueueFull``) or 503 with ``Retry-After``; gRPC ``UNAVAILABLE`` with RetryInfo. The
  Collector retries.
- ``PermanentError``: this data will fail again (the database refused it). HTTP 400; gRPC
  ``INVALID_ARGUMENT``; the message says what is wrong.
- ``InternalError``: a bug in the processor. HTTP 500; gRPC ``INTERNAL``; logged with its traceback.
  Never a 400: the client did nothing wrong.
"""

from __future__ import annotations


class RetryableError(Exception):
    """Retry later; ``retry_after`` is the suggested wait in seconds, ``reason`` a metric label."""

    reason = "unavailable"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class QueueFull(RetryableError):
    """The ingest queue is at its bound (HTTP 429)."""

    reason = "queue_full"


class Unavailable(RetryableError):
    """The database is unreachable or cannot take the write now, or the processor is stopping (503)."""

    reason = "database_unavailable"


class CommitTimeout(Unavailable):
    """The request's data was not committed within ``request_timeout`` (a slow or stuck database): 503.
    If its write still commits later, the client's retry is a no-op (writes are idempotent)."""

    reason = "timeout"


class PermanentError(Exception):
    """The data of this request is refused and would be refused again."""

    reason = "rejected"


class InternalError(Exception):
    """A processor bug surfaced while handling a request (already logged where it happened)."""

    reason = "internal"


class StartCancelled(Exception):
    """A stop signal arrived while a long-lived object was starting; what it had started is stopped."""
