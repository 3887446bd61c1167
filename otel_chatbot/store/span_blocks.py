"""Span blocks: the stored form of spans in the blocks layout (pure encoding and decoding, no I/O).

A block holds the spans of one write that start on one UTC day, a trace's spans next to each other,
at most ``BLOCK_MAX_SPANS`` of them (a trace fetch decompresses one whole block: the bound keeps that
near half a millisecond). Format, version 1: a zstd frame of UTF-8 JSON lines,

    {"v": 1, "resources": [<resource attributes object>, ...]}
    [trace_id, span_id, parent_span_id, name, kind, start_ns, end_ns, status_code, status_message,
     service, resource_index, attributes, events, model, provider, input_tokens, output_tokens,
     cost_usd, operation, turn_scope]
    ...

one line per span (ids lowercase hex, times Unix nanoseconds, attributes and events exactly the JSON
the rows layout stores in ``spans``, so after the processor's redaction). One line per span lets a
trace fetch parse only its own lines. The block's key is a 16-byte BLAKE2b hash of the compressed
body. ``pack_span_ids`` gives the trace index's ``span_ids``: the 8-byte ids concatenated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson
import zstandard

from otel_chatbot.records import SpanRow

FORMAT_VERSION: Final = 1
BLOCK_MAX_SPANS: Final = 512
ZSTD_LEVEL: Final = 3  # measured on the ingest benchmark's spans: as fast as level 1, 5% smaller
_Fragment = orjson.Fragment


class BlockFormatError(ValueError):
    """A stored block that this version cannot read (corrupt, or a newer format)."""


@dataclass(frozen=True, slots=True)
class StoredSpan:
    """A span as read back from either layout (attributes, resource and events parsed)."""

    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    kind: int
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    service: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    events: list[Any]
    model: str | None = None
    provider: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    operation: str | None = None

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6


@dataclass(frozen=True, slots=True)
class EncodedBlock:
    block_id: bytes
    start_ns: int  # earliest span start
    spans: list[SpanRow]
    raw_bytes: int
    body: bytes  # the zstd frame


class BlockEncoder:
    """SpanRows → compressed blocks. One per writer: the zstd context is not shared between threads."""

    def __init__(self, level: int = ZSTD_LEVEL) -> None:
        self._compressor = zstandard.ZstdCompressor(level=level)

    def encode(self, spans: Sequence[SpanRow]) -> EncodedBlock:
        raw = encode_lines(spans)
        body = self._compressor.compress(raw)
        return EncodedBlock(hashlib.blake2b(body, digest_size=16).digest(), min(s.start_ns for s in spans),
                            list(spans), len(raw), body)


def encode_lines(spans: Iterable[SpanRow]) -> bytes:
    """The uncompressed block (JSON lines, see the module docstring)."""
    dumps, fragment = orjson.dumps, _Fragment
    resources: dict[str, int] = {}
    lines: list[bytes] = [b""]  # the header goes first, once the resources are known
    append = lines.append
    for s in spans:
        index = resources.get(s.resource_json)
        if index is None:
            index = resources[s.resource_json] = len(resources)
        # An end before the start (a client clock stepping back) is stored as duration 0, as in `spans`.
        append(dumps((s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.start_ns,
                      s.end_ns if s.end_ns >= s.start_ns else s.start_ns,
                      s.status_code, s.status_message, s.service, index, fragment(s.attributes_json),
                      fragment(s.events_json), s.model, s.provider, s.input_tokens, s.output_tokens,
                      s.cost_usd, s.operation, s.turn_scope)))
    lines[0] = dumps({"v": FORMAT_VERSION, "resources": [fragment(r) for r in resources]})
    return b"\n".join(lines)


def decompress(body: bytes) -> bytes:
    try:
        return zstandard.ZstdDecompressor().decompress(body)
    except zstandard.ZstdError as exc:
        raise BlockFormatError(f"span block is not a readable zstd frame: {exc}") from None


def _header(raw: bytes) -> tuple[list[Any], int]:
    """(resources, offset of the first span line)."""
    end = raw.find(b"\n")
    end = len(raw) if end < 0 else end
    try:
        header = orjson.loads(raw[:end])
    except orjson.JSONDecodeError as exc:
        raise BlockFormatError(f"span block header is not JSON: {exc}") from None
    if not isinstance(header, dict) or header.get("v") != FORMAT_VERSION:
        version = header.get("v") if isinstance(header, dict) else None
        raise BlockFormatError(f"span block format {version!r} is not supported (expected {FORMAT_VERSION})")
    return list(header.get("resources") or []), end + 1


def _span(line: bytes, resources: list[Any]) -> StoredSpan:
    v = orjson.loads(line)
    return StoredSpan(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[11], resources[v[10]],
                      v[12], v[13], v[14], v[15], v[16], v[17], v[18])


def block_spans(body: bytes, trace_id: str | None = None) -> list[StoredSpan]:
    """The spans of a stored block, or only those of ``trace_id`` (parsing only their lines)."""
    raw = decompress(body)
    resources, start = _header(raw)
    if trace_id is None:
        lines = raw[start:].split(b"\n") if start < len(raw) else []
    else:
        lines = _trace_lines(raw, start, b'\n["' + trace_id.encode() + b'"')
    try:
        return [_span(line, resources) for line in lines]
    except (orjson.JSONDecodeError, IndexError, TypeError) as exc:
        raise BlockFormatError(f"span block has a malformed span line: {exc}") from None


def _trace_lines(raw: bytes, start: int, marker: bytes) -> list[bytes]:
    """The lines starting with ``marker[1:]``, found with bytes.find instead of splitting every line
    (a trace's lines are next to each other in a block, but need not be: any order is read)."""
    lines = []
    at = raw.find(marker, start - 1)
    while at >= 0:
        end = raw.find(b"\n", at + 1)
        end = len(raw) if end < 0 else end
        lines.append(raw[at + 1:end])
        at = raw.find(marker, end)
    return lines


def block_span_rows(body: bytes) -> Iterator[tuple[str, str, bytes]]:
    """(trace_id, span_id, raw line) of every span of a block: what erasure filters and re-encodes."""
    raw = decompress(body)
    _resources, start = _header(raw)
    for line in raw[start:].split(b"\n") if start < len(raw) else []:
        try:
            values = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise BlockFormatError(f"span block has a malformed span line: {exc}") from None
        yield str(values[0]), str(values[1]), line


def rewrite_block(body: bytes, keep: Iterable[bytes], level: int = ZSTD_LEVEL) -> tuple[bytes, int]:
    """A block's header and the span lines ``keep`` (lines of ``body``), compressed: (body, raw size)."""
    raw = decompress(body)
    end = raw.find(b"\n")
    header = raw if end < 0 else raw[:end]
    new_raw = b"\n".join([header, *keep])
    return zstandard.ZstdCompressor(level=level).compress(new_raw), len(new_raw)


def pack_span_ids(span_ids: Iterable[str]) -> bytes:
    """Hex span ids → their 8-byte forms concatenated (the trace index's ``span_ids``)."""
    return bytes.fromhex("".join(span_ids))


def unpack_span_ids(packed: bytes) -> set[str]:
    return {packed[i:i + 8].hex() for i in range(0, len(packed), 8)}
