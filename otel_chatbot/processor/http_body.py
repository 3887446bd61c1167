"""Request bodies of the OTLP/HTTP port: bounded on the wire and after inflating, counted in the
in-flight byte budget while they are held."""

from __future__ import annotations

import asyncio
import zlib

from starlette.requests import Request

from otel_chatbot.processor.http_errors import RESOURCE_EXHAUSTED, HttpError
from otel_chatbot.processor.inflight import InflightBytes


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Gunzip/inflate ``body``, refusing (413) output beyond ``limit`` bytes: gzip bombs stay small."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding not in ("gzip", "x-gzip", "deflate"):
        raise HttpError(415, f"unsupported Content-Encoding {encoding!r}: expected gzip, deflate or none")
    wbits = 16 + zlib.MAX_WBITS if encoding != "deflate" else zlib.MAX_WBITS
    out: list[bytes] = []
    size = 0
    data = body
    try:
        while data:
            inflater = zlib.decompressobj(wbits)
            chunk = inflater.decompress(data, limit + 1 - size)
            size += len(chunk)
            out.append(chunk)
            if size > limit or inflater.unconsumed_tail:
                raise HttpError(413, f"decompressed body exceeds the limit of {limit} bytes",
                                RESOURCE_EXHAUSTED)
            if not inflater.eof:
                raise HttpError(400, f"{encoding} body is truncated")
            data = inflater.unused_data  # concatenated gzip members
    except zlib.error as exc:
        raise HttpError(400, f"body is not valid {encoding}: {exc}") from None
    return b"".join(out)


async def drain(request: Request) -> None:
    """Read and drop the body (nothing held), so a refused client gets its answer, not a reset."""
    async for _chunk in request.stream():
        pass


async def read_body(request: Request, limit: int, inflight: InflightBytes,
                    held: list[int] | None = None) -> bytes:
    """The (inflated) body, at most ``limit`` bytes (413 beyond). With ``held``, its bytes are counted in
    ``inflight`` as they arrive (429 beyond it) and added to ``held[0]``, which the caller releases."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise HttpError(400, f"invalid Content-Length {length!r}")
        if int(length) > limit:
            raise HttpError(413, f"body of {length} bytes exceeds the limit of {limit} bytes",
                            RESOURCE_EXHAUSTED)
        if held is not None and not inflight.try_acquire(int(length)):
            await drain(request)
            raise HttpError(429, inflight.refusal(int(length)), RESOURCE_EXHAUSTED, 1)
        if held is not None:
            held[0] += int(length)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:  # chunked uploads have no Content-Length: count while reading
            raise HttpError(413, f"body exceeds the limit of {limit} bytes", RESOURCE_EXHAUSTED)
        if held is not None and length is None:
            _hold(inflight, held, len(chunk))
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    encoding = request.headers.get("content-encoding", "")
    if encoding.strip().lower() in ("", "identity"):
        return body
    # Off the event loop: inflating 32 MiB takes long enough to stall /healthz and every other request.
    inflated = await asyncio.to_thread(decompress, body, encoding, limit)
    if held is not None:
        _hold(inflight, held, len(inflated))
    return inflated


def _hold(inflight: InflightBytes, held: list[int], n: int) -> None:
    if not inflight.try_acquire(n):
        raise HttpError(429, inflight.refusal(n), RESOURCE_EXHAUSTED, 1)
    held[0] += n
