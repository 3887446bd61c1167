"""Reading settings from where they come from: config files (YAML, TOML, JSON), ``OTEL_CHATBOT_*``
variables and flag strings, turned into typed values. Errors start with the key they are about."""

from __future__ import annotations

import difflib
import json
import os
import re
import tomllib
from collections.abc import Collection, Mapping
from pathlib import Path

import yaml

ENV_PREFIX = "OTEL_CHATBOT_"
_SIZE_UNITS = {"": 1, "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3,
               "gib": 1024**3}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
# Settings given in bytes, which also take sizes like 16MiB.
SIZE_KEYS = frozenset({"max_body_bytes", "max_inflight_bytes"})


class ConfigError(ValueError):
    """A setting is invalid; the message starts with the key."""


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper()


def read_mapping_file(path: Path) -> dict[str, object]:
    """The mapping of a YAML, TOML or JSON file, keys with ``-`` read as ``_`` (not checked here)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config: cannot read {str(path)!r}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            data: object = tomllib.loads(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            data = yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = suffix.lstrip(".").upper() if suffix in (".toml", ".json") else "YAML"
        raise ConfigError(f"config: {str(path)!r} is not valid {kind}: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config: {str(path)!r} must hold a mapping of settings, got {type(data).__name__}")
    return {str(key).replace("-", "_"): value for key, value in data.items()}


def check_known(key: str, what: str, known: Collection[str]) -> None:
    """ConfigError for a key that is not a setting, naming the closest one."""
    if key not in known:
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ConfigError(f"unknown {what} {key!r}{hint}")


def unknown_variables_of(env: Mapping[str, str], known: Collection[str]) -> list[str]:
    """One warning per ``OTEL_CHATBOT_*`` variable of ``env`` not in ``known``, naming the closest."""
    warnings = []
    for name in sorted(env):
        if name.startswith(ENV_PREFIX) and name not in known:
            # Compared without the shared prefix, which would make every name look close.
            suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
            close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), sorted(suffixes), n=1,
                                              cutoff=0.7)
            hint = (f"; did you mean {suffixes[close[0]]}?" if close
                    else f"; settings are {ENV_PREFIX}<KEY> of `serve --help`")
            warnings.append(f"ignoring unknown variable {name}{hint}")
    return warnings


def coerce(key: str, kind: str, optional: bool, value: object) -> object:
    """``value`` (a flag, variable or file value) as the setting's type ``kind`` (a dataclass field
    type, written as a string); an empty value of an optional setting is None."""
    if optional and value in (None, ""):
        return None
    if kind == "int":
        return parse_size(key, value) if key in SIZE_KEYS else _int(key, value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if kind in ("Path", "Path | None"):
        if not isinstance(value, str | os.PathLike):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(value).expanduser()
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value.strip().lower() if key in ("log_level", "span_storage") else value.strip()


def _int(key: str, value: object) -> int:
    if isinstance(value, bool):
        raise ConfigError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise ConfigError(f"{key}: expected an integer, got {value!r}")


def parse_size(key: str, value: object) -> int:
    """Bytes from an int or a string like ``16MiB`` / ``500kb``."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE_RE.match(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in _SIZE_UNITS:
        raise ConfigError(f"{key}: expected a size in bytes such as 16777216 or 16MiB, got {value!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]


def at_least(key: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise ConfigError(f"{key}: expected an integer >= {minimum}, got {value}")


def split_address(key: str, value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 as ``[::1]:4318``) → (host, port); port 0 means "any free port"."""
    host, sep, port_text = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or int(port_text) > 65535 or any(
            c.isspace() or c in "/[]" for c in host):
        raise ConfigError(f"{key}: expected HOST:PORT, got {value!r}")
    return host, int(port_text)


def check_database_url(url: str) -> None:
    scheme, sep, _rest = url.partition("://")
    if sep:
        if scheme not in ("postgresql", "postgres"):
            # Never echo the URL: it may carry a password.
            raise ConfigError(f"database_url: expected a postgresql:// URL, got a {scheme}:// URL")
    elif "=" not in url:
        raise ConfigError("database_url: expected a postgresql:// URL or a libpq key=value string")
