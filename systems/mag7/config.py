"""Mag7-7DTE defaults from STRATEGIES.md. Every number the strategy uses lives here.

The spec fixes the thresholds (RSI 30/70, MACD 12/26/9, Bollinger 20/2, momentum 10 bars / 5% with
ADX > 25, IV rank 20/80, skew +-0.15, ensemble weights and 0.60, structure deltas, sizing and exit
percentages). The confidence formulas are ours; each one is ``min(cap, base + slope * strength)``
where ``strength`` >= 0 measures how far past its trigger the indicator is (see ``signals.py``), so
confidence is monotone in signal strength and capped. Their constants are here.

Overrides per mode come from the settings block as a mapping passed to
``Mag7Config.with_overrides``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, time
from decimal import Decimal
from enum import StrEnum
from typing import Any

from core.chains import LiquidityRules
from core.orders import WalkRules


class Strategy(StrEnum):
    """The ensemble's member strategies (also the keys of ``EnsembleConfig.weights``)."""

    RSI = "rsi"
    MACD = "macd"
    BOLLINGER = "bollinger"
    MOMENTUM = "momentum"
    IV = "iv"
    SKEW = "skew"
    EARNINGS = "earnings"


class Sector(StrEnum):
    TECHNOLOGY = "technology"
    COMMUNICATION = "communication"
    CONSUMER_DISCRETIONARY = "consumer_discretionary"


class IVMeasure(StrEnum):
    """Which statistic of the stored IV history the IV strategy uses once a year of it exists."""

    RANK = "rank"  # (iv - min) / (max - min) over the window, 0..100
    PERCENTILE = "percentile"  # share of the window's earlier days below today's IV, 0..100


@dataclass(frozen=True, slots=True)
class RsiConfig:
    """RSI(14, Wilder) <= oversold -> bullish, >= overbought -> bearish (inclusive).

    confidence = min(cap, base + slope * RSI points beyond the threshold): 0.5 at 30 (or 70),
    0.9 at 10 (or 90).
    """

    period: int = 14
    oversold: float = 30.0
    overbought: float = 70.0
    confidence_base: float = 0.5
    confidence_slope: float = 0.02
    confidence_cap: float = 0.9


@dataclass(frozen=True, slots=True)
class MacdConfig:
    """MACD(12, 26, 9): the line crossed its signal within the last ``crossover_lookback`` bars and
    the histogram still has the cross's sign -> bullish (up) / bearish (down).

    confidence = min(cap, base + slope * |histogram| / close * 100) (histogram in % of price):
    0.55 at a bare cross, 0.85 once the histogram is 1% of the price.
    """

    fast: int = 12
    slow: int = 26
    signal: int = 9
    crossover_lookback: int = 3
    confidence_base: float = 0.55
    confidence_slope: float = 0.30
    confidence_cap: float = 0.85


@dataclass(frozen=True, slots=True)
class BollingerConfig:
    """Bollinger(20, 2 sigma) reversion: close <= lower band -> bullish, >= upper -> bearish.

    sigma is the population standard deviation (``ddof=0``, as StockCharts); set ``ddof=1`` for
    the sample one. confidence = min(cap, base + slope * penetration) with penetration the
    distance beyond the band in band widths (-%B below, %B - 1 above): 0.55 on the band, 0.85 at
    0.3 band widths beyond it.
    """

    period: int = 20
    num_std: float = 2.0
    ddof: int = 0
    confidence_base: float = 0.55
    confidence_slope: float = 1.0
    confidence_cap: float = 0.85


@dataclass(frozen=True, slots=True)
class MomentumConfig:
    """10-bar change >= +5% (<= -5%) with ADX(14) > 25 (strict) -> bullish (bearish).

    confidence = min(cap, base + move_slope * (|change| / threshold - 1)
    + adx_slope * (ADX - adx_threshold) / adx_threshold): 0.55 at the triggers, 0.75 at a 10%
    move with ADX 25+, 0.9 (cap) at a 10% move with ADX 43.75.
    """

    period: int = 10
    threshold: float = 0.05
    adx_period: int = 14
    adx_threshold: float = 25.0
    confidence_base: float = 0.55
    move_slope: float = 0.20
    adx_slope: float = 0.20
    confidence_cap: float = 0.9


@dataclass(frozen=True, slots=True)
class IVConfig:
    """IV rank/percentile of the stored daily 30-day ATM IV (today's value last in the history).

    With at least ``min_history_sessions`` values the IV level is the rank (or percentile) over the
    last ``window`` values. With fewer it falls back to the IV/HV(20) ratio and says so: the ratio
    is mapped linearly onto the same 0..100 scale so that ``ratio_low`` -> ``low`` (20) and
    ``ratio_high`` -> ``high`` (80) (ratio 1.0 -> 50 with the defaults), clamped to [0, 100]; the
    structure choice uses that level too.

    Vote (contrarian, like a VIX reading): level >= high (rich, fearful options) -> bullish;
    level <= low (complacency) -> bearish. confidence = min(cap, base + slope * (level - high) /
    (100 - high)) above, symmetric below; times ``fallback_confidence_factor`` on the ratio
    fallback (a short history is a weaker measure).
    """

    measure: IVMeasure = IVMeasure.RANK
    low: float = 20.0
    high: float = 80.0
    window: int = 252
    min_history_sessions: int = 252
    hv_period: int = 20
    periods_per_year: int = 252
    hv_ddof: int = 1
    ratio_low: float = 0.8
    ratio_high: float = 1.2
    confidence_base: float = 0.55
    confidence_slope: float = 0.30
    confidence_cap: float = 0.85
    fallback_confidence_factor: float = 0.8


@dataclass(frozen=True, slots=True)
class SkewConfig:
    """25-delta put-call IV skew of the chosen expiry's chain.

    skew = (IV(25d put) - IV(25d call)) / ATM IV when ``normalise_by_atm`` (default), else the raw
    difference in vol units. skew >= threshold (puts bid up) -> bearish; <= -threshold (calls bid
    up) -> bullish: a steep put smirk predicts underperformance (Xing, Zhang & Zhao 2010).
    The selected contracts' |delta| must be within ``max_delta_error`` of the target.
    confidence = min(cap, base + slope * (|skew| / threshold - 1)): 0.55 at 0.15, 0.85 at 0.30.
    """

    target_delta: float = 0.25
    max_delta_error: float = 0.07
    threshold: float = 0.15
    normalise_by_atm: bool = True
    confidence_base: float = 0.55
    confidence_slope: float = 0.30
    confidence_cap: float = 0.85


@dataclass(frozen=True, slots=True)
class EarningsConfig:
    """Post-earnings drift from the beat history; only when a real earnings calendar is configured.

    Vote when the last report is at most ``drift_window_days`` old: last surprise >= min_surprise
    and beats (surprise > 0) in >= min_beat_rate of the last ``lookback_quarters`` -> bullish;
    the mirror (misses) -> bearish.
    confidence = min(cap, base + slope * (|last surprise| / min_surprise - 1)).

    ``dates``: a configured earnings calendar (underlying -> report dates), used by the
    orchestration when the market-data adapter has no calendar of its own.
    """

    calendar_configured: bool = False
    dates: Mapping[str, tuple[date, ...]] = field(default_factory=dict)
    lookback_quarters: int = 4
    min_beat_rate: float = 0.75
    min_surprise: float = 0.02
    drift_window_days: int = 30
    confidence_base: float = 0.55
    confidence_slope: float = 0.05
    confidence_cap: float = 0.85


def _default_weights() -> dict[Strategy, float]:
    return {
        Strategy.RSI: 0.7,
        Strategy.MACD: 0.8,
        Strategy.BOLLINGER: 0.6,
        Strategy.MOMENTUM: 0.7,
        Strategy.IV: 0.8,
        Strategy.SKEW: 0.7,
        Strategy.EARNINGS: 0.9,
    }


@dataclass(frozen=True, slots=True)
class EnsembleConfig:
    """Directional: for direction d, A_d = votes for d, V = all directional (non-neutral) votes;
    C_d = sum(w_i * c_i, i in A_d) / sum(w_i, i in V). Emit d when |A_d| >= min_agree and
    C_d >= min_confidence (compared with ``tolerance`` so a value that is 0.60 up to float
    rounding counts as 0.60). Since C_bull + C_bear <= 1, at most one direction can pass 0.60.

    Neutral (iron condor) when no direction is emitted, there is no directional majority (no
    direction has >= min_agree votes *and* more votes than the other) and the IV level is
    >= neutral_min_iv_level; confidence = min(cap, base + slope * (level - min) / (100 - min)).
    """

    weights: Mapping[Strategy, float] = field(default_factory=_default_weights)
    min_agree: int = 2
    min_confidence: float = 0.60
    tolerance: float = 1e-9
    neutral_min_iv_level: float = 70.0
    neutral_confidence_base: float = 0.60
    neutral_confidence_slope: float = 0.20
    neutral_confidence_cap: float = 0.80


@dataclass(frozen=True, slots=True)
class StructureConfig:
    """Bias and IV level -> structure; legs by |delta| (nearest liquid listed strike).

    Credit-spread and condor wings: by ``*_wing_width`` (dollars beyond the short strike, must be
    listed) when set, else by ``*_wing_delta``.
    Long call/put (off by default): when allowed, a directional bias with IV level below
    ``long_option_max_iv_level`` buys a single ``long_option_delta`` option instead of a debit
    spread.
    """

    credit_min_iv_level: float = 50.0  # >= -> credit spread; below -> debit spread
    condor_min_iv_level: float = 70.0
    debit_long_delta: float = 0.50
    debit_short_delta: float = 0.25
    credit_short_delta: float = 0.30
    credit_wing_delta: float = 0.15
    credit_wing_width: Decimal | None = None
    condor_short_delta: float = 0.16
    condor_wing_delta: float = 0.06
    condor_wing_width: Decimal | None = None
    allow_long_options: bool = False
    long_option_delta: float = 0.50
    long_option_max_iv_level: float = 25.0


def _default_sectors() -> dict[str, Sector]:
    return {
        "AAPL": Sector.TECHNOLOGY,
        "MSFT": Sector.TECHNOLOGY,
        "NVDA": Sector.TECHNOLOGY,
        "GOOGL": Sector.COMMUNICATION,
        "META": Sector.COMMUNICATION,
        "AMZN": Sector.CONSUMER_DISCRETIONARY,
        "TSLA": Sector.CONSUMER_DISCRETIONARY,
    }


@dataclass(frozen=True, slots=True)
class SizingConfig:
    """budget = equity * risk_fraction * (confidence_offset + confidence), capped by
    max_position_size, stock_cap_fraction * equity less the max loss already open in the stock,
    sector_cap_fraction * equity less the Mag7 max loss open in the sector; then x corr factor
    (mean |corr| of ``corr_window`` daily returns with held Mag7 underlyings: > corr_high ->
    corr_high_factor, > corr_mid -> corr_mid_factor, strict). Missing history for a held name
    counts as |corr| = ``missing_correlation`` (conservative)."""

    risk_fraction: Decimal = Decimal("0.02")
    confidence_offset: Decimal = Decimal("0.5")
    stock_cap_fraction: Decimal = Decimal("0.10")
    sector_cap_fraction: Decimal = Decimal("0.30")
    max_open_positions: int = 3
    corr_window: int = 60
    corr_high: float = 0.8
    corr_high_factor: Decimal = Decimal("0.5")
    corr_mid: float = 0.6
    corr_mid_factor: Decimal = Decimal("0.75")
    missing_correlation: float = 1.0


@dataclass(frozen=True, slots=True)
class Mag7ExitConfig:
    """Debit stop at -(debit_stop * min(1, DTE / stop_full_dte)) of the premium; credit stop when
    the loss equals credit_stop x the credit. Take 1/tier_parts of the original quantity at each
    tier target; the last part trails: after every tier is taken, close when P&L <= lock * peak
    for the highest (peak reached, lock) step. 1-DTE close at ``one_dte_close`` on the last
    trading day before expiry (the session close-out time if earlier, e.g. early closes); the
    pre-earnings close at ``earnings_close`` on the session before an earnings date."""

    debit_stop: Decimal = Decimal("0.20")
    stop_full_dte: int = 7
    credit_stop: Decimal = Decimal("1.00")
    tier_targets: tuple[Decimal, ...] = (Decimal("0.20"), Decimal("0.35"), Decimal("0.50"))
    tier_parts: int = 4
    # (peak P&L fraction reached, fraction of the peak locked), highest first
    trail_steps: tuple[tuple[Decimal, Decimal], ...] = (
        (Decimal("0.30"), Decimal("0.50")),
        (Decimal("0.15"), Decimal("0.25")),
    )
    one_dte_close: time = time(15, 30)
    earnings_close: time = time(15, 30)


@dataclass(frozen=True, slots=True)
class Mag7Config:
    underlyings: tuple[str, ...] = ("AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA", "META")
    context_symbols: tuple[str, ...] = ("SPY", "QQQ", "VIX")
    sectors: Mapping[str, Sector] = field(default_factory=_default_sectors)
    entry_weekday: int = 4  # Monday = 0 ... Friday = 4
    entry_time: time = time(10, 0)
    entry_cutoff: time = time(15, 0)
    entry_cutoff_before_close_minutes: int = 60
    management_times: tuple[time, ...] = (time(10, 0), time(12, 0), time(14, 0), time(15, 30))
    target_dte: int = 7
    min_dte: int = 5
    max_dte: int = 10
    history_sessions: int = 252  # daily bars the orchestration should load
    rate: float = 0.0
    dividend_yield: float = 0.0
    rsi: RsiConfig = field(default_factory=RsiConfig)
    macd: MacdConfig = field(default_factory=MacdConfig)
    bollinger: BollingerConfig = field(default_factory=BollingerConfig)
    momentum: MomentumConfig = field(default_factory=MomentumConfig)
    iv: IVConfig = field(default_factory=IVConfig)
    skew: SkewConfig = field(default_factory=SkewConfig)
    earnings: EarningsConfig = field(default_factory=EarningsConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    exits: Mag7ExitConfig = field(default_factory=Mag7ExitConfig)
    liquidity: LiquidityRules = field(default_factory=LiquidityRules)
    walk: WalkRules = field(default_factory=WalkRules)

    def with_overrides(self, overrides: Mapping[str, Any]) -> Mag7Config:
        """A copy with top-level fields replaced; unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"unknown Mag7 settings: {', '.join(unknown)}")
        return dataclasses.replace(self, **dict(overrides))


DEFAULT = Mag7Config()
