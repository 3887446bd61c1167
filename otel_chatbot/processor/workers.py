"""``serve --workers N``: a supervisor process and N worker processes (processor/worker.py).

One Python process decodes, normalises, counts and writes under one GIL; N processes use N cores. The
parent owns what there must be one of: the database (an embedded Postgres it starts and stops, or the
given URL; it applies the migrations once), the metrics port (the workers' multiprocess files summed,
processor/multiproc_metrics.py) and the fleet state (scrape numbers and each worker's readiness,
processor/fleet_state.py). Each worker binds the OTLP ports with SO_REUSEPORT, so the kernel spreads
connections over them; the parent holds each port too (bound, not listening: it takes no connections)
so port 0 resolves once and the port stays ours while a worker is replaced.

A worker that dies is started again, with a log line and ``otel_chatbot_worker_restarts_total``; its
counters stay in the sums, unacknowledged requests it held are retried by their clients. SIGTERM or
SIGINT drains every worker within ``shutdown_timeout`` in total, then the database stops.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

from otel_chatbot.processor.config import ConfigError, ProcessorConfig, split_address

_log = logging.getLogger(__name__)
START_TIMEOUT_S = 120.0
SUPERVISE_TICK_S = 0.25
# A worker that dies within this long of its start is restarted after a growing pause (crash loop).
_QUICK_DEATH_S = 10.0
_MAX_BACKOFF_S = 10.0


@dataclass
class _Worker:
    index: int
    process: BaseProcess
    conn: Connection
    started_at: float
    quick_deaths: int = 0
    restart_at: float | None = None  # set while the worker is down and waits for its restart


class WorkerSupervisor:
    """``start()`` returns when every worker listens; ``shutdown()`` drains them and is safe twice."""

    def __init__(self, config: ProcessorConfig) -> None:
        self.config = config
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded parent
        self._workers: list[_Worker] = []
        self._reserved: list[socket.socket] = []
        self._directory: str | None = None
        self._fleet: Any = None
        self._collector: Any = None
        self._metrics_server: Any = None
        self._embedded: Any = None
        self._worker_config: ProcessorConfig | None = None
        self.http_address: tuple[str, int] | None = None
        self.grpc_address: tuple[str, int] | None = None
        self.metrics_address: tuple[str, int] | None = None
        self._lock = threading.Lock()
        self._started = False

    @property
    def restarts(self) -> int:
        return int(self._collector.restarts) if self._collector is not None else 0

    # --- start -----------------------------------------------------------------------------------
    def start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
            try:
                self._start()
            except BaseException:
                self._stop(5.0)
                raise

    def _start(self) -> None:
        from prometheus_client import CollectorRegistry

        from otel_chatbot.processor.app import open_database
        from otel_chatbot.processor.auth import BearerAuth
        from otel_chatbot.processor.fleet_state import FleetState
        from otel_chatbot.processor.listeners import _listening, _tls_context
        from otel_chatbot.processor.metrics_http import MetricsServer
        from otel_chatbot.processor.multiproc_metrics import SupervisorCollector
        from otel_chatbot.store.migrate import migrate
        from otel_chatbot.store.reader import ReaderRoleError, enable_reader_login

        config = self.config
        self.http_address = self._reserve("otlp_http", config.otlp_http)
        self.grpc_address = self._reserve("otlp_grpc", config.otlp_grpc)
        self._directory = tempfile.mkdtemp(prefix="otel-chatbot-metrics-")
        self._fleet = FleetState.create(Path(self._directory) / "fleet.state", config.workers)
        self._collector = SupervisorCollector(self._directory, self._fleet)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self._collector)
        host, port = split_address("metrics", config.metrics)
        # /metrics is served here, so the exposure settings (metrics_auth, TLS) apply here too.
        tls = (_tls_context((config.tls_cert_file, config.tls_key_file))
               if config.tls_cert_file is not None and config.tls_key_file is not None else None)
        server = MetricsServer(host, port, registry,
                               auth=BearerAuth(config.auth_token) if config.metrics_auth else None, tls=tls)
        with _listening("metrics", config.metrics):
            server.start()
        self._metrics_server = server
        self.metrics_address = (host, server.address[1])

        url, self._embedded = open_database(config)
        if config.migrate:
            applied = migrate(url)
            if applied:
                _log.info("applied migrations %s", applied)
        if config.reader_password is not None:
            try:
                enable_reader_login(url, config.reader_password)
            except ReaderRoleError as exc:
                raise ConfigError(f"reader_password: {exc}") from None
        # What there is one of is done here once: the workers get the URL and none of these settings.
        self._worker_config = dataclasses.replace(
            config, database_url=url, migrate=False, workers=1, reader_password=None, db_listen=None,
            otlp_http=_address_text(self.http_address), otlp_grpc=_address_text(self.grpc_address),
            shutdown_timeout=worker_drain_timeout(config.shutdown_timeout))
        self._workers = [self._spawn(index) for index in range(config.workers)]
        for worker in self._workers:
            self._await_start(worker)
        _log.info("otel-chatbot processor: %d workers, OTLP/HTTP %s:%d, OTLP/gRPC %s:%d, metrics %s:%d",
                  config.workers, *self.http_address, *self.grpc_address, *self.metrics_address)

    def _reserve(self, key: str, address: str) -> tuple[str, int]:
        """Hold ``address`` for the workers: fail now (naming the key) if another process listens there."""
        from otel_chatbot.processor.listeners import _listening

        host, port = split_address(key, address)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with _listening(key, address):
            # First without SO_REUSEPORT: a port another program holds, even with SO_REUSEPORT, is refused.
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind((host, port))
                port = int(probe.getsockname()[1])
            held = socket.socket(family, socket.SOCK_STREAM)
            try:
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                held.bind((host, port))
            except OSError:
                held.close()
                raise
        self._reserved.append(held)
        return host, port

    def _spawn(self, index: int) -> _Worker:
        from otel_chatbot.processor.multiproc_metrics import MULTIPROC_ENV
        from otel_chatbot.processor.worker import worker_main

        assert self._worker_config is not None and self._fleet is not None
        ours, theirs = self._context.Pipe(duplex=False)
        process = self._context.Process(
            target=worker_main, name=f"otel-chatbot-worker-{index + 1}",
            args=(self._worker_config, index, str(self._fleet.path), theirs), daemon=False)
        with _environment(MULTIPROC_ENV, self._directory):
            process.start()  # the spawned interpreter inherits the variable before it imports anything
        theirs.close()
        return _Worker(index, process, ours, time.monotonic())

    def _await_start(self, worker: _Worker) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            ready = wait([worker.conn, worker.process.sentinel], timeout=deadline - time.monotonic())
            if worker.conn in ready:
                try:
                    kind, detail = worker.conn.recv()
                except EOFError:
                    kind, detail = "error", "exited during start"
                if kind == "started":
                    _log.info("worker %d listening (pid %s)", worker.index + 1, detail)
                    return
                if kind == "config":
                    raise ConfigError(str(detail))
                raise RuntimeError(f"worker {worker.index + 1} failed to start: {detail}")
            if ready:
                raise RuntimeError(f"worker {worker.index + 1} exited during start "
                                   f"(exit code {worker.process.exitcode})")
        raise RuntimeError(f"worker {worker.index + 1} did not start within {START_TIMEOUT_S:.0f} s")

    # --- supervise -------------------------------------------------------------------------------
    def supervise(self, stop: threading.Event) -> None:
        """Restart dead workers until ``stop`` is set."""
        while not stop.is_set():
            down = [w.process.sentinel for w in self._workers if w.restart_at is None]
            wait(down, timeout=SUPERVISE_TICK_S)
            if stop.is_set():
                return
            now = time.monotonic()
            for worker in self._workers:
                if worker.restart_at is None and not worker.process.is_alive():
                    self._worker_died(worker, now)
                if worker.restart_at is not None and now >= worker.restart_at:
                    self._restart(worker)

    def _worker_died(self, worker: _Worker, now: float) -> None:
        from prometheus_client.multiprocess import mark_process_dead

        from otel_chatbot.processor.fleet_state import DOWN

        pid, code = worker.process.pid, worker.process.exitcode
        self._fleet.set_worker_state(worker.index, DOWN)
        if pid is not None and self._directory is not None:
            mark_process_dead(pid, self._directory)  # type: ignore[no-untyped-call]  # its queue gauge leaves the sum
        quick = now - worker.started_at < _QUICK_DEATH_S
        worker.quick_deaths = worker.quick_deaths + 1 if quick else 0
        pause = min(_MAX_BACKOFF_S, 0.5 * (2 ** (worker.quick_deaths - 1))) if quick else 0.0
        how = f"exit code {code}"
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        _log.warning("worker %d (pid %s) died (%s); restarting it%s", worker.index + 1, pid, how,
                     f" in {pause:.1f} s" if pause else "")
        worker.restart_at = now + pause

    def _restart(self, worker: _Worker) -> None:
        with contextlib.suppress(OSError):
            worker.conn.close()
        fresh = self._spawn(worker.index)
        self._workers[worker.index] = fresh
        fresh.quick_deaths = worker.quick_deaths
        self._collector.restarts += 1
        _log.warning("worker %d restarted (pid %s)", worker.index + 1, fresh.process.pid)

    # --- stop ------------------------------------------------------------------------------------
    def shutdown(self, timeout: float | None = None) -> None:
        with self._lock:
            if not self._started:
                return
            self._started = False
            self._stop(timeout if timeout is not None else self.config.shutdown_timeout)

    def _stop(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            if worker.process.is_alive() and worker.process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(worker.process.pid, signal.SIGTERM)
        for worker in self._workers:
            worker.process.join(max(0.0, deadline - time.monotonic()))
            if worker.process.is_alive():
                _log.error("worker %d did not drain within %.0f s: killing it", worker.index + 1, timeout)
                worker.process.kill()
                worker.process.join(5)
            with contextlib.suppress(OSError):
                worker.conn.close()
        self._workers = []
        if self._metrics_server is not None:
            with contextlib.suppress(Exception):
                self._metrics_server.shutdown()
            self._metrics_server = None
        if self._embedded is not None:
            self._embedded.shutdown()
            self._embedded = None
        for sock in self._reserved:
            sock.close()
        self._reserved = []
        if self._fleet is not None:
            self._fleet.close()
            self._fleet = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None


_ENV_LOCK = threading.Lock()


@contextlib.contextmanager
def _environment(name: str, value: str | None) -> Iterator[None]:
    """``name=value`` in this process's environment for the block only (never left behind for other
    programs this process starts later, e.g. a single-process processor)."""
    with _ENV_LOCK:
        previous = os.environ.get(name)
        if value is not None:
            os.environ[name] = value
        try:
            yield
        finally:
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous


def worker_drain_timeout(total: float) -> float:
    """Each worker's drain budget: the parent's total minus a margin to collect them and stop."""
    return max(total * 0.75, total - 2.0)


def _address_text(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_supervisor(supervisor: WorkerSupervisor, on_started: Callable[[WorkerSupervisor], None]) -> int:
    """Start, supervise until SIGTERM/SIGINT (also one received while starting), drain, return 0."""
    stop = threading.Event()
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        supervisor.start()
        on_started(supervisor)
        supervisor.supervise(stop)
        _log.info("received %s: draining", signal.Signals(received[0]).name if received else "stop")
        supervisor.shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
