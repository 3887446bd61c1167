"""Helpers of the load and fault tests: an `otel-chatbot serve` child process on fixed ports, and
senders that remember exactly which spans the server acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable

import grpc
import psutil
import psycopg
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from tools import free_port, wait_for


class Serve:
    """``otel-chatbot serve`` on one OTLP/HTTP port that survives restarts (kill, start again)."""

    def __init__(self, database_url: str, *extra: str) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.grpc_port = free_port()
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.peak_rss = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def start(self) -> None:
        cmd = [sys.executable, "-m", "otel_chatbot.cli", "serve", "--database-url", self.database_url,
               "--otlp-http", f"127.0.0.1:{self.port}", "--otlp-grpc", f"127.0.0.1:{self.grpc_port}",
               "--metrics", "127.0.0.1:0", "--log-level", "warning", *self.extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        wait_for(self._healthy, 60, f"serve on port {self.port}", interval=0.05)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"serve exited with {self.proc.returncode} at start")
        with urllib.request.urlopen(self.url + "/healthz", timeout=1) as response:
            return bool(response.status == 200)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)

    def sample_rss(self) -> int:
        assert self.proc is not None
        try:
            rss = int(psutil.Process(self.proc.pid).memory_info().rss)
        except psutil.Error:
            return 0
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


class Senders:
    """Threads calling ``send()`` in a loop until stopped; each returns the span keys it got
    acknowledged (the server answered success), or an empty list."""

    def __init__(self, send: Callable[[int, int], list[tuple[str, str]]], threads: int) -> None:
        self.acknowledged: list[tuple[str, str]] = []
        self.refused = 0
        self._send = send
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._loop, args=(i,), daemon=True) for i in range(threads)]

    def _loop(self, worker: int) -> None:
        n = 0
        while not self._stop.is_set():
            keys = self._send(worker, n)
            n += 1
            with self._lock:
                if keys:
                    self.acknowledged.extend(keys)
                else:
                    self.refused += 1

    def __enter__(self) -> Senders:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(120)


def post_traces(url: str, body: bytes) -> tuple[int, str | None]:
    return post(url + "/v1/traces", body)


def post(url: str, body: bytes, content_type: str = "application/x-protobuf") -> tuple[int, str | None]:
    """POST ``body``: (status, Retry-After), or (0, None) when the connection fails."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Retry-After"]
    except OSError:
        return 0, None  # refused or reset: the server is down


def stored_span_counts(url: str) -> dict[tuple[str, str], int]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT trace_id, span_id, count(*) FROM stored_span_ids "
                            "GROUP BY 1, 2").fetchall()
    return {(str(t), str(s)): int(n) for t, s, n in rows}


def wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, float]:
    started = time.monotonic()
    rc = proc.wait(timeout)
    return rc, time.monotonic() - started


_TRACE_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def export_grpc(channel: grpc.Channel, body: bytes, timeout: float = 60) -> tuple[str, int | None]:
    """One raw OTLP/gRPC trace Export: (status code name, RetryInfo delay in seconds or None)."""
    call = channel.unary_unary(_TRACE_EXPORT, request_serializer=lambda b: b,
                               response_deserializer=lambda b: b)
    try:
        call(body, timeout=timeout)
    except grpc.RpcError as exc:
        trailers = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
        raw = trailers.get("google.rpc.retryinfo-bin")
        delay = RetryInfo.FromString(raw).retry_delay.seconds if raw is not None else None
        return exc.code().name, delay  # type: ignore[attr-defined]
    return "OK", None
