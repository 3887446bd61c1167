"""The laptop path to Grafana: the embedded Postgres on a TCP address, the read-only role with a password.

Real logins over TCP with psycopg: the reader can SELECT (tables and engagement views) and cannot
write; a wrong password and the passwordless superuser are refused over TCP; `serve` prints what to
enter in Grafana. Settings are checked before anything starts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest
from psycopg import errors
from server_support import running
from tools import free_port, wait_for

from otel_chatbot.cli import main
from otel_chatbot.processor.config import ConfigError, load_config

PASSWORD = "reader-pw-8f3k"


def _tcp(port: int, user: str = "otel_chatbot_reader", password: str | None = PASSWORD) -> str:
    url = f"host=127.0.0.1 port={port} dbname=postgres user={user} connect_timeout=5"
    return url + (f" password={password}" if password is not None else "")


@pytest.mark.slow
def test_reader_logs_in_over_tcp_reads_and_cannot_write(tmp_path: Path) -> None:
    port = free_port()
    with running(None, data_dir=str(tmp_path), db_listen=f"127.0.0.1:{port}",
                 reader_password=PASSWORD) as processor:
        assert f"port={port}" in processor.database_url
        with psycopg.connect(_tcp(port)) as conn:
            assert conn.execute("SELECT current_user").fetchone() == ("otel_chatbot_reader",)
            assert conn.execute("SELECT count(*) FROM chat_turns").fetchone() == (0,)
            for view in ("engagement_conversations_daily", "engagement_turns_per_conversation",
                         "engagement_returning_users", "engagement_dropoff", "engagement_csat_daily"):
                assert conn.execute(f"SELECT count(*) FROM {view}").fetchone() == (0,)
            with pytest.raises(errors.InsufficientPrivilege):
                conn.execute("INSERT INTO feedback (turn_id, rating, origin, given_at)"
                             " VALUES ('t', 'up', 'api', now())")
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(_tcp(port, password="wrong-password"))
        # The socket's trust does not extend to TCP: the superuser has no password, so no way in.
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(_tcp(port, user="postgres", password=None))
        with psycopg.connect(processor.database_url) as conn:  # unix socket, owner: trusted
            hba = conn.execute("SELECT type, auth_method FROM pg_hba_file_rules ORDER BY line_number")
            scram = ("host", "scram-sha-256")
            assert hba.fetchall() == [("local", "trust"), scram, scram]
            stored = conn.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'otel_chatbot_reader'"
                                  ).fetchone()
        assert stored is not None and stored[0].startswith("SCRAM-SHA-256$") and PASSWORD not in stored[0]


@pytest.mark.slow
def test_serve_prints_the_grafana_datasource_settings(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, OTEL_CHATBOT_READER_PASSWORD=PASSWORD,
               PYTHONPATH=str(Path(__file__).parent.parent))
    proc = subprocess.Popen(
        [sys.executable, "-m", "otel_chatbot.cli", "serve", "--data-dir", str(tmp_path), "--db-listen",
         f"127.0.0.1:{port}", "--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0",
         "--metrics", "127.0.0.1:0"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines: list[str] = []
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Grafana Postgres datasource"):
                break
        hint = lines[-1]
        assert hint.startswith("Grafana Postgres datasource"), lines
        assert f"host 127.0.0.1:{port}" in hint and "database postgres" in hint
        assert "user otel_chatbot_reader" in hint and PASSWORD not in hint
        wait_for(lambda: psycopg.connect(_tcp(port)).close() is None, 10, "a reader login")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert proc.returncode == 0


@pytest.mark.parametrize(("settings", "message"), [
    ({"db_listen": "5433"}, "db_listen: expected HOST:PORT"),
    ({"db_listen": "127.0.0.1:0"}, "db_listen: Postgres needs a fixed port"),
    ({"db_listen": "127.0.0.1:9464"}, "db_listen: port 9464 is also used by metrics"),
    ({"db_listen": "127.0.0.1:5433", "database_url": "postgresql://db/x"}, "db_listen: only applies"),
    ({"reader_password": "short"}, "reader_password: expected 8 to 200 printable"),
    ({"reader_password": "x" * 201}, "reader_password: expected 8 to 200 printable"),
    ({"reader_password": "pass\nword1"}, "reader_password: expected 8 to 200 printable"),
])
def test_bad_settings_name_the_key(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_config(settings, {}, None)
    assert "pass\nword1" not in str(info.value)


def test_settings_come_from_the_environment_too() -> None:
    config = load_config({}, {"OTEL_CHATBOT_DB_LISTEN": "127.0.0.1:5433",
                              "OTEL_CHATBOT_READER_PASSWORD": PASSWORD}, None)
    assert config.db_listen == "127.0.0.1:5433" and config.reader_password == PASSWORD


def test_cli_rejects_a_bad_listen_address_with_exit_2(capsys: pytest.CaptureFixture[str],
                                                     tmp_path: Path) -> None:
    assert main(["serve", "--data-dir", str(tmp_path), "--db-listen", "localhost"]) == 2
    assert "db_listen: expected HOST:PORT" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []

