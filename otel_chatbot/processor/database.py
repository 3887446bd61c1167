"""Where the processor's database is: the given URL, or an embedded Postgres under ``data_dir``; and
what a Grafana of the user's own needs to read the embedded one."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from otel_chatbot.processor.config import ProcessorConfig, split_address
from otel_chatbot.store.embedded import EmbeddedPostgres
from otel_chatbot.store.reader import READER_ROLE


def open_database(config: ProcessorConfig,
                  cancelled: Callable[[], bool] | None = None) -> tuple[str, EmbeddedPostgres | None]:
    """The URL to use: ``database_url``, or an embedded Postgres in ``data_dir/postgres`` (returned so
    the caller can shut it down; the last of its users stops it)."""
    embedded = embedded_for(config)
    if embedded is None:
        assert config.database_url is not None
        return config.database_url, None
    return embedded.start(cancelled), embedded


def embedded_for(config: ProcessorConfig) -> EmbeddedPostgres | None:
    """The embedded Postgres (not started) when no database URL is given."""
    if config.database_url is not None:
        return None
    listen = split_address("db_listen", config.db_listen) if config.db_listen else None
    return EmbeddedPostgres(Path(config.data_dir) / "postgres", listen=listen)


def grafana_hint(config: ProcessorConfig) -> str | None:
    """What to enter in a Grafana Postgres datasource to read the embedded database, when it listens
    on TCP (``db_listen``); None otherwise."""
    if config.db_listen is None or config.database_url is not None:
        return None
    host, port = split_address("db_listen", config.db_listen)
    password = ("the --reader-password you set" if config.reader_password else
                "none yet: set --reader-password or OTEL_CHATBOT_READER_PASSWORD to let it log in")
    return (f"Grafana Postgres datasource: host {host}:{port}  database postgres  user {READER_ROLE}  "
            f"password: {password}  TLS/SSL mode: disable")


