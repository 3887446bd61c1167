"""Versioned schema migrations: ``migrations/NNNN_name.sql`` applied in order, one transaction each.

Every migration transaction first takes a transaction-level advisory lock and re-reads what is
applied, so two processes migrating the same database at once (two ``serve`` replicas starting
together) apply each version exactly once: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import psycopg
from psycopg import sql

# Arbitrary constant shared by every migrating process ("otelchat" in ASCII); the two-key form of the
# lock keeps us out of the single-bigint keyspace other applications tend to use.
_LOCK_CLASS = 0x6F74656C
_LOCK_MIGRATE = 0x63686174

_FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     int         PRIMARY KEY,
    name        text        NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def load_migrations() -> list[Migration]:
    """The packaged migrations in version order; a misnamed or duplicate file is a packaging bug."""
    found: dict[int, Migration] = {}
    for entry in resources.files("otel_chatbot.store").joinpath("migrations").iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_RE.match(entry.name)
        if match is None:
            raise ValueError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations with version {version}")
        found[version] = Migration(version, match.group(2), entry.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


LATEST_VERSION: int = load_migrations()[-1].version


def _applied(conn: psycopg.Connection[tuple[object, ...]]) -> set[int]:
    return {int(str(row[0])) for row in conn.execute("SELECT version FROM schema_migrations")}


def migrate(url: str) -> list[int]:
    """Apply the pending migrations; returns the versions this call applied (empty when up to date)."""
    applied_now: list[int] = []
    applied: set[int] = set()
    with psycopg.connect(url, autocommit=False) as conn:
        for migration in load_migrations():
            if migration.version in applied:
                # Seen applied by an earlier transaction of this call (a version is never un-applied):
                # an up-to-date database costs one transaction, not one per version.
                continue
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (_LOCK_CLASS, _LOCK_MIGRATE))
                conn.execute(_CREATE_TABLE)
                applied = _applied(conn)
                if migration.version in applied:
                    continue
                # Trusted packaged SQL, sent without parameters (simple protocol: several statements).
                conn.execute(sql.SQL(migration.sql))  # type: ignore[arg-type]
                conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                    (migration.version, migration.name),
                )
                applied_now.append(migration.version)
    return applied_now


def schema_version(url_or_conn: str | psycopg.Connection[Any]) -> int | None:
    """Highest applied version, or None for a database never migrated."""
    if isinstance(url_or_conn, str):
        with psycopg.connect(url_or_conn, autocommit=True) as conn:
            return schema_version(conn)
    conn = url_or_conn
    exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()
    if not exists or not exists[0]:
        return None
    row = conn.execute("SELECT max(version) FROM schema_migrations").fetchone()
    return None if row is None or row[0] is None else int(row[0])
