"""The read-only role (migration 0002): let it log in with a password the operator chose.

The password never travels in clear text: libpq turns it into a SCRAM-SHA-256 verifier on the
client side (``PQencryptPasswordConn``), and only the verifier is sent in ``ALTER ROLE``.
"""

from __future__ import annotations

import psycopg
from psycopg import sql

READER_ROLE = "otel_chatbot_reader"
_LOCK = (0x6F74656C, 0x72656164)  # "otel", "read": beside the migration lock's key space


class ReaderRoleError(RuntimeError):
    """The reader role is missing or this database user may not change it."""


def enable_reader_login(url: str, password: str) -> None:
    """``ALTER ROLE otel_chatbot_reader LOGIN PASSWORD <scram verifier>`` (idempotent)."""
    with psycopg.connect(url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone()
        if exists is None:
            raise ReaderRoleError(f"role {READER_ROLE} does not exist: run `otel-chatbot migrate` first")
        verifier = conn.pgconn.encrypt_password(password.encode(), READER_ROLE.encode(), b"scram-sha-256")
        try:
            with conn.transaction():
                # Replicas starting together would otherwise fail with "tuple concurrently updated".
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", _LOCK)
                conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                    sql.Identifier(READER_ROLE), sql.Literal(verifier.decode())))
        except psycopg.errors.InsufficientPrivilege:
            raise ReaderRoleError(f"this database user may not alter role {READER_ROLE} "
                                  "(needs CREATEROLE); ask the database owner to enable its login") from None
