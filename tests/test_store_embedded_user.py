"""The embedded Postgres works for an ordinary user too, not only as root (where it drops privileges).

When the suite runs as root, this starts it in a subprocess as the unprivileged ``nobody`` user;
when the suite already runs as a normal user, every other store test covers that case.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = """
import sys
from pathlib import Path
import psycopg
from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.migrate import LATEST_VERSION, migrate, schema_version

data = Path(sys.argv[1])
first = EmbeddedPostgres(data)
url = first.start()
migrate(url)
with psycopg.connect(url) as conn:
    conn.execute("INSERT INTO feedback (turn_id, rating, comment, origin, given_at) "
                 "VALUES ('t-1', 'up', NULL, 'api', now())")
first.shutdown()
again = EmbeddedPostgres(data)
url = again.start()
with psycopg.connect(url) as conn:
    rows = conn.execute("SELECT turn_id FROM feedback").fetchall()
assert schema_version(url) == LATEST_VERSION, schema_version(url)
again.shutdown()
print("rows", rows)
"""


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="already a normal user: the other store tests cover it")
def test_embedded_postgres_as_an_unprivileged_user() -> None:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop to an unprivileged user"
    # pytest's tmp_path lives under a root-only directory: use a fresh one the user can reach.
    with tempfile.TemporaryDirectory(prefix="otel-chatbot-user-") as tmp:
        home = Path(tmp)
        os.chown(home, 65534, 65534)
        _run_as_nobody(setpriv, home)


def _run_as_nobody(setpriv: str, home: Path) -> None:
    # The checkout may sit under a directory only root can enter (a clone in a mktemp directory, a
    # root home): give the user its own copy of the package instead of the checkout's path.
    source = home / "src"
    shutil.copytree(Path(__file__).parents[1] / "otel_chatbot", source / "otel_chatbot",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "PYTHONPATH": str(source)}
    result = subprocess.run(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", SCRIPT,
         str(home / "pg")],
        env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rows [('t-1',)]" in result.stdout
    assert (home / "pg" / "PG_VERSION").stat().st_uid == 65534  # the cluster belongs to that user
