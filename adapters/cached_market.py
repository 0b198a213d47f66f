"""A read-through cache in front of any ``MarketData`` adapter (Redis in testing/live).

The cache is never the source of truth: a miss, an undecodable value or a cache outage all fall
through to the feed. What is cached and for how long:

* ``chain``: per (underlying, expiry, instant bucketed to ``chain_bucket_s``), ``chain_ttl_s``
  seconds: several flows asking for the same chain within seconds (scan, loop, health) make one
  vendor request.
* ``expiries`` and ``prior_close``: per day, ``reference_ttl_s``: they cannot change in a session.

``bars`` and ``last_price`` pass through (the adapters keep their own history caches).
Keys are namespaced per system (``smart0dte:chain:SPY:2026-11-27:...``).
"""

from __future__ import annotations

import io
import json
import logging
from datetime import date, datetime
from typing import Any

import numpy as np

from adapters.ports import Cache, MarketData
from core.marketdata import Bars, ChainSnapshot

log = logging.getLogger(__name__)

_ARRAYS = ("strikes", "is_call", "bid", "ask", "open_interest")


def encode_chain(chain: ChainSnapshot) -> bytes:
    """A compact, pickle-free encoding: a JSON header line, then an ``.npz`` of the arrays."""
    header = {
        "underlying": chain.underlying,
        "expiry": chain.expiry.isoformat(),
        "at": chain.at.isoformat(),
        "spot": chain.spot,
        "multiplier": chain.multiplier,
    }
    buf = io.BytesIO()
    np.savez(buf, **{name: getattr(chain, name) for name in _ARRAYS})
    return json.dumps(header).encode() + b"\n" + buf.getvalue()


def decode_chain(data: bytes) -> ChainSnapshot:
    head, _, body = data.partition(b"\n")
    meta = json.loads(head)
    with np.load(io.BytesIO(body), allow_pickle=False) as arrays:
        cols = {name: arrays[name].copy() for name in _ARRAYS}
    return ChainSnapshot(
        underlying=meta["underlying"],
        expiry=date.fromisoformat(meta["expiry"]),
        at=datetime.fromisoformat(meta["at"]),
        spot=float(meta["spot"]),
        multiplier=int(meta["multiplier"]),
        **cols,
    )


class CachedMarketData:
    def __init__(
        self,
        market: MarketData,
        cache: Cache,
        namespace: str = "smart0dte",
        chain_ttl_s: int = 5,
        chain_bucket_s: int = 5,
        reference_ttl_s: int = 6 * 3600,
    ) -> None:
        self.market = market
        self.cache = cache
        self.namespace = namespace
        self.chain_ttl_s = chain_ttl_s
        self.chain_bucket_s = chain_bucket_s
        self.reference_ttl_s = reference_ttl_s
        self.hits = 0
        self.misses = 0

    def _get(self, key: str) -> bytes | None:
        value = self.cache.get(f"{self.namespace}:{key}")
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def _set(self, key: str, value: bytes, ttl: int) -> None:
        self.cache.set(f"{self.namespace}:{key}", value, ttl)

    def expiries(self, underlying: str, on: date) -> list[date]:
        key = f"expiries:{underlying}:{on.isoformat()}"
        if (raw := self._get(key)) is not None:
            try:
                return [date.fromisoformat(d) for d in json.loads(raw)]
            except (ValueError, TypeError) as exc:
                log.warning("cache value %s undecodable (%s): reading the feed", key, exc)
        out = self.market.expiries(underlying, on)
        self._set(key, json.dumps([d.isoformat() for d in out]).encode(), self.reference_ttl_s)
        return out

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        bucket = int(at.timestamp()) // self.chain_bucket_s * self.chain_bucket_s
        key = f"chain:{underlying}:{expiry.isoformat()}:{bucket}"
        if (raw := self._get(key)) is not None:
            try:
                return decode_chain(raw)
            except (ValueError, KeyError, OSError) as exc:
                log.warning("cache value %s undecodable (%s): reading the feed", key, exc)
        chain = self.market.chain(underlying, expiry, at)
        self._set(key, encode_chain(chain), self.chain_ttl_s)
        return chain

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        return self.market.bars(symbol, start, end, freq)

    def prior_close(self, symbol: str, on: date) -> float:
        key = f"prior_close:{symbol}:{on.isoformat()}"
        if (raw := self._get(key)) is not None:
            try:
                return float(raw)
            except ValueError as exc:
                log.warning("cache value %s undecodable (%s): reading the feed", key, exc)
        value = self.market.prior_close(symbol, on)
        self._set(key, repr(value).encode(), self.reference_ttl_s)
        return value

    def last_price(self, symbol: str, at: datetime) -> float:
        return self.market.last_price(symbol, at)

    def __getattr__(self, name: str) -> Any:
        # extra adapter methods (e.g. the simulator's quote/day_info) stay reachable
        return getattr(self.market, name)
