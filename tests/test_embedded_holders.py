"""The holders file of a shared embedded Postgres: live holders kept, dead and reused pids dropped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from otel_chatbot.store import embedded_holders as holders


def test_holders_are_added_removed_and_the_dead_dropped(tmp_path: Path) -> None:
    path = tmp_path / ".postgres.holders"
    first, second = holders.new_holder(), holders.new_holder()
    assert holders.add(path, first) == []
    assert holders.add(path, second) == [first]
    # A process that has exited, a pid reused by another process (other start time), garbage lines.
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    dead = holders.Holder(int(child.stdout), "1", "dead")
    reused = holders.Holder(os.getpid(), "12345", "reused")
    path.write_text(path.read_text() + dead.line() + reused.line() + "not a holder\n\n")
    assert holders.read_live(path) == [first, second]
    assert holders.remove(path, first) == [second]
    assert holders.remove(path, second) == []
    assert path.read_text() == ""
    assert holders.remove(path, second) == []  # removing twice is harmless
    assert holders.read_live(tmp_path / "missing") == []
