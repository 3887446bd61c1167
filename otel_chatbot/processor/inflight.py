"""A byte budget for request bodies held in memory, shared by the HTTP and gRPC receivers.

The ingest queue bounds what is decoded and waiting for the writer; this bounds what comes before it:
bodies being received, inflated and decoded. A request that would take the total beyond the budget
is refused at once as retryable (HTTP 429 / gRPC RESOURCE_EXHAUSTED with RetryInfo) instead of being
held, so memory stays bounded under any number of concurrent senders. A single request larger than
the budget is still taken when nothing else is in flight, so it cannot be refused forever.
"""

from __future__ import annotations

import threading


class InflightBytes:
    """``try_acquire(n)`` → bool, ``release(n)``; thread-safe (gRPC threads and the HTTP event loop)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        self.limit = limit
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def try_acquire(self, n: int) -> bool:
        with self._lock:
            if self._used and self._used + n > self.limit:
                return False
            self._used += n
            return True

    def release(self, n: int) -> None:
        with self._lock:
            self._used = max(0, self._used - n)

    def refusal(self, n: int) -> str:
        return (f"too much data in flight ({self._used} bytes being received or decoded, this request "
                f"{n}, limit max_inflight_bytes={self.limit}): retry later")
