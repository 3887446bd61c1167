"""OTLP/gRPC receiver: TraceService/Export and LogsService/Export on grpcio's thread pool.

Requests are taken as raw bytes (identity deserializer) and parsed by decode.parse_traces, whose
attribute-lazy message type is much faster to normalise than a fully parsed ExportTraceServiceRequest.
Status codes per the OTLP spec: UNAVAILABLE + RetryInfo for retryable trouble, INVALID_ARGUMENT for
bad data, UNAUTHENTICATED without the token, INTERNAL (logged) for a processor bug; grpcio answers
RESOURCE_EXHAUSTED beyond max_body_bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any, NoReturn

import grpc
from google.protobuf.any_pb2 import Any as AnyMessage
from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo  # type: ignore[import-untyped]
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceResponse
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

from otel_chatbot.errors import InternalError, PermanentError, RetryableError
from otel_chatbot.processor.auth import BearerAuth
from otel_chatbot.processor.commit_wait import wait_for_commit
from otel_chatbot.processor.decode import (
    PROTOBUF,
    DecodeError,
    count_spans,
    logs_response,
    parse_logs,
    parse_traces,
    traces_response,
)
from otel_chatbot.processor.inflight import InflightBytes
from otel_chatbot.processor.normalise import Redact, normalise_logs, normalise_traces
from otel_chatbot.processor.pipeline import Pipeline
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch

_log = logging.getLogger(__name__)

_TRANSPORT = "grpc"
_TRACE_SERVICE = "opentelemetry.proto.collector.trace.v1.TraceService"
_LOGS_SERVICE = "opentelemetry.proto.collector.logs.v1.LogsService"


def _identity(data: bytes) -> bytes:
    return data


class _Handlers:
    """Shared checks of both services."""

    def __init__(self, pipeline: Pipeline, auth: BearerAuth, inflight: InflightBytes,
                 request_timeout: float | None = None) -> None:
        self.pipeline = pipeline
        self.request_timeout = request_timeout
        self.auth = auth
        self.inflight = inflight

    def hold(self, request: bytes, context: grpc.ServicerContext) -> int:
        """Count the request in the in-flight budget (the caller releases it), or refuse it retryably."""
        size = len(request)
        if not self.inflight.try_acquire(size):
            abort_retryable(context, self.inflight.refusal(size), 1, grpc.StatusCode.RESOURCE_EXHAUSTED)
        return size

    def check_auth(self, context: grpc.ServicerContext) -> None:
        if not self.auth.enabled:
            return
        header = next((str(v) for k, v in context.invocation_metadata() if k == "authorization"), None)
        if not self.auth.check(header):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token "
                          "(metadata authorization: Bearer <token>)")

    def receive(self, request: bytes, context: grpc.ServicerContext,
                decode: Callable[[], NormalisedBatch]) -> NormalisedBatch:
        """One Export call: auth, in-flight budget, ``decode`` (400 / 500 on failure), commit."""
        self.check_auth(context)
        held = self.hold(request, context)
        try:
            try:
                batch = decode()
            except RetryableError as exc:  # no room for it: refused before the costly normalisation
                abort_retryable(context, str(exc), exc.retry_after)
            except DecodeError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Exception as exc:
                abort_internal(context, exc)
            self.commit(batch, context)
        finally:
            self.inflight.release(held)
        return batch

    def commit(self, batch: NormalisedBatch, context: grpc.ServicerContext) -> None:
        try:
            wait_for_commit(self.pipeline.submit(batch, _TRANSPORT), self.request_timeout)
        except RetryableError as exc:
            abort_retryable(context, str(exc), exc.retry_after)
        except PermanentError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except InternalError as exc:  # logged by the pipeline where it happened
            context.abort(grpc.StatusCode.INTERNAL, str(exc))


def abort_retryable(context: grpc.ServicerContext, message: str, retry_after: int,
                    code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> NoReturn:
    """UNAVAILABLE with a RetryInfo (the OTel exporters read the retryinfo-bin trailer, others the
    standard grpc-status-details-bin)."""
    retry = RetryInfo(retry_delay=Duration(seconds=retry_after))
    detail = AnyMessage()
    detail.Pack(retry)
    status = Status(code=code.value[0], message=message, details=[detail])
    context.set_trailing_metadata((("google.rpc.retryinfo-bin", retry.SerializeToString()),
                                   ("grpc-status-details-bin", status.SerializeToString())))
    context.abort(code, message)
    raise AssertionError("grpc context.abort() returned")  # it always raises


def abort_internal(context: grpc.ServicerContext, exc: Exception) -> NoReturn:
    """A bug in decode/normalise: logged with its traceback, INTERNAL to the client (not its fault)."""
    _log.error("internal error while decoding a request", exc_info=exc)
    context.abort(grpc.StatusCode.INTERNAL, f"internal error while decoding: {exc!r}")
    raise AssertionError("grpc context.abort() returned")  # it always raises


class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, handlers: _Handlers, prices: PriceTable, redact: Redact | None) -> None:
        self._h = handlers
        self._prices = prices
        self._redact = redact

    def Export(self, request: bytes, context: grpc.ServicerContext) -> ExportTraceServiceResponse:
        batch = self._h.receive(request, context, lambda: self._decode(request))
        return traces_response(batch.invalid_feedback, batch.invalid_outcomes)

    def _decode(self, body: bytes) -> NormalisedBatch:
        parsed = parse_traces(body, PROTOBUF)
        self._h.pipeline.check_room(count_spans(parsed), _TRANSPORT)
        return normalise_traces(parsed, self._prices, self._redact)


class LogsService(logs_service_pb2_grpc.LogsServiceServicer):
    def __init__(self, handlers: _Handlers, redact: Redact | None) -> None:
        self._h = handlers
        self._redact = redact

    def Export(self, request: bytes, context: grpc.ServicerContext) -> ExportLogsServiceResponse:
        batch = self._h.receive(request, context, lambda: normalise_logs(
            parse_logs(request, PROTOBUF), self._redact))
        return logs_response(batch.invalid_feedback, batch.invalid_outcomes)


def _unary(method: Callable[[bytes, grpc.ServicerContext], Any]) -> grpc.RpcMethodHandler:
    return grpc.unary_unary_rpc_method_handler(method, request_deserializer=_identity,
                                               response_serializer=lambda m: m.SerializeToString())


class GrpcReceiver:
    """``start()`` binds ``host:port`` (0 → free port, see ``address``); ``shutdown()`` safe twice."""

    def __init__(self, host: str, port: int, pipeline: Pipeline, *, prices: PriceTable, auth: BearerAuth,
                 max_body_bytes: int, workers: int = 16, redact: Redact | None = None,
                 reuse_port: bool = False, tls_files: tuple[Path, Path] | None = None,
                 inflight: InflightBytes | None = None, max_concurrent_rpcs: int | None = None,
                 request_timeout: float | None = None) -> None:
        self._bind = (host, port)
        self._reuse_port = reuse_port
        self._handlers = _Handlers(pipeline, auth, inflight or InflightBytes(8 * max_body_bytes),
                                   request_timeout)
        self._max_concurrent_rpcs = max_concurrent_rpcs
        self._prices = prices
        self._redact = redact
        self._max = max_body_bytes
        self._workers = workers
        self._tls_files = tls_files
        self._server: grpc.Server | None = None
        self._address: tuple[str, int] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the gRPC receiver is not started")
        return self._address

    def start(self) -> None:
        if self._server is not None:
            return
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self._workers, thread_name_prefix="otel-chatbot-grpc"),
            options=[("grpc.max_receive_message_length", self._max),
                     ("grpc.max_send_message_length", 4 * 1024 * 1024),
                     # Worker processes share the port (serve --workers); one process holds it alone:
                     # grpcio's default SO_REUSEPORT would let a second processor bind the same port
                     # "successfully" and the kernel would split the traffic between the two.
                     ("grpc.so_reuseport", 1 if self._reuse_port else 0)],
            # Bounds the messages grpcio holds for calls waiting for a worker. Its refusal carries no
            # RetryInfo (the Collector takes it as permanent), so the limit sits well above the workers
            # and the in-flight byte budget, which refuses with RetryInfo, normally acts first.
            maximum_concurrent_rpcs=self._max_concurrent_rpcs)
        traces = TraceService(self._handlers, self._prices, self._redact)
        logs = LogsService(self._handlers, self._redact)
        server.add_generic_rpc_handlers((
            grpc.method_handlers_generic_handler(_TRACE_SERVICE, {"Export": _unary(traces.Export)}),
            grpc.method_handlers_generic_handler(_LOGS_SERVICE, {"Export": _unary(logs.Export)}),
        ))
        host, port = self._bind
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        if self._tls_files is not None:
            cert, key = (path.read_bytes() for path in self._tls_files)
            bound = server.add_secure_port(target, grpc.ssl_server_credentials([(key, cert)]))
        else:
            bound = server.add_insecure_port(target)
        if bound == 0:
            raise OSError(f"cannot bind the gRPC receiver to {target}")
        server.start()
        self._server = server
        self._address = (host, bound)

    def stop_accepting(self, grace: float) -> Any:
        """Refuse new calls now; in-flight ones get ``grace`` seconds. Returns a threading.Event."""
        server = self._server
        return None if server is None else server.stop(grace)

    def shutdown(self, grace: float = 30.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait(grace + 5)
