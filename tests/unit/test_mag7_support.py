"""Builders shared by the Mag7 unit tests (daily bars, a ~7-DTE chain with a vol smile).

This module holds no tests; it is named test_* only so the Mag7 tests stay in test_mag7_* files.
"""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal

import numpy as np

from core.calendar import NY, session, trading_days
from core.marketdata import Bars, ChainSnapshot
from core.models import Position, SignalKind, Spread, SystemName
from core.pricing import bs_price, year_fraction

# A normal week: Friday 2026-03-06 is an entry day; 2026-03-13 is 7 days later.
ENTRY_DAY = date(2026, 3, 6)
ENTRY_AT = datetime(2026, 3, 6, 10, 0, tzinfo=NY)
EXPIRY = date(2026, 3, 13)


def daily_bars(closes, symbol="AAPL", end=date(2026, 3, 5), spread=0.01, highs=None, lows=None):
    """Daily bars on the last len(closes) XNYS sessions ending at ``end`` (start = session open).

    High/low default to close * (1 +- spread); open = previous close.
    """
    closes = np.asarray(closes, dtype=np.float64)
    n = closes.shape[0]
    days = trading_days(date(2015, 1, 2), end)[-n:]
    times = tuple(session(d).open for d in days)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    high = closes * (1 + spread) if highs is None else np.asarray(highs, dtype=np.float64)
    low = closes * (1 - spread) if lows is None else np.asarray(lows, dtype=np.float64)
    return Bars(symbol, times, opens, high, low, closes, np.full(n, 1e6))


def zigzag(n, start=100.0, step=0.01):
    """Closes alternating +step / -step in log terms: HV > 0 and no trend."""
    signs = np.where(np.arange(n - 1) % 2 == 0, 1.0, -1.0)
    return start * np.exp(np.concatenate([[0.0], np.cumsum(step * signs)]))


def smile_chain(
    spot=200.0,
    und="AAPL",
    expiry=EXPIRY,
    at=ENTRY_AT,
    atm_vol=0.30,
    put_skew=0.0,
    call_skew=0.0,
    step=2.5,
    half_spread=0.02,
    oi=500,
    width=60.0,
):
    """A Black-Scholes chain with vol = atm_vol + put_skew * m (K < S) + call_skew * m (K > S),
    m = |K - S| / S * 10 (so put_skew=0.05 adds 5 vol points 10% out of the money)."""
    center = round(spot / step) * step
    strikes = np.arange(center - width, center + width + step / 2, step)
    k = np.concatenate([strikes, strikes])
    is_call = np.concatenate([np.ones_like(strikes, bool), np.zeros_like(strikes, bool)])
    m = np.abs(k - spot) / spot * 10.0
    vol = atm_vol + np.where(k < spot, put_skew * m, call_skew * m)
    t = year_fraction(at, session(expiry).close)
    model = bs_price(spot, k, t, vol, is_call)
    bid = np.maximum(np.round(model - half_spread, 2), 0.0)
    ask = np.maximum(np.round(model + half_spread, 2), 0.01)
    return ChainSnapshot(
        und, expiry, at, spot, k, is_call, bid, ask, np.full(k.shape, oi, dtype=np.int64)
    )


def mag7_position(
    spread: Spread,
    entry: str,
    qty: int = 4,
    pid: str = "m7-1",
    max_loss: str = "500",
    opened_at: datetime = ENTRY_AT,
    tiers: int = 0,
    system: SystemName = SystemName.MAG7,
) -> Position:
    return Position(
        position_id=pid,
        system=system,
        signal_kind=SignalKind.ENSEMBLE,
        spread=spread,
        quantity=qty,
        entry_price=Decimal(entry),
        opened_at=opened_at,
        max_loss=Decimal(max_loss),
        closed_fraction_tiers=tiers,
    )


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=NY)
