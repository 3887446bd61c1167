"""The connection pool of the HTTP API: feedback turn lookups, /readyz, the pending-feedback sweeper.

One bounded psycopg pool instead of a connection per request: a burst of feedback posts or readiness
probes reuses at most ``max_size`` server connections (each Postgres connection is a process).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

from otel_chatbot.store.migrate import schema_version
from otel_chatbot.store.queries import turn_exists

APPLICATION_NAME = "otel-chatbot-api"


class ApiPool:
    """``start()`` opens the pool without waiting for the database; ``shutdown()`` is safe twice."""

    def __init__(self, url: str, *, max_size: int, timeout: float = 5.0,
                 statement_timeout: float = 0.0) -> None:
        if max_size < 1:
            raise ValueError(f"max_size: expected a positive integer, got {max_size!r}")
        self._timeout = timeout
        self._in_use: set[psycopg.Connection[Any]] = set()  # checked out now (cancelled at shutdown)
        self._returned = threading.Condition()
        # A statement stuck on a lock held elsewhere is cancelled by Postgres after this long (0: never),
        # so a feedback lookup or a review page cannot hold a pooled connection for ever.
        self._statement_timeout = f"{int(statement_timeout * 1000)}ms"
        # check_connection: a connection the server closed (restart, idle timeout) is replaced on
        # checkout instead of failing the request that drew it.
        self._pool = ConnectionPool(url, min_size=1, max_size=max_size, open=False, timeout=timeout,
                                    check=ConnectionPool.check_connection, name="otel-chatbot-api",
                                    kwargs={"autocommit": True, "application_name": APPLICATION_NAME,
                                            "connect_timeout": max(1, int(timeout))},
                                    configure=self._configure)

    def _configure(self, conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT set_config('statement_timeout', %s, false)", (self._statement_timeout,))

    def start(self) -> None:
        if self._pool.closed:
            self._pool.open(wait=False)

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close the pool, give the connections in use ``timeout`` seconds to come back, then cancel the
        statements still running on them: a lookup stuck on a lock would otherwise hold its thread,
        and with it the process's exit, past the shutdown deadline. Safe twice."""
        if self._pool.closed:
            return
        self._pool.close(timeout)  # no new checkouts from here on
        with self._returned:
            self._returned.wait_for(lambda: not self._in_use, timeout)
            running = list(self._in_use)
        for conn in running:
            with contextlib.suppress(psycopg.Error):
                conn.cancel_safe(timeout=1.0)

    @contextmanager
    def connection(self, timeout: float | None = None) -> Iterator[psycopg.Connection[Any]]:
        """A pooled autocommit connection (psycopg_pool.PoolTimeout when none comes in ``timeout``)."""
        with self._pool.connection(timeout if timeout is not None else self._timeout) as conn:
            with self._returned:
                self._in_use.add(conn)
            try:
                yield conn
            finally:
                with self._returned:
                    self._in_use.discard(conn)
                    self._returned.notify_all()

    def turn_exists(self, turn_id: str) -> bool:
        with self.connection() as conn:
            return turn_exists(conn, turn_id)

    def schema_version(self, timeout: float | None = None) -> int | None:
        with self.connection(timeout) as conn:
            return schema_version(conn)
