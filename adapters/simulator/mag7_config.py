"""Configuration of the simulated Mag7 stocks: ``SimulatorConfig.mag7`` (every number lives here).

The model that uses these numbers is described in ``adapters.simulator.mag7``. This module holds
plain frozen dataclasses only (no imports from the rest of the simulator), so ``paths`` can embed
``Mag7MarketConfig`` in ``SimulatorConfig`` without an import cycle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

TECHNOLOGY = "technology"
COMMUNICATION = "communication"
CONSUMER_DISCRETIONARY = "consumer_discretionary"

_MONTHS = range(1, 13)


@dataclass(frozen=True, slots=True)
class StockSpec:
    """One simulated stock with weekly/monthly options and quarterly earnings.

    Daily return in sds = ``market_loading`` x market factor + ``sector_loading`` x its sector's
    factor + sqrt(1 - market^2 - sector^2) x idiosyncratic noise, so two names correlate by
    ``m_i m_j`` (+ ``s_i s_j`` in the same sector) outside earnings.
    """

    sector: str
    base_price: float  # close of the session before ``SimulatorConfig.anchor_date``
    base_iv: float  # 30-day ATM implied vol (diffusive) when VIX = vix_base and the IV factor is 0
    market_loading: float
    sector_loading: float
    earnings_months: tuple[int, ...] = (1, 4, 7, 10)  # months of the quarterly reports
    earnings_first_day: int = 22  # report day drawn from this day of the month ...
    earnings_window_days: int = 10  # ... over this many calendar days (rolled to a session)
    after_close_share: float = 0.9  # probability a report is after the close (else before open)
    earnings_move: float = 0.05  # implied earnings move: sd of the log gap the options price
    skew: float = 0.07  # base skew coefficient of the surface (``SimulatorConfig.skew`` for ETFs)
    daily_volume: float = 3.0e7  # shares in a regular session
    spread_multiplier: float = 1.5  # scales option half-spreads
    peak_open_interest: float = 15_000.0  # open interest at the money of a weekly expiry

    def __post_init__(self) -> None:
        if self.base_price <= 0 or self.base_iv <= 0 or self.earnings_move < 0:
            raise ValueError("base_price and base_iv must be positive, earnings_move >= 0")
        loadings = self.market_loading**2 + self.sector_loading**2
        if self.market_loading < 0 or self.sector_loading < 0 or loadings >= 1:
            raise ValueError("loadings must be >= 0 with market^2 + sector^2 < 1")
        if not self.earnings_months or not set(self.earnings_months) <= set(_MONTHS):
            raise ValueError("earnings_months must be months 1..12")
        if not 1 <= self.earnings_first_day <= 28 or self.earnings_window_days < 1:
            raise ValueError("earnings_first_day must be 1..28, earnings_window_days >= 1")
        if not 0 <= self.after_close_share <= 1:
            raise ValueError("after_close_share must be in [0, 1]")

    @property
    def idio_loading(self) -> float:
        return math.sqrt(1.0 - self.market_loading**2 - self.sector_loading**2)


def _default_stocks() -> Mapping[str, StockSpec]:
    # Levels near the end-2025 closes; vols and earnings moves near their typical implied levels.
    # NVDA reports a month later (fiscal year ending in January), the others late Jan/Apr/Jul/Oct.
    return {
        "AAPL": StockSpec(
            sector=TECHNOLOGY,
            base_price=270.0,
            base_iv=0.26,
            market_loading=0.75,
            sector_loading=0.40,
            earnings_first_day=24,
            earnings_move=0.045,
            skew=0.07,
            daily_volume=5.0e7,
            spread_multiplier=1.4,
            peak_open_interest=30_000.0,
        ),
        "MSFT": StockSpec(
            sector=TECHNOLOGY,
            base_price=485.0,
            base_iv=0.25,
            market_loading=0.75,
            sector_loading=0.40,
            earnings_first_day=22,
            earnings_move=0.05,
            skew=0.07,
            daily_volume=2.2e7,
            spread_multiplier=2.0,
            peak_open_interest=15_000.0,
        ),
        "GOOGL": StockSpec(
            sector=COMMUNICATION,
            base_price=315.0,
            base_iv=0.29,
            market_loading=0.72,
            sector_loading=0.42,
            earnings_first_day=22,
            earnings_move=0.06,
            skew=0.07,
            daily_volume=3.0e7,
            spread_multiplier=1.6,
            peak_open_interest=15_000.0,
        ),
        "AMZN": StockSpec(
            sector=CONSUMER_DISCRETIONARY,
            base_price=230.0,
            base_iv=0.32,
            market_loading=0.72,
            sector_loading=0.38,
            earnings_first_day=25,
            earnings_move=0.065,
            skew=0.065,
            daily_volume=4.0e7,
            spread_multiplier=1.5,
            peak_open_interest=20_000.0,
        ),
        "NVDA": StockSpec(
            sector=TECHNOLOGY,
            base_price=187.0,
            base_iv=0.52,
            market_loading=0.70,
            sector_loading=0.40,
            earnings_months=(2, 5, 8, 11),
            earnings_first_day=19,
            earnings_move=0.075,
            skew=0.05,
            daily_volume=1.8e8,
            spread_multiplier=1.2,
            peak_open_interest=40_000.0,
        ),
        "TSLA": StockSpec(
            sector=CONSUMER_DISCRETIONARY,
            base_price=450.0,
            base_iv=0.60,
            market_loading=0.62,
            sector_loading=0.38,
            earnings_first_day=20,
            earnings_move=0.085,
            skew=0.03,
            daily_volume=1.0e8,
            spread_multiplier=1.5,
            peak_open_interest=30_000.0,
        ),
        "META": StockSpec(
            sector=COMMUNICATION,
            base_price=660.0,
            base_iv=0.34,
            market_loading=0.70,
            sector_loading=0.42,
            earnings_first_day=24,
            earnings_move=0.08,
            skew=0.07,
            daily_volume=1.4e7,
            spread_multiplier=2.5,
            peak_open_interest=12_000.0,
        ),
    }


def _default_strike_steps() -> tuple[tuple[float, float], ...]:
    return ((25.0, 0.5), (100.0, 1.0), (500.0, 2.5), (math.inf, 5.0))


@dataclass(frozen=True, slots=True)
class Mag7MarketConfig:
    """Factor model, IV dynamics, earnings and listings of the simulated Mag7 stocks."""

    stocks: Mapping[str, StockSpec] = field(default_factory=_default_stocks, hash=False)
    # the market factor is this ETF's standardised daily (gap, move) and 1-minute returns
    market_symbol: str = "SPY"

    # diffusive ATM IV at a close: base_iv x (VIX / vix_base)^vix_elasticity x exp(h), with the
    # name's own IV factor h a stationary AR(1) written as a moving-average sum (like the VIX)
    vix_elasticity: float = 0.7
    iv_persistence: float = 0.97
    iv_daily_vol: float = 0.035
    iv_window_days: int = 120
    iv_return_correlation: float = -0.4  # of an IV shock with the name's own open-to-close move
    # the skew coefficient: the name's ``skew`` + an AR(1) (same window) of this persistence/vol
    skew_persistence: float = 0.9
    skew_daily_vol: float = 0.012

    # earnings
    earnings_move_dispersion: float = 0.25  # log sd of a quarter's implied move around the name's
    earnings_day_vol_multiplier: float = 1.8  # open-to-close vol of the earnings session
    earnings_volume_multiplier: float = 3.0  # volume of the earnings session

    # listings: weeklies (Friday; Thursday when Friday is a holiday) and monthlies (third Friday)
    weekly_horizon_days: int = 42
    monthly_horizon_days: int = 91
    # strike increment by prior close: the first (upper bound, step) with close < bound
    strike_steps: tuple[tuple[float, float], ...] = field(default_factory=_default_strike_steps)
    strike_range: float = 0.10  # strikes listed within +- max(this, strike_range_sigmas sd)

    # cache of whole days of 1-minute Mag7 paths
    day_cache_size: int = 8

    def __post_init__(self) -> None:
        object.__setattr__(self, "stocks", MappingProxyType(dict(self.stocks)))
        if not self.stocks:
            raise ValueError("at least one stock is required")
        if not 0 < self.iv_persistence < 1 or not 0 < self.skew_persistence < 1:
            raise ValueError("iv_persistence and skew_persistence must be in (0, 1)")
        if not -1 <= self.iv_return_correlation <= 1:
            raise ValueError("iv_return_correlation must be in [-1, 1]")
        if self.iv_window_days < 1:
            raise ValueError("iv_window_days must be >= 1")
        if self.weekly_horizon_days < 0 or self.monthly_horizon_days < 0:
            raise ValueError("expiry horizons must be >= 0")
        bounds = [bound for bound, _ in self.strike_steps]
        if (
            not self.strike_steps
            or bounds != sorted(bounds)
            or bounds[-1] != math.inf
            or min(step for _, step in self.strike_steps) <= 0
        ):
            raise ValueError("strike_steps: ascending bounds ending with inf, positive steps")
        if not 0 < self.strike_range < 1:
            raise ValueError("strike_range must be in (0, 1)")

    @property
    def sectors(self) -> tuple[str, ...]:
        """Sectors in order of first appearance among the stocks."""
        return tuple(dict.fromkeys(spec.sector for spec in self.stocks.values()))

    def strike_step(self, price: float) -> float:
        return next(step for bound, step in self.strike_steps if price < bound)
