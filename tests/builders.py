"""Small constructors for domain values used across tests."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import numpy as np

from core.calendar import NY
from core.marketdata import Bars, ChainSnapshot
from core.models import (
    IntentAction,
    OptionContract,
    OrderIntent,
    Position,
    Right,
    SignalKind,
    Spread,
    SystemName,
    client_order_id,
)
from core.pricing import bs_price, year_fraction

DAY = date(2026, 11, 27)
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=NY)


def c(
    strike: str | int | float, right: str = "C", und: str = "SPY", expiry: date = DAY
) -> OptionContract:
    return OptionContract(und, expiry, Decimal(str(strike)), Right(right))


def position(
    spread: Spread,
    entry: str,
    qty: int = 1,
    system: SystemName = SystemName.SMART0DTE,
    kind: SignalKind = SignalKind.MOMENTUM,
    pid: str = "pos-1",
    max_loss: str = "500",
    opened_at: datetime = T0,
) -> Position:
    return Position(
        position_id=pid,
        system=system,
        signal_kind=kind,
        spread=spread,
        quantity=qty,
        entry_price=Decimal(entry),
        opened_at=opened_at,
        max_loss=Decimal(max_loss),
    )


def intent(
    spread: Spread,
    qty: int = 1,
    limit: str = "1.00",
    worst: str = "1.10",
    max_loss: str = "110",
    system: SystemName = SystemName.SMART0DTE,
    signal_id: str = "sig-1",
    action: IntentAction = IntentAction.OPEN,
    at: datetime = T0,
) -> OrderIntent:
    return OrderIntent(
        client_order_id=client_order_id(system, signal_id, spread, action),
        system=system,
        signal_id=signal_id,
        spread=spread,
        action=action,
        quantity=qty,
        limit_price=Decimal(limit),
        worst_price=Decimal(worst),
        max_loss=Decimal(max_loss),
        created_at=at,
    )


AT = datetime(2026, 11, 27, 10, 30, tzinfo=NY)
CLOSE = datetime(2026, 11, 27, 13, 0, tzinfo=NY)


def make_chain(spot=590.0, vol=0.15, half_spread=0.02, oi=500, at=AT, und="SPY", **overrides):
    """A clean Black-Scholes chain (strikes spot-20..spot+20 step 1) with optional bad quotes."""
    base = round(spot)
    strikes = np.arange(base - 20.0, base + 21.0, 1.0)
    k = np.concatenate([strikes, strikes])
    is_call = np.concatenate([np.ones_like(strikes, bool), np.zeros_like(strikes, bool)])
    t = year_fraction(at, CLOSE)
    model = bs_price(spot, k, t, vol, is_call)
    bid = np.maximum(np.round(model - half_spread, 2), 0.0)
    ask = np.maximum(np.round(model + half_spread, 2), 0.01)
    arrays = {"bid": bid, "ask": ask, "open_interest": np.full(k.shape, oi, dtype=np.int64)}
    for name, (idx, value) in overrides.items():
        arrays[name][idx] = value
    return ChainSnapshot(
        und, DAY, at, spot, k, is_call, arrays["bid"], arrays["ask"], arrays["open_interest"]
    )


def make_bars(closes, symbol="SPY", start=datetime(2026, 11, 27, 9, 30, tzinfo=NY)) -> Bars:
    """1-minute bars whose closes are ``closes`` (open = previous close)."""
    from datetime import timedelta

    closes = np.asarray(closes, dtype=np.float64)
    opens = np.concatenate([[closes[0]], closes[:-1]])
    times = tuple(start + timedelta(minutes=i) for i in range(len(closes)))
    return Bars(
        symbol,
        times,
        opens,
        np.maximum(opens, closes) + 0.01,
        np.minimum(opens, closes) - 0.01,
        closes,
        np.full(len(closes), 1000.0),
    )
