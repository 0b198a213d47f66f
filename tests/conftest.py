"""Shared fixtures: service checks and a migrated ``TradeStore`` on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

if TYPE_CHECKING:
    import redis

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


# -- Redis: the shared server (unique key prefixes) and a private, killable redis-server ----------

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"


def _free_port() -> int:
    """A TCP port on loopback that nobody listens on right now."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _without_password(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def redis_url() -> str:
    """URL of the shared test Redis (``DTE_TEST_REDIS_URL``, default 127.0.0.1:6379), checked
    reachable, with any database path or ``db=`` removed: tests choose the database (the
    ``test`` purpose: 7 for Smart-0DTE, 15 for Mag7) and isolate by key prefix, never flush."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    import redis

    parts = urlsplit(os.environ.get("DTE_TEST_REDIS_URL", DEFAULT_REDIS_URL))
    query = urlencode([(k, v) for k, v in parse_qsl(parts.query) if k != "db"])
    url = urlunsplit((parts.scheme, parts.netloc, "", query, ""))
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        client.ping()
    except redis.RedisError as error:
        require_service("Redis", error, where=_without_password(url))
    finally:
        client.close()
    return url


@pytest.fixture
def redis_key_prefix(redis_url: str) -> Iterator[str]:
    """A unique key prefix for one test; its keys are deleted from every database afterwards."""
    import redis

    prefix = f"dte-test:{uuid.uuid4().hex}:"
    yield prefix
    for db in range(16):
        client = redis.Redis.from_url(redis_url, db=db, socket_timeout=2)
        try:
            keys = list(client.scan_iter(match=f"{prefix}*", count=500))
            if keys:
                client.delete(*keys)
        finally:
            client.close()


class PrivateRedis:
    """A ``redis-server`` subprocess of one test, on a free loopback port, password-protected,
    that the test may stop, start again (same port, empty data), pause and resume."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.password = f"pw-{uuid.uuid4().hex}"
        self.url = f"redis://:{self.password}@127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def client(self) -> redis.Redis:
        """A plain redis-py client (for the test's own checks), not the adapter under test."""
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)

    def start(self, timeout: float = 10.0) -> None:
        import redis

        if self.process is not None:
            raise RuntimeError("private redis-server already running")
        log = (self.workdir / "redis.log").open("ab")
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--requirepass", self.password,
                "--dir", str(self.workdir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while True:
            probe = self.client()
            try:
                probe.ping()
                return
            except redis.RedisError as error:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    output = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    where = f"127.0.0.1:{self.port} (log: {output})"
                    require_service("redis-server (private)", error, where=where)
                time.sleep(0.02)
            finally:
                probe.close()

    def stop(self) -> None:
        """Kill the server (SIGKILL: an outage, not a clean shutdown) and reap it."""
        if self.process is None:
            return
        self.resume()
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections but nothing answers (a hung server)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    """A running private ``redis-server`` (see ``PrivateRedis``); killed after the test."""
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server", FileNotFoundError("redis-server is not on PATH"))
    server = PrivateRedis(binary, tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- VictoriaMetrics: the InfluxDB v2 write API peer ----------------------------------------------


class VictoriaMetricsLauncher:
    """Starts ``victoria-metrics`` processes on loopback, each with its own data directory."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, port: int | None = None, timeout: float = 20.0) -> str:
        """Start one instance (on ``port``, or a free one); return its base URL once healthy."""
        import urllib.error
        import urllib.request

        port = port or _free_port()
        data = self.workdir / f"vm-{port}-{uuid.uuid4().hex[:8]}"
        data.mkdir(parents=True)
        log_path = data / "victoria-metrics.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [
                    self.binary,
                    f"-httpListenAddr=127.0.0.1:{port}",
                    f"-storageDataPath={data / 'storage'}",
                    "-retentionPeriod=100y",  # simulated days in the past must not fall outside it
                    "-loggerLevel=WARN",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                    if response.status == 200:
                        return url
            except (urllib.error.URLError, OSError) as error:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = log_path.read_text(errors="replace")[-2000:]
                    require_service("VictoriaMetrics", error, where=f"{url} ({output})")
            time.sleep(0.02)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
        self.processes.clear()


def _victoria_metrics_binary() -> str:
    binary = shutil.which(os.environ.get("DTE_TEST_VICTORIA_METRICS") or "victoria-metrics")
    if binary is None:
        require_service(
            "VictoriaMetrics",
            FileNotFoundError("victoria-metrics is not on PATH (apt-get install victoria-metrics)"),
        )
    return binary


@pytest.fixture(scope="session")
def victoria_metrics(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT``) of a VictoriaMetrics started for the test session;
    it takes the InfluxDB v2 write API at ``/api/v2/write`` and exports at ``/api/v1/export``."""
    launcher = VictoriaMetricsLauncher(
        _victoria_metrics_binary(), tmp_path_factory.mktemp("victoria-metrics")
    )
    try:
        yield launcher.start()
    finally:
        launcher.stop_all()


@pytest.fixture
def victoria_metrics_launcher(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[VictoriaMetricsLauncher]:
    """A ``VictoriaMetricsLauncher`` for tests that start an instance late (outage/recovery);
    everything it started is stopped after the test."""
    launcher = VictoriaMetricsLauncher(
        _victoria_metrics_binary(), tmp_path_factory.mktemp("victoria-metrics")
    )
    try:
        yield launcher
    finally:
        launcher.stop_all()
