"""Processor settings: flag > environment (``OTEL_CHATBOT_<KEY>``) > config file > default.

Every setting has the same name everywhere: the dataclass field (also the config-file key), the
flag ``--field-name`` and the variable ``OTEL_CHATBOT_FIELD_NAME``. ``validate()`` errors start with
the key they are about, so a typo in a 40-line config file is found at once.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otel_chatbot.processor.config_sources import (
    ENV_PREFIX,
    ConfigError,
    at_least,
    check_database_url,
    check_known,
    coerce,
    env_name,
    parse_size,
    read_mapping_file,
    split_address,
    unknown_variables_of,
)

# Names importable from here (the sources' helpers live in config_sources).
__all__ = ["ENV_PREFIX", "FIELDS", "OTHER_VARIABLES", "ConfigError", "ProcessorConfig", "default_data_dir",
           "default_workers", "env_name", "load_config", "parse_size", "read_config_file", "split_address",
           "unknown_variables"]

_LOG_LEVELS = ("debug", "info", "warning", "error")
_ORIGIN_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?$")
_HTTP_URL_RE = re.compile(r"^https?://[^\s/]+(/\S*)?$")
_GRPC_MAX_MESSAGE = 2**31 - 1  # grpcio takes an int32


def default_data_dir() -> Path:
    return Path(os.environ.get("OTEL_CHATBOT_DATA_DIR") or "~/.local/share/otel-chatbot").expanduser()


def default_workers() -> int:
    """One worker process per CPU this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class ProcessorConfig:
    otlp_http: str = "127.0.0.1:4318"
    otlp_grpc: str = "127.0.0.1:4317"
    metrics: str = "127.0.0.1:9464"
    database_url: str | None = None
    data_dir: Path = field(default_factory=default_data_dir)
    auth_token: str | None = None
    # The embedded Postgres also listens on this TCP address (e.g. 127.0.0.1:5433) so that a Grafana
    # of the user's own can read it; unset: unix socket only. Logins over TCP need a password.
    db_listen: str | None = None
    # Lets the read-only role otel_chatbot_reader log in with this password (ALTER ROLE … LOGIN), for
    # Grafana or ad-hoc SQL; unset: the role is left as it is (NOLOGIN unless an operator enabled it).
    reader_password: str | None = None
    # Review page (/ui/): a password that logs a reviewer in besides auth_token, and a token that
    # logs in a read-only viewer (can read conversations, cannot store reviews).
    ui_reviewer_password: str | None = None
    ui_viewer_token: str | None = None
    # With auth_token: /metrics needs the bearer token too (Prometheus: authorization.credentials).
    metrics_auth: bool = False
    # /healthz and /readyz answer without the token (load balancers, kubelets); off: they need it too.
    health_public: bool = True
    # PEM certificate chain and private key: the OTLP/HTTP, OTLP/gRPC and /metrics listeners speak TLS.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    # Drop daily partitions older than this many days, checked hourly inside serve; 0: keep everything.
    retention_days: int = 0
    # Seconds between runs of the rollup job inside serve (closed days rebuilt for the dashboards and
    # stats; a late turn for a past day shows there after the next run); 0: off.
    rollup_interval: float = 300.0
    # Browser origins allowed to call the HTTP endpoints (CORS), comma-separated, e.g. a web chat
    # widget posting /v1/feedback or the OpenTelemetry JS exporter; "*" allows any. Unset: no CORS.
    cors_origins: str | None = None
    # Largest request body, compressed on the wire and again after gunzip (gzip bombs).
    max_body_bytes: int = 32 * 1024**2
    # Spans accepted but not yet committed (queued or being written); beyond it requests get 429.
    queue_max_spans: int = 50_000
    # Most spans one group commit takes from the queue.
    write_batch_spans: int = 8_192
    # Writer threads, each with its own connection. One is the default: on the 2-core test machine a
    # second one gained 10-15% with 16 concurrent senders and nothing measurable with 8 (the two
    # transactions compete for the same Postgres CPU); raise it on bigger machines.
    writers: int = 1
    # Processes of `serve`, each with its own receivers, pipeline and writer on shared ports
    # (SO_REUSEPORT) and one Postgres: decoding and counting use every core instead of one GIL.
    # 1: a single process. queue_max_spans, writers and the pools apply to each worker.
    workers: int = field(default_factory=default_workers)
    prices_file: Path | None = None
    label_cap: int = 50
    # Redact PII in message attributes on the processor too (the SDK already does it at the source).
    redact: bool = False
    # With redact: also run the named-entity backend (the "ner" extra: Presidio + a spaCy model) for
    # names and places the rules have no cue for. Slower (milliseconds per message); off by default.
    redact_ner: bool = False
    redact_ner_model: str = "en_core_web_sm"
    # With redact: replace values by stable keyed tokens (<EMAIL:7f3a09c2>, HMAC-SHA256 under this key)
    # instead of [REDACTED:EMAIL], so "same customer, same e-mail" stays visible. Keep it secret.
    pseudonym_key: str | None = None
    # Apply pending migrations at start; off when a separate `otel-chatbot migrate` job owns the schema.
    migrate: bool = True
    grpc_workers: int = 16
    # Request bodies held in memory at once (received, inflated, being decoded) across HTTP and gRPC;
    # beyond it requests are refused as retryable (429 / RESOURCE_EXHAUSTED with RetryInfo).
    max_inflight_bytes: int = 128 * 1024**2
    # gRPC calls in progress or waiting for a worker; beyond it grpcio itself answers RESOURCE_EXHAUSTED
    # (without RetryInfo: keep it above the senders' concurrent exports).
    grpc_max_concurrent_rpcs: int = 64
    # Feedback for a turn not stored yet (the app's exporter still holds it) waits at most this many
    # seconds, and at most this many events wait at once; beyond either it is dropped and counted in
    # otel_chatbot_feedback_expired_total{reason="age"|"cap"}.
    pending_feedback_max_age: float = 300.0
    pending_feedback_max: int = 10_000
    # Database connections shared by the HTTP API, /readyz and the pending-feedback sweeper.
    api_pool_size: int = 4
    shutdown_timeout: float = 30.0
    # Longest one statement of the writer or of the HTTP API's pool (feedback lookups, /readyz, the
    # review page) may run before Postgres cancels it (a lock held elsewhere, a stuck disk): the
    # requests of that write are answered 503 and retried. 0: no limit.
    statement_timeout: float = 30.0
    # Longest a request waits for its commit; then it is answered 503 with Retry-After (HTTP) or
    # UNAVAILABLE with RetryInfo (gRPC), and a write not started yet is skipped.
    request_timeout: float = 30.0
    # Chat metrics count a turn once no span of its trace has changed it for this long, so that a
    # parent or child arriving a few batches later (BatchSpanProcessor exports every 5 s, per service)
    # is in the latency and flags observed. 0 counts at commit (later changes add only new flags).
    turn_settle_seconds: float = 10.0
    # How spans are stored: "rows" (one row per span in `spans`: any attribute queryable in SQL; the
    # faster to write here) or "blocks" (compressed blocks + a trace index + rows for LLM calls and
    # error spans: a quarter of the bytes). Every replica writing one database must use the same layout.
    span_storage: str = "rows"
    log_level: str = "info"
    # LLM judge inside serve: the fraction of new turns scored in the background (0: off), on any
    # OpenAI-compatible endpoint (unset: api.openai.com); key from OTEL_CHATBOT_JUDGE_API_KEY or
    # OPENAI_API_KEY. Turns beyond judge_queue_max waiting are dropped (counted), never slowing ingest.
    judge_sample_rate: float = 0.0
    judge_base_url: str | None = None
    judge_model: str = "gpt-4o-mini"
    judge_queue_max: int = 1000
    judge_groundedness_threshold: float = 5.0

    @property
    def cors_origin_list(self) -> tuple[str, ...]:
        return tuple(o.strip() for o in (self.cors_origins or "").split(",") if o.strip())

    def validate(self) -> None:
        """Raise ConfigError naming the first bad key."""
        ports: dict[int, str] = {}
        for key in ("otlp_http", "otlp_grpc", "metrics"):
            _host, port = split_address(key, getattr(self, key))
            if port and port in ports:
                raise ConfigError(f"{key}: port {port} is also used by {ports[port]}")
            ports[port] = key
        if self.database_url is not None:
            check_database_url(self.database_url)
        if self.db_listen is not None:
            if self.database_url is not None:
                raise ConfigError("db_listen: only applies to the embedded Postgres; unset database_url "
                                  "(your own server's listen address is set in its postgresql.conf)")
            _host, port = split_address("db_listen", self.db_listen)
            if port == 0:
                raise ConfigError(f"db_listen: Postgres needs a fixed port, got {self.db_listen!r}")
            if port in ports:
                raise ConfigError(f"db_listen: port {port} is also used by {ports[port]}")
        if self.reader_password is not None and (
                len(self.reader_password) < 8 or len(self.reader_password) > 200
                or any(not c.isprintable() for c in self.reader_password)):
            # Never echo the password itself.
            raise ConfigError("reader_password: expected 8 to 200 printable characters")
        if self.auth_token is not None and (not self.auth_token or any(c.isspace() for c in self.auth_token)):
            raise ConfigError("auth_token: must be non-empty and contain no whitespace")
        self._validate_ui()
        if self.metrics_auth and self.auth_token is None:
            raise ConfigError("metrics_auth: requires auth_token (the token /metrics then asks for)")
        if not self.health_public and self.auth_token is None:
            raise ConfigError("health_public: off requires auth_token (the token health checks then need)")
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            missing = "tls_key_file" if self.tls_key_file is None else "tls_cert_file"
            raise ConfigError(f"{missing}: TLS needs both tls_cert_file and tls_key_file")
        for key in ("tls_cert_file", "tls_key_file"):
            path = getattr(self, key)
            if path is not None and not path.is_file():
                raise ConfigError(f"{key}: no such file {str(path)!r}")
        if not 0 <= self.rollup_interval <= 86_400:
            raise ConfigError(f"rollup_interval: expected 0 (off) to 86400 seconds, "
                              f"got {self.rollup_interval}")
        if self.retention_days < 0:
            raise ConfigError(f"retention_days: expected a number of days >= 0 (0: keep everything), "
                              f"got {self.retention_days}")
        for origin in self.cors_origin_list:
            if origin != "*" and not _ORIGIN_RE.match(origin):
                raise ConfigError(f"cors_origins: expected '*' or origins like https://chat.example.com, "
                                  f"got {origin!r}")
        at_least("max_body_bytes", self.max_body_bytes, 1024)
        if self.max_body_bytes > _GRPC_MAX_MESSAGE:
            raise ConfigError(f"max_body_bytes: at most {_GRPC_MAX_MESSAGE}, got {self.max_body_bytes}")
        at_least("queue_max_spans", self.queue_max_spans, 1)
        at_least("write_batch_spans", self.write_batch_spans, 1)
        at_least("writers", self.writers, 1)
        if self.writers > 16:
            raise ConfigError(f"writers: at most 16, got {self.writers}")
        at_least("workers", self.workers, 1)
        if self.workers > 64:
            raise ConfigError(f"workers: at most 64, got {self.workers}")
        at_least("label_cap", self.label_cap, 1)
        at_least("grpc_workers", self.grpc_workers, 1)
        at_least("max_inflight_bytes", self.max_inflight_bytes, 1024)
        at_least("grpc_max_concurrent_rpcs", self.grpc_max_concurrent_rpcs, 1)
        if not self.pending_feedback_max_age > 0:
            raise ConfigError(f"pending_feedback_max_age: expected a positive number of seconds, "
                              f"got {self.pending_feedback_max_age}")
        at_least("pending_feedback_max", self.pending_feedback_max, 1)
        at_least("api_pool_size", self.api_pool_size, 1)
        if self.api_pool_size > 64:
            raise ConfigError(f"api_pool_size: at most 64, got {self.api_pool_size}")
        if not self.shutdown_timeout > 0:
            raise ConfigError(f"shutdown_timeout: expected a positive number of seconds, "
                              f"got {self.shutdown_timeout}")
        if not (self.statement_timeout == 0 or 0.1 <= self.statement_timeout <= 86_400):
            raise ConfigError(f"statement_timeout: expected 0 (no limit) or 0.1 to 86400 seconds, "
                              f"got {self.statement_timeout}")
        if not 0.1 <= self.request_timeout <= 86_400:
            raise ConfigError(f"request_timeout: expected 0.1 to 86400 seconds, got {self.request_timeout}")
        if not 0 <= self.turn_settle_seconds <= 3600:
            raise ConfigError(f"turn_settle_seconds: expected 0 to 3600 seconds, "
                              f"got {self.turn_settle_seconds}")
        if self.span_storage not in ("rows", "blocks"):
            raise ConfigError(f"span_storage: expected rows or blocks, got {self.span_storage!r}")
        if self.prices_file is not None and not self.prices_file.is_file():
            raise ConfigError(f"prices_file: no such file {str(self.prices_file)!r}")
        if self.pseudonym_key is not None and len(self.pseudonym_key.encode()) < 16:
            raise ConfigError("pseudonym_key: at least 16 bytes are needed (a long random string)")
        if (self.redact_ner or self.pseudonym_key is not None) and not self.redact:
            key = "redact_ner" if self.redact_ner else "pseudonym_key"
            raise ConfigError(f"{key}: takes effect only with redact on (--redact)")
        if not 0 <= self.judge_sample_rate <= 1:
            raise ConfigError(f"judge_sample_rate: expected a fraction between 0 and 1, "
                              f"got {self.judge_sample_rate}")
        if self.judge_base_url is not None and not _HTTP_URL_RE.match(self.judge_base_url):
            raise ConfigError(f"judge_base_url: expected an http(s):// URL such as http://localhost:8000/v1, "
                              f"got {self.judge_base_url!r}")
        if not self.judge_model:
            raise ConfigError("judge_model: must be non-empty")
        at_least("judge_queue_max", self.judge_queue_max, 1)
        if not 0 <= self.judge_groundedness_threshold <= 10:
            raise ConfigError(f"judge_groundedness_threshold: expected a score between 0 and 10, "
                              f"got {self.judge_groundedness_threshold}")
        if self.log_level not in _LOG_LEVELS:
            raise ConfigError(f"log_level: expected one of {', '.join(_LOG_LEVELS)}, got {self.log_level!r}")

    def _validate_ui(self) -> None:
        for key in ("ui_reviewer_password", "ui_viewer_token"):
            value = getattr(self, key)
            if value is not None and (len(value) < 8 or any(c.isspace() for c in value)):
                raise ConfigError(f"{key}: must be at least 8 characters with no whitespace")
        viewer = self.ui_viewer_token
        if viewer is None:
            return
        if self.auth_token is None and self.ui_reviewer_password is None:
            raise ConfigError("ui_viewer_token: needs auth_token or ui_reviewer_password as well "
                              "(without either the review page is open to everyone)")
        if viewer in (self.auth_token, self.ui_reviewer_password):
            raise ConfigError("ui_viewer_token: must differ from auth_token and ui_reviewer_password")


FIELDS: dict[str, dataclasses.Field[Any]] = {f.name: f for f in dataclasses.fields(ProcessorConfig)}
# Settings that may be unset: an empty value (flag, config file) means None. Read off the field
# types (strings, under ``from __future__ import annotations``) so a new optional field needs no list.
_OPTIONAL = frozenset(name for name, f in FIELDS.items() if str(f.type).endswith("| None"))


# OTEL_CHATBOT_* variables that are not processor settings: read by the SDK in the app, or by the
# quality commands. Anything else with the prefix is most likely a misspelt setting.
OTHER_VARIABLES = frozenset({
    "OTEL_CHATBOT_CAPTURE_CONTENT", "OTEL_CHATBOT_DETECT_INJECTIONS", "OTEL_CHATBOT_BLOCK_INJECTIONS",
    "OTEL_CHATBOT_JUDGE_API_KEY", "OTEL_CHATBOT_LLM_API_KEY", "OTEL_CHATBOT_LLM_BASE_URL",
    "OTEL_CHATBOT_LLM_MODEL", "OTEL_CHATBOT_EMBEDDINGS_API_KEY", "OTEL_CHATBOT_EMBEDDINGS_BASE_URL",
    "OTEL_CHATBOT_EMBEDDINGS_MODEL", "OTEL_CHATBOT_READER_PASSWORD",
})


def unknown_variables(env: Mapping[str, str]) -> list[str]:
    """One warning per ``OTEL_CHATBOT_*`` variable that no part of otel-chatbot reads, naming the
    closest setting. A warning, not an error: the environment is shared with the app side, and a
    newer SDK may read variables this processor does not know."""
    return unknown_variables_of(env, {env_name(key) for key in FIELDS} | OTHER_VARIABLES)


def load_config(flags: Mapping[str, object], env: Mapping[str, str],
                config_file: Path | None) -> ProcessorConfig:
    """Merge the sources (a None flag means "not given"), coerce types, validate."""
    values: dict[str, object] = {}
    if config_file is not None:
        values.update(read_config_file(config_file))
    for key in FIELDS:
        raw = env.get(env_name(key))
        if raw is not None and raw != "":
            values[key] = raw
    for key, value in flags.items():
        check_known(key, "flag", FIELDS)
        if value is not None:
            values[key] = value
    typed = {key: coerce(key, str(FIELDS[key].type), key in _OPTIONAL, value)
             for key, value in values.items()}
    config = ProcessorConfig(**typed)  # type: ignore[arg-type]  # types checked by coerce
    config.validate()
    return config


def read_config_file(path: Path) -> dict[str, object]:
    """A YAML, TOML or JSON mapping of field names (``-`` may stand for ``_``)."""
    values = read_mapping_file(path)
    for key in values:
        check_known(key, "config file key", FIELDS)
    return values
