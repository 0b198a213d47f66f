"""Shared fixtures: service checks and a migrated ``TradeStore`` on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    from adapters.store import TradeStore

DEFAULT_PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def require_service(name: str, error: Exception, *, where: str = "") -> NoReturn:
    """Skip the test because service ``name`` is unavailable, or fail if REQUIRE_SERVICES=1."""
    location = f" at {where}" if where else ""
    message = f"{name} not reachable{location}: {type(error).__name__}: {error}"
    if os.environ.get("REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin_url() -> str:
    """URL of a PostgreSQL database to CREATE/DROP test databases from (``DTE_TEST_PG_URL``)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(os.environ.get("DTE_TEST_PG_URL", DEFAULT_PG_ADMIN_URL))
    try:
        with psycopg.connect(_libpq(url.render_as_string(hide_password=False)), connect_timeout=3):
            pass
    except psycopg.Error as error:
        require_service("PostgreSQL", error, where=f"{url.host}:{url.port or 5432}")
    return url.render_as_string(hide_password=False)


def _libpq(url: str) -> str:
    """A libpq conninfo URL from a SQLAlchemy one (drops the ``+driver`` part)."""
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.services)]


@contextmanager
def _pg_database(admin_url: str) -> Iterator[str]:
    """Create a throwaway PostgreSQL database, yield its URL, drop it afterwards."""
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"dte_test_{uuid.uuid4().hex}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(_libpq(admin_url), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def trade_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a fresh, empty database: a SQLite file, or a throwaway PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db' / 'dte.db'}"
    else:
        with _pg_database(request.getfixturevalue("pg_admin_url")) as url:
            yield url


@pytest.fixture(scope="module")
def pg_module_db_url(pg_admin_url: str) -> Iterator[str]:
    """One throwaway PostgreSQL database per test module (CREATE DATABASE costs ~0.25 s)."""
    with _pg_database(pg_admin_url) as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TradeStore]:
    """A migrated, empty ``TradeStore``: a fresh SQLite file, or the module's PostgreSQL
    database with every table truncated first. Disposed afterwards."""
    from adapters.store import Base, TradeStore

    if request.param == "sqlite":
        trade_store = TradeStore(f"sqlite:///{tmp_path / 'db' / 'dte.db'}")
        trade_store.migrate()
    else:
        trade_store = TradeStore(request.getfixturevalue("pg_module_db_url"))
        trade_store.migrate()
        tables = ", ".join(f'"{name}"' for name in Base.metadata.tables)
        with trade_store.engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
    try:
        yield trade_store
    finally:
        trade_store.dispose()
