"""Who uses an embedded Postgres server: a holders file next to its data directory.

Two otel-chatbot processes on one data directory (a ``demo`` and a ``serve``, or ``stats`` while
``serve`` runs) share one server. Whoever stops last stops it: each user adds a line when it starts
using the server and removes it when done; the server is stopped when no live holder is left. A line
names a process by pid *and* its start time (so a reused pid is not taken for the holder) plus a
random token (two users inside one process are two holders). Lines of dead processes — killed with
SIGKILL, or crashed — are dropped whenever the file is read, so a server left behind is taken over by
the next user and stopped when that one is done.

Callers hold the data directory's flock while they read or write this file.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Holder:
    pid: int
    started: str  # the process's start time in clock ticks since boot (/proc/PID/stat field 22)
    token: str

    def line(self) -> str:
        return f"{self.pid} {self.started} {self.token}\n"


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid``, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[19].decode()
    except (OSError, IndexError):
        pass
    try:  # no /proc: fall back to "the pid exists"
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return "?"


def new_holder() -> Holder:
    pid = os.getpid()
    return Holder(pid, _start_time(pid) or "?", secrets.token_hex(8))


def _alive(holder: Holder) -> bool:
    started = _start_time(holder.pid)
    return started is not None and (started == holder.started or "?" in (started, holder.started))


def read_live(path: Path) -> list[Holder]:
    """The holders in ``path`` whose process still runs (unreadable lines are dropped)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    holders = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].isdigit():
            holder = Holder(int(parts[0]), parts[1], parts[2])
            if _alive(holder):
                holders.append(holder)
    return holders


def _write(path: Path, holders: list[Holder]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(h.line() for h in holders))
    os.replace(temporary, path)


def add(path: Path, holder: Holder) -> list[Holder]:
    """Register ``holder``; returns the live holders before it (empty: the server had no user)."""
    others = [h for h in read_live(path) if h.token != holder.token]
    _write(path, [*others, holder])
    return others


def remove(path: Path, holder: Holder) -> list[Holder]:
    """Unregister ``holder``; returns the live holders left (empty: stop the server)."""
    left = [h for h in read_live(path) if h.token != holder.token]
    _write(path, left)
    return left
