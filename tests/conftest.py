"""Shared fixtures: one real embedded Postgres per test session, a fresh database per test.

``database_url`` is a new database cloned from a migrated template (CREATE DATABASE … TEMPLATE is a
file copy, much faster than migrating each time) and dropped after the test.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from llm_server import LLMServer
from psycopg import sql

from otel_chatbot.store.embedded import EmbeddedPostgres, ensure_private_runtime_dir
from otel_chatbot.store.migrate import migrate
from otel_chatbot.store.span_storage import DEFAULT_LAYOUT, LAYOUTS
from otel_chatbot.store.writer import BatchWriter

_TEMPLATE_DB = "otel_chatbot_template"


def database_url_for(admin_url: str, name: str) -> str:
    """The URL of database ``name`` on the server of ``admin_url`` (which points at /postgres)."""
    head, _, query = admin_url.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedPostgres]:
    """A real Postgres server for the whole session (EmbeddedPostgres; ``.url`` is the admin URL)."""
    ensure_private_runtime_dir()
    server = EmbeddedPostgres(Path(tmp_path_factory.mktemp("pg")) / "data")
    server.start()
    try:
        yield server
    finally:
        server.shutdown()


@pytest.fixture(scope="session")
def pg_admin_url(pg_server: EmbeddedPostgres) -> str:
    """Superuser URL of the ``postgres`` database: use it to create or drop databases."""
    assert pg_server.url is not None
    return pg_server.url


@pytest.fixture(scope="session")
def _migrated_template(pg_admin_url: str) -> str:
    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(_TEMPLATE_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(_TEMPLATE_DB)))
    migrate(database_url_for(pg_admin_url, _TEMPLATE_DB))
    return _TEMPLATE_DB


@contextmanager
def _temporary_database(admin_url: str, template: str | None) -> Iterator[str]:
    """A new database (a copy of ``template``, or empty), dropped on exit; yields its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template is not None:
        statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(statement)
    try:
        yield database_url_for(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def fresh_database_url(pg_admin_url: str) -> Iterator[str]:
    """An empty, never-migrated database, dropped after the test."""
    with _temporary_database(pg_admin_url, None) as url:
        yield url


@pytest.fixture
def database_url(pg_admin_url: str, _migrated_template: str) -> Iterator[str]:
    """A fresh database at the latest schema version, dropped after the test."""
    with _temporary_database(pg_admin_url, _migrated_template) as url:
        yield url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "both_layouts: run each test that uses the span_storage fixture "
                                       "(or the writer) once per span layout")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests marked both_layouts that use ``span_storage`` (directly or through ``writer``) run once
    per layout, with ids [rows] and [blocks]."""
    if metafunc.definition.get_closest_marker("both_layouts") and "span_storage" in metafunc.fixturenames:
        metafunc.parametrize("span_storage", LAYOUTS, indirect=True)


@pytest.fixture
def span_storage(request: pytest.FixtureRequest) -> str:
    """The span layout under test: the default, or each layout in tests marked both_layouts."""
    return str(getattr(request, "param", DEFAULT_LAYOUT))


@pytest.fixture
def writer(database_url: str, span_storage: str) -> Iterator[BatchWriter]:
    """A started BatchWriter (layout ``span_storage``) on a fresh migrated database."""
    w = BatchWriter(database_url, span_storage=span_storage)
    w.start()
    yield w
    w.shutdown()


@pytest.fixture
def llm_server() -> Iterator[LLMServer]:
    """A started local OpenAI-compatible server (tests/llm_server.py); ``.base_url`` for the client."""
    server = LLMServer().start()
    yield server
    server.shutdown()
