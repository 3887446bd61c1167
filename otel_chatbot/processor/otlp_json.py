"""OTLP/JSON → protobuf messages.

OTLP/JSON is protobuf's JSON mapping with one twist: trace and span ids are hex strings, not
base64 (spec: "JSON Protobuf Encoding"). We check and convert the ids, then let
``json_format.ParseDict`` do the rest (lowerCamelCase or snake_case keys, enums as ints or names,
int64 as strings or numbers, unknown fields ignored as the spec requires of receivers).
Errors are ``ValueError`` whose message names the offending field; decode.py wraps them.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

_HEX_DIGITS = frozenset("0123456789abcdefABCDEF")


def traces_from_json(document: object) -> Any:
    """An ``ExportTraceServiceRequest`` from a decoded OTLP/JSON document."""
    root = _object(document, "body")
    for span, path in _records(root, ("resourceSpans", "resource_spans"), ("scopeSpans", "scope_spans"),
                               ("spans",)):
        _fix_ids(span, path, required=True)
        _fix_id(span, ("parentSpanId", "parent_span_id"), 8, path, required=False)
        for m, link in enumerate(_list(span, ("links",), path)):
            link_path = f"{path}.links[{m}]"
            _fix_ids(_object(link, link_path), link_path, required=True)
    return _parse(root, ExportTraceServiceRequest())


def logs_from_json(document: object) -> Any:
    """An ``ExportLogsServiceRequest`` from a decoded OTLP/JSON document."""
    root = _object(document, "body")
    for record, path in _records(root, ("resourceLogs", "resource_logs"), ("scopeLogs", "scope_logs"),
                                 ("logRecords", "log_records")):
        # Log records need not belong to a trace: empty ids are allowed here.
        _fix_ids(record, path, required=False)
    return _parse(root, ExportLogsServiceRequest())


def _records(root: dict[str, Any], resource_keys: tuple[str, ...], scope_keys: tuple[str, ...],
             record_keys: tuple[str, ...]) -> Iterator[tuple[dict[str, Any], str]]:
    """Each record (span, log record) of resource → scope → record lists, with its path for errors
    (named after the first, lowerCamelCase key: ``resourceSpans[0].scopeSpans[1].spans[2]``)."""
    for i, resource in enumerate(_list(root, resource_keys, "")):
        resource_path = f"{resource_keys[0]}[{i}]"
        for j, scope in enumerate(_list(_object(resource, resource_path), scope_keys, resource_path)):
            scope_path = f"{resource_path}.{scope_keys[0]}[{j}]"
            for k, record in enumerate(_list(_object(scope, scope_path), record_keys, scope_path)):
                path = f"{scope_path}.{record_keys[0]}[{k}]"
                yield _object(record, path), path


def _fix_ids(obj: dict[str, Any], path: str, *, required: bool) -> None:
    """The trace and span id of a span, link or log record."""
    _fix_id(obj, ("traceId", "trace_id"), 16, path, required=required)
    _fix_id(obj, ("spanId", "span_id"), 8, path, required=required)


def _parse(root: dict[str, Any], message: Any) -> Any:
    try:
        json_format.ParseDict(root, message, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ValueError(f"body is not a valid OTLP/JSON request: {exc}") from None
    return message


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{path or 'body'} must be a JSON object, got {_kind(value)}")
    return value


def _list(parent: dict[str, Any], keys: tuple[str, ...], path: str) -> list[Any]:
    for key in keys:
        if key in parent:
            value = parent[key]
            if value is None:
                return []
            if not isinstance(value, list):
                where = f"{path}.{keys[0]}" if path else keys[0]
                raise ValueError(f"{where} must be a JSON array, got {_kind(value)}")
            return value
    return []


def _fix_id(obj: dict[str, Any], keys: tuple[str, str], size: int, path: str, *, required: bool) -> None:
    """Replace a hex id by the base64 that protobuf's JSON mapping expects for ``bytes``."""
    for key in keys:
        if key not in obj:
            continue
        value = obj[key]
        if value is None or value == "":
            if required:
                raise ValueError(f"{path}.{keys[0]} must be {size * 2} hex characters, got an empty value")
            obj[key] = ""
            return
        if not isinstance(value, str) or len(value) != size * 2 or not _HEX_DIGITS.issuperset(value):
            shown = value[:80] if isinstance(value, str) else value
            raise ValueError(f"{path}.{keys[0]} must be {size * 2} hex characters, got {shown!r}")
        obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
        return
    if required:
        raise ValueError(f"{path}.{keys[0]} is missing")


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )
