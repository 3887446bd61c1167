"""OTLP/HTTP receiver and the small HTTP API (Starlette app served by uvicorn in its own thread).

POST /v1/traces, /v1/logs (protobuf or JSON, optionally gzip/deflate), POST /v1/feedback, /v1/outcomes,
GET /healthz, GET /readyz. Answers 200 only after the pipeline committed the request's data (feedback
or an outcome for a turn not stored yet: 202, committed as pending until the turn arrives).
Errors follow the OTLP spec: a google.rpc.Status body in the request's encoding; 400/413/415 are
permanent, 429/503 carry Retry-After so the Collector retries; a processor bug answers 500 (INTERNAL)
and is logged, never a 400 that would blame the client.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from otel_chatbot.errors import InternalError, PermanentError, RetryableError, Unavailable
from otel_chatbot.processor.auth import BearerAuth
from otel_chatbot.processor.commit_wait import wait_for_commit_async
from otel_chatbot.processor.decode import (
    JSON,
    DecodeError,
    UnsupportedContentType,
    count_spans,
    logs_response,
    media_type,
    parse_logs,
    parse_traces,
    traces_response,
)
from otel_chatbot.processor.feedback_api import FeedbackRequestError, feedback_row
from otel_chatbot.processor.http_body import decompress, read_body
from otel_chatbot.processor.http_errors import (
    INTERNAL,
    UNAUTHORISED,
    UNAVAILABLE,
    HttpError,
    error_response,
    http_exception,
    otlp_response,
)
from otel_chatbot.processor.inflight import InflightBytes
from otel_chatbot.processor.listeners import bind_socket
from otel_chatbot.processor.normalise import Redact, normalise_logs, normalise_traces
from otel_chatbot.processor.outcomes_api import OutcomeRequestError, outcome_row
from otel_chatbot.processor.pipeline import Pipeline
from otel_chatbot.processor.pricing import PriceTable
from otel_chatbot.records import NormalisedBatch

__all__ = ["HttpError", "HttpReceiver", "ReadyCheck", "TurnExists", "bind_socket", "decompress",
           "error_response"]

_log = logging.getLogger(__name__)

_TRANSPORT = "http"

ReadyCheck = Callable[[], tuple[bool, str]]
TurnExists = Callable[[str], bool]
Endpoint = Callable[[Request], Awaitable[Response]]


class HttpReceiver:
    """The HTTP server; ``start()`` returns once it is listening on ``address``."""

    def __init__(self, host: str, port: int, pipeline: Pipeline, *, prices: PriceTable,
                 auth: BearerAuth, max_body_bytes: int, ready_check: ReadyCheck,
                 turn_exists: TurnExists, redact: Redact | None = None,
                 graceful_timeout: float = 30.0, cors_origins: Sequence[str] = (),
                 extra_routes: Sequence[BaseRoute] = (), reuse_port: bool = False,
                 health_public: bool = True, tls_files: tuple[Path, Path] | None = None,
                 inflight: InflightBytes | None = None, request_timeout: float | None = None) -> None:
        self._bind = (host, port)
        self._request_timeout = request_timeout
        self._reuse_port = reuse_port
        self._inflight = inflight or InflightBytes(8 * max_body_bytes)
        self._pipeline = pipeline
        self._prices = prices
        self._auth = auth
        self._max = max_body_bytes
        self._ready_check = ready_check
        self._turn_exists = turn_exists
        self._redact = redact
        self._graceful_timeout = graceful_timeout
        self._health_public = health_public
        self._tls_files = tls_files
        self._server: uvicorn.Server | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._address: tuple[str, int] | None = None
        # CORS for browser callers (a chat widget posting feedback, the OpenTelemetry JS exporter);
        # preflight requests carry no token, so the middleware answers them before the auth check.
        middleware = [Middleware(CORSMiddleware, allow_origins=list(cors_origins),
                                 allow_methods=["GET", "POST"],
                                 allow_headers=["authorization", "content-type", "content-encoding"],
                                 max_age=600)] if cors_origins else []
        # Unknown paths and methods answer like every other error: a Status body with a message.
        handlers = {404: http_exception, 405: http_exception}
        self.app = Starlette(middleware=middleware, exception_handlers=handlers, routes=[
            Route("/v1/traces", self._answered(self._traces), methods=["POST"]),
            Route("/v1/logs", self._answered(self._logs), methods=["POST"]),
            Route("/v1/feedback", self._answered(self._feedback), methods=["POST"]),
            Route("/v1/outcomes", self._answered(self._outcomes), methods=["POST"]),
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            *extra_routes,  # the review page and widget (otel_chatbot.ui), mounted under /ui
        ])

    # --- lifecycle -------------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        if self._address is None:
            raise RuntimeError("the HTTP receiver is not started")
        return self._address

    def start(self) -> None:
        if self._server is not None:
            return
        sock = bind_socket(*self._bind, reuse_port=self._reuse_port)
        self._address = sock.getsockname()[:2]
        config = uvicorn.Config(self.app, lifespan="off", log_level="warning", access_log=False,
                                timeout_keep_alive=30, timeout_graceful_shutdown=int(self._graceful_timeout),
                                backlog=1024, server_header=False,
                                ssl_certfile=self._tls_files[0] if self._tls_files else None,
                                ssl_keyfile=self._tls_files[1] if self._tls_files else None)
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="otel-chatbot-http", daemon=True)
        self._thread.start()
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the HTTP server on {self._bind[0]}:{self._bind[1]} failed to start")
            time.sleep(0.005)

    def stop_accepting(self, grace: float | None = None) -> None:
        """Begin a graceful stop: close the listener, let in-flight requests finish; those still running
        after ``grace`` seconds (default: the graceful timeout given at construction) are answered 503."""
        self._stopping = True
        if self._server is not None:
            if grace is not None:  # read by uvicorn when it begins the stop, just after should_exit
                self._server.config.timeout_graceful_shutdown = grace  # type: ignore[assignment]
            self._server.should_exit = True

    def _answered(self, handler: Endpoint) -> Endpoint:
        """``handler``, answering 503 (retryable) when the stop cancels it: uvicorn cancels what still
        runs at the end of its graceful timeout, and would answer a cancelled request 500."""
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except asyncio.CancelledError:
                if not self._stopping:
                    raise
                error = HttpError(503, "the processor is shutting down", UNAVAILABLE, 1)
                return error_response(error, request.headers.get("content-type", ""))
        return endpoint

    def shutdown(self, timeout: float = 30.0) -> None:
        server, self._server = self._server, None
        thread, self._thread = self._thread, None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout)
        if thread.is_alive():
            server.force_exit = True
            thread.join(min(timeout, 1.0))

    # --- auth and body ---------------------------------------------------------------------------
    def _check_auth(self, request: Request) -> None:
        if not self._auth.check(request.headers.get("authorization")):
            raise HttpError(401, UNAUTHORISED)

    async def _body(self, request: Request, held: list[int] | None = None) -> bytes:
        return await read_body(request, self._max, self._inflight, held)

    async def _commit(self, batch: NormalisedBatch) -> None:
        try:
            future = self._pipeline.submit(batch, _TRANSPORT)
            await wait_for_commit_async(future, self._request_timeout)
        except RetryableError as exc:
            raise _retryable(exc) from None
        except PermanentError as exc:
            raise HttpError(400, str(exc)) from None
        except InternalError as exc:  # logged by the pipeline where it happened
            raise HttpError(500, str(exc), INTERNAL) from None

    # --- OTLP ------------------------------------------------------------------------------------
    async def _receive(self, request: Request, content_type: str,
                       decode: Callable[[bytes, str], NormalisedBatch]) -> NormalisedBatch:
        """Auth, bounded body, decode (415/400 on bad input), then wait for the commit."""
        self._check_auth(request)
        held = [0]  # bytes of this request counted in the in-flight budget, released when answered
        try:
            return await self._decode_and_commit(request, content_type, decode, held)
        finally:
            self._inflight.release(held[0])

    async def _decode_and_commit(self, request: Request, content_type: str,
                                 decode: Callable[[bytes, str], NormalisedBatch],
                                 held: list[int]) -> NormalisedBatch:
        body = await self._body(request, held)
        try:
            # In a worker thread: decoding a large request takes seconds of CPU, which on the event loop
            # would hold up /healthz, /readyz and every other connection for as long.
            batch = await asyncio.to_thread(decode, body, content_type)
        except RetryableError as exc:  # no room for it: refused before the costly normalisation
            raise _retryable(exc) from None
        except UnsupportedContentType as exc:
            raise HttpError(415, str(exc)) from None
        except DecodeError as exc:
            raise HttpError(400, str(exc)) from None
        except Exception as exc:  # a bug in decode/normalise, not the client's fault
            _log.exception("internal error while decoding a request")
            raise HttpError(500, f"internal error while decoding: {exc!r}", INTERNAL) from None
        await self._commit(batch)
        return batch

    def _decode_traces(self, body: bytes, content_type: str) -> NormalisedBatch:
        request = parse_traces(body, content_type)
        self._pipeline.check_room(count_spans(request), _TRANSPORT)
        return normalise_traces(request, self._prices, self._redact)

    def _decode_logs(self, body: bytes, content_type: str) -> NormalisedBatch:
        return normalise_logs(parse_logs(body, content_type), self._redact)

    async def _traces(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        try:
            batch = await self._receive(request, content_type, self._decode_traces)
        except HttpError as exc:
            return error_response(exc, content_type)
        return otlp_response(traces_response(batch.invalid_feedback, batch.invalid_outcomes), content_type,
                              "rejectedSpans", 0)

    async def _logs(self, request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        try:
            batch = await self._receive(request, content_type, self._decode_logs)
        except HttpError as exc:
            return error_response(exc, content_type)
        rejected = batch.invalid_feedback + batch.invalid_outcomes
        return otlp_response(logs_response(batch.invalid_feedback, batch.invalid_outcomes), content_type,
                              "rejectedLogRecords", rejected)

    # --- API -------------------------------------------------------------------------------------
    async def _feedback(self, request: Request) -> Response:
        try:
            self._check_auth(request)
            if media_type(request.headers.get("content-type", JSON)) != JSON:
                raise HttpError(415, "expected Content-Type application/json")
            try:
                row = feedback_row(await self._body(request), self._redact)
            except FeedbackRequestError as exc:
                raise HttpError(400, str(exc)) from None
            stored = await asyncio.to_thread(self._turn_exists, row.turn_id)
            # Either way the writer decides under the turn's lock: a turn not stored yet (its app's
            # exporter still holds it) gets the rating when it arrives, or it expires.
            await self._commit(NormalisedBatch(feedback=[row]))
        except HttpError as exc:
            return error_response(exc, JSON)
        except Exception as exc:  # turn lookup failed: the database is down
            _log.warning("feedback: turn lookup failed: %s", exc)
            return error_response(HttpError(503, "database unavailable", UNAVAILABLE, 5), JSON)
        body = {"turn_id": row.turn_id, "rating": row.rating, "stored": stored, "pending": not stored}
        return Response(orjson.dumps(body), 200 if stored else 202, media_type=JSON)

    async def _outcomes(self, request: Request) -> Response:
        try:
            self._check_auth(request)
            if media_type(request.headers.get("content-type", JSON)) != JSON:
                raise HttpError(415, "expected Content-Type application/json")
            try:
                row = outcome_row(await self._body(request))
            except OutcomeRequestError as exc:
                raise HttpError(400, str(exc)) from None
            # Only a turn-only outcome can wait: one naming a session is stored by session.
            stored = (row.session_id is not None
                      or await asyncio.to_thread(self._turn_exists, row.turn_id or ""))
            await self._commit(NormalisedBatch(outcomes=[row]))
        except HttpError as exc:
            return error_response(exc, JSON)
        except Exception as exc:  # turn lookup failed: the database is down
            _log.warning("outcome: turn lookup failed: %s", exc)
            return error_response(HttpError(503, "database unavailable", UNAVAILABLE, 5), JSON)
        body = {"session_id": row.session_id, "turn_id": row.turn_id, "kind": row.kind, "stored": stored,
                "pending": not stored}
        return Response(orjson.dumps(body), 200 if stored else 202, media_type=JSON)

    async def _healthz(self, request: Request) -> Response:
        if not self._health_public and not self._auth.check(request.headers.get("authorization")):
            return error_response(HttpError(401, UNAUTHORISED), JSON)
        return Response(b"ok\n", 200, media_type="text/plain")

    async def _readyz(self, request: Request) -> Response:
        if not self._health_public and not self._auth.check(request.headers.get("authorization")):
            return error_response(HttpError(401, UNAUTHORISED), JSON)
        ready, reason = await asyncio.to_thread(self._ready_check)
        return Response((reason + "\n").encode(), 200 if ready else 503, media_type="text/plain")


def _retryable(exc: RetryableError) -> HttpError:
    """503 while unavailable (database down, stopping, commit too slow), 429 when full; Retry-After."""
    status = 503 if isinstance(exc, Unavailable) else 429
    return HttpError(status, str(exc), UNAVAILABLE, exc.retry_after)
