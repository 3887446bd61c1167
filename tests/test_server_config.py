"""ProcessorConfig: precedence flag > env > file > default, and one invalid fixture per error case."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_chatbot.processor.auth import BearerAuth
from otel_chatbot.processor.config import ConfigError, ProcessorConfig, load_config

CONFIGS = Path(__file__).parent / "testdata" / "config"

# fixture file → text the error must contain (the key comes first)
INVALID = {
    "unknown_key.yaml": "unknown config file key 'databse_url' (did you mean database_url?)",
    "bad_address.yaml": "otlp_http: expected HOST:PORT, got 'x'",
    "bad_port.toml": "otlp_grpc: expected HOST:PORT, got '127.0.0.1:70000'",
    "same_port.yaml": "metrics: port 5000 is also used by otlp_http",
    "negative_queue.json": "queue_max_spans: expected an integer >= 1, got -5",
    "not_an_integer.yaml": "label_cap: expected an integer, got 'many'",
    "bad_size.yaml": "max_body_bytes: expected a size in bytes",
    "too_small_body.yaml": "max_body_bytes: expected an integer >= 1024, got 10",
    "bad_bool.yaml": "redact: expected true or false, got 'maybe'",
    "bad_database_url.yaml": "database_url: expected a postgresql:// URL, got a mysql:// URL",
    "token_with_space.yaml": "auth_token: must be non-empty and contain no whitespace",
    "missing_prices_file.yaml": "prices_file: no such file '/nonexistent/prices.json'",
    "bad_log_level.yaml": "log_level: expected one of debug, info, warning, error, got 'loud'",
    "bad_timeout.yaml": "shutdown_timeout: expected a positive number of seconds, got 0.0",
    "not_a_mapping.yaml": "must hold a mapping of settings, got list",
    "malformed.yaml": "is not valid YAML",
    "malformed.toml": "is not valid TOML",
    "malformed.json": "is not valid JSON",
    "too_many_writers.yaml": "writers: at most 16, got 64",
    "bad_pending_age.yaml": "pending_feedback_max_age: expected a positive number of seconds, got 0.0",
    "no_pending_feedback.yaml": "pending_feedback_max: expected an integer >= 1, got 0",
    "too_big_api_pool.yaml": "api_pool_size: at most 64, got 100",
    "bad_statement_timeout.yaml": "statement_timeout: expected 0 (no limit) or 0.1 to 86400 seconds, "
                                  "got 0.01",
    "bad_request_timeout.toml": "request_timeout: expected 0.1 to 86400 seconds, got 0.0",
}


def test_every_fixture_has_a_case() -> None:
    assert sorted(p.name for p in CONFIGS.iterdir()) == sorted(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config_file_names_the_key(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, {}, CONFIGS / name)
    assert INVALID[name] in str(info.value)


def test_database_url_error_does_not_leak_the_password() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, {}, CONFIGS / "bad_database_url.yaml")
    assert "hunter2" not in str(info.value)


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OTEL_CHATBOT_DATA_DIR", raising=False)
    config = load_config({}, {}, None)
    assert (config.otlp_http, config.otlp_grpc, config.metrics) == (
        "127.0.0.1:4318",
        "127.0.0.1:4317",
        "127.0.0.1:9464",
    )
    assert config.database_url is None and config.auth_token is None and config.migrate is True
    assert config.data_dir == Path("~/.local/share/otel-chatbot").expanduser()
    monkeypatch.setenv("OTEL_CHATBOT_DATA_DIR", str(tmp_path))
    assert ProcessorConfig().data_dir == tmp_path


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text(
        "otlp_http: 127.0.0.1:1001\notlp_grpc: 127.0.0.1:1002\nmetrics: 127.0.0.1:1003\nqueue-max-spans: 7\n"
    )  # dashes are accepted in file keys
    env = {
        "OTEL_CHATBOT_OTLP_GRPC": "127.0.0.1:2002",
        "OTEL_CHATBOT_METRICS": "127.0.0.1:2003",
        "OTEL_CHATBOT_UNRELATED": "ignored",
    }
    flags = {"metrics": "127.0.0.1:3003", "otlp_http": None}  # None = flag not given
    config = load_config(flags, env, file)
    assert config.otlp_http == "127.0.0.1:1001"  # file
    assert config.otlp_grpc == "127.0.0.1:2002"  # env beats file
    assert config.metrics == "127.0.0.1:3003"  # flag beats env
    assert config.queue_max_spans == 7
    assert config.label_cap == 50  # default


def test_types_are_coerced_from_strings(tmp_path: Path) -> None:
    env = {
        "OTEL_CHATBOT_REDACT": "yes",
        "OTEL_CHATBOT_MAX_BODY_BYTES": "2MiB",
        "OTEL_CHATBOT_MIGRATE": "off",
        "OTEL_CHATBOT_DATA_DIR": str(tmp_path),
        "OTEL_CHATBOT_SHUTDOWN_TIMEOUT": "2.5",
        "OTEL_CHATBOT_AUTH_TOKEN": "",
        "OTEL_CHATBOT_DATABASE_URL": "postgresql://u@h/db",
    }
    config = load_config({"label_cap": "9"}, env, None)
    assert config.redact is True and config.migrate is False
    assert config.max_body_bytes == 2 * 1024 * 1024 and config.label_cap == 9
    assert config.data_dir == tmp_path and config.shutdown_timeout == 2.5
    assert config.auth_token is None  # an empty variable means unset
    assert config.database_url == "postgresql://u@h/db"


def test_toml_and_json_files(tmp_path: Path) -> None:
    (tmp_path / "c.toml").write_text('otlp_http = "[::1]:0"\nredact = true\n')
    (tmp_path / "c.json").write_text('{"write_batch_spans": 100, "database_url": "host=/tmp dbname=x"}')
    assert load_config({}, {}, tmp_path / "c.toml").redact is True
    assert load_config({}, {}, tmp_path / "c.json").write_batch_spans == 100


def test_unknown_flag_and_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"unknown flag 'otlp_htp' \(did you mean otlp_http\?\)"):
        load_config({"otlp_htp": "x"}, {}, None)
    with pytest.raises(ConfigError, match="config: cannot read"):
        load_config({}, {}, Path("/nonexistent/otel-chatbot.yaml"))
    with pytest.raises(ConfigError, match="otlp_http: expected HOST:PORT"):
        load_config({}, {"OTEL_CHATBOT_OTLP_HTTP": "4318"}, None)


def test_bearer_auth() -> None:
    auth = BearerAuth("tok")
    assert auth.enabled and auth.check("Bearer tok") and auth.check("bearer tok")
    assert not auth.check(None) and not auth.check("Bearer tok2") and not auth.check("tok")
    assert not auth.check("Basic dG9r")
    assert BearerAuth(None).check(None) and not BearerAuth(None).enabled
