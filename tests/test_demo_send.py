"""`otel-chatbot demo --send-to URL`: the compose stack's demo traffic, sent to a running processor."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from server_support import base_url, fetch, running

pytestmark = pytest.mark.slow


def _demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "otel_chatbot.cli", "demo", *args],
                          capture_output=True, text=True, timeout=180, check=False)


def test_send_to_delivers_every_simulated_turn(database_url: str) -> None:
    with running(database_url, auth_token="demo-token") as processor:
        done = _demo("--send-to", base_url(processor), "--auth-token", "demo-token",
                     "--duration", "3", "--rate", "10")
        assert done.returncode == 0, done.stderr
        sent = int(re.findall(r"turns (\d+) \(", done.stdout)[-1])
        assert sent >= 10
        stored = fetch(database_url, "SELECT count(*), count(DISTINCT service) FROM chat_turns")[0]
        assert stored == (sent, 1)


def test_send_to_without_the_token_reports_undelivered_spans(database_url: str) -> None:
    with running(database_url, auth_token="demo-token") as processor:
        url = base_url(processor)
        done = _demo("--send-to", url, "--duration", "1", "--rate", "5")
    assert done.returncode == 1
    assert f"error: some spans could not be delivered to {url}" in done.stdout
    assert fetch(database_url, "SELECT count(*) FROM chat_turns")[0] == (0,)


@pytest.mark.parametrize("args, message", [
    (["--send-to", "otel-collector:4318"], "send-to: expected an http:// or https:// OTLP/HTTP base URL"),
    (["--send-to", "http://127.0.0.1:9", "--rate", "0"], "rate must be > 0"),
    (["--send-to", "http://127.0.0.1:9", "--duration", "-1"], "duration must be > 0"),
])
def test_send_to_bad_arguments_exit_2(args: list[str], message: str) -> None:
    done = _demo(*args)
    assert done.returncode == 2
    assert message in done.stderr
