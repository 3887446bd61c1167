"""Check an OpenTelemetry Collector config against the allowed keys of its components.

No otelcol binary runs here, so tests/testdata/collector/components-<version>.yaml lists, per component,
the keys its config struct accepts at the pinned version (see that file's header for the schema
language). ``check_config`` returns every problem as "path: message"; an empty list means clean.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from tools import ROOT

FIXTURE_DIR = ROOT / "tests" / "testdata" / "collector"
SECTIONS = ("receivers", "processors", "exporters", "extensions")
_TOP_LEVEL = {*SECTIONS, "connectors", "service"}
_SERVICE_KEYS = {"extensions", "pipelines", "telemetry"}
_PIPELINE_KEYS = {"receivers", "processors", "exporters"}
_PIPELINE_NAME = re.compile(r"^(traces|metrics|logs)(/[A-Za-z0-9_.-]+)?$")
_COMPONENT_ID = re.compile(r"^([a-z0-9_]+)(/[A-Za-z0-9_.-]+)?$")


def load_components(version: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((FIXTURE_DIR / f"components-{version}.yaml").read_text())
    assert data["collector_version"] == version
    return data


def component_type(component_id: str) -> str:
    match = _COMPONENT_ID.match(component_id)
    return match.group(1) if match else ""


def _resolve(schema: Any, defs: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema.startswith("def:"):
        return _resolve(defs[schema[4:]], defs)
    if isinstance(schema, dict) and "$use" in schema:
        merged: dict[str, Any] = {}
        for name in schema["$use"]:
            merged.update(_resolve(defs[name], defs))
        merged.update({k: v for k, v in schema.items() if k != "$use"})
        return merged
    return schema


def check_value(value: Any, schema: Any, defs: dict[str, Any], path: str) -> list[str]:
    """Problems of ``value`` against ``schema`` (None schema: anything goes)."""
    schema = _resolve(schema, defs)
    if schema is None or value is None:
        return []
    if "$list" in schema:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        return [p for i, item in enumerate(value)
                for p in check_value(item, schema["$list"], defs, f"{path}[{i}]")]
    if "$map" in schema:
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping, got {type(value).__name__}"]
        return [p for k, v in value.items() for p in check_value(v, schema["$map"], defs, f"{path}.{k}")]
    if not isinstance(value, dict):
        return [f"{path}: expected a mapping, got {type(value).__name__}"]
    problems: list[str] = []
    for key, item in value.items():
        if key not in schema:
            problems.append(f"{path}.{key}: unknown key (allowed: {', '.join(sorted(schema))})")
        else:
            problems.extend(check_value(item, schema[key], defs, f"{path}.{key}"))
    return problems


def _references(value: Any, key: str) -> list[str]:
    """Every string under ``key`` anywhere in ``value`` (e.g. auth.authenticator, sending_queue.storage)."""
    found: list[str] = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key and isinstance(v, str):
                found.append(v)
            else:
                found.extend(_references(v, key))
    elif isinstance(value, list):
        for item in value:
            found.extend(_references(item, key))
    return found


def check_config(config: Any, components: dict[str, Any]) -> list[str]:
    """Every problem of a Collector config: unknown sections, components or keys, dangling references."""
    if not isinstance(config, dict):
        return ["config: expected a mapping"]
    defs = components["defs"]
    problems = [f"{key}: unknown top-level section" for key in config if key not in _TOP_LEVEL]
    defined: dict[str, set[str]] = {}
    for section in SECTIONS:
        entries = config.get(section) or {}
        defined[section] = set(entries)
        for component_id, settings in entries.items():
            kind = component_type(component_id)
            schema = components[section].get(kind)
            if schema is None:
                problems.append(f"{section}.{component_id}: unknown {section[:-1]} type {kind!r} "
                                f"at {components['collector_version']}")
                continue
            problems.extend(check_value(settings, schema, defs, f"{section}.{component_id}"))

    service = config.get("service")
    if not isinstance(service, dict):
        return [*problems, "service: missing"]
    problems.extend(f"service.{key}: unknown key" for key in service if key not in _SERVICE_KEYS)
    enabled = list(service.get("extensions") or [])
    problems.extend(f"service.extensions: {e!r} is not defined under extensions"
                    for e in enabled if e not in defined["extensions"])
    problems.extend(f"extensions.{e}: defined but not enabled in service.extensions"
                    for e in defined["extensions"] if e not in enabled)
    for key, kinds, what in (("authenticator", components["authenticators"], "authenticator"),
                             ("storage", components["storages"], "storage")):
        for ref in _references({s: config.get(s) for s in SECTIONS}, key):
            if ref not in enabled:
                problems.append(f"{what} {ref!r} is not an enabled extension")
            elif component_type(ref) not in kinds:
                problems.append(f"{what} {ref!r} is not an extension of kind {'/'.join(kinds)}")

    pipelines = service.get("pipelines") or {}
    if not pipelines:
        problems.append("service.pipelines: none defined")
    used: set[tuple[str, str]] = set()
    for name, pipeline in pipelines.items():
        where = f"service.pipelines.{name}"
        if not _PIPELINE_NAME.match(name):
            problems.append(f"{where}: not a traces/metrics/logs pipeline name")
        if not isinstance(pipeline, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        problems.extend(f"{where}.{k}: unknown key" for k in pipeline if k not in _PIPELINE_KEYS)
        for part in ("receivers", "exporters"):
            if not pipeline.get(part):
                problems.append(f"{where}.{part}: empty")
        for part in _PIPELINE_KEYS:
            for ref in pipeline.get(part) or []:
                used.add((part, ref))
                if ref not in defined[part]:
                    problems.append(f"{where}.{part}: {ref!r} is not defined under {part}")
    for section in ("receivers", "processors", "exporters"):
        problems.extend(f"{section}.{c}: defined but used by no pipeline"
                        for c in defined[section] if (section, c) not in used)
    return problems


def load_config(path: Path) -> Any:
    return yaml.safe_load(path.read_text())
