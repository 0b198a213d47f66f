"""Mag7-7DTE signals on daily bars (pure): one vote per strategy, then the weighted ensemble.

Every strategy returns a ``Vote`` (direction, confidence in [0, 1], reason). A strategy that does
not fire, lacks data or is switched off votes ``NEUTRAL`` with confidence 0 and says why; neutral
votes take no part in the directional ensemble.

Confidence formulas (constants in ``config.py``): ``min(cap, base + slope * strength)`` with
``strength`` >= 0 measuring how far past its trigger the indicator is, so each confidence is
monotone in the signal's strength, equals ``base`` exactly at the trigger and never exceeds
``cap``:

* RSI: strength = RSI points beyond 30 (or 70).
* MACD: strength = |histogram| as a percentage of the last close.
* Bollinger: strength = distance beyond the band in band widths (-%B, or %B - 1).
* Momentum: move_slope * (|change| / 5% - 1) + adx_slope * (ADX - 25) / 25.
* IV: strength = (level - 80) / 20 above, (20 - level) / 20 below; x 0.8 on the IV/HV fallback.
* Skew: strength = |skew| / 0.15 - 1.
* Earnings: strength = |last surprise| / min_surprise - 1.

Ensemble (``ensemble``): with V the directional votes and A_d those for direction d,
``C_d = sum(w_i c_i for i in A_d) / sum(w_i for i in V)``; direction d is emitted when
``|A_d| >= 2`` and ``C_d >= 0.60``. Neutral (for the iron condor) when no direction is emitted, no
direction holds a majority (>= 2 votes and more votes than the other side) and the IV level is
>= 70; its confidence rises from 0.60 at level 70 to 0.80 at 100.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from core.chains import ChainAnalysis, ChainError
from core.indicators import (
    adx,
    bollinger,
    crossovers,
    historical_vol,
    macd,
    momentum,
    percentile_rank,
    range_rank,
    rsi,
)
from core.marketdata import Bars, FloatArray
from core.models import Direction, Right
from systems.mag7.config import (
    BollingerConfig,
    EarningsConfig,
    EnsembleConfig,
    IVConfig,
    IVMeasure,
    MacdConfig,
    Mag7Config,
    MomentumConfig,
    RsiConfig,
    SkewConfig,
    Strategy,
)

# Units, not strategy parameters: IV levels (rank/percentile) live on a 0..100 scale, and the
# MACD histogram is read as a percentage of the price.
LEVEL_MAX = 100.0
PERCENT = 100.0


@dataclass(frozen=True, slots=True)
class Vote:
    strategy: Strategy
    direction: Direction
    confidence: float
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if self.direction is Direction.NEUTRAL and self.confidence != 0.0:
            raise ValueError("a neutral vote carries no confidence")

    @property
    def directional(self) -> bool:
        return self.direction is not Direction.NEUTRAL


def _neutral(strategy: Strategy, reason: str) -> Vote:
    return Vote(strategy, Direction.NEUTRAL, 0.0, reason)


def _confidence(base: float, slope: float, strength: float, cap: float) -> float:
    """min(cap, base + slope * strength), clipped to [0, 1]; strength < 0 counts as 0."""
    return max(0.0, min(cap, base + slope * max(0.0, strength), 1.0))


def _last(values: FloatArray) -> float:
    return float(values[-1]) if values.shape[0] else math.nan


# --------------------------------------------------------------------------- RSI


def vote_rsi(value: float, cfg: RsiConfig) -> Vote:
    """RSI <= oversold -> bullish (reversion up); >= overbought -> bearish."""
    if not math.isfinite(value):
        return _neutral(Strategy.RSI, f"RSI({cfg.period}) needs {cfg.period + 1} closes")
    if value <= cfg.oversold:
        conf = _confidence(
            cfg.confidence_base, cfg.confidence_slope, cfg.oversold - value, cfg.confidence_cap
        )
        return Vote(Strategy.RSI, Direction.BULLISH, conf, f"RSI {value:.2f} <= {cfg.oversold:g}")
    if value >= cfg.overbought:
        conf = _confidence(
            cfg.confidence_base, cfg.confidence_slope, value - cfg.overbought, cfg.confidence_cap
        )
        return Vote(Strategy.RSI, Direction.BEARISH, conf, f"RSI {value:.2f} >= {cfg.overbought:g}")
    return _neutral(Strategy.RSI, f"RSI {value:.2f} inside {cfg.oversold:g}..{cfg.overbought:g}")


def rsi_vote(close: FloatArray, cfg: RsiConfig) -> Vote:
    return vote_rsi(_last(rsi(close, cfg.period)), cfg)


# --------------------------------------------------------------------------- MACD


def vote_macd(line: FloatArray, signal: FloatArray, close: float, cfg: MacdConfig) -> Vote:
    """The most recent line/signal cross within ``crossover_lookback`` bars, if the histogram
    still has its sign (a cross that has already reversed is stale)."""
    hist = line - signal
    if line.shape[0] < 2 or not math.isfinite(_last(hist)) or close <= 0:
        need = cfg.slow + cfg.signal
        return _neutral(Strategy.MACD, f"MACD({cfg.fast},{cfg.slow},{cfg.signal}) needs {need}")
    marks = crossovers(line, signal)
    recent = marks[-cfg.crossover_lookback :]
    hits = np.flatnonzero(recent)
    if hits.size == 0:
        return _neutral(Strategy.MACD, f"no MACD crossover in the last {cfg.crossover_lookback}")
    cross = int(recent[int(hits[-1])])
    bars_ago = int(recent.shape[0] - 1 - int(hits[-1]))
    last_hist = _last(hist)
    if (cross > 0) != (last_hist > 0) or last_hist == 0:
        return _neutral(Strategy.MACD, "MACD crossover already reversed")
    pct = abs(last_hist) / close * PERCENT
    conf = _confidence(cfg.confidence_base, cfg.confidence_slope, pct, cfg.confidence_cap)
    direction = Direction.BULLISH if cross > 0 else Direction.BEARISH
    side = "above" if cross > 0 else "below"
    return Vote(
        Strategy.MACD,
        direction,
        conf,
        f"MACD crossed {side} its signal {bars_ago} bar(s) ago; histogram {last_hist:+.4f} "
        f"({pct:.2f}% of price)",
    )


def macd_vote(close: FloatArray, cfg: MacdConfig) -> Vote:
    out = macd(close, cfg.fast, cfg.slow, cfg.signal)
    return vote_macd(out.line, out.signal, _last(close), cfg)


# --------------------------------------------------------------------------- Bollinger


def vote_bollinger(close: float, upper: float, lower: float, cfg: BollingerConfig) -> Vote:
    """Close on/below the lower band -> bullish; on/above the upper band -> bearish."""
    width = upper - lower
    if not (math.isfinite(close) and math.isfinite(width)) or width <= 0:
        return _neutral(Strategy.BOLLINGER, f"Bollinger({cfg.period}) has no band width yet")
    pct_b = (close - lower) / width
    if close <= lower:
        conf = _confidence(cfg.confidence_base, cfg.confidence_slope, -pct_b, cfg.confidence_cap)
        return Vote(
            Strategy.BOLLINGER,
            Direction.BULLISH,
            conf,
            f"close {close:.2f} <= lower band {lower:.2f} (%B {pct_b:.2f})",
        )
    if close >= upper:
        conf = _confidence(
            cfg.confidence_base, cfg.confidence_slope, pct_b - 1.0, cfg.confidence_cap
        )
        return Vote(
            Strategy.BOLLINGER,
            Direction.BEARISH,
            conf,
            f"close {close:.2f} >= upper band {upper:.2f} (%B {pct_b:.2f})",
        )
    return _neutral(Strategy.BOLLINGER, f"close inside the bands (%B {pct_b:.2f})")


def bollinger_vote(close: FloatArray, cfg: BollingerConfig) -> Vote:
    bands = bollinger(close, cfg.period, cfg.num_std, cfg.ddof)
    return vote_bollinger(_last(close), _last(bands.upper), _last(bands.lower), cfg)


# --------------------------------------------------------------------------- momentum


def vote_momentum(change: float, adx_value: float, cfg: MomentumConfig) -> Vote:
    """|n-bar change| >= threshold (inclusive) in a trend (ADX > threshold, strict)."""
    if not (math.isfinite(change) and math.isfinite(adx_value)):
        need = max(cfg.period + 1, 2 * cfg.adx_period)
        return _neutral(Strategy.MOMENTUM, f"momentum/ADX need {need} bars")
    if abs(change) < cfg.threshold:
        return _neutral(
            Strategy.MOMENTUM, f"{cfg.period}-bar change {change:+.2%} under {cfg.threshold:.0%}"
        )
    if adx_value <= cfg.adx_threshold:
        return _neutral(
            Strategy.MOMENTUM,
            f"{cfg.period}-bar change {change:+.2%} but ADX {adx_value:.1f} <= "
            f"{cfg.adx_threshold:g} (no trend)",
        )
    strength_move = abs(change) / cfg.threshold - 1.0
    strength_adx = (adx_value - cfg.adx_threshold) / cfg.adx_threshold
    conf = max(
        0.0,
        min(
            cfg.confidence_cap,
            cfg.confidence_base + cfg.move_slope * strength_move + cfg.adx_slope * strength_adx,
            1.0,
        ),
    )
    direction = Direction.BULLISH if change > 0 else Direction.BEARISH
    return Vote(
        Strategy.MOMENTUM,
        direction,
        conf,
        f"{cfg.period}-bar change {change:+.2%} with ADX({cfg.adx_period}) {adx_value:.1f}",
    )


def momentum_vote(bars: Bars, cfg: MomentumConfig) -> Vote:
    trend = adx(bars.high, bars.low, bars.close, cfg.adx_period)
    return vote_momentum(_last(momentum(bars.close, cfg.period)), _last(trend.adx), cfg)


# --------------------------------------------------------------------------- IV level


class IVMethod(StrEnum):
    RANK = "iv_rank"
    PERCENTILE = "iv_percentile"
    IV_HV_RATIO = "iv_hv_ratio"  # fallback until a year of IV history exists
    UNAVAILABLE = "unavailable"


@dataclass(frozen=True, slots=True)
class IVAssessment:
    """How rich options are for one underlying, on a 0..100 ``level`` scale, and how it was found.

    ``method`` says which measure produced ``level``: the IV rank/percentile of the stored history
    or, with less than ``min_history_sessions`` of it, the IV/HV(20) ratio mapped onto 0..100.
    """

    method: IVMethod
    level: float
    current_iv: float
    history_sessions: int
    rank: float = math.nan
    percentile: float = math.nan
    hv: float = math.nan
    ratio: float = math.nan
    reason: str = ""

    @property
    def available(self) -> bool:
        return self.method is not IVMethod.UNAVAILABLE and math.isfinite(self.level)

    @property
    def is_fallback(self) -> bool:
        return self.method is IVMethod.IV_HV_RATIO


def ratio_level(ratio: float, cfg: IVConfig) -> float:
    """IV/HV ratio -> 0..100: ratio_low -> cfg.low, ratio_high -> cfg.high, linear, clamped."""
    span = cfg.ratio_high - cfg.ratio_low
    level = cfg.low + (ratio - cfg.ratio_low) / span * (cfg.high - cfg.low)
    return max(0.0, min(LEVEL_MAX, level))


def assess_iv(
    iv_history: npt.ArrayLike,
    close: FloatArray,
    cfg: IVConfig,
    current_iv: float | None = None,
) -> IVAssessment:
    """IV level from the stored daily 30-day ATM IV history (oldest first, today's value last).

    ``current_iv`` replaces the history's last value as "today" when given (e.g. when today's IV is
    not stored yet). Non-finite or non-positive stored values are dropped.
    """
    hist = np.asarray(iv_history, dtype=np.float64)
    hist = hist[np.isfinite(hist) & (hist > 0)]
    if current_iv is not None and math.isfinite(current_iv) and current_iv > 0:
        hist = np.append(hist, current_iv)
    n = int(hist.shape[0])
    if n == 0:
        return IVAssessment(IVMethod.UNAVAILABLE, math.nan, math.nan, 0, reason="no IV data")
    iv_now = float(hist[-1])
    if n >= cfg.min_history_sessions:
        window = min(cfg.window, n)
        rank = range_rank(hist, window)
        pct = percentile_rank(hist, window)
        use_rank = cfg.measure is IVMeasure.RANK
        level = rank if use_rank else pct
        method = IVMethod.RANK if use_rank else IVMethod.PERCENTILE
        return IVAssessment(
            method,
            level,
            iv_now,
            n,
            rank=rank,
            percentile=pct,
            reason=f"{method.value} {level:.1f} of 30d ATM IV {iv_now:.1%} over {window} sessions",
        )
    hv = _last(historical_vol(close, cfg.hv_period, cfg.periods_per_year, cfg.hv_ddof))
    if not math.isfinite(hv) or hv <= 0:
        return IVAssessment(
            IVMethod.UNAVAILABLE,
            math.nan,
            iv_now,
            n,
            hv=hv,
            reason=f"only {n} IV sessions (< {cfg.min_history_sessions}) and no HV({cfg.hv_period})",
        )
    ratio = iv_now / hv
    level = ratio_level(ratio, cfg)
    return IVAssessment(
        IVMethod.IV_HV_RATIO,
        level,
        iv_now,
        n,
        hv=hv,
        ratio=ratio,
        reason=(
            f"IV/HV fallback (only {n} of {cfg.min_history_sessions} IV sessions): IV {iv_now:.1%}"
            f" / HV({cfg.hv_period}) {hv:.1%} = {ratio:.2f} -> level {level:.1f}"
        ),
    )


def vote_iv(assessment: IVAssessment, cfg: IVConfig) -> Vote:
    """Contrarian: level >= high -> bullish (fear priced in), <= low -> bearish (complacency)."""
    if not assessment.available:
        return _neutral(Strategy.IV, f"IV level unavailable: {assessment.reason}")
    level = assessment.level
    factor = cfg.fallback_confidence_factor if assessment.is_fallback else 1.0
    tag = f"[{assessment.method.value}] {assessment.reason}"
    if level >= cfg.high:
        strength = (level - cfg.high) / (LEVEL_MAX - cfg.high)
        conf = factor * _confidence(
            cfg.confidence_base, cfg.confidence_slope, strength, cfg.confidence_cap
        )
        return Vote(Strategy.IV, Direction.BULLISH, conf, f"IV rich (>= {cfg.high:g}): {tag}")
    if level <= cfg.low:
        strength = (cfg.low - level) / cfg.low
        conf = factor * _confidence(
            cfg.confidence_base, cfg.confidence_slope, strength, cfg.confidence_cap
        )
        return Vote(Strategy.IV, Direction.BEARISH, conf, f"IV cheap (<= {cfg.low:g}): {tag}")
    return _neutral(Strategy.IV, f"IV level between {cfg.low:g} and {cfg.high:g}: {tag}")


# --------------------------------------------------------------------------- skew


@dataclass(frozen=True, slots=True)
class SkewReading:
    skew: float
    put_iv: float
    call_iv: float
    atm_iv: float
    put_delta: float
    call_delta: float


def measure_skew(analysis: ChainAnalysis, cfg: SkewConfig) -> SkewReading:
    """25-delta put and call IVs (nearest liquid listed strikes) and their skew.

    Raises ChainError when no liquid contract is within ``max_delta_error`` of the target.
    """
    put_i = analysis.select_by_delta(Right.PUT, cfg.target_delta)
    call_i = analysis.select_by_delta(Right.CALL, cfg.target_delta)
    if put_i is None or call_i is None:
        raise ChainError("no liquid puts/calls to read the skew")
    put_delta = abs(float(analysis.delta[put_i]))
    call_delta = abs(float(analysis.delta[call_i]))
    for label, got in (("put", put_delta), ("call", call_delta)):
        if abs(got - cfg.target_delta) > cfg.max_delta_error:
            raise ChainError(
                f"nearest liquid {label} has |delta| {got:.2f}, not within "
                f"{cfg.max_delta_error} of {cfg.target_delta}"
            )
    put_iv = float(analysis.iv[put_i])
    call_iv = float(analysis.iv[call_i])
    atm_iv = analysis.atm_iv()
    diff = put_iv - call_iv
    if cfg.normalise_by_atm:
        if not math.isfinite(atm_iv) or atm_iv <= 0:
            raise ChainError("no ATM IV to normalise the skew")
        diff /= atm_iv
    return SkewReading(diff, put_iv, call_iv, atm_iv, put_delta, call_delta)


def vote_skew(skew: float, cfg: SkewConfig, detail: str = "") -> Vote:
    """skew >= threshold (puts bid) -> bearish; <= -threshold (calls bid) -> bullish."""
    if not math.isfinite(skew):
        return _neutral(Strategy.SKEW, "no skew reading")
    strength = abs(skew) / cfg.threshold - 1.0
    text = f"25d put-call skew {skew:+.3f}{detail}"
    if skew >= cfg.threshold:
        conf = _confidence(cfg.confidence_base, cfg.confidence_slope, strength, cfg.confidence_cap)
        return Vote(Strategy.SKEW, Direction.BEARISH, conf, f"{text} >= {cfg.threshold:g}")
    if skew <= -cfg.threshold:
        conf = _confidence(cfg.confidence_base, cfg.confidence_slope, strength, cfg.confidence_cap)
        return Vote(Strategy.SKEW, Direction.BULLISH, conf, f"{text} <= -{cfg.threshold:g}")
    return _neutral(Strategy.SKEW, f"{text} within +-{cfg.threshold:g}")


def skew_vote(analysis: ChainAnalysis | None, cfg: SkewConfig) -> Vote:
    if analysis is None:
        return _neutral(Strategy.SKEW, "no chain for the chosen expiry")
    try:
        reading = measure_skew(analysis, cfg)
    except ChainError as exc:
        return _neutral(Strategy.SKEW, f"no skew: {exc}")
    kind = "/ATM IV" if cfg.normalise_by_atm else ""
    detail = (
        f" (put {reading.put_iv:.1%} @ {reading.put_delta:.2f}d - call {reading.call_iv:.1%} @ "
        f"{reading.call_delta:.2f}d{kind} {reading.atm_iv:.1%})"
    )
    return vote_skew(reading.skew, cfg, detail)


# --------------------------------------------------------------------------- earnings drift


@dataclass(frozen=True, slots=True)
class EarningsHistory:
    """From the fundamentals feed: the last report's date and the EPS surprises (fractions of the
    estimate, oldest first, the last one being ``last_report``'s)."""

    last_report: date
    surprises: tuple[float, ...]


def vote_earnings(history: EarningsHistory | None, today: date, cfg: EarningsConfig) -> Vote:
    """Post-earnings drift in the direction of a consistent beat (or miss) history."""
    if not cfg.calendar_configured:
        return _neutral(Strategy.EARNINGS, "off: no real earnings calendar configured")
    if history is None or not history.surprises:
        return _neutral(Strategy.EARNINGS, "no beat history")
    age = (today - history.last_report).days
    if age < 0 or age > cfg.drift_window_days:
        return _neutral(
            Strategy.EARNINGS,
            f"last report {history.last_report} is {age} days old (window {cfg.drift_window_days})",
        )
    recent = history.surprises[-cfg.lookback_quarters :]
    last = recent[-1]
    beats = sum(1 for s in recent if s > 0) / len(recent)
    misses = sum(1 for s in recent if s < 0) / len(recent)
    strength = abs(last) / cfg.min_surprise - 1.0
    conf = _confidence(cfg.confidence_base, cfg.confidence_slope, strength, cfg.confidence_cap)
    text = f"last surprise {last:+.1%}, beats {beats:.0%} / misses {misses:.0%} of {len(recent)}q"
    if last >= cfg.min_surprise and beats >= cfg.min_beat_rate:
        return Vote(Strategy.EARNINGS, Direction.BULLISH, conf, f"post-beat drift: {text}")
    if last <= -cfg.min_surprise and misses >= cfg.min_beat_rate:
        return Vote(Strategy.EARNINGS, Direction.BEARISH, conf, f"post-miss drift: {text}")
    return _neutral(Strategy.EARNINGS, f"no consistent surprise: {text}")


# --------------------------------------------------------------------------- all votes


def all_votes(
    bars: Bars,
    iv: IVAssessment,
    analysis: ChainAnalysis | None,
    earnings: EarningsHistory | None,
    today: date,
    cfg: Mag7Config,
) -> tuple[Vote, ...]:
    """Every strategy's vote for one underlying (daily bars oldest first)."""
    close = bars.close
    return (
        rsi_vote(close, cfg.rsi),
        macd_vote(close, cfg.macd),
        bollinger_vote(close, cfg.bollinger),
        momentum_vote(bars, cfg.momentum),
        vote_iv(iv, cfg.iv),
        skew_vote(analysis, cfg.skew),
        vote_earnings(earnings, today, cfg.earnings),
    )


# --------------------------------------------------------------------------- ensemble


@dataclass(frozen=True, slots=True)
class EnsembleResult:
    """``direction`` None means no signal. ``iv`` says which IV method fed the IV vote and level."""

    direction: Direction | None
    confidence: float
    bullish_score: float  # C_bull
    bearish_score: float  # C_bear
    agreeing: tuple[Strategy, ...]
    votes: tuple[Vote, ...]
    iv: IVAssessment
    reason: str

    @property
    def emitted(self) -> bool:
        return self.direction is not None


def ensemble(votes: Sequence[Vote], iv: IVAssessment, cfg: EnsembleConfig) -> EnsembleResult:
    """Weighted agreement of the directional votes; neutral bias by the rule in the module doc."""
    directional = [v for v in votes if v.directional]
    total_weight = sum(cfg.weights.get(v.strategy, 0.0) for v in directional)
    scores: dict[Direction, float] = {}
    members: dict[Direction, tuple[Strategy, ...]] = {}
    for d in (Direction.BULLISH, Direction.BEARISH):
        agree = [v for v in directional if v.direction is d]
        members[d] = tuple(v.strategy for v in agree)
        weighted = sum(cfg.weights.get(v.strategy, 0.0) * v.confidence for v in agree)
        scores[d] = weighted / total_weight if total_weight > 0 else 0.0
    bull, bear = scores[Direction.BULLISH], scores[Direction.BEARISH]
    summary = (
        f"bullish {len(members[Direction.BULLISH])} votes C={bull:.4f}, "
        f"bearish {len(members[Direction.BEARISH])} votes C={bear:.4f}"
    )
    for d in (Direction.BULLISH, Direction.BEARISH):
        if len(members[d]) >= cfg.min_agree and scores[d] >= cfg.min_confidence - cfg.tolerance:
            return EnsembleResult(
                d,
                min(1.0, scores[d]),
                bull,
                bear,
                members[d],
                tuple(votes),
                iv,
                f"{d.value}: {', '.join(s.value for s in members[d])} agree; {summary}",
            )
    n_bull, n_bear = len(members[Direction.BULLISH]), len(members[Direction.BEARISH])
    majority = (n_bull >= cfg.min_agree and n_bull > n_bear) or (
        n_bear >= cfg.min_agree and n_bear > n_bull
    )
    if not majority and iv.available and iv.level >= cfg.neutral_min_iv_level:
        strength = (iv.level - cfg.neutral_min_iv_level) / (LEVEL_MAX - cfg.neutral_min_iv_level)
        conf = _confidence(
            cfg.neutral_confidence_base,
            cfg.neutral_confidence_slope,
            strength,
            cfg.neutral_confidence_cap,
        )
        return EnsembleResult(
            Direction.NEUTRAL,
            conf,
            bull,
            bear,
            (),
            tuple(votes),
            iv,
            f"neutral: no directional majority and IV level {iv.level:.1f} >= "
            f"{cfg.neutral_min_iv_level:g} ({iv.method.value}); {summary}",
        )
    why = (
        "directional majority below the confidence threshold"
        if majority
        else f"no majority and IV level {iv.level:.1f} < {cfg.neutral_min_iv_level:g}"
    )
    return EnsembleResult(
        None,
        max(bull, bear),
        bull,
        bear,
        (),
        tuple(votes),
        iv,
        f"no signal ({why}, need {cfg.min_agree} agreeing and C >= {cfg.min_confidence}); "
        f"{summary}",
    )
