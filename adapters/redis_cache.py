"""Redis behind the ``Cache`` port: a speed-up, never the source of truth.

Database numbers are split by system so the two strategies can never read each other's entries
and one system's cache can be flushed alone:

==========  ========  ========  ========  =========  =====  ========  =========  ========
system      quotes    chains    state     signals    bars   advisor   scratch    test
==========  ========  ========  ========  =========  =====  ========  =========  ========
smart0dte   0         1         2         3          4      5         6          7
mag7        8         9         10        11         12     13        14         15
==========  ========  ========  ========  =========  =====  ========  =========  ========

``RedisCache(url, system, purpose="chains")`` picks the database from the table; ``db=`` (or a
``/N`` path in the URL) may name one directly, but it must lie inside the system's range
(Smart-0DTE 0-7, Mag7 8-15) or the constructor raises ``ValueError``.

Failure policy: every Redis error (refused connection, timeout, authentication, OOM, ...) turns
the cache into "no cache": ``get`` returns ``None`` and ``set`` does nothing. The first error of an
outage logs ONE warning; later calls do not touch Redis until ``cooldown_seconds`` have passed on
the injected clock, then one call tries again. The first success after an outage logs
"cache restored". Socket timeouts are short (0.3 s by default) and redis-py's own retries are
switched off, so an outage costs the trading loop at most one timeout per cool-down. The URL's
password is never logged (``safe_url``). Nothing connects at construction.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.connection import ConnectionPool, parse_url
from redis.retry import Retry

from core.models import SystemName

try:  # redis-py >= 7: keep the short timeouts strict (no "relaxed" maintenance timeouts)
    from redis.maint_notifications import MaintNotificationsConfig
except ImportError:  # pragma: no cover - older redis-py (requirements allow >= 5.2)
    MaintNotificationsConfig = None  # type: ignore[assignment,misc]

log = logging.getLogger(__name__)

T = TypeVar("T")


class CachePurpose(StrEnum):
    """What a database holds; its value is the offset inside the system's range of 8."""

    QUOTES = "quotes"
    CHAINS = "chains"
    STATE = "state"
    SIGNALS = "signals"
    BARS = "bars"
    ADVISOR = "advisor"
    SCRATCH = "scratch"
    TEST = "test"


PURPOSE_OFFSET: dict[CachePurpose, int] = {purpose: i for i, purpose in enumerate(CachePurpose)}
DBS_PER_SYSTEM = 8
SYSTEM_DB_BASE: dict[SystemName, int] = {SystemName.SMART0DTE: 0, SystemName.MAG7: 8}


def db_range(system: SystemName | str) -> range:
    """The Redis database numbers ``system`` may use (Smart-0DTE 0-7, Mag7 8-15)."""
    base = SYSTEM_DB_BASE[SystemName(system)]
    return range(base, base + DBS_PER_SYSTEM)


def db_for(system: SystemName | str, purpose: CachePurpose | str) -> int:
    """The database number of ``purpose`` for ``system`` (see the module's table)."""
    return SYSTEM_DB_BASE[SystemName(system)] + PURPOSE_OFFSET[CachePurpose(purpose)]


def safe_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit for logs and reprs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port is not None else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


@dataclass(frozen=True)
class CacheStats:
    """Counters since construction. ``failures``: Redis calls that raised; ``skipped``: calls
    answered as "no cache" without asking Redis (cool-down); ``outages``: warnings logged."""

    failures: int
    skipped: int
    outages: int
    degraded: bool


class RedisCache:
    """``Cache`` on one Redis database chosen by system and purpose; degrades, never raises.

    ``key_prefix`` is prepended to every key (tests use it for isolation). ``clock`` is a
    monotonic seconds source used only for the cool-down between reconnection attempts.
    """

    def __init__(
        self,
        url: str,
        system: SystemName | str,
        purpose: CachePurpose | str = CachePurpose.QUOTES,
        *,
        db: int | None = None,
        key_prefix: str = "",
        socket_timeout: float = 0.3,
        connect_timeout: float = 0.3,
        cooldown_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        max_connections: int = 16,
    ) -> None:
        self.system = SystemName(system)
        options: dict[str, Any] = parse_url(url)  # type: ignore[no-untyped-call]
        url_db = options.pop("db", None)
        if db is not None and url_db is not None and db != url_db:
            raise ValueError(f"db={db} conflicts with the URL's database {url_db}")
        chosen = db if db is not None else url_db
        self.db = db_for(self.system, purpose) if chosen is None else int(chosen)
        allowed = db_range(self.system)
        if self.db not in allowed:
            raise ValueError(
                f"Redis db {self.db} is outside {self.system.value}'s range "
                f"{allowed.start}-{allowed.stop - 1}"
            )
        if socket_timeout <= 0 or connect_timeout <= 0 or cooldown_seconds < 0:
            raise ValueError("timeouts must be positive and the cool-down not negative")
        self._password = options.get("password")
        self.url = safe_url(url)
        self._prefix = key_prefix
        self._cooldown = cooldown_seconds
        self._clock = clock
        options.update(
            db=self.db,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),  # one attempt: the cool-down is the retry policy
            health_check_interval=0,
            max_connections=max_connections,
        )
        if MaintNotificationsConfig is not None:
            options["maint_notifications_config"] = MaintNotificationsConfig(enabled=False)
        # ConnectionPool(...) only stores settings: nothing connects until the first command.
        self._client = redis.Redis(connection_pool=ConnectionPool(**options))
        self._lock = threading.Lock()
        self._degraded = False
        self._retry_at = 0.0
        self._down_since = 0.0
        self._failures = 0
        self._skipped = 0
        self._outages = 0

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, system={self.system.value!r}, db={self.db})"

    # -- the Cache port -------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        value = self._call(lambda: self._client.get(self._prefix + key), None)
        return value if isinstance(value, bytes) else None

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None:
        if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0:
            raise ValueError(f"ttl must be a positive number of seconds, got {ttl_seconds!r}")
        if not isinstance(value, bytes):
            raise TypeError(f"cache values are bytes, got {type(value).__name__}")
        self._call(lambda: self._client.set(self._prefix + key, value, ex=ttl_seconds), None)

    # -- extras ---------------------------------------------------------------------------------

    def ping(self) -> bool:
        """True if Redis answers now (for the health check); never raises, obeys the cool-down."""
        return bool(self._call(self._client.ping, False))

    @property
    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._failures, self._skipped, self._outages, self._degraded)

    def close(self) -> None:
        self._client.close()

    # -- failure handling -----------------------------------------------------------------------

    def _call(self, op: Callable[[], T], fallback: T) -> T:
        with self._lock:
            if self._degraded:
                now = self._clock()
                if now < self._retry_at:
                    self._skipped += 1
                    return fallback
                self._retry_at = now + self._cooldown  # this call is the one probe
        try:
            result = op()
        except (redis.RedisError, OSError) as error:
            self._failed(error)
            return fallback
        if self._degraded:
            self._restored()
        return result

    def _failed(self, error: Exception) -> None:
        now = self._clock()
        with self._lock:
            self._failures += 1
            self._retry_at = now + self._cooldown
            if self._degraded:
                first = False
            else:
                first = True
                self._degraded = True
                self._down_since = now
                self._outages += 1
        if first:
            log.warning(
                "cache unavailable at %s (db %d): %s; continuing without cache, "
                "retrying every %.1f s",
                self.url,
                self.db,
                self._describe(error),
                self._cooldown,
            )
        else:
            log.debug("cache still unavailable: %s", self._describe(error))

    def _restored(self) -> None:
        with self._lock:
            if not self._degraded:
                return
            self._degraded = False
            down_for = self._clock() - self._down_since
            failures = self._failures
        log.info(
            "cache restored at %s (db %d) after %.1f s (%d failed calls so far)",
            self.url,
            self.db,
            down_for,
            failures,
        )

    def _describe(self, error: Exception) -> str:
        text = f"{type(error).__name__}: {error}"
        if self._password:
            text = text.replace(str(self._password), "***")
        return text
