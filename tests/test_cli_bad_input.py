"""Bad input that used to get through or get a poor answer: each gets a clear, specific one."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from google.rpc.status_pb2 import Status
from server_support import base_url, running

from otel_chatbot.cli import main
from otel_chatbot.processor.app import Processor
from otel_chatbot.processor.config import unknown_variables


@pytest.fixture
def processor(database_url: str) -> Iterator[Processor]:
    with running(database_url) as proc:
        yield proc


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out == f"otel-chatbot {version('otel-chatbot')}\n"


def test_an_unknown_option_prints_the_usage_of_its_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["stats", "--bogus"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: otel-chatbot stats [-h]")
    assert err.endswith("otel-chatbot stats: error: unrecognized arguments: --bogus\n")


def test_stats_on_a_fresh_data_dir_says_what_to_do_and_creates_nothing(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_CHATBOT_JUDGE_API_KEY", "sk-test")  # evaluate checks its key first
    data_dir = tmp_path / "never-used"
    for command in ("stats", "evaluate"):
        assert main([command, "--data-dir", str(data_dir)]) == 2
        assert capsys.readouterr().err == (
            f"otel-chatbot: error: no database at {data_dir}; run `otel-chatbot serve` or "
            f"`otel-chatbot migrate` first\n")
    assert not data_dir.exists()


def test_stats_on_an_unmigrated_database_says_what_to_do(fresh_database_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", "--database-url", fresh_database_url]) == 2
    assert capsys.readouterr().err == (
        "otel-chatbot: error: the database at --database-url has no otel-chatbot schema; run "
        "`otel-chatbot serve` or `otel-chatbot migrate` first\n")


def test_a_misspelt_variable_is_warned_naming_the_closest_setting(tmp_path: Path) -> None:
    env = {"OTEL_CHATBOT_AUTH_TOKN": "x", "OTEL_CHATBOT_QUEUE_MAX_SPAN": "5", "OTEL_CHATBOT_ZZZ": "1",
           "OTEL_CHATBOT_CAPTURE_CONTENT": "false", "OTEL_CHATBOT_DATA_DIR": str(tmp_path)}
    assert unknown_variables(env) == [
        "ignoring unknown variable OTEL_CHATBOT_AUTH_TOKN; did you mean OTEL_CHATBOT_AUTH_TOKEN?",
        "ignoring unknown variable OTEL_CHATBOT_QUEUE_MAX_SPAN; did you mean OTEL_CHATBOT_QUEUE_MAX_SPANS?",
        "ignoring unknown variable OTEL_CHATBOT_ZZZ; settings are OTEL_CHATBOT_<KEY> of `serve --help`",
    ]
    result = subprocess.run([sys.executable, "-m", "otel_chatbot.cli", "stats", "--data-dir",
                             str(tmp_path / "none")], capture_output=True, text=True, timeout=60,
                            env={"PATH": "/usr/bin:/bin", **env, "PYTHONPATH": ":".join(sys.path)},
                            check=False)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0] == ("otel-chatbot: warning: ignoring unknown variable "
                                             "OTEL_CHATBOT_AUTH_TOKN; did you mean OTEL_CHATBOT_AUTH_TOKEN?")


def test_an_address_not_of_this_machine_is_named_as_such(database_url: str,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    for key in ("metrics", "otlp_grpc", "otlp_http"):
        addresses = {"otlp_http": "127.0.0.1:0", "otlp_grpc": "127.0.0.1:0", "metrics": "127.0.0.1:0",
                     key: "192.0.2.1:9464"}
        argv = ["serve", "--database-url", database_url]
        for name, address in addresses.items():
            argv += ["--" + name.replace("_", "-"), address]
        assert main(argv) == 2
        flag = "--" + key.replace("_", "-")
        assert capsys.readouterr().err == (
            f"otel-chatbot: error: {key}: cannot listen on 192.0.2.1:9464: 192.0.2.1 is not an address of "
            f"this machine (use 127.0.0.1, 0.0.0.0 or an address of one of its interfaces with {flag} "
            f"HOST:PORT)\n")


def test_an_empty_json_body_is_refused_with_a_message(processor: Processor) -> None:
    for path in ("/v1/traces", "/v1/logs"):
        response = httpx.post(f"{base_url(processor)}{path}", content=b"",
                              headers={"Content-Type": "application/json"})
        assert response.status_code == 400
        assert response.json() == {"code": 3, "message": "body is empty: expected an OTLP/JSON object "
                                                         "(an empty export is {})"}


def test_a_protobuf_error_is_said_in_the_clients_terms(processor: Processor) -> None:
    response = httpx.post(f"{base_url(processor)}/v1/traces", content=b"\x0a\xff\xff\xff\xff\x0f garbage",
                          headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    status = Status.FromString(response.content)
    assert status.code == 3
    assert status.message == ("body is not valid protobuf ExportTraceServiceRequest: truncated, corrupt or "
                              "not OTLP/protobuf (is it gzip without Content-Encoding: gzip, or JSON sent as "
                              "application/x-protobuf?)")


def test_unknown_paths_and_methods_answer_with_a_status_body_whose_code_matches(processor: Processor) -> None:
    api = base_url(processor)
    missing = httpx.post(f"{api}/v1/metrics", content=b"{}", headers={"Content-Type": "application/json"})
    assert missing.status_code == 404
    assert missing.json() == {"code": 5, "message": "no such endpoint '/v1/metrics'"}  # NOT_FOUND
    wrong = httpx.get(f"{api}/v1/traces")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
    assert wrong.json() == {"code": 12, "message": "method GET not allowed on '/v1/traces'"}  # UNIMPLEMENTED
    too_big = httpx.post(f"{api}/v1/feedback", content=b"x" * (33 * 1024 * 1024),
                         headers={"Content-Type": "application/json"})
    assert too_big.status_code == 413 and too_big.json()["code"] == 8  # RESOURCE_EXHAUSTED


def test_stats_reads_a_window_and_refuses_a_bad_one(database_url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import time

    from store_factories import DAY_NS, trace_id, turn

    from otel_chatbot.records import NormalisedBatch
    from otel_chatbot.store.writer import BatchWriter

    now_ns = time.time_ns()
    writer = BatchWriter(database_url)
    writer.start()
    try:
        writer.write(NormalisedBatch(turns=[turn(trace_id(), start_ns=now_ns - 10 * DAY_NS),
                                            turn(trace_id(), start_ns=now_ns - 3600 * 10**9)]))
    finally:
        writer.shutdown()
    counts = {}
    for since in ("7d", "30d", "all"):
        assert main(["stats", "--since", since, "--format", "json", "--database-url", database_url]) == 0
        counts[since] = sum(group["turns"] for group in json.loads(capsys.readouterr().out)["groups"])
    assert counts == {"7d": 1, "30d": 2, "all": 2}
    assert main(["stats", "--since", "last week", "--database-url", database_url]) == 2
    assert capsys.readouterr().err.startswith("otel-chatbot: error: --since: expected a duration like 7d")
