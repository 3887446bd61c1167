"""Run `otel-chatbot` as a real subprocess, follow its log, find the embedded Postgres it left behind."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tools import wait_for

LOOPBACK_PORTS = ("--otlp-http", "127.0.0.1:0", "--otlp-grpc", "127.0.0.1:0", "--metrics", "127.0.0.1:0")


class CommandProcess:
    """``otel-chatbot ARGS`` with its stderr collected line by line."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "otel_chatbot.cli", *args], stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        stderr = self.proc.stderr
        assert stderr is not None
        threading.Thread(target=lambda: [self._queue.put(line) for line in stderr], daemon=True).start()

    def log(self) -> str:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return "".join(self.lines)

    def wait_for_log(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        def probe() -> re.Match[str] | None:
            found = re.search(pattern, self.log())
            if found is None and self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode} before {pattern!r}:\n{self.log()}")
            return found

        return wait_for(probe, timeout, f"{pattern!r} in the log", interval=0.01)

    def banner(self) -> tuple[str, str]:
        """(OTLP/HTTP base URL, metrics URL) from the serve banner."""
        found = self.wait_for_log(r"serving: OTLP/HTTP (\S+) .* metrics (\S+)")
        return found.group(1), found.group(2)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 120) -> int:
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.log()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def postgres_pids(data_dir: Path) -> list[int]:
    """Pids of postgres processes serving ``data_dir`` (from their command lines)."""
    wanted = str(data_dir).encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        parts = cmdline.split(b"\0")
        if parts and parts[0].endswith(b"postgres") and wanted in parts:
            pids.append(int(entry.name))
    return pids


def stop_leftover_postgres(data_dir: Path) -> None:
    """Clean-up of a failed test: stop a server it may have left (never in a passing run)."""
    for pid in postgres_pids(data_dir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGQUIT)
