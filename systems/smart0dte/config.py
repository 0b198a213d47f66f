"""Smart-0DTE defaults from STRATEGIES.md. Every number the strategy uses lives here.

Overrides per mode come from the settings block as a mapping passed to ``Smart0DTEConfig.with_overrides``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from typing import Any

from core.calendar import Session
from core.chains import LiquidityRules
from core.exits import ExitRules
from core.orders import WalkRules


@dataclass(frozen=True, slots=True)
class RegimeConfig:
    """VIX < low: low (x1.2); low..high: normal (x1.0); high..no_entry: high (x0.7); >= no_entry: none."""

    low_below: float = 15.0
    high_from: float = 25.0
    no_entry_from: float = 30.0
    low_factor: Decimal = Decimal("1.2")
    normal_factor: Decimal = Decimal("1.0")
    high_factor: Decimal = Decimal("0.7")


@dataclass(frozen=True, slots=True)
class MomentumConfig:
    min_move_vs_implied: float = 0.5  # |move since open| >= 0.5 x implied move
    confirm_minutes: int = 15  # the last 15 minutes must agree in sign
    # confidence = min(cap, base + slope * |move| / implied move): 0.65 at the trigger, 0.9 at 4/3
    confidence_base: float = 0.5
    confidence_slope: float = 0.3
    confidence_cap: float = 0.9
    long_delta: float = 0.50
    short_delta: float = 0.30


@dataclass(frozen=True, slots=True)
class DivergenceConfig:
    pairs: tuple[tuple[str, str], ...] = (("SPY", "QQQ"), ("SPY", "IWM"), ("QQQ", "IWM"))
    corr_window: int = 30  # bars for the short rolling correlation (reported)
    z_window: int = 60  # bars for the spread z-score and the gating correlation
    z_threshold: float = 2.0
    min_correlation: float = 0.6
    # confidence = min(cap, base + slope * (|z| - z_threshold))
    confidence_base: float = 0.5
    confidence_slope: float = 0.1
    confidence_cap: float = 0.9
    long_delta: float = 0.50
    short_delta: float = 0.30


@dataclass(frozen=True, slots=True)
class VolatilityConfig:
    realized_window: int = 30  # minutes of 1-minute returns
    contraction_ratio: float = 0.8  # realised < 0.8 x ATM implied
    expansion_ratio: float = 1.3  # realised > 1.3 x ATM implied
    vix_up_fraction: float = 0.05  # VIX up >= 5% on the day
    max_drift_vs_implied: float = 0.3  # price within +-0.3 implied move of the open
    # confidence = min(cap, base + slope * strength); strength in [0, 1] measures how far past the
    # trigger the ratio is (see signals.py)
    confidence_base: float = 0.65
    confidence_slope: float = 0.25
    confidence_cap: float = 0.9
    condor_short_delta: float = 0.15
    wings: Mapping[str, Decimal] = field(
        default_factory=lambda: {"SPY": Decimal("5"), "QQQ": Decimal("5"), "IWM": Decimal("3")}
    )


@dataclass(frozen=True, slots=True)
class Smart0DTEConfig:
    underlyings: tuple[str, ...] = ("SPY", "QQQ", "IWM")
    vix_symbol: str = "VIX"
    loop_start: time = time(9, 45)
    loop_interval_seconds: int = 60
    entry_cutoff: time = time(15, 0)
    entry_cutoff_before_close_minutes: int = 60
    confidence_threshold: float = 0.65
    max_per_underlying: int = 2
    max_per_underlying_and_kind: int = 1
    reentry_cooldown_minutes: int = 30  # no new entry of one (underlying, signal) within this
    # (confidence reached, factor), descending: 1.3 / 1.1 / 1.0 / 0.8
    confidence_steps: tuple[tuple[float, Decimal], ...] = (
        (0.9, Decimal("1.3")),
        (0.8, Decimal("1.1")),
        (0.7, Decimal("1.0")),
        (0.0, Decimal("0.8")),
    )
    regime: RegimeConfig = field(default_factory=RegimeConfig)
    momentum: MomentumConfig = field(default_factory=MomentumConfig)
    divergence: DivergenceConfig = field(default_factory=DivergenceConfig)
    volatility: VolatilityConfig = field(default_factory=VolatilityConfig)
    liquidity: LiquidityRules = field(default_factory=LiquidityRules)
    exits: ExitRules = field(default_factory=ExitRules)
    walk: WalkRules = field(default_factory=WalkRules)

    def cutoff(self, session: Session) -> datetime:
        """When new entries stop on ``session``: 15:00, or close - 60 min if that is earlier."""
        return session.entry_cutoff(self.entry_cutoff, self.entry_cutoff_before_close_minutes)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Smart0DTEConfig:
        """A copy with top-level fields replaced; unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown Smart-0DTE settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **dict(overrides))


DEFAULT = Smart0DTEConfig()
