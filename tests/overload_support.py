"""Load generation for the overload test and benchmarks/overload.py: capacity, then an offered rate.

Capacity is what one ``otel-chatbot serve`` commits when it is kept busy without being refused:
closed-loop senders (each sends its next request when the last one is answered) over real sockets,
enough of them that the writer always finds a full group waiting. The offered load is open-loop:
sender *processes* (so that the generator's own GIL is not the limit), half OTLP/HTTP and half
OTLP/gRPC, each with threads sending on a fixed schedule whatever the answers; what a process could
not send on time is sent late and counted at the time it was sent, so the offered rate reported is
the rate actually sent. Every request carries fresh trace ids, so the test can compare the ids the
server acknowledged with the ids stored.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from server_support import turn_request

_EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_TIMEOUT_S = 60.0


@dataclass
class Answers:
    """What a sender saw: answers by status (``http 200``, ``grpc RESOURCE_EXHAUSTED``…), the retry
    hints of refusals (``Retry-After`` values / RetryInfo seconds; None when one was missing), the
    trace ids of acknowledged requests, and the requests' spans sent."""

    statuses: Counter[str] = field(default_factory=Counter)
    retry_hints: Counter[str] = field(default_factory=Counter)
    acknowledged: list[str] = field(default_factory=list)
    sent_spans: int = 0
    late: int = 0  # requests sent more than 50 ms after their scheduled time
    last_sent: float = 0.0  # time.time() of the last request sent


    def add(self, other: Answers) -> None:
        self.statuses.update(other.statuses)
        self.retry_hints.update(other.retry_hints)
        self.acknowledged.extend(other.acknowledged)
        self.sent_spans += other.sent_spans
        self.late += other.late
        self.last_sent = max(self.last_sent, other.last_sent)


class _Client:
    """One keep-alive OTLP/HTTP connection or one gRPC channel; ``send(body)`` → (status, retry hint)."""

    def __init__(self, transport: str, http_port: int, grpc_target: str) -> None:
        self.transport = transport
        self._http_port = http_port
        self._conn: http.client.HTTPConnection | None = None
        self._channel = grpc.insecure_channel(grpc_target) if transport == "grpc" else None
        self._call = (self._channel.unary_unary(_EXPORT, request_serializer=lambda b: b,
                                                response_deserializer=lambda b: b)
                      if self._channel is not None else None)

    def send(self, body: bytes) -> tuple[str, str | None]:
        if self._call is not None:
            try:
                self._call(body, timeout=_TIMEOUT_S)
            except grpc.RpcError as exc:
                trailers = dict(exc.trailing_metadata() or ())  # type: ignore[attr-defined]
                raw = trailers.get("google.rpc.retryinfo-bin")
                hint = str(RetryInfo.FromString(raw).retry_delay.seconds) if raw is not None else None
                return f"grpc {exc.code().name}", hint  # type: ignore[attr-defined]
            return "grpc OK", None
        for attempt in (0, 1):  # a keep-alive connection the server closed is reopened once
            if self._conn is None:
                self._conn = http.client.HTTPConnection("127.0.0.1", self._http_port, timeout=_TIMEOUT_S)
            try:
                self._conn.request("POST", "/v1/traces", body, {"Content-Type": "application/x-protobuf"})
                response = self._conn.getresponse()
                response.read()
                return f"http {response.status}", response.getheader("Retry-After")
            except (OSError, http.client.HTTPException):
                self._conn.close()
                self._conn = None
                if attempt:
                    return "http error", None
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
        if self._channel is not None:
            self._channel.close()


def _record(answers: Answers, lock: threading.Lock, status: str, hint: str | None, traces: list[str]) -> None:
    with lock:
        answers.statuses[status] += 1
        answers.sent_spans += len(traces)
        if status in ("http 200", "grpc OK"):
            answers.acknowledged.extend(traces)
        else:
            answers.retry_hints[str(hint)] += 1


def closed_loop(http_port: int, grpc_target: str, *, senders: int, seconds: float,
                spans: int) -> tuple[Answers, float]:
    """``senders`` threads (half HTTP, half gRPC) each sending its next request when answered, for
    ``seconds``; returns the answers and the seconds it took (until the last answer)."""
    answers, lock = Answers(), threading.Lock()
    bodies = [turn_request(spans, session=f"cap-{i}") for i in range(senders * 4)]
    stop = time.monotonic() + seconds

    def run(i: int) -> None:
        client = _Client("grpc" if i % 2 else "http", http_port, grpc_target)
        n = 0
        try:
            while time.monotonic() < stop:
                body, traces = bodies.pop() if bodies else turn_request(spans, session=f"cap-{i}-{n}")
                n += 1
                status, hint = client.send(body)
                _record(answers, lock, status, hint, traces)
        finally:
            client.close()

    started = time.monotonic()
    threads = [threading.Thread(target=run, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_TIMEOUT_S + seconds)
    return answers, time.monotonic() - started


def _open_loop_process(transport: str, http_port: int, grpc_target: str, rate: float, seconds: float,
                       spans: int, threads: int, start_at: float, seed: int,
                       out: multiprocessing.Queue[Answers]) -> None:
    """One sender process: requests at ``rate`` per second from ``start_at`` (time.time()) on."""
    count = int(rate * seconds) + 1
    bodies = [turn_request(spans, session=f"load-{seed}-{k % 50}") for k in range(count)]
    answers, lock = Answers(), threading.Lock()
    cursor = iter(range(count))

    def run() -> None:
        client = _Client(transport, http_port, grpc_target)
        try:
            while True:
                with lock:
                    k = next(cursor, None)
                if k is None:
                    return
                due = start_at + k / rate
                wait = due - time.time()
                if wait > 0:
                    time.sleep(wait)
                elif wait < -0.05:
                    with lock:
                        answers.late += 1
                body, traces = bodies[k]
                sent = time.time()
                status, hint = client.send(body)
                with lock:
                    answers.last_sent = max(answers.last_sent, sent)
                _record(answers, lock, status, hint, traces)
        finally:
            client.close()

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(_TIMEOUT_S + seconds)
    out.put(answers)


def open_loop(http_port: int, grpc_target: str, *, rate_spans: float, seconds: float, spans: int,
              processes: int = 4, threads: int = 16) -> tuple[Answers, float, float]:
    """Offer ``rate_spans`` spans/s for ``seconds`` from ``processes`` sender processes (half HTTP,
    half gRPC). Returns the answers, the seconds from the first scheduled send to the last send (over
    which the offered rate is counted) and to the last answer (the accepted rate)."""
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Answers] = context.Queue()
    rate = rate_spans / spans / processes  # requests/s of each process
    start_at = time.time() + 3.0 + 0.5 * processes  # room to spawn the processes and build their bodies
    procs = [context.Process(target=_open_loop_process, daemon=True,
                             args=("grpc" if p % 2 else "http", http_port, grpc_target, rate, seconds, spans,
                                   threads, start_at, p * 1_000_003 + os.getpid(), out))
             for p in range(processes)]
    for proc in procs:
        proc.start()
    total = Answers()
    for _ in procs:
        total.add(out.get(timeout=_TIMEOUT_S + seconds + 60))
    took = time.time() - start_at
    for proc in procs:
        proc.join(10)
    # n requests on a schedule of n intervals: the last one is due one interval before the end.
    sending = total.last_sent - start_at + spans / rate_spans
    return total, sending, took
