"""RedisCache against real Redis: the shared server (unique key prefixes) for round trips and DB
isolation, a private ``redis-server`` subprocess for outages (killed, hung, wrong password, OOM).

The cool-down clock is injected, so recovery is driven by advancing it, not by sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import redis

from adapters.ports import Cache
from adapters.redis_cache import CachePurpose, RedisCache, db_for, db_range
from core.models import SystemName
from tests.conftest import PrivateRedis

LOGGER = "adapters.redis_cache"


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]


def infos_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.INFO
    ]


@pytest.fixture
def raw_db7(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, db=7, socket_timeout=2)
    yield client
    client.close()


# -- the database map (no server needed) ------------------------------------------------------


@pytest.mark.parametrize(
    ("system", "purpose", "db"),
    [
        (SystemName.SMART0DTE, CachePurpose.QUOTES, 0),
        (SystemName.SMART0DTE, CachePurpose.CHAINS, 1),
        (SystemName.SMART0DTE, CachePurpose.STATE, 2),
        (SystemName.SMART0DTE, CachePurpose.TEST, 7),
        (SystemName.MAG7, CachePurpose.QUOTES, 8),
        (SystemName.MAG7, CachePurpose.CHAINS, 9),
        (SystemName.MAG7, CachePurpose.STATE, 10),
        (SystemName.MAG7, CachePurpose.TEST, 15),
    ],
)
def test_db_for_when_system_and_purpose_then_documented_db(system, purpose, db):
    assert db_for(system, purpose) == db
    assert db in db_range(system)
    assert RedisCache("redis://127.0.0.1:1", system.value, purpose.value).db == db


@pytest.mark.parametrize(
    ("url", "system", "kwargs"),
    [
        ("redis://127.0.0.1:6379", "smart0dte", {"db": 8}),
        ("redis://127.0.0.1:6379", "smart0dte", {"db": -1}),
        ("redis://127.0.0.1:6379", "mag7", {"db": 7}),
        ("redis://127.0.0.1:6379", "mag7", {"db": 16}),
        ("redis://127.0.0.1:6379/9", "smart0dte", {}),
        ("redis://127.0.0.1:6379?db=3", "mag7", {}),
        ("redis://127.0.0.1:6379/8", "mag7", {"db": 9}),
        ("redis://127.0.0.1:6379", "smart0dte", {"purpose": "everything"}),
        ("redis://127.0.0.1:6379", "spx", {}),
    ],
)
def test_init_when_db_outside_system_range_or_unknown_then_value_error(url, system, kwargs):
    with pytest.raises(ValueError):  # noqa: PT011 - several distinct messages
        RedisCache(url, system, **kwargs)


def test_init_when_server_unreachable_then_nothing_connects_and_port_satisfied(caplog):
    cache = RedisCache("redis://:hunter2@127.0.0.1:1/9", "mag7")
    assert isinstance(cache, Cache)
    assert cache.db == 9
    assert cache.stats.failures == 0
    assert "hunter2" not in repr(cache)
    assert not caplog.records


def test_set_when_ttl_not_positive_then_value_error():
    cache = RedisCache("redis://127.0.0.1:1", "smart0dte", "test")
    for ttl in (0, -5, 1.5, True):
        with pytest.raises(ValueError, match="ttl"):
            cache.set("k", b"v", ttl)  # type: ignore[arg-type]
    assert cache.stats.failures == 0  # rejected before any Redis call


# -- the shared Redis --------------------------------------------------------------------------


@pytest.mark.services
def test_set_when_ttl_given_then_value_read_back_and_redis_ttl_set(
    redis_url, redis_key_prefix, raw_db7
):
    cache = RedisCache(redis_url, "smart0dte", "test", key_prefix=redis_key_prefix)
    cache.set("smart0dte:quote:SPY", b"501.25", 30)
    assert cache.get("smart0dte:quote:SPY") == b"501.25"
    assert cache.get("smart0dte:quote:QQQ") is None
    ttl = raw_db7.pttl(f"{redis_key_prefix}smart0dte:quote:SPY")
    assert 0 < ttl <= 30_000
    assert cache.stats.failures == 0


@pytest.mark.services
def test_get_when_ttl_elapsed_then_none(redis_url, redis_key_prefix, raw_db7):
    cache = RedisCache(redis_url, "smart0dte", "test", key_prefix=redis_key_prefix)
    cache.set("short", b"v", 1)
    assert 0 < raw_db7.pttl(f"{redis_key_prefix}short") <= 1000
    deadline = time.monotonic() + 5
    while cache.get("short") is not None:  # Redis expires it after 1 s; poll, don't sleep long
        assert time.monotonic() < deadline, "key did not expire"
        time.sleep(0.05)
    assert raw_db7.exists(f"{redis_key_prefix}short") == 0


@pytest.mark.services
def test_set_when_mag7_then_written_only_to_its_db(redis_url, redis_key_prefix, raw_db7):
    mag7 = RedisCache(redis_url, "mag7", "test", key_prefix=redis_key_prefix)
    smart = RedisCache(redis_url, "smart0dte", "test", key_prefix=redis_key_prefix)
    mag7.set("chain:AAPL", b"mag7-data", 60)
    raw15 = redis.Redis.from_url(redis_url, db=15, socket_timeout=2)
    try:
        assert raw15.get(f"{redis_key_prefix}chain:AAPL") == b"mag7-data"
    finally:
        raw15.close()
    assert raw_db7.get(f"{redis_key_prefix}chain:AAPL") is None
    assert smart.get("chain:AAPL") is None
    assert mag7.get("chain:AAPL") == b"mag7-data"


# -- a private redis-server: outages -----------------------------------------------------------


@pytest.mark.services
def test_get_when_server_killed_then_none_one_warning_and_recovers_after_restart(
    private_redis: PrivateRedis, caplog
):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    cache = RedisCache(private_redis.url, "smart0dte", "state", clock=clock, cooldown_seconds=5)
    cache.set("smart0dte:state", b"ACTIVE", 60)
    assert cache.get("smart0dte:state") == b"ACTIVE"

    private_redis.stop()
    assert cache.get("smart0dte:state") is None  # the failing call: counted, warned
    cache.set("smart0dte:state", b"HALTED", 60)  # cool-down: no-op without asking Redis
    assert cache.get("smart0dte:state") is None
    assert cache.stats.failures == 1
    assert cache.stats.skipped == 2
    assert cache.stats.degraded

    clock.t += 5  # cool-down over, still down: one more failure, no second warning
    assert cache.get("smart0dte:state") is None
    assert cache.stats.failures == 2
    assert len(warnings_of(caplog)) == 1
    assert "retrying every 5.0 s" in warnings_of(caplog)[0].getMessage()

    private_redis.start()
    assert cache.get("smart0dte:state") is None  # still cooling down: not asked yet
    clock.t += 5
    cache.set("smart0dte:state", b"HALTED", 60)
    assert cache.get("smart0dte:state") == b"HALTED"
    assert not cache.stats.degraded
    assert any("cache restored" in m for m in infos_of(caplog))
    assert len(warnings_of(caplog)) == 1
    assert cache.stats.outages == 1

    private_redis.stop()  # a second outage is a new warning
    assert cache.get("smart0dte:state") is None
    assert len(warnings_of(caplog)) == 2
    assert cache.stats.outages == 2
    assert private_redis.password not in caplog.text


@pytest.mark.services
def test_get_when_server_hangs_then_times_out_to_none_and_recovers(
    private_redis: PrivateRedis, caplog
):
    clock = FakeClock()
    cache = RedisCache(
        private_redis.url, "mag7", "quotes", clock=clock, socket_timeout=0.2, connect_timeout=0.2
    )
    cache.set("mag7:quote:AAPL", b"231.5", 60)
    private_redis.pause()
    try:
        assert cache.get("mag7:quote:AAPL") is None
        cache.set("mag7:quote:AAPL", b"232.0", 60)
    finally:
        private_redis.resume()
    assert cache.stats.failures == 1
    assert "Timeout" in warnings_of(caplog)[0].getMessage()
    clock.t += 10
    assert cache.get("mag7:quote:AAPL") == b"231.5"
    assert cache.ping()


@pytest.mark.services
def test_get_when_password_wrong_then_none_and_no_password_logged(
    private_redis: PrivateRedis, caplog
):
    wrong = private_redis.url.replace(private_redis.password, "not-the-pw-4242")
    cache = RedisCache(wrong, "smart0dte", "quotes", clock=FakeClock())
    assert cache.get("smart0dte:quote:SPY") is None
    cache.set("smart0dte:quote:SPY", b"1", 10)
    assert not cache.ping()
    assert cache.stats.failures == 1
    [warning] = warnings_of(caplog)
    assert "AuthenticationError" in warning.getMessage()
    assert "not-the-pw-4242" not in caplog.text
    assert private_redis.password not in caplog.text
    assert "***" in warning.getMessage()


@pytest.mark.services
def test_set_when_redis_out_of_memory_then_no_op_and_counted(private_redis: PrivateRedis, caplog):
    clock = FakeClock()
    cache = RedisCache(private_redis.url, "smart0dte", "chains", clock=clock)
    admin = private_redis.client()
    try:
        admin.config_set("maxmemory", "1")  # noeviction (default): every write is refused
        cache.set("smart0dte:chain:SPY", b"x" * 100, 60)
        assert cache.stats.failures == 1
        assert "OutOfMemoryError" in warnings_of(caplog)[0].getMessage()
        admin.config_set("maxmemory", "0")
    finally:
        admin.close()
    clock.t += 5
    cache.set("smart0dte:chain:SPY", b"chain", 60)
    assert cache.get("smart0dte:chain:SPY") == b"chain"
    assert private_redis.password not in caplog.text
