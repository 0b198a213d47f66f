"""The health check's cache probe on a real Redis: healthy when up, a clear failure when down."""

from __future__ import annotations

import pytest

from adapters.redis_cache import RedisCache
from core.models import SystemName
from tasks import health

pytestmark = pytest.mark.services


def test_cache_probe_when_redis_up_then_round_trip_ok(private_redis):
    cache = RedisCache(private_redis.url, SystemName.SMART0DTE, "state")
    try:
        assert health.cache(cache) == "RedisCache round trip ok"
    finally:
        cache.close()


def test_cache_probe_when_redis_down_then_unhealthy_with_reason(private_redis):
    cache = RedisCache(private_redis.url, SystemName.SMART0DTE, "state")
    try:
        private_redis.stop()
        probe = health.run_probe("cache", lambda: health.cache(cache))
        assert not probe.ok
        assert "RedisCache unreachable" in probe.detail
        assert private_redis.password not in probe.detail
    finally:
        cache.close()
