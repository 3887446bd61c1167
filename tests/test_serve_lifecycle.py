"""`otel-chatbot serve` as a real process: stop signals during the start, one embedded Postgres shared
by two processes, and a port that another processor already listens on."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_support import LOOPBACK_PORTS, CommandProcess, postgres_pids, stop_leftover_postgres
from server_support import make_processor, turn_request, wait_until

from otel_chatbot.processor.config import ConfigError

PROTOBUF = {"Content-Type": "application/x-protobuf"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    stop_leftover_postgres(path / "postgres")


def _serve(data_dir: Path) -> CommandProcess:
    return CommandProcess("serve", "--data-dir", str(data_dir), *LOOPBACK_PORTS)


def _no_server_left(data_dir: Path) -> None:
    pg = data_dir / "postgres"
    wait_until(lambda: not postgres_pids(pg), "the embedded Postgres to stop", timeout=30)
    assert not (pg / "postmaster.pid").exists()


@pytest.mark.parametrize("moment", [
    r"initialising a new Postgres data directory",  # SIGTERM while initdb runs
    r"applied migrations",                          # SIGTERM once the server runs and is migrated
])
def test_sigterm_during_start_leaves_no_postgres_and_the_next_run_owns_its_server(
        data_dir: Path, moment: str) -> None:
    first = _serve(data_dir)
    try:
        first.wait_for_log(moment)
        assert first.stop(signal.SIGTERM) == 0, first.log()
    finally:
        first.kill()
    assert "Traceback" not in first.log()
    if "serving:" not in first.log():
        assert "SIGTERM during start; stopped what had been started" in first.log()
    _no_server_left(data_dir)

    # The next run starts (and so owns) its own server, serves, and stops it on SIGTERM.
    second = _serve(data_dir)
    try:
        api, _metrics = second.banner()
        body, _ = turn_request(2)
        assert httpx.post(f"{api}/v1/traces", content=body, headers=PROTOBUF, timeout=60).status_code == 200
        assert "reusing the Postgres server" not in second.log()
        assert second.stop(signal.SIGTERM) == 0
    finally:
        second.kill()
    _no_server_left(data_dir)


def test_two_processes_share_one_embedded_postgres_and_the_last_stops_it(data_dir: Path) -> None:
    first = _serve(data_dir)
    second: CommandProcess | None = None
    try:
        first.banner()
        second = _serve(data_dir)
        api, _metrics = second.banner()
        assert "reusing the Postgres server already running" in second.log()
        # The process that started the server stops first: the other one keeps its database.
        assert first.stop(signal.SIGTERM) == 0
        assert "leaving the Postgres server" in first.log()
        assert postgres_pids(data_dir / "postgres")
        body, _ = turn_request(3)
        assert httpx.post(f"{api}/v1/traces", content=body, headers=PROTOBUF, timeout=60).status_code == 200
        assert httpx.get(f"{api}/readyz", timeout=30).status_code == 200
        assert second.stop(signal.SIGTERM) == 0
    finally:
        first.kill()
        if second is not None:
            second.kill()
    _no_server_left(data_dir)


def test_a_server_left_by_a_killed_process_is_taken_over_and_stopped(data_dir: Path) -> None:
    killed = _serve(data_dir)
    try:
        killed.banner()
        assert killed.stop(signal.SIGKILL) == -signal.SIGKILL
    finally:
        killed.kill()
    assert postgres_pids(data_dir / "postgres")  # nobody stopped it
    heir = _serve(data_dir)
    try:
        heir.banner()
        assert "reusing the Postgres server already running" in heir.log()
        assert heir.stop(signal.SIGTERM) == 0
    finally:
        heir.kill()
    _no_server_left(data_dir)  # the dead holder does not keep it running


def test_a_grpc_port_another_processor_listens_on_is_refused(database_url: str) -> None:
    first = make_processor(database_url)
    first.start()
    try:
        port = first.grpc_address[1]
        second = make_processor(database_url, otlp_grpc=f"127.0.0.1:{port}")
        with pytest.raises(ConfigError) as info:
            second.start()
        assert str(info.value) == (f"otlp_grpc: cannot listen on 127.0.0.1:{port}: port {port} is in use by "
                                   f"another process (choose another with --otlp-grpc HOST:PORT)")
    finally:
        first.shutdown()
