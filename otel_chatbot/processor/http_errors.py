"""Error answers of the OTLP/HTTP port: a google.rpc.Status body in the request's encoding.

400/413/415 are permanent; 429/503 carry Retry-After so the Collector retries; a processor bug is a
500 (INTERNAL), never a 400 that would blame the client.
"""

from __future__ import annotations

from typing import Any

import orjson
from google.rpc.status_pb2 import Status  # type: ignore[import-untyped]
from starlette.requests import Request
from starlette.responses import Response

from otel_chatbot.processor.decode import JSON, PROTOBUF, is_protobuf

# google.rpc.Code values carried in the Status body
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, INTERNAL, UNAUTHENTICATED, UNAVAILABLE = 3, 8, 13, 16, 14
# The google.rpc.Code that matches an HTTP status (google/rpc/code.proto's HTTP mapping), so a body's
# code never contradicts its status (a 404 saying INVALID_ARGUMENT).
_CODE_OF_STATUS = {400: INVALID_ARGUMENT, 401: UNAUTHENTICATED, 403: 7, 404: 5, 405: 12,
                   413: RESOURCE_EXHAUSTED, 415: INVALID_ARGUMENT, 429: RESOURCE_EXHAUSTED,
                   500: INTERNAL, 503: UNAVAILABLE}
UNAUTHORISED = "missing or invalid bearer token (Authorization: Bearer <token>)"
_EMPTY_JSON = b"{}"


class HttpError(Exception):
    def __init__(self, status: int, message: str, code: int | None = None,
                 retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code if code is not None else _CODE_OF_STATUS.get(status, INVALID_ARGUMENT)
        self.retry_after = retry_after


def error_response(error: HttpError, content_type: str) -> Response:
    """A google.rpc.Status body: protobuf for protobuf requests, JSON otherwise."""
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after is not None else None
    message = str(error)
    if is_protobuf(content_type):
        body = Status(code=error.code, message=message).SerializeToString()
        return Response(body, error.status, headers, media_type=PROTOBUF)
    return Response(orjson.dumps({"code": error.code, "message": message}), error.status, headers,
                    media_type=JSON)


async def http_exception(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer like every other error: a Status body with a message."""
    status = getattr(exc, "status_code", 404)
    message = (f"no such endpoint {request.url.path!r}" if status == 404
               else f"method {request.method} not allowed on {request.url.path!r}")
    response = error_response(HttpError(status, message), request.headers.get("content-type", ""))
    if status == 405 and getattr(exc, "headers", None):
        response.headers.update(exc.headers)  # type: ignore[attr-defined]
    return response


def otlp_response(message: Any, content_type: str, rejected_key: str, rejected: int) -> Response:
    """The Export…ServiceResponse of a 200, in the request's encoding (``{}`` without partial success)."""
    if is_protobuf(content_type):
        return Response(message.SerializeToString(), 200, media_type=PROTOBUF)
    if not message.HasField("partial_success"):
        return Response(_EMPTY_JSON, 200, media_type=JSON)
    partial = {rejected_key: rejected, "errorMessage": message.partial_success.error_message}
    return Response(orjson.dumps({"partialSuccess": partial}), 200, media_type=JSON)
