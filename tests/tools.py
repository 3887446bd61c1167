"""Helpers for tests that run real binaries (Prometheus, promtool, Alertmanager, amtool)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "prometheus"
INSTALL_HINT = "apt-get install prometheus prometheus-alertmanager"

T = TypeVar("T")


def require_binary(*names: str) -> str:
    """Path of the first of ``names`` on PATH. Missing: fail in CI (CI=true), skip elsewhere."""
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    message = f"{' or '.join(names)} not found: {INSTALL_HINT}"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI must not skip the alerting tests)")
    pytest.skip(message)


def promtool() -> str:
    return require_binary("promtool")


def amtool() -> str:
    return require_binary("amtool")


def prometheus() -> str:
    return require_binary("prometheus")


def alertmanager() -> str:
    # Debian names the binary prometheus-alertmanager; upstream tarballs call it alertmanager.
    return require_binary("prometheus-alertmanager", "alertmanager")


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError:
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[bytes]) -> None:
    """Terminate a child we started, kill it if it does not exit."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
