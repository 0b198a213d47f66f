"""Smart-0DTE regime and the three signal families, on 1-minute bars of the day (pure).

Realised volatility is annualised on calendar minutes (``core.pricing.MINUTES_PER_YEAR``), the same
clock the implied vols are solved on, so "realised vs implied" compares like with like.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

import numpy as np

from core.chains import ChainAnalysis, ChainError
from core.marketdata import Bars, FloatArray
from core.models import Direction, SignalKind
from core.pricing import MINUTES_PER_YEAR
from systems.smart0dte.config import (
    DivergenceConfig,
    MomentumConfig,
    RegimeConfig,
    VolatilityConfig,
)


class Regime(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    NO_ENTRY = "no_entry"


def classify_regime(vix: float, cfg: RegimeConfig) -> Regime:
    if not math.isfinite(vix) or vix <= 0:
        raise ValueError(f"VIX must be a positive number, got {vix}")
    if vix >= cfg.no_entry_from:
        return Regime.NO_ENTRY
    if vix >= cfg.high_from:
        return Regime.HIGH
    if vix < cfg.low_below:
        return Regime.LOW
    return Regime.NORMAL


def regime_factor(regime: Regime, cfg: RegimeConfig) -> Decimal:
    return {
        Regime.LOW: cfg.low_factor,
        Regime.NORMAL: cfg.normal_factor,
        Regime.HIGH: cfg.high_factor,
        Regime.NO_ENTRY: Decimal("0"),
    }[regime]


@dataclass(frozen=True, slots=True, eq=False)
class UnderlyingView:
    """What the strategy sees of one underlying at one minute."""

    symbol: str
    bars: Bars  # today's completed 1-minute bars
    prior_close: float
    analysis: ChainAnalysis | None  # the same-day expiry chain, None when not listed / missing
    unavailable: str = ""  # why ``analysis`` is None

    @property
    def last(self) -> float:
        return float(self.bars.close[-1])

    @property
    def day_open(self) -> float:
        return float(self.bars.open[0])


@dataclass(frozen=True, slots=True)
class SignalCandidate:
    kind: SignalKind
    underlying: str
    direction: Direction
    confidence: float
    reason: str


def log_returns(closes: FloatArray) -> FloatArray:
    out: FloatArray = np.diff(np.log(closes))
    return out


def realized_vol(closes: FloatArray, window: int) -> float:
    """Annualised (calendar-minute) vol of the last ``window`` 1-minute log returns."""
    if closes.shape[0] < window + 1:
        raise ValueError(f"need {window + 1} closes, have {closes.shape[0]}")
    rets = log_returns(closes[-(window + 1) :])
    return _std(rets, ddof=1) * math.sqrt(MINUTES_PER_YEAR)


def momentum(view: UnderlyingView, cfg: MomentumConfig) -> SignalCandidate | None:
    """Move since the open vs the implied move; the last ``confirm_minutes`` must agree in sign."""
    if view.analysis is None or len(view.bars) <= cfg.confirm_minutes:
        return None
    try:
        implied = view.analysis.implied_move()
    except ChainError:
        return None
    if implied <= 0:
        return None
    move = view.last / view.day_open - 1.0
    recent = view.last / float(view.bars.close[-1 - cfg.confirm_minutes]) - 1.0
    ratio = abs(move) / implied
    if ratio < cfg.min_move_vs_implied or move * recent <= 0:
        return None
    confidence = min(cfg.confidence_cap, cfg.confidence_base + cfg.confidence_slope * ratio)
    direction = Direction.BULLISH if move > 0 else Direction.BEARISH
    return SignalCandidate(
        SignalKind.MOMENTUM,
        view.symbol,
        direction,
        confidence,
        f"move {move:+.3%} since open = {ratio:.2f}x implied move {implied:.3%}; "
        f"last {cfg.confirm_minutes}m {recent:+.3%}",
    )


def _aligned_closes(a: Bars, b: Bars, n: int) -> tuple[FloatArray, FloatArray] | None:
    """The last ``n`` closes of both series on common bar times, or None if too few."""
    if a.times == b.times and all(map(operator.lt, a.times, a.times[1:])):
        # the usual case, both series have every minute: the common times are all of them
        if len(a.times) < n:
            return None
        return (
            np.array(a.close[-n:], dtype=np.float64),
            np.array(b.close[-n:], dtype=np.float64),
        )
    common = sorted(set(a.times) & set(b.times))
    if len(common) < n:
        return None
    index_a = {t: i for i, t in enumerate(a.times)}
    index_b = {t: i for i, t in enumerate(b.times)}
    keep = common[-n:]
    ca = np.array([a.close[index_a[t]] for t in keep], dtype=np.float64)
    cb = np.array([b.close[index_b[t]] for t in keep], dtype=np.float64)
    return ca, cb


def _squared_deviations(x: FloatArray) -> float:
    """Sum of squared deviations from the mean: ``np.var(x) * len(x)`` by numpy's own steps
    (pairwise sums), without ``np.var``'s argument handling, which costs more than the work at
    a signal window's size."""
    d = x - np.add.reduce(x) / x.shape[0]
    return float(np.add.reduce(d * d))


def _std(x: FloatArray, ddof: int = 0) -> float:
    """``np.std(x, ddof=ddof)`` of a 1-d float array, bit for bit (test); NaN without degrees
    of freedom."""
    if x.shape[0] <= ddof:
        return math.nan
    return math.sqrt(_squared_deviations(x) / (x.shape[0] - ddof))


def _corr(x: FloatArray, y: FloatArray) -> float:
    """Pearson correlation, 0 when either series is constant: ``np.corrcoef(x, y)[0, 1]`` by
    its own steps (row means, one BLAS product, 1/(n-1), the two scalings, the clip), bit for
    bit (test)."""
    if _std(x) == 0 or _std(y) == 0:
        return 0.0
    m = np.array([x, y])
    m -= (np.add.reduce(m, axis=1) / m.shape[1])[:, None]
    c = np.dot(m, m.T.conj())
    c *= np.true_divide(1, m.shape[1] - 1)
    r = float(c[0, 1] / math.sqrt(c[0, 0]) / math.sqrt(c[1, 1]))
    return min(max(r, -1.0), 1.0)


def _episode_start(spread: FloatArray) -> int:
    """Index of the return where the spread last crossed to its current side of the mean."""
    dev = spread - float(np.mean(spread))
    side = np.sign(dev[-1])
    other = np.nonzero(np.sign(dev) != side)[0]
    return int(other[-1]) + 1 if other.size else 0


def divergence(views: Mapping[str, UnderlyingView], cfg: DivergenceConfig) -> list[SignalCandidate]:
    """Pairs whose cumulative return spread is |z| >= threshold while still correlated.

    The divergence episode starts where the spread last crossed its window mean; the leader is the
    member with the larger absolute move during the episode and the laggard is expected to follow
    it, so the trade is on the laggard in the leader's direction, and only when the spread's sign
    agrees (the leader really did out-move the laggard in that direction).
    """
    out: list[SignalCandidate] = []
    for first, second in cfg.pairs:
        if first not in views or second not in views:
            continue
        aligned = _aligned_closes(views[first].bars, views[second].bars, cfg.z_window + 1)
        if aligned is None:
            continue
        ca, cb = aligned
        ra, rb = log_returns(ca), log_returns(cb)
        corr_long = _corr(ra, rb)
        corr_short = _corr(ra[-cfg.corr_window :], rb[-cfg.corr_window :])
        if corr_long < cfg.min_correlation:
            continue
        spread = np.cumsum(ra) - np.cumsum(rb)
        sd = _std(spread, ddof=1)
        if sd == 0:
            continue
        z = (float(spread[-1]) - float(np.mean(spread))) / sd
        if abs(z) < cfg.z_threshold:
            continue
        episode = _episode_start(spread)
        move_a = float(np.sum(ra[episode:]))
        move_b = float(np.sum(rb[episode:]))
        leader, laggard, lead_move = (
            (first, second, move_a) if abs(move_a) >= abs(move_b) else (second, first, move_b)
        )
        if lead_move == 0:
            continue
        leader_is_first = leader == first
        spread_favours_leader = (z > 0) == leader_is_first
        if (lead_move > 0) != spread_favours_leader:
            continue
        confidence = min(
            cfg.confidence_cap,
            cfg.confidence_base + cfg.confidence_slope * (abs(z) - cfg.z_threshold),
        )
        direction = Direction.BULLISH if lead_move > 0 else Direction.BEARISH
        out.append(
            SignalCandidate(
                SignalKind.DIVERGENCE,
                laggard,
                direction,
                confidence,
                f"{first}-{second} spread z={z:+.2f} over {cfg.z_window} bars, corr "
                f"{corr_long:.2f} ({cfg.corr_window}-bar {corr_short:.2f}); {leader} led "
                f"{lead_move:+.3%}, {laggard} expected to follow",
            )
        )
    return out


def volatility(
    view: UnderlyingView,
    vix_last: float,
    vix_prior_close: float,
    regime: Regime,
    cfg: VolatilityConfig,
) -> SignalCandidate | None:
    """Contraction -> iron condor (neutral); expansion -> long straddle (neutral, long vol)."""
    if view.analysis is None or len(view.bars) < cfg.realized_window + 1:
        return None
    try:
        atm_iv = view.analysis.atm_iv()
        implied = view.analysis.implied_move()
    except ChainError:
        return None
    if not math.isfinite(atm_iv) or atm_iv <= 0:
        return None
    rv = realized_vol(view.bars.close, cfg.realized_window)
    ratio = rv / atm_iv
    vix_change = vix_last / vix_prior_close - 1.0 if vix_prior_close > 0 else 0.0
    expansion_strength = max(
        (ratio - cfg.expansion_ratio) / cfg.expansion_ratio if ratio > cfg.expansion_ratio else -1,
        (vix_change - cfg.vix_up_fraction) / cfg.vix_up_fraction
        if vix_change >= cfg.vix_up_fraction
        else -1,
    )
    if expansion_strength >= 0:
        confidence = min(
            cfg.confidence_cap,
            cfg.confidence_base + cfg.confidence_slope * min(1.0, expansion_strength),
        )
        return SignalCandidate(
            SignalKind.VOL_EXPANSION,
            view.symbol,
            Direction.NEUTRAL,
            confidence,
            f"realised {rv:.1%} vs ATM implied {atm_iv:.1%} (x{ratio:.2f}); VIX {vix_change:+.1%} "
            "on the day",
        )
    drift = abs(view.last / view.day_open - 1.0)
    calm_regime = regime in (Regime.LOW, Regime.NORMAL)
    if (
        ratio < cfg.contraction_ratio
        and calm_regime
        and drift <= cfg.max_drift_vs_implied * implied
    ):
        strength = (cfg.contraction_ratio - ratio) / cfg.contraction_ratio
        confidence = min(cfg.confidence_cap, cfg.confidence_base + cfg.confidence_slope * strength)
        return SignalCandidate(
            SignalKind.VOL_CONTRACTION,
            view.symbol,
            Direction.NEUTRAL,
            confidence,
            f"realised {rv:.1%} < {cfg.contraction_ratio} x ATM implied {atm_iv:.1%}; drift "
            f"{drift:.3%} within {cfg.max_drift_vs_implied} x implied move {implied:.3%}",
        )
    return None
