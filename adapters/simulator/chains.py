"""Simulated option listings, implied-vol surface and quotes (numbers in ``SimulatorConfig``).

Listing rules
-------------
* **Expiries** of an underlying are the sessions within ``expiry_horizon_days`` of ``on`` whose weekday
  is in its ``UnderlyingSpec.expiry_weekdays``: SPY and QQQ every weekday (Mon-Fri dailies), IWM
  Monday/Wednesday/Friday. The IWM rule is a simulator assumption, configurable per underlying.
  A holiday is never an expiry; when a listed Friday is a holiday the expiry moves to the Thursday
  before it (``holiday_friday_to_thursday``), as weekly and monthly Friday options do. A listed
  Monday or Wednesday that is a holiday simply has no expiry. The strategy reads these listings; it
  must not assume a weekday rule.
* **Strikes** are fixed for a day (listed before the open): every ``strike_step`` within
  ``max(strike_range, strike_range_sigmas x expected sd to expiry)`` of the prior close.
  Rows are ordered by strike, call before put at each strike.

Surface
-------
ATM vol (annual, trading-variance units) = VIX_t / 100 x ``iv_multiplier`` x term factor, with the
term factor ``1 + term_slope (VIX/vix_base - 1) e^{-dte/term_decay_days}`` (short expiries above the
30-day level when VIX is high, below when it is low) and ``zero_dte_iv_premium`` on same-day
expiries. The total variance to expiry runs on the same **variance clock** as the simulated paths:
the U-shaped weight of the session minutes left today, plus each later session and each night
(``overnight_variance_share``, more over weekends). The quoted IV is that variance over
``core.pricing.year_fraction(at, expiry close)``, so a 0DTE straddle prices the move the simulator
really makes (less the ``rv_to_iv`` premium), and an IV solved back from a mid with the kernel
recovers the surface. Skew and smile act on the standardised moneyness ``x = ln(K/F) / total sd``:
``IV = ATM x clip(1 - skew x + smile x^2, iv_factor_floor, iv_factor_cap)`` (OTM puts richer than
OTM calls; convex wings; the same shape in delta space for every expiry, which keeps mids free of
static arbitrage). Prices are ``core.pricing.bs_price``'s (its compiled row price) at ``rate`` /
``dividend_yield``; one compiled pass per chain quotes every row (``_quote_kernels``).

Quotes
------
Half-spread = ``min_half_spread`` + relative part x time value + ``itm_half_spread_frac`` x
intrinsic, clipped to ``max_half_spread`` (x the underlying's ``spread_multiplier``). The relative part
``half_spread_frac`` grows with |x| (``spread_wing_slope``), near expiry (``spread_expiry_boost``,
decaying over ``spread_expiry_decay_minutes``) and with the intraday U-shape. Bid is rounded down and
ask up to the ``tick``; a contract whose bid would be under one tick is bid 0.00 and asks 1 to
``no_bid_max_ask_ticks`` ticks (seeded per contract), so the liquidity filter "bid > 0" matters.
Open interest is seeded per (day, underlying, expiry): peaked at the money, decaying outward, more
on puts and monthly expiries, less on the same-day expiry; far strikes fall below 100.

Faults: with ``fault_rate`` > 0 a seeded share of rows (per underlying, expiry and instant) gets a
NaN bid, a zero ask, a negative bid or a crossed quote (bid > ask), in equal proportions.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import numpy as np

from adapters.simulator.paths import (
    DayPaths,
    PathEngine,
    SimulatorConfig,
    UnderlyingSpec,
    all_sessions,
    day_rng,
    intraday_vol_shape,
    session_index,
    session_minutes,
    variance_weights,
)
from core import calendar as cal
from core.marketdata import BoolArray, ChainSnapshot, FloatArray, IntArray
from core.pricing import year_fraction

FAULT_NAN_BID = 0
FAULT_ZERO_ASK = 1
FAULT_NEGATIVE_BID = 2
FAULT_CROSSED = 3
FAULT_KINDS = 4
_THIRD_FRIDAY_DAYS = range(15, 22)  # a month's third Friday falls on the 15th..21st
_FRIDAY = 4
_THURSDAY = 3
_ROUNDING_EPS = 1e-9  # guards floor/ceil of prices that are a whole number of ticks


@dataclass(frozen=True, slots=True, eq=False)
class ExpiryListing:
    """What is fixed for one (underlying, day, expiry): rows, open interest, variance ahead."""

    underlying: str
    day: date
    expiry: date
    expiry_close: datetime
    dte: int  # calendar days from the day to the expiry
    strikes: FloatArray  # per row
    is_call: BoolArray
    open_interest: IntArray
    no_bid_ask_ticks: IntArray  # ask of a no-bid row, in ticks
    future_units: float  # variance (in regular-session days) from today's close to the expiry
    event_variance: float = 0.0  # earnings-gap log variance before the expiry (Mag7 stocks)


def is_monthly(expiry: date) -> bool:
    """Third Friday of the month, or the Thursday before it when that Friday is a holiday."""
    if expiry.weekday() == _FRIDAY:
        return expiry.day in _THIRD_FRIDAY_DAYS
    friday = expiry + timedelta(days=1)
    return (
        expiry.weekday() == _THURSDAY
        and friday.day in _THIRD_FRIDAY_DAYS
        and not cal.is_trading_day(friday)
    )


_A = TypeVar("_A", bound="np.ndarray[Any, Any]")


def _readonly(arr: _A) -> _A:
    arr.setflags(write=False)
    return arr


class ChainEngine:
    """Listings and quotes on top of a ``PathEngine``; callers validate symbols and times."""

    def __init__(self, seed: int, config: SimulatorConfig, paths: PathEngine) -> None:
        self.seed = seed
        self.config = config
        self.paths = paths
        self._expiries: dict[tuple[str, date], tuple[date, ...]] = {}
        self._listings: OrderedDict[tuple[str, date, date], ExpiryListing] = OrderedDict()
        self._cumw: dict[int, FloatArray] = {}
        self._snapshots: OrderedDict[tuple[str, date, float], ChainSnapshot] = OrderedDict()
        self._etf_index = {sym: i for i, sym in enumerate(config.underlyings)}

    # -- listings ---------------------------------------------------------------------------------

    def expiries(self, underlying: str, on: date) -> tuple[date, ...]:
        key = (underlying, on)
        found = self._expiries.get(key)
        if found is not None:
            return found
        c = self.config
        spec = c.underlyings[underlying]
        last = min(on + timedelta(days=c.expiry_horizon_days), all_sessions()[-1])
        listed: list[date] = []
        for d in cal.trading_days(on, last) if on <= last else []:
            if d.weekday() in spec.expiry_weekdays or (
                c.holiday_friday_to_thursday
                and d.weekday() == _THURSDAY
                and _FRIDAY in spec.expiry_weekdays
                and not cal.is_trading_day(d + timedelta(days=1))
            ):
                listed.append(d)
        result = tuple(listed)
        self._expiries[key] = result
        return result

    def listing(self, underlying: str, day: date, expiry: date) -> ExpiryListing:
        key = (underlying, day, expiry)
        found = self._listings.get(key)
        if found is not None:
            self._listings.move_to_end(key)
            return found
        found = self._build_listing(underlying, day, expiry)
        self._listings[key] = found
        while len(self._listings) > self.config.listing_cache_size:
            self._listings.popitem(last=False)
        return found

    def _variance_units(self, day: date, expiry: date) -> float:
        """Variance from ``day``'s close to ``expiry``'s close, in regular-session-day units."""
        return variance_units(self.config, day, expiry)

    def _build_listing(self, underlying: str, day: date, expiry: date) -> ExpiryListing:
        c = self.config
        spec = c.underlyings[underlying]
        j = self._etf_index[underlying]
        index = session_index(day)
        daily = self.paths.daily
        ref = daily.close(j, index - 1)
        vix_prev = math.exp(daily.log_vix_prior_close(index)) / 100.0
        future = self._variance_units(day, expiry)
        today = (1.0 - c.overnight_variance_share) * (
            session_minutes(day) / c.regular_session_minutes
        )
        sd_to_expiry = (
            vix_prev * spec.iv_multiplier * math.sqrt((today + future) / c.trading_days_per_year)
        )
        half_width = ref * max(spec.strike_range, c.strike_range_sigmas * sd_to_expiry)
        return build_listing(
            c,
            self.seed,
            f"listing:{underlying}",
            underlying,
            day,
            expiry,
            ref=ref,
            half_width=half_width,
            step=spec.strike_step,
            peak_open_interest=spec.peak_open_interest,
            future_units=future,
        )

    # -- quotes -----------------------------------------------------------------------------------

    def _cumulative_weights(self, n: int) -> FloatArray:
        found = self._cumw.get(n)
        if found is None:
            found = _readonly(np.concatenate(([0.0], np.cumsum(variance_weights(n, self.config)))))
            self._cumw[n] = found
        return found

    def snapshot(self, underlying: str, expiry: date, at: datetime, day: date) -> ChainSnapshot:
        """The chain at ``at`` (inside ``day``'s session, expiry listed: checked by the caller)."""
        key = (underlying, expiry, at.timestamp())
        found = self._snapshots.get(key)
        if found is not None:
            self._snapshots.move_to_end(key)
            return found
        result = self._price(underlying, expiry, at, day)
        self._snapshots[key] = result
        while len(self._snapshots) > self.config.chain_cache_size:
            self._snapshots.popitem(last=False)
        return result

    def _price(self, underlying: str, expiry: date, at: datetime, day: date) -> ChainSnapshot:
        c = self.config
        spec: UnderlyingSpec = c.underlyings[underlying]
        listing = self.listing(underlying, day, expiry)
        paths: DayPaths = self.paths.day(day)
        n = paths.n_minutes
        elapsed = (at.timestamp() - paths.open_at.timestamp()) / 60.0
        done = min(int(elapsed), n)  # completed bars
        path = paths.paths[underlying]
        vix_path = paths.paths[c.vix_symbol]
        spot = float(path.open[0] if done == 0 else path.close[done - 1])
        vix = float(vix_path.open[0] if done == 0 else vix_path.close[done - 1])

        cumw = self._cumulative_weights(n)
        minute = min(int(elapsed), n - 1)
        frac = elapsed - minute
        used = cumw[minute] + frac * (cumw[minute + 1] - cumw[minute])
        remaining = max(float(cumw[-1] - used), 0.0)
        units = (1.0 - c.overnight_variance_share) * remaining + listing.future_units

        dte = listing.dte
        term = 1.0 + c.term_slope * (vix / c.vix_base - 1.0) * math.exp(-dte / c.term_decay_days)
        if dte == 0:
            term *= 1.0 + c.zero_dte_iv_premium
        atm_annual = vix / 100.0 * spec.iv_multiplier * term
        total_sd = atm_annual * math.sqrt(units / c.trading_days_per_year)
        t = year_fraction(at, listing.expiry_close)
        atm_iv = total_sd / math.sqrt(t)

        return quote_chain(
            c,
            self.seed,
            listing,
            at=at,
            spot=spot,
            total_sd=total_sd,
            t=t,
            atm_iv=atm_iv,
            session_fraction=elapsed / n,
            spread_multiplier=spec.spread_multiplier,
            skew=c.skew,
        )


# ------------------------------------------------------------------------------------------------
# shared by the ETF chains above and the Mag7 stock chains (``adapters.simulator.mag7``)


def variance_units(config: SimulatorConfig, day: date, expiry: date) -> float:
    """Variance from ``day``'s close to ``expiry``'s close, in regular-session-day units."""
    c = config
    sessions = all_sessions()
    start, end = session_index(day), session_index(expiry)
    units = 0.0
    for i in range(start + 1, end + 1):
        nights = (sessions[i] - sessions[i - 1]).days
        units += c.overnight_variance_share * (
            1.0 + c.nontrading_day_variance_weight * (nights - 1)
        )
        units += (1.0 - c.overnight_variance_share) * (
            session_minutes(sessions[i]) / c.regular_session_minutes
        )
    return units


def build_listing(
    config: SimulatorConfig,
    seed: int,
    stream: str,
    underlying: str,
    day: date,
    expiry: date,
    *,
    ref: float,
    half_width: float,
    step: float,
    peak_open_interest: float,
    future_units: float,
    event_variance: float = 0.0,
) -> ExpiryListing:
    """Rows (every ``step`` within ``half_width`` of ``ref``), seeded open interest, no-bid asks.

    ``stream`` names the listing's random stream (per underlying), drawn with the expiry.
    """
    c = config
    lo = max(math.ceil((ref - half_width) / step), 1)
    hi = math.floor((ref + half_width) / step)
    grid = np.round(np.arange(lo, hi + 1) * step, 6)
    strikes = np.repeat(grid, 2)
    is_call = np.tile(np.array([True, False]), grid.shape[0])
    n = strikes.shape[0]
    dte = (expiry - day).days

    rng = day_rng(seed, day, stream, expiry.toordinal())
    noise = rng.standard_normal(n)
    no_bid = rng.integers(1, c.no_bid_max_ask_ticks + 1, n)
    width = c.oi_width * math.sqrt(1.0 + dte / c.oi_width_growth_days)
    oi = peak_open_interest * np.exp(-np.abs(strikes / ref - 1.0) / width)
    oi *= np.where(is_call, 1.0, c.put_oi_multiplier)
    if is_monthly(expiry):
        oi *= c.monthly_oi_multiplier
    if dte == 0:
        oi *= c.zero_dte_oi_multiplier
    oi *= np.exp(c.oi_noise * noise - 0.5 * c.oi_noise**2)
    return ExpiryListing(
        underlying=underlying,
        day=day,
        expiry=expiry,
        expiry_close=cal.session(expiry).close,
        dte=dte,
        strikes=_readonly(strikes),
        is_call=_readonly(is_call),
        open_interest=_readonly(np.floor(oi).astype(np.int64)),
        no_bid_ask_ticks=_readonly(no_bid.astype(np.int64)),
        future_units=future_units,
        event_variance=event_variance,
    )


def quote_chain(
    config: SimulatorConfig,
    seed: int,
    listing: ExpiryListing,
    *,
    at: datetime,
    spot: float,
    total_sd: float,
    t: float,
    atm_iv: float,
    session_fraction: float,
    spread_multiplier: float,
    skew: float,
) -> ChainSnapshot:
    """Price and quote every row of ``listing`` at ``at`` (surface and spreads: module doc).

    ``total_sd``: ATM log sd to the expiry close; ``t``: year fraction to it; ``atm_iv`` =
    total_sd / sqrt(t); ``session_fraction``: elapsed share of the session (intraday U-shape).
    """
    from adapters.simulator import _quote_kernels as kern

    c = config
    strikes = listing.strikes
    n = strikes.shape[0]
    bid = np.empty(n, dtype=np.float64)
    ask = np.empty(n, dtype=np.float64)
    minutes_left = (listing.expiry_close - at).total_seconds() / 60.0
    kern.quote_rows_into(
        strikes, listing.is_call, listing.no_bid_ask_ticks,
        spot, spot * math.exp((c.rate - c.dividend_yield) * t), total_sd, atm_iv, t,
        c.rate, c.dividend_yield, skew, c.smile, c.iv_factor_floor, c.iv_factor_cap,
        c.half_spread_frac * spread_multiplier, c.spread_wing_slope,
        1.0 + c.spread_expiry_boost * math.exp(-minutes_left / c.spread_expiry_decay_minutes),
        intraday_vol_shape(session_fraction, c) ** c.spread_intraday_power,
        c.min_half_spread, c.max_half_spread * spread_multiplier, c.itm_half_spread_frac,
        c.ticks_per_dollar, _ROUNDING_EPS, bid, ask,
    )  # fmt: skip
    if c.fault_rate > 0:
        bid, ask = inject_faults(
            c, seed, listing.underlying, listing.expiry, at, listing.day, bid, ask
        )

    return ChainSnapshot(
        underlying=listing.underlying,
        expiry=listing.expiry,
        at=at,
        spot=spot,
        strikes=strikes,
        is_call=listing.is_call,
        bid=bid,
        ask=ask,
        open_interest=listing.open_interest,
    )


def inject_faults(
    config: SimulatorConfig,
    seed: int,
    underlying: str,
    expiry: date,
    at: datetime,
    day: date,
    bid: FloatArray,
    ask: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """Corrupt a seeded share ``fault_rate`` of the rows (four fault kinds, equal shares)."""
    c = config
    n = bid.shape[0]
    stamp = round(at.timestamp() * 1_000_000)
    rng = day_rng(seed, day, f"fault:{underlying}", expiry.toordinal(), stamp)
    hit = rng.random(n) < c.fault_rate
    kind = rng.integers(0, FAULT_KINDS, n)
    bid = bid.copy()
    ask = ask.copy()
    tick = c.tick
    nan_bid = hit & (kind == FAULT_NAN_BID)
    zero_ask = hit & (kind == FAULT_ZERO_ASK)
    negative = hit & (kind == FAULT_NEGATIVE_BID)
    crossed = hit & (kind == FAULT_CROSSED)
    bid[nan_bid] = np.nan
    ask[zero_ask] = 0.0
    bid[negative] = -(bid[negative] + tick)
    bid[crossed] = ask[crossed] + tick
    return bid, ask
