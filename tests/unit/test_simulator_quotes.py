"""The simulator's compiled chain quoting (``adapters.simulator._quote_kernels``) gives the quotes
of its numpy formulation (below, as ``quote_chain`` computed them before the kernel) bit for bit:
same surface, same spread model, same tick rounding, NaN where the inputs are invalid."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime, time, timedelta

import numpy as np
import pytest

from adapters.simulator import SimulatedMarket, SimulatorConfig
from adapters.simulator.chains import _ROUNDING_EPS, ExpiryListing, quote_chain
from adapters.simulator.paths import intraday_vol_shape
from core.calendar import NY, session
from core.marketdata import ChainSnapshot
from core.pricing import bs_price, year_fraction

DAY = date(2026, 11, 24)


def numpy_quotes(
    c: SimulatorConfig,
    listing: ExpiryListing,
    at: datetime,
    spot: float,
    total_sd: float,
    t: float,
    atm_iv: float,
    session_fraction: float,
    spread_multiplier: float,
    skew: float,
) -> tuple[np.ndarray, np.ndarray]:
    strikes = listing.strikes
    is_call = listing.is_call
    forward = spot * math.exp((c.rate - c.dividend_yield) * t)
    x = np.log(strikes / forward) / total_sd
    factor = np.clip(1.0 - skew * x + c.smile * x * x, c.iv_factor_floor, c.iv_factor_cap)
    iv = atm_iv * factor
    price = bs_price(spot, strikes, t, iv, is_call, c.rate, c.dividend_yield)
    w = np.where(is_call, 1.0, -1.0)
    discounted_spot = spot * math.exp(-c.dividend_yield * t)
    intrinsic = np.maximum(w * (discounted_spot - strikes * math.exp(-c.rate * t)), 0.0)
    time_value = np.maximum(price - intrinsic, 0.0)
    minutes_left = (listing.expiry_close - at).total_seconds() / 60.0
    rel = (
        c.half_spread_frac
        * spread_multiplier
        * (1.0 + c.spread_wing_slope * np.abs(x))
        * (1.0 + c.spread_expiry_boost * math.exp(-minutes_left / c.spread_expiry_decay_minutes))
        * intraday_vol_shape(session_fraction, c) ** c.spread_intraday_power
    )
    half = np.clip(
        c.min_half_spread + rel * time_value + c.itm_half_spread_frac * intrinsic,
        c.min_half_spread,
        c.max_half_spread * spread_multiplier,
    )
    tpd = c.ticks_per_dollar
    bid_ticks = np.floor((price - half) * tpd + _ROUNDING_EPS)
    ask_ticks = np.ceil((price + half) * tpd - _ROUNDING_EPS)
    no_bid = bid_ticks < 1
    bid_ticks = np.where(no_bid, 0.0, bid_ticks)
    ask_ticks = np.where(no_bid, np.maximum(ask_ticks, listing.no_bid_ask_ticks), ask_ticks)
    ask_ticks = np.maximum(ask_ticks, bid_ticks + 1.0)
    return bid_ticks / tpd, ask_ticks / tpd


def listings(underlying: str) -> list[ExpiryListing]:
    market = SimulatedMarket(7)
    engine = market._chains
    return [engine.listing(underlying, DAY, e) for e in market.expiries(underlying, DAY)[:3]]


def both_forms(
    c: SimulatorConfig, listing: ExpiryListing, at: datetime, spot: float, atm_iv: float, u: float
) -> tuple[ChainSnapshot, np.ndarray, np.ndarray]:
    """``quote_chain``'s snapshot and the numpy form's (bid, ask) for one set of inputs."""
    t = year_fraction(at, listing.expiry_close)
    total_sd = atm_iv * math.sqrt(t)
    snap = quote_chain(
        c, 7, listing, at=at, spot=spot, total_sd=total_sd, t=t, atm_iv=atm_iv,
        session_fraction=u, spread_multiplier=1.3, skew=c.skew,
    )  # fmt: skip
    bid, ask = numpy_quotes(c, listing, at, spot, total_sd, t, atm_iv, u, 1.3, c.skew)
    return snap, bid, ask


@pytest.mark.parametrize("underlying", ["SPY", "IWM"])
@pytest.mark.parametrize("minute", [0, 95, 388])
def test_quote_chain_when_compiled_then_bit_identical_to_numpy_form(
    underlying: str, minute: int
) -> None:
    c = replace(SimulatorConfig(), fault_rate=0.0)
    at = session(DAY).open + timedelta(minutes=minute, seconds=13)
    bids = []
    for listing, (spot_shift, atm_iv) in zip(
        listings(underlying), [(0.0, 0.12), (-0.04, 0.35), (0.03, 0.9)], strict=False
    ):
        spot = float(np.median(listing.strikes)) * (1.0 + spot_shift)
        snap, bid, ask = both_forms(c, listing, at, spot, atm_iv, minute / 390)

        assert snap.bid.tobytes() == bid.tobytes()
        assert snap.ask.tobytes() == ask.tobytes()
        bids.append(snap.bid)
    quoted = np.concatenate(bids)
    assert (quoted == 0).any() and (quoted > 0).any()  # no-bid wings and quoted rows alike


def test_quote_chain_when_spot_not_finite_then_every_quote_nan_as_numpy_form() -> None:
    c = replace(SimulatorConfig(), fault_rate=0.0)
    listing = listings("QQQ")[0]
    at = datetime.combine(DAY, time(11, 0), tzinfo=NY)
    snap, bid, ask = both_forms(c, listing, at, math.nan, 0.2, 0.25)

    assert np.isnan(snap.bid).all() and np.isnan(snap.ask).all()
    np.testing.assert_array_equal(snap.bid, bid)
    np.testing.assert_array_equal(snap.ask, ask)
