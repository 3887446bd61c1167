"""`otel-chatbot` commands: help, config errors, migrate/stats/purge, and SIGTERM draining of `serve`."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest
from server_support import count_spans, turn_request, wait_until, writer_blocked

from otel_chatbot.cli import main
from otel_chatbot.store.writer import BatchWriter

COMMANDS = ("serve", "migrate", "demo", "stats", "purge", "trace")


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert f"otel-chatbot {command}" in out and "examples:" in out
    assert "--database-url" in out


def test_help_works_as_a_module() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "otel_chatbot.cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert all(c in result.stdout for c in COMMANDS)


def test_serve_flags_cover_every_setting(capsys: pytest.CaptureFixture[str]) -> None:
    from otel_chatbot.processor.config import FIELDS

    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = capsys.readouterr().out
    for name in FIELDS:
        assert "--" + name.replace("_", "-") in out, name


def test_config_error_exits_2_naming_the_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--otlp-http", "x"]) == 2
    assert "otel-chatbot: error: otlp_http: expected HOST:PORT, got 'x'" in capsys.readouterr().err
    assert main(["serve", "--queue-max-spans", "lots"]) == 2
    assert "queue_max_spans: expected an integer" in capsys.readouterr().err


def test_unknown_command_and_missing_argument_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        main(["purge"])  # --older-than is required
    assert info.value.code == 2


def test_migrate_is_idempotent(fresh_database_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--database-url", fresh_database_url]) == 0
    assert "applied migrations 1" in capsys.readouterr().out
    assert main(["migrate", "--database-url", fresh_database_url]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_unreachable_database_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    url = "postgresql://postgres@/postgres?host=/nonexistent-otel-chatbot-socket-dir"
    assert main(["migrate", "--database-url", url]) == 1
    err = capsys.readouterr().err
    assert err.startswith("otel-chatbot migrate: ") and "Traceback" not in err


def test_stats_and_purge(database_url: str, writer: BatchWriter, capsys: pytest.CaptureFixture[str]) -> None:
    from otel_chatbot.processor.decode import parse_traces
    from otel_chatbot.processor.normalise import normalise_traces
    from otel_chatbot.processor.pricing import PriceTable

    body, _ = turn_request(3)
    writer.write(normalise_traces(parse_traces(body, "application/x-protobuf"), PriceTable.load()))

    assert main(["stats", "--database-url", database_url]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^turns +3$", out, re.MULTILINE), out
    assert re.search(r"^tokens in / out +30 / 15$", out, re.MULTILINE), out

    assert main(["purge", "--database-url", database_url, "--older-than", "0"]) == 2
    assert "older_than" in capsys.readouterr().err
    assert main(["purge", "--database-url", database_url, "--older-than", "30"]) == 0
    assert "0 partition(s)" in capsys.readouterr().out  # today's data is kept
    assert count_spans(database_url) == 3


def test_sigterm_drains_queued_data_and_exits_0(database_url: str) -> None:
    cmd = [
        sys.executable,
        "-m",
        "otel_chatbot.cli",
        "serve",
        "--database-url",
        database_url,
        "--otlp-http",
        "127.0.0.1:0",
        "--otlp-grpc",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
    ]
    proc = subprocess.Popen(
        cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
    )
    lines: queue.Queue[str] = queue.Queue()
    seen: list[str] = []
    assert proc.stderr is not None
    stderr = proc.stderr
    threading.Thread(target=lambda: [lines.put(line) for line in stderr], daemon=True).start()

    def saw(pattern: str) -> re.Match[str] | None:
        while not lines.empty():
            seen.append(lines.get())
        return next((m for m in (re.search(pattern, line) for line in seen) if m), None)

    try:
        wait_until(
            lambda: saw(r"serving: OTLP/HTTP (http://\S+)") is not None or proc.poll() is not None,
            "the serve banner",
        )
        banner = saw(r"serving: OTLP/HTTP (http://\S+) .* metrics (http://\S+)")
        assert banner is not None, seen
        api, metrics = banner.group(1), banner.group(2)
        body, traces = turn_request(3)
        status: list[int] = []
        with writer_blocked(database_url):
            sender = threading.Thread(
                target=lambda: status.append(
                    httpx.post(
                        f"{api}/v1/traces",
                        content=body,
                        headers={"Content-Type": "application/x-protobuf"},
                        timeout=120,
                    ).status_code
                )
            )
            sender.start()
            wait_until(
                lambda: "otel_chatbot_queue_spans 3.0" in httpx.get(metrics).text, "the request to queue"
            )
            proc.send_signal(signal.SIGTERM)
            wait_until(lambda: saw("received SIGTERM: draining") is not None, "the drain to begin")
        sender.join(120)
        assert proc.wait(120) == 0
        assert status == [200]  # answered after its commit, during the drain
        assert count_spans(database_url, traces) == 3
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("key", ["otlp_http", "otlp_grpc", "metrics"])
def test_a_port_in_use_exits_2_naming_the_setting(key: str, database_url: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        addresses = {"otlp_http": "127.0.0.1:0", "otlp_grpc": "127.0.0.1:0", "metrics": "127.0.0.1:0"}
        addresses[key] = f"127.0.0.1:{port}"
        argv = ["serve", "--database-url", database_url]
        for name, address in addresses.items():
            argv += ["--" + name.replace("_", "-"), address]
        assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{key}: cannot listen on 127.0.0.1:{port}" in err
    assert "--" + key.replace("_", "-") in err
