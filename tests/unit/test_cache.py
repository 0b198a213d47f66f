import pytest

from adapters.cache import InProcessCache
from adapters.ports import Cache


class FakeTime:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_get_when_ttl_passed_then_none():
    clock = FakeTime()
    cache = InProcessCache(clock)
    cache.set("smart0dte:k", b"v", 10)
    assert cache.get("smart0dte:k") == b"v"
    clock.t += 10
    assert cache.get("smart0dte:k") is None


def test_set_when_full_then_oldest_evicted_and_port_satisfied():
    cache = InProcessCache(FakeTime(), max_items=2)
    assert isinstance(cache, Cache)
    for k in ("a", "b", "c"):
        cache.set(k, k.encode(), 60)
    assert cache.get("a") is None
    assert cache.get("c") == b"c"


def test_set_when_ttl_not_positive_then_error():
    with pytest.raises(ValueError, match="ttl"):
        InProcessCache().set("k", b"v", 0)
