"""``CachedMarketData`` in front of the seeded simulator, with the in-process cache."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np

from adapters.cache import InProcessCache
from adapters.cached_market import CachedMarketData, decode_chain, encode_chain
from adapters.simulator import SimulatedMarket
from core.calendar import NY

DAY = date(2026, 11, 24)
AT = datetime(2026, 11, 24, 10, 15, tzinfo=NY)


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_encode_chain_when_decoded_then_every_column_round_trips() -> None:
    market = SimulatedMarket(3)
    chain = market.chain("SPY", market.expiries("SPY", DAY)[0], AT)
    back = decode_chain(encode_chain(chain))
    assert (back.underlying, back.expiry, back.at, back.spot) == (
        chain.underlying,
        chain.expiry,
        chain.at,
        chain.spot,
    )
    for name in ("strikes", "is_call", "bid", "ask", "open_interest"):
        np.testing.assert_array_equal(getattr(back, name), getattr(chain, name))


def test_chain_when_asked_twice_in_one_bucket_then_second_is_a_cache_hit() -> None:
    cached = CachedMarketData(SimulatedMarket(3), InProcessCache())
    expiry = cached.expiries("SPY", DAY)[0]
    first = cached.chain("SPY", expiry, AT)
    hits = cached.hits
    second = cached.chain("SPY", expiry, AT)
    assert cached.hits == hits + 1
    np.testing.assert_array_equal(first.bid, second.bid)


def test_chain_when_ttl_passed_then_feed_is_read_again() -> None:
    clock = _Clock()
    cached = CachedMarketData(SimulatedMarket(3), InProcessCache(clock=clock), chain_ttl_s=5)
    expiry = cached.expiries("SPY", DAY)[0]
    cached.chain("SPY", expiry, AT)
    misses = cached.misses
    clock.t += 6
    cached.chain("SPY", expiry, AT)
    assert cached.misses == misses + 1


def test_chain_when_cached_value_is_garbage_then_feed_answers() -> None:
    cache = InProcessCache()
    market = SimulatedMarket(3)
    cached = CachedMarketData(market, cache)
    expiry = market.expiries("SPY", DAY)[0]
    bucket = int(AT.timestamp()) // 5 * 5
    cache.set(f"smart0dte:chain:SPY:{expiry.isoformat()}:{bucket}", b"{not json\nxx", 60)
    chain = cached.chain("SPY", expiry, AT)
    np.testing.assert_array_equal(chain.ask, market.chain("SPY", expiry, AT).ask)


def test_reference_data_when_cached_then_equal_to_feed() -> None:
    market = SimulatedMarket(3)
    cached = CachedMarketData(market, InProcessCache(), namespace="mag7")
    assert cached.expiries("QQQ", DAY) == market.expiries("QQQ", DAY)
    assert cached.expiries("QQQ", DAY) == market.expiries("QQQ", DAY)
    assert cached.prior_close("VIX", DAY) == market.prior_close("VIX", DAY)
    assert cached.prior_close("VIX", DAY) == market.prior_close("VIX", DAY)
    assert cached.hits == 2
