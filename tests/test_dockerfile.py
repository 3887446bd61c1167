"""The Dockerfile, linted without a Docker engine: its instructions parse, the runtime stage is the slim
Python 3.11 base with the server extra, runs as a non-root user it creates, exposes the processor's
ports, and its HEALTHCHECK command (run here, as written) passes against a real processor and fails
without one."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from server_support import running
from tools import ROOT

from otel_chatbot.processor.config import ProcessorConfig

DOCKERFILE = ROOT / "Dockerfile"
_KNOWN = {"FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME", "USER",
          "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL"}


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = pending + stripped
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append((keyword.upper(), args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _final_stage() -> list[tuple[str, str]]:
    items = instructions()
    last_from = max(i for i, (k, _) in enumerate(items) if k == "FROM")
    return items[last_from:]


def healthcheck_command() -> list[str]:
    """The exec-form command of the Dockerfile's HEALTHCHECK."""
    args = next(a for k, a in _final_stage() if k == "HEALTHCHECK")
    cmd = args[args.index("CMD ") + 4:]
    command: list[str] = json.loads(cmd)
    return command


def test_every_instruction_is_a_dockerfile_instruction() -> None:
    items = instructions()
    assert [k for k, _ in items if k not in _KNOWN] == []
    assert items[0][0] == "FROM"


def test_runtime_stage_is_slim_python_311_with_the_server_extra() -> None:
    stages = [a for k, a in instructions() if k == "FROM"]
    assert stages == ["python:3.11-slim AS build", "python:3.11-slim"]
    build = " ".join(a for k, a in instructions() if k == "RUN")
    assert "'.[server]'" in build and "'otel-chatbot[server]'" in build
    # What the build stage copies exists and is not excluded by .dockerignore.
    copied = [a.split()[:-1] for k, a in instructions() if k == "COPY" and "--from" not in a]
    sources = [s for group in copied for s in group]
    assert sources == ["pyproject.toml", "README.md", "otel_chatbot"]
    assert all((ROOT / s).exists() for s in sources)
    allowed = {line[1:].rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.startswith("!")}
    assert set(sources) <= allowed


def test_runs_as_the_non_root_user_it_creates() -> None:
    stage = _final_stage()
    users = [a for k, a in stage if k == "USER"]
    assert users == ["otelchatbot:otelchatbot"]
    user = users[0].split(":")[0]
    assert user not in ("root", "0")
    creating = next(a for k, a in stage if k == "RUN" and "useradd" in a)
    uid = re.search(r"--uid (\d+)", creating)
    assert uid is not None and int(uid.group(1)) >= 1000 and creating.rstrip().endswith(user)
    # USER comes before the entrypoint runs anything, after the last root-only step (pip install).
    keys = [k for k, _ in stage]
    assert keys.index("USER") > max(i for i, k in enumerate(keys) if k == "RUN")


def test_exposes_and_binds_the_default_ports_on_every_interface() -> None:
    stage = _final_stage()
    assert next(a for k, a in stage if k == "EXPOSE").split() == ["4317", "4318", "9464"]
    env = " ".join(a for k, a in stage if k == "ENV")
    defaults = ProcessorConfig()
    for key in ("otlp_grpc", "otlp_http", "metrics"):
        port = getattr(defaults, key).rpartition(":")[2]
        assert f"OTEL_CHATBOT_{key.upper()}=0.0.0.0:{port}" in env
    assert next(a for k, a in stage if k == "ENTRYPOINT") == '["otel-chatbot"]'
    assert next(a for k, a in stage if k == "CMD") == '["serve"]'


def _run_healthcheck(http_address: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OTEL_CHATBOT_OTLP_HTTP=http_address)
    return subprocess.run(healthcheck_command(), env=env, capture_output=True, text=True, timeout=30,
                          check=False)


@pytest.mark.slow
def test_healthcheck_command_passes_on_a_ready_processor(database_url: str) -> None:
    assert "/readyz" in " ".join(healthcheck_command())
    with running(database_url) as processor:
        _host, port = processor.http_address
        done = _run_healthcheck(f"0.0.0.0:{port}")
        assert done.returncode == 0, done.stderr
    done = _run_healthcheck(f"0.0.0.0:{port}")  # nobody listens any more
    assert done.returncode != 0 and "Connection refused" in done.stderr


@pytest.mark.slow
def test_healthcheck_command_fails_while_the_processor_is_not_ready(database_url: str) -> None:
    """/readyz answers 503 when the database is not at the schema version (e.g. before migrate)."""
    import psycopg

    with running(database_url) as processor:
        _host, port = processor.http_address
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute("UPDATE schema_migrations SET version = version + 1000 WHERE version = "
                         "(SELECT max(version) FROM schema_migrations)")
        done = _run_healthcheck(f"0.0.0.0:{port}")
    assert done.returncode != 0 and "503" in done.stderr
