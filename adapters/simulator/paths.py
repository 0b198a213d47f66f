"""Seeded synthetic prices: the daily process, the intraday 1-minute paths, and the configuration.

Model (every number is a field of ``SimulatorConfig``; nothing below is a literal in the logic)
-----------------------------------------------------------------------------------------------

**Symbols.** The ETFs of ``SimulatorConfig.underlyings`` (default SPY, QQQ, IWM) and the index
``vix_symbol`` (VIX: bars only, no chain, zero volume). Each ETF has an ``UnderlyingSpec``: its close
before the anchor date, its ATM implied vol as a multiple of VIX, strike grid, expiry weekdays,
volume, option spread and open-interest scales. The Mag7 stocks (``mag7``: a
``Mag7MarketConfig``) are modelled in ``adapters.simulator.mag7`` on top of this module, from their
own random streams; nothing here depends on them.

**Daily process (levels from day to day).** Every session ``d`` has its own daily draw from
``SeedSequence([seed, d.toordinal(), code("daily")])``: two correlated normal vectors (overnight gap and
day move, correlated by the Cholesky factor of ``correlations``), the day's regime and its parameters,
and a VIX spike. The VIX log close is a stationary AR(1) around ``log(vix_base)`` written as its
moving-average sum over the last ``vix_window_days`` daily shocks (persistence ``vix_persistence``,
shock sd ``vix_daily_vol`` plus rare up-spikes), so it needs no anchor and mean-reverts. ETF closes
are a random walk *from the anchor*: the close of the session before ``anchor_date`` is the
``base_price``; each later session adds its gap and its open-to-close move
(``log_close = (log_prior + gap) + move``), each earlier session subtracts them. So different dates
give different, persistent levels and ``prior_close(d)`` is exactly the last 1-minute close of the
previous session. Realised annual vol of an ETF = VIX/100 x ``iv_multiplier`` x ``rv_to_iv`` (the
variance risk premium) x the regime's vol multiplier; a share ``overnight_variance_share`` of a day's
variance is in the overnight gap (more over weekends/holidays: ``nontrading_day_variance_weight`` per
extra calendar day).

**Regimes** (one per day, common to all ETFs): ``calm`` (lower vol), ``normal``, ``trend`` (the day's
open-to-close move is ``trend_strength`` daily sigmas in one direction plus noise: momentum) and
``revert`` (a morning excursion of ``revert_amplitude`` sigmas peaking at ``revert_peak`` of the
session, then reverting). Probabilities ``p_calm``, ``p_trend``, ``p_revert``; normal is the rest.

**Intraday paths.** One path per session from its open to its close (``core.calendar.session``: 390
minutes, 210 on an early close). Per minute: correlated normals (same Cholesky factor; VIX moves
inversely to SPY), a U-shaped variance weight (``u_open_amplitude``, ``u_close_amplitude``,
``u_width``), a stochastic log-OU vol factor (``volvol``, ``volvol_half_life_minutes``) times the
intraday VIX level (vol rises when VIX rises), Poisson jumps common to the ETFs (``jump_prob``,
``jump_size_sigmas``; VIX jumps the other way), and occasional divergence episodes: one ETF misses a
common move of ``divergence_move_sigmas`` for 30-90 minutes, then catches up in 5-15 minutes. The
free path is then bridged to the day's open-to-close move along its variance clock, so the intraday
close is exactly the daily process close. High/low come from the exact distribution of a Brownian
bridge's extremes within the minute; volume is U-shaped (higher into the close) with noise.

Every day is generated whole, lazily, from streams seeded by ``(seed, date, code(symbol or tag))``,
and cached on the engine: the same seed and date give bit-identical paths in any call order.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from types import MappingProxyType

import numpy as np

from adapters.simulator.mag7_config import Mag7MarketConfig
from core import calendar as cal
from core.marketdata import FloatArray

# ------------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True, slots=True)
class UnderlyingSpec:
    """One simulated ETF with an option chain."""

    base_price: float  # close of the session before ``SimulatorConfig.anchor_date``
    iv_multiplier: float  # ATM implied vol = VIX / 100 x this (before term structure)
    strike_step: float = 1.0  # listed strike increment
    strike_range: float = 0.08  # strikes listed within +- this fraction of the prior close
    expiry_weekdays: frozenset[int] = frozenset({0, 1, 2, 3, 4})  # Monday = 0
    daily_volume: float = 5.0e7  # shares in a regular session
    spread_multiplier: float = 1.0  # scales option half-spreads
    peak_open_interest: float = 20_000.0  # open interest at the money of a regular expiry

    def __post_init__(self) -> None:
        if self.base_price <= 0 or self.iv_multiplier <= 0 or self.strike_step <= 0:
            raise ValueError("base_price, iv_multiplier and strike_step must be positive")
        if not 0 < self.strike_range < 1:
            raise ValueError("strike_range must be in (0, 1)")
        if not self.expiry_weekdays <= frozenset(range(5)):
            raise ValueError("expiry_weekdays must be weekdays 0..4")


def _default_underlyings() -> Mapping[str, UnderlyingSpec]:
    return {
        "SPY": UnderlyingSpec(
            base_price=590.0,
            iv_multiplier=0.90,
            daily_volume=6.0e7,
            spread_multiplier=1.0,
            peak_open_interest=40_000.0,
        ),
        "QQQ": UnderlyingSpec(
            base_price=510.0,
            iv_multiplier=1.15,
            daily_volume=4.0e7,
            spread_multiplier=1.3,
            peak_open_interest=25_000.0,
        ),
        # IWM lists Monday/Wednesday/Friday expiries: a simulator assumption, configurable.
        "IWM": UnderlyingSpec(
            base_price=225.0,
            iv_multiplier=1.30,
            expiry_weekdays=frozenset({0, 2, 4}),
            daily_volume=3.0e7,
            spread_multiplier=2.0,
            peak_open_interest=15_000.0,
        ),
    }


def _default_correlations() -> Mapping[tuple[str, str], float]:
    return {
        ("SPY", "QQQ"): 0.90,
        ("SPY", "IWM"): 0.80,
        ("QQQ", "IWM"): 0.75,
        ("SPY", "VIX"): -0.70,
        ("QQQ", "VIX"): -0.65,
        ("IWM", "VIX"): -0.55,
    }


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Every number of the simulated market. Frozen; mappings are made read-only."""

    underlyings: Mapping[str, UnderlyingSpec] = field(
        default_factory=_default_underlyings, hash=False
    )
    vix_symbol: str = "VIX"
    anchor_date: date = date(2026, 1, 2)  # base prices are the closes of the session before it

    # correlations of returns (daily and 1-minute); unlisted pairs use the defaults below
    correlations: Mapping[tuple[str, str], float] = field(
        default_factory=_default_correlations, hash=False
    )
    default_correlation: float = 0.5
    default_vix_correlation: float = -0.5

    # variance clock
    trading_days_per_year: float = 252.0
    regular_session_minutes: int = 390
    overnight_variance_share: float = 0.2  # of a day's variance, in the overnight gap
    nontrading_day_variance_weight: float = 0.25  # extra overnight variance per extra calendar day
    rv_to_iv: float = 0.9  # realised vol / implied vol (variance risk premium)

    # VIX daily process: log VIX = log(vix_base) + sum_k persistence^k * shock_{d-k}
    vix_base: float = 16.0
    vix_persistence: float = 0.95
    vix_daily_vol: float = 0.07
    vix_window_days: int = 80
    vix_gap_vol: float = 0.03
    vix_spike_prob: float = 0.03
    vix_spike_mean: float = 0.15  # mean of the exponential log up-jump
    vix_floor: float = 9.0
    vix_cap: float = 80.0
    vix_intraday_vol: float = 0.05  # sd of the free intraday log VIX path over a regular session
    vix_jump_size: float = 0.04  # log VIX move per unit market jump (opposite sign)
    vix_sigma_response: float = 0.03  # log VIX move per daily sigma of a revert-day excursion

    # day regimes (normal = 1 - p_calm - p_trend - p_revert)
    p_calm: float = 0.25
    p_trend: float = 0.25
    p_revert: float = 0.15
    calm_vol_multiplier: float = 0.6
    revert_vol_multiplier: float = 1.1
    trend_strength_min: float = 1.3  # open-to-close move in daily sigmas on a trend day
    trend_strength_max: float = 2.6
    trend_noise: float = 0.4
    revert_amplitude_min: float = 1.0  # morning excursion in daily sigmas on a revert day
    revert_amplitude_max: float = 2.0
    revert_peak_min: float = 0.2  # fraction of the session at which the excursion peaks
    revert_peak_max: float = 0.5
    revert_residual: float = 0.3  # sd of the open-to-close move on a revert day, in daily sigmas

    # intraday shape: vol multiplier U(u) = 1 + a_open e^{-u/w} + a_close e^{-(1-u)/w}
    u_open_amplitude: float = 0.8
    u_close_amplitude: float = 0.5
    u_width: float = 0.05
    volume_open_amplitude: float = 1.5
    volume_close_amplitude: float = 2.0
    volume_width: float = 0.05
    volume_noise: float = 0.35
    volume_move_sensitivity: float = 0.3

    # stochastic vol factor (log-OU, stationary sd ``volvol``)
    volvol: float = 0.25
    volvol_half_life_minutes: float = 45.0

    # jumps
    jump_prob: float = 0.001  # per minute
    jump_size_sigmas: float = 0.35  # jump sd in daily sigmas of each ETF
    jump_idiosyncratic: float = 0.3  # idiosyncratic share of an ETF's jump

    # divergence episodes
    divergence_prob: float = 0.35  # per day
    divergence_min_minutes: int = 30
    divergence_max_minutes: int = 90
    divergence_catch_up_min: int = 5
    divergence_catch_up_max: int = 15
    divergence_earliest_start: int = 20  # minutes after the open
    divergence_tail_minutes: int = 10  # catch-up done at least this long before the close
    divergence_move_sigmas: float = 2.0  # common move in sigmas of the episode window
    divergence_lag_fraction: float = 0.9  # share of the move the laggard misses in the window

    # options: rates, listing, surface, quotes (used by adapters.simulator.chains)
    rate: float = 0.0  # zero so IVs solved with the kernel's default r=q=0 match the surface
    dividend_yield: float = 0.0
    expiry_horizon_days: int = 45
    holiday_friday_to_thursday: bool = True
    strike_range_sigmas: float = 3.0  # longer expiries list strikes out to this many sds
    zero_dte_iv_premium: float = 0.03  # same-day ATM vol x (1 + this)
    term_slope: float = 0.25  # short-dated ATM vol x (1 + slope (VIX/base - 1) e^{-dte/decay})
    term_decay_days: float = 10.0
    skew: float = 0.08  # IV factor 1 - skew x + smile x^2, x = ln(K/F) / total sd
    smile: float = 0.015
    iv_factor_floor: float = 0.5
    iv_factor_cap: float = 3.0
    tick: float = 0.01
    half_spread_frac: float = 0.004  # of time value, at the money
    min_half_spread: float = 0.005
    max_half_spread: float = 0.5
    itm_half_spread_frac: float = 0.002  # of intrinsic value
    spread_wing_slope: float = 0.35  # relative half-spread x (1 + slope |x|)
    spread_expiry_boost: float = 1.0  # x (1 + boost e^{-minutes to expiry / decay})
    spread_expiry_decay_minutes: float = 60.0
    spread_intraday_power: float = 0.5  # x (U(u) / min U)^power
    no_bid_max_ask_ticks: int = 5  # a no-bid option asks 1..this many ticks
    oi_width: float = 0.015  # OI decays as exp(-|K/ref - 1| / (width sqrt(1 + dte / growth)))
    oi_width_growth_days: float = 7.0
    oi_noise: float = 0.7
    put_oi_multiplier: float = 1.3
    monthly_oi_multiplier: float = 3.0
    zero_dte_oi_multiplier: float = 0.6

    # ``SimulatedMarket.atm_iv_history``: ATM IV of the expiry on the last session within this
    # many calendar days of each close (the "30-day" IV)
    atm_iv_history_days: int = 30

    # faults and gaps for robustness tests
    fault_rate: float = 0.0  # share of quotes corrupted (NaN bid, zero ask, negative bid, crossed)
    missing_chains: frozenset[tuple[str, date]] = frozenset()  # chain() raises for these

    # the Mag7 stocks (``adapters.simulator.mag7``); None: ETFs and VIX only
    mag7: Mag7MarketConfig | None = field(default_factory=Mag7MarketConfig)

    # caches
    day_cache_size: int = 8
    chain_cache_size: int = 256
    listing_cache_size: int = 512

    def __post_init__(self) -> None:
        object.__setattr__(self, "underlyings", MappingProxyType(dict(self.underlyings)))
        object.__setattr__(self, "correlations", MappingProxyType(dict(self.correlations)))
        if not self.underlyings:
            raise ValueError("at least one underlying is required")
        if self.vix_symbol in self.underlyings:
            raise ValueError("the VIX symbol cannot also be an underlying")
        if min(self.p_calm, self.p_trend, self.p_revert) < 0 or (
            self.p_calm + self.p_trend + self.p_revert > 1
        ):
            raise ValueError("regime probabilities must be >= 0 and sum to <= 1")
        if not 0 <= self.fault_rate <= 1:
            raise ValueError("fault_rate must be in [0, 1]")
        ticks_per_dollar = 1.0 / self.tick
        if abs(ticks_per_dollar - round(ticks_per_dollar)) > 1e-9:
            raise ValueError("tick must be 1/n dollars (0.01, 0.05, ...)")
        if not 0 < self.vix_persistence < 1 or self.vix_window_days < 1:
            raise ValueError("vix_persistence must be in (0, 1), vix_window_days >= 1")
        if not 0 <= self.overnight_variance_share < 1:
            raise ValueError("overnight_variance_share must be in [0, 1)")
        if self.divergence_min_minutes > self.divergence_max_minutes or (
            self.divergence_catch_up_min > self.divergence_catch_up_max
        ):
            raise ValueError("divergence min/max minutes are inverted")
        cholesky(self)  # raises ValueError when the correlations are not a valid matrix
        if self.mag7 is not None:
            clash = set(self.mag7.stocks) & set(self.symbols)
            if clash:
                raise ValueError(f"Mag7 stocks clash with ETF/VIX symbols: {sorted(clash)}")
            if self.mag7.market_symbol not in self.underlyings:
                raise ValueError(f"Mag7 market_symbol {self.mag7.market_symbol!r} is not an ETF")

    @property
    def symbols(self) -> tuple[str, ...]:
        """ETFs in configuration order, then the VIX."""
        return (*self.underlyings, self.vix_symbol)

    @property
    def stock_symbols(self) -> tuple[str, ...]:
        """The Mag7 stocks in configuration order (empty when ``mag7`` is None)."""
        return tuple(self.mag7.stocks) if self.mag7 is not None else ()

    @property
    def ticks_per_dollar(self) -> int:
        return round(1.0 / self.tick)


def correlation_matrix(config: SimulatorConfig) -> FloatArray:
    """Correlation matrix over ``config.symbols`` from the configured pairs and defaults."""
    symbols = config.symbols
    n = len(symbols)
    corr = np.eye(n)
    for i in range(n):
        for j in range(i + 1, n):
            a, b = symbols[i], symbols[j]
            value = config.correlations.get((a, b), config.correlations.get((b, a)))
            if value is None:
                vix_pair = config.vix_symbol in (a, b)
                value = config.default_vix_correlation if vix_pair else config.default_correlation
            if not -1 < value < 1:
                raise ValueError(f"correlation {a}-{b} must be in (-1, 1), got {value}")
            corr[i, j] = corr[j, i] = value
    return corr


def cholesky(config: SimulatorConfig) -> FloatArray:
    try:
        factor: FloatArray = np.asarray(
            np.linalg.cholesky(correlation_matrix(config)), dtype=np.float64
        )
    except np.linalg.LinAlgError as exc:
        raise ValueError(f"correlations are not positive definite: {exc}") from exc
    return factor


# ------------------------------------------------------------------------------------------------
# seeding and calendar helpers


def stable_code(name: str) -> int:
    """A process-independent code for a symbol or stream tag (``hash()`` is salted per process)."""
    return zlib.crc32(name.encode("utf-8"))


def day_rng(seed: int, day: date, name: str, *extra: int) -> np.random.Generator:
    """PCG64 stream of (seed, day, name, extra...): independent of every other stream and call."""
    entropy = [seed, day.toordinal(), stable_code(name), *extra]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(entropy)))


@cache
def _session_table() -> tuple[tuple[date, ...], Mapping[date, int]]:
    sessions = tuple(
        cal.trading_days(
            date.fromisoformat(cal.CALENDAR_START), date.fromisoformat(cal.CALENDAR_END)
        )
    )
    return sessions, MappingProxyType({d: i for i, d in enumerate(sessions)})


def all_sessions() -> tuple[date, ...]:
    return _session_table()[0]


def session_index(day: date) -> int:
    """Index of a session in the calendar span; KeyError if ``day`` is not a session."""
    return _session_table()[1][day]


@cache
def session_minutes(day: date) -> int:
    s = cal.session(day)
    return int((s.close - s.open).total_seconds() // 60)


# ------------------------------------------------------------------------------------------------
# intraday shapes


def _u_shape(u: FloatArray, a_open: float, a_close: float, width: float) -> FloatArray:
    shape: FloatArray = 1.0 + a_open * np.exp(-u / width) + a_close * np.exp(-(1.0 - u) / width)
    return shape


@cache
def _variance_weights_cached(
    n: int, regular: int, a_open: float, a_close: float, width: float
) -> FloatArray:
    u = (np.arange(n) + 0.5) / n
    shape = _u_shape(u, a_open, a_close, width) ** 2
    weights: FloatArray = shape / shape.sum() * (n / regular)
    weights.setflags(write=False)
    return weights


def variance_weights(n: int, config: SimulatorConfig) -> FloatArray:
    """Share of a regular session's intraday variance in each of ``n`` minutes (sums to n/390)."""
    return _variance_weights_cached(
        n,
        config.regular_session_minutes,
        config.u_open_amplitude,
        config.u_close_amplitude,
        config.u_width,
    )


@cache
def _u_min(a_open: float, a_close: float, width: float) -> float:
    grid = np.linspace(0.0, 1.0, 1001)
    return float(_u_shape(grid, a_open, a_close, width).min())


def intraday_vol_shape(u: float, config: SimulatorConfig) -> float:
    """U(u) / min U over the session: 1 at the quietest point, higher at the open and close."""
    a_open, a_close, width = config.u_open_amplitude, config.u_close_amplitude, config.u_width
    value = 1.0 + a_open * math.exp(-u / width) + a_close * math.exp(-(1.0 - u) / width)
    return value / _u_min(a_open, a_close, width)


# ------------------------------------------------------------------------------------------------
# daily process


class DayRegime(StrEnum):
    CALM = "calm"
    NORMAL = "normal"
    TREND = "trend"
    REVERT = "revert"


@dataclass(frozen=True, slots=True, eq=False)
class DailyDraw:
    """The random numbers of one session's daily process (from the "daily" stream)."""

    z_gap: FloatArray  # correlated normals over config.symbols
    z_day: FloatArray
    regime: DayRegime
    trend_strength: float
    revert_amplitude: float
    revert_peak: float
    revert_sign: float
    vix_spike: float


@dataclass(frozen=True, slots=True, eq=False)
class DayPlan:
    """What the intraday generator needs for one session; ETF arrays are in underlyings order."""

    day: date
    n_minutes: int
    draw: DailyDraw
    log_open: FloatArray  # ETFs
    log_close: FloatArray  # ETFs
    move: FloatArray  # open-to-close log move of the ETFs
    sigma_day: FloatArray  # open-to-close sd of the ETFs (regime included)
    vol_annual: FloatArray  # realised annual vol of the ETFs at the open (regime included)
    log_vix_open: float
    log_vix_close: float


def _mix(normals: FloatArray, factor: FloatArray) -> FloatArray:
    """Correlate columns: out[:, i] = sum_j factor[i, j] normals[:, j] (fixed order, no BLAS)."""
    out = np.zeros_like(normals)
    n = factor.shape[0]
    for i in range(n):
        for j in range(i + 1):
            out[..., i] += factor[i, j] * normals[..., j]
    return out


class DailyProcess:
    """Session-by-session closes of every symbol, anchored at ``config.anchor_date``."""

    def __init__(self, seed: int, config: SimulatorConfig) -> None:
        self.seed = seed
        self.config = config
        self._chol = cholesky(config)
        self._n_etf = len(config.underlyings)
        self._iv_mult = np.array([s.iv_multiplier for s in config.underlyings.values()])
        self._base_log = np.log(np.array([s.base_price for s in config.underlyings.values()]))
        self._draws: dict[date, DailyDraw] = {}
        self._log_vix: dict[int, float] = {}
        self._vix_shocks: dict[int, float] = {}
        self._log_close: dict[int, FloatArray] = {}  # session index -> ETF log closes
        self._plans: dict[int, DayPlan] = {}
        self._weights = [config.vix_persistence**k for k in range(config.vix_window_days)]
        sessions = all_sessions()
        anchor = config.anchor_date
        self._anchor = next((i for i, d in enumerate(sessions) if d >= anchor), len(sessions) - 1)

    # -- draws ------------------------------------------------------------------------------------

    def draw(self, day: date) -> DailyDraw:
        found = self._draws.get(day)
        if found is not None:
            return found
        c = self.config
        rng = day_rng(self.seed, day, "daily")
        n = len(c.symbols)
        z_gap = _mix(rng.standard_normal(n), self._chol)
        z_day = _mix(rng.standard_normal(n), self._chol)
        u_regime, u_trend, u_amp, u_peak, u_sign, u_spike = rng.random(6)
        spike_size = rng.exponential(c.vix_spike_mean)
        if u_regime < c.p_calm:
            regime = DayRegime.CALM
        elif u_regime < c.p_calm + c.p_trend:
            regime = DayRegime.TREND
        elif u_regime < c.p_calm + c.p_trend + c.p_revert:
            regime = DayRegime.REVERT
        else:
            regime = DayRegime.NORMAL
        result = DailyDraw(
            z_gap=z_gap,
            z_day=z_day,
            regime=regime,
            trend_strength=c.trend_strength_min
            + u_trend * (c.trend_strength_max - c.trend_strength_min),
            revert_amplitude=c.revert_amplitude_min
            + u_amp * (c.revert_amplitude_max - c.revert_amplitude_min),
            revert_peak=c.revert_peak_min + u_peak * (c.revert_peak_max - c.revert_peak_min),
            revert_sign=1.0 if u_sign < 0.5 else -1.0,
            vix_spike=float(spike_size) if u_spike < c.vix_spike_prob else 0.0,
        )
        self._draws[day] = result
        return result

    def _vix_shock(self, index: int) -> float:
        found = self._vix_shocks.get(index)
        if found is not None:
            return found
        c = self.config
        d = self.draw(all_sessions()[index])
        vix_col = self._n_etf
        value = float(
            c.vix_daily_vol * d.z_day[vix_col] + d.vix_spike - c.vix_spike_prob * c.vix_spike_mean
        )
        self._vix_shocks[index] = value
        return value

    # -- VIX --------------------------------------------------------------------------------------

    def log_vix_close(self, index: int) -> float:
        found = self._log_vix.get(index)
        if found is not None:
            return found
        c = self.config
        terms = [
            w * self._vix_shock(index - k) for k, w in enumerate(self._weights) if index - k >= 0
        ]
        value = math.log(c.vix_base) + math.fsum(terms)
        value = min(max(value, math.log(c.vix_floor)), math.log(c.vix_cap))
        self._log_vix[index] = value
        return value

    def log_vix_open(self, index: int) -> float:
        c = self.config
        if index == 0:
            return self.log_vix_close(0)
        d = self.draw(all_sessions()[index])
        value = self.log_vix_close(index - 1) + c.vix_gap_vol * float(d.z_gap[self._n_etf])
        return min(max(value, math.log(c.vix_floor)), math.log(c.vix_cap))

    # -- ETFs -------------------------------------------------------------------------------------

    def _regime_vol(self, regime: DayRegime) -> float:
        c = self.config
        if regime is DayRegime.CALM:
            return c.calm_vol_multiplier
        if regime is DayRegime.REVERT:
            return c.revert_vol_multiplier
        return 1.0

    def _gap_and_move(self, index: int) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """(gap, move, sigma_day, vol_annual) of the ETFs for session ``index``."""
        c = self.config
        sessions = all_sessions()
        day = sessions[index]
        d = self.draw(day)
        n = self._n_etf
        tdpy = c.trading_days_per_year
        prev_index = max(index - 1, 0)
        nights = (day - sessions[prev_index]).days if index > 0 else 1
        night_units = c.overnight_variance_share * (
            1.0 + c.nontrading_day_variance_weight * (nights - 1)
        )
        vix_prev = math.exp(self.log_vix_close(prev_index)) / 100.0
        vix_open = math.exp(self.log_vix_open(index)) / 100.0
        gap_vol = vix_prev * self._iv_mult * c.rv_to_iv * math.sqrt(night_units / tdpy)
        gap: FloatArray = gap_vol * d.z_gap[:n]
        vol_annual: FloatArray = (
            vix_open * self._iv_mult * c.rv_to_iv * self._regime_vol(d.regime) * np.ones(n)
        )
        day_units = (1.0 - c.overnight_variance_share) * (
            session_minutes(day) / c.regular_session_minutes
        )
        sigma_day: FloatArray = vol_annual * math.sqrt(day_units / tdpy)
        z = d.z_day[:n]
        if d.regime is DayRegime.TREND:
            direction = 1.0 if z[0] >= 0 else -1.0
            move: FloatArray = sigma_day * (direction * d.trend_strength + c.trend_noise * z)
        elif d.regime is DayRegime.REVERT:
            move = sigma_day * c.revert_residual * z
        else:
            move = sigma_day * z
        return gap, move, sigma_day, vol_annual

    def market_shock(self, index: int, etf: int) -> tuple[float, float, float]:
        """ETF ``etf``'s session ``index`` as (gap z, move z, sd): the factor of the Mag7 stocks.

        gap z is its correlated standard normal; sd is its open-to-close log sd *without* the
        regime's vol multiplier and move z = move / sd, so calm days are small and trend days
        large. Read-only: the memoised draws, nothing new is drawn.
        """
        _, move, sigma_day, _ = self._gap_and_move(index)
        d = self.draw(all_sessions()[index])
        sd = float(sigma_day[etf]) / self._regime_vol(d.regime)
        return float(d.z_gap[etf]), float(move[etf]) / sd, sd

    def log_close(self, index: int) -> FloatArray:
        """ETF log closes of session ``index`` (recursion outward from the anchor, memoised).

        ``index`` -1 is the (unlisted) session before the first one of the calendar span.
        """
        found = self._log_close.get(index)
        if found is not None:
            return found
        a = self._anchor
        value: FloatArray
        if index >= a:
            start = max((i for i in self._log_close if a <= i < index), default=None)
            if start is None:
                value = self._base_log.copy()
                i = a
            else:
                value = self._log_close[start]
                i = start + 1
            while i <= index:
                gap, move, _, _ = self._gap_and_move(i)
                value = (value + gap) + move
                self._log_close[i] = value
                i += 1
            return value
        # before the anchor: walk backwards from the anchor's prior close
        start = min((i for i in self._log_close if index < i < a), default=None)
        if start is None:
            value = self._base_log.copy()
            i = a - 1
            self._log_close[i] = value
        else:
            value = self._log_close[start]
            i = start
        while i > index:
            gap, move, _, _ = self._gap_and_move(i)
            value = value - move - gap
            i -= 1
            self._log_close[i] = value
        return value

    def plan(self, day: date) -> DayPlan:
        index = session_index(day)
        found = self._plans.get(index)
        if found is not None:
            return found
        prior = self.log_close(index - 1)
        gap, move, sigma_day, vol_annual = self._gap_and_move(index)
        log_open = prior + gap
        result = DayPlan(
            day=day,
            n_minutes=session_minutes(day),
            draw=self.draw(day),
            log_open=log_open,
            log_close=self.log_close(index),
            move=move,
            sigma_day=sigma_day,
            vol_annual=vol_annual,
            log_vix_open=self.log_vix_open(index),
            log_vix_close=self.log_vix_close(index),
        )
        self._plans[index] = result
        return result

    def close(self, symbol_index: int, index: int) -> float:
        """Session close of symbol ``symbol_index`` (ETFs then VIX) for session ``index``."""
        if symbol_index == self._n_etf:
            return math.exp(self.log_vix_close(index))
        return math.exp(float(self.log_close(index)[symbol_index]))

    def log_vix_prior_close(self, index: int) -> float:
        return self.log_vix_close(index - 1) if index > 0 else self.log_vix_close(0)


# ------------------------------------------------------------------------------------------------
# intraday paths


@dataclass(frozen=True, slots=True, eq=False)
class SymbolPath:
    """One symbol's 1-minute OHLCV for one session (read-only arrays)."""

    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray


@dataclass(frozen=True, slots=True)
class DivergenceEpisode:
    """Ground truth: ``laggard`` misses a common move from ``start`` until ``end`` (bar starts)."""

    laggard: str
    start: datetime
    caught_up: datetime
    direction: int  # +1: the others rally without it, -1: they drop


@dataclass(frozen=True, slots=True, eq=False)
class DayPaths:
    day: date
    open_at: datetime
    close_at: datetime
    times: tuple[datetime, ...]  # bar starts, America/New_York
    start_ts: FloatArray  # epoch seconds of the bar starts
    paths: Mapping[str, SymbolPath]
    regime: DayRegime
    divergence: DivergenceEpisode | None

    @property
    def n_minutes(self) -> int:
        return len(self.times)


def _readonly(arr: FloatArray) -> FloatArray:
    arr.setflags(write=False)
    return arr


def _ou(normals: FloatArray, phi: float, sd: float) -> FloatArray:
    """Stationary AR(1) path with sd ``sd``; normals[0] draws the start (explicit loop: exact)."""
    out = np.empty(normals.shape[0] - 1)
    innovation = sd * math.sqrt(1.0 - phi * phi)
    h = sd * float(normals[0])
    for i, e in enumerate(normals[1:].tolist()):
        h = phi * h + innovation * e
        out[i] = h
    return out


def _hump(u: FloatArray, peak: float) -> FloatArray:
    """0 at u=0, 1 at u=peak, back to 0 at u=1 (smooth rise, slower decay)."""
    rise = np.sin(0.5 * np.pi * np.minimum(u / peak, 1.0))
    fall = np.cos(0.5 * np.pi * np.clip((u - peak) / (1.0 - peak), 0.0, 1.0))
    out: FloatArray = np.where(u <= peak, rise, fall)
    return out


def _bridge(increments: FloatArray, variances: FloatArray, target: float) -> FloatArray:
    """Cumulative path of ``increments`` pulled to end at ``target`` along its variance clock."""
    path = np.cumsum(increments)
    clock = np.cumsum(variances)
    clock /= clock[-1]
    bridged: FloatArray = path + clock * (target - path[-1])
    return bridged


def _extremes(
    log_prev: FloatArray,
    log_close: FloatArray,
    sd: FloatArray,
    u_high: FloatArray,
    u_low: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """High/low logs: exact extremes of a Brownian bridge from log_prev to log_close, sd ``sd``."""
    diff = log_close - log_prev
    var = sd * sd
    high = log_prev + 0.5 * (diff + np.sqrt(diff * diff - 2.0 * var * np.log1p(-u_high)))
    low = log_prev + 0.5 * (diff - np.sqrt(diff * diff - 2.0 * var * np.log1p(-u_low)))
    return high, low


class PathEngine:
    """Generates and caches whole days of 1-minute paths for every symbol."""

    def __init__(self, seed: int, config: SimulatorConfig) -> None:
        self.seed = seed
        self.config = config
        self.daily = DailyProcess(seed, config)
        self._chol = cholesky(config)
        self._etfs = tuple(config.underlyings)
        self._days: OrderedDict[date, DayPaths] = OrderedDict()
        self._daily_bars: dict[tuple[str, date], tuple[float, float, float, float, float]] = {}

    @property
    def etfs(self) -> tuple[str, ...]:
        return self._etfs

    def day(self, day: date) -> DayPaths:
        """The session's paths (``day`` must be a session); generated once, LRU-cached."""
        found = self._days.get(day)
        if found is not None:
            self._days.move_to_end(day)
            return found
        result = self._generate(day)
        self._days[day] = result
        while len(self._days) > self.config.day_cache_size:
            self._days.popitem(last=False)
        return result

    def peek(self, day: date) -> DayPaths:
        """The session's paths, from the cache if there, else generated without caching them.

        For callers that sweep many past sessions (Mag7 history): the LRU keeps the days the ETF
        loop is using. Bit-identical to ``day`` (generation depends only on seed and date).
        """
        found = self._days.get(day)
        return found if found is not None else self._generate(day)

    def daily_bar(self, symbol: str, day: date) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of a session, consistent with its 1-minute bars."""
        key = (symbol, day)
        found = self._daily_bars.get(key)
        if found is None:
            paths = self.day(day)
            for sym, p in paths.paths.items():
                self._daily_bars[(sym, day)] = (
                    float(p.open[0]),
                    float(p.high.max()),
                    float(p.low.min()),
                    float(p.close[-1]),
                    float(p.volume.sum()),
                )
            found = self._daily_bars[key]
        return found

    # -- generation -------------------------------------------------------------------------------

    def _generate(self, day: date) -> DayPaths:
        c = self.config
        plan = self.daily.plan(day)
        session = cal.session(day)
        n = plan.n_minutes
        n_etf = len(self._etfs)
        symbols = c.symbols
        draw = plan.draw

        # per-symbol streams, always drawn in the same order and sizes
        normals = np.empty((n, len(symbols)))
        jump_idio = np.empty((n, len(symbols)))
        u_high = np.empty((n, len(symbols)))
        u_low = np.empty((n, len(symbols)))
        vol_noise = np.empty((n, len(symbols)))
        for j, sym in enumerate(symbols):
            rng = day_rng(self.seed, day, sym)
            normals[:, j] = rng.standard_normal(n)
            jump_idio[:, j] = rng.standard_normal(n)
            u_high[:, j] = rng.random(n)
            u_low[:, j] = rng.random(n)
            vol_noise[:, j] = rng.standard_normal(n)
        z = _mix(normals, self._chol)

        market = day_rng(self.seed, day, "market")
        h_normals = market.standard_normal(n + 1)
        jump_u = market.random(n)
        jump_z = market.standard_normal(n)
        div_u = market.random(6)

        weights = variance_weights(n, c)  # sums to n / 390
        u_end = (np.arange(n) + 1.0) / n
        phi = 0.5 ** (1.0 / c.volvol_half_life_minutes)
        stoch = np.exp(_ou(h_normals, phi, c.volvol) - c.volvol**2)
        jumps = np.where(jump_u < c.jump_prob, jump_z, 0.0)

        # VIX first: its level scales the ETFs' vol minute by minute
        vix_sd = c.vix_intraday_vol * np.sqrt(weights) * stoch
        vix_inc = vix_sd * z[:, n_etf] - c.vix_jump_size * jumps
        vix_target = plan.log_vix_close - plan.log_vix_open
        vix_path = _bridge(vix_inc, vix_sd**2, vix_target)
        hump = np.zeros(n)
        if draw.regime is DayRegime.REVERT:
            hump = draw.revert_sign * draw.revert_amplitude * _hump(u_end, draw.revert_peak)
            vix_path = vix_path - c.vix_sigma_response * hump
        vix_level_before = np.exp(np.concatenate(([0.0], vix_path[:-1])))

        # ETFs
        unit = math.sqrt((1.0 - c.overnight_variance_share) / c.trading_days_per_year)
        sd = np.empty((n, n_etf))
        inc = np.empty((n, n_etf))
        for j in range(n_etf):
            sd[:, j] = plan.vol_annual[j] * unit * np.sqrt(weights) * stoch * vix_level_before
            jump_j = (
                plan.sigma_day[j]
                * c.jump_size_sigmas
                * (jumps + c.jump_idiosyncratic * np.where(jumps != 0.0, jump_idio[:, j], 0.0))
            )
            inc[:, j] = sd[:, j] * z[:, j] + jump_j
        episode = self._divergence(inc, plan, div_u, session.open)

        logs: dict[str, FloatArray] = {}
        sds: dict[str, FloatArray] = {}
        for j, sym in enumerate(self._etfs):
            path = _bridge(inc[:, j], sd[:, j] ** 2, float(plan.move[j]))
            path = path + plan.sigma_day[j] * hump
            log_c = plan.log_open[j] + path
            log_c[-1] = plan.log_close[j]
            logs[sym] = np.concatenate(([plan.log_open[j]], log_c))
            sds[sym] = sd[:, j]
        vix_log = plan.log_vix_open + vix_path
        vix_log[-1] = plan.log_vix_close
        logs[c.vix_symbol] = np.concatenate(([plan.log_vix_open], vix_log))
        sds[c.vix_symbol] = vix_sd

        vol_u = (np.arange(n) + 0.5) / n
        vol_shape = _u_shape(
            vol_u, c.volume_open_amplitude, c.volume_close_amplitude, c.volume_width
        )
        vol_shape = vol_shape / vol_shape.sum() * (n / c.regular_session_minutes)

        paths: dict[str, SymbolPath] = {}
        for j, sym in enumerate(symbols):
            lg = logs[sym]
            prices = np.exp(lg)
            # the session close is bit-identical to the daily process close (prior_close next day)
            prices[-1] = math.exp(float(lg[-1]))
            hi_log, lo_log = _extremes(lg[:-1], lg[1:], sds[sym], u_high[:, j], u_low[:, j])
            o, cl = prices[:-1], prices[1:]
            high = np.maximum(np.exp(hi_log), np.maximum(o, cl))
            low = np.minimum(np.exp(lo_log), np.minimum(o, cl))
            if sym == c.vix_symbol:
                volume = np.zeros(n)
            else:
                spec = c.underlyings[sym]
                raw = (
                    spec.daily_volume
                    * vol_shape
                    * (1.0 + c.volume_move_sensitivity * np.abs(z[:, j]))
                    * np.exp(c.volume_noise * vol_noise[:, j] - 0.5 * c.volume_noise**2)
                )
                volume = np.maximum(np.round(raw), 1.0)
            paths[sym] = SymbolPath(
                open=_readonly(o.copy()),
                high=_readonly(high),
                low=_readonly(low),
                close=_readonly(cl.copy()),
                volume=_readonly(volume),
            )

        times = tuple(session.open + timedelta(minutes=i) for i in range(n))
        start_ts = _readonly(session.open.timestamp() + 60.0 * np.arange(n, dtype=np.float64))
        return DayPaths(
            day=day,
            open_at=session.open,
            close_at=session.close,
            times=times,
            start_ts=start_ts,
            paths=MappingProxyType(paths),
            regime=draw.regime,
            divergence=episode,
        )

    def _divergence(
        self, inc: FloatArray, plan: DayPlan, u: FloatArray, open_at: datetime
    ) -> DivergenceEpisode | None:
        """Maybe add a lag-then-catch-up episode to the ETF increments (in place)."""
        c = self.config
        n, n_etf = inc.shape
        if n_etf < 2 or u[0] >= c.divergence_prob:
            return None
        laggard = min(int(u[1] * n_etf), n_etf - 1)
        span = c.divergence_max_minutes - c.divergence_min_minutes + 1
        duration = c.divergence_min_minutes + min(int(u[2] * span), span - 1)
        catch_span = c.divergence_catch_up_max - c.divergence_catch_up_min + 1
        catch = c.divergence_catch_up_min + min(int(u[4] * catch_span), catch_span - 1)
        latest = n - duration - catch - c.divergence_tail_minutes
        if latest < c.divergence_earliest_start:
            return None
        start = c.divergence_earliest_start + int(u[3] * (latest - c.divergence_earliest_start + 1))
        start = min(start, latest)
        direction = 1 if u[5] < 0.5 else -1
        window = slice(start, start + duration)
        catch_window = slice(start + duration, start + duration + catch)
        for j in range(n_etf):
            move = (
                direction
                * c.divergence_move_sigmas
                * float(plan.sigma_day[j])
                * math.sqrt(duration / n)
            )
            if j == laggard:
                inc[window, j] += (1.0 - c.divergence_lag_fraction) * move / duration
                inc[catch_window, j] += c.divergence_lag_fraction * move / catch
            else:
                inc[window, j] += move / duration
        return DivergenceEpisode(
            laggard=self._etfs[laggard],
            start=open_at + timedelta(minutes=start),
            caught_up=open_at + timedelta(minutes=start + duration + catch),
            direction=direction,
        )
