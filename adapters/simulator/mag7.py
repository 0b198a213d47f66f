"""Simulated Mag7 stocks: factor-model prices, quarterly earnings, IV dynamics and option chains.

Every number is a field of ``SimulatorConfig.mag7`` (``Mag7MarketConfig`` / ``StockSpec``) or of
``SimulatorConfig`` itself when shared with the ETFs (variance clock, surface shape, spreads).

Separation from the ETF market
------------------------------
Every random number of this module comes from streams named ``mag7:...`` (``day_rng``), never from
the ETF/VIX streams, and the ETF engines are only *read* (memoised draws, paths generated the same
way). So adding, changing or querying the stocks never changes a single ETF/VIX number, and
nothing here runs until a stock is asked for (``SimulatedMarket`` creates the engine lazily).

Daily process
-------------
A stock's standardised daily shock (gap and open-to-close move separately) is
``m x market + s x sector + sqrt(1 - m^2 - s^2) x idiosyncratic`` (``StockSpec`` loadings). The
market factor *is* the ``market_symbol`` ETF's (SPY's) own shock: its gap z and its move in
regime-free sds (``DailyProcess.market_shock``), divided by the factor's theoretical sd over the
regime mix (``market_move_sd``) so a stock's vol stays what its spec says while calm, trend and
revert days carry over. Sector factors (technology, communication, consumer discretionary) and
idiosyncratic noise are per-session draws of the ``mag7:daily`` stream. Two names therefore
correlate by ``m_i m_j`` (+ ``s_i s_j`` in one sector), diluted a little by earnings gaps.

The realised annual vol of a session is ``rv_to_iv`` x the diffusive ATM IV at the prior close:
``base_iv x (VIX / vix_base)^vix_elasticity x exp(h)``, ``h`` the name's own IV factor, a
stationary AR(1) written as its moving-average sum over ``iv_window_days`` shocks (random access,
no anchor, like the VIX), with shocks correlated ``iv_return_correlation`` with the name's move
(stocks that fall get bid). Closes are a random walk from ``base_price`` at ``anchor_date`` (the
ETF construction: forward adds gap + move, backward subtracts them), overnight variance share and
weekend weighting as for the ETFs.

Earnings
--------
Each name reports in its ``earnings_months`` on a report day drawn per (seed, name, year, month)
in ``[earnings_first_day, + earnings_window_days)`` and rolled forward to a session, after the
close (probability ``after_close_share``) or before the open. The **earnings session** (what
``earnings_dates`` returns) is the first session whose open prices it: the next session for an
after-close report, the report day itself before the open. The quarter's implied move is
``earnings_move x lognormal(earnings_move_dispersion)``; the gap into the earnings session gets
an extra ``N(0, (rv_to_iv x implied move)^2)`` jump, the session's open-to-close vol is
``earnings_day_vol_multiplier`` higher and its volume ``earnings_volume_multiplier`` higher.

Intraday paths
--------------
One path per session from the daily open to the daily close (so the daily bar and
``prior_close`` are exactly the 1-minute data). Per minute the market part is the stock's
loading x its sd / the factor sd x the market ETF's own 1-minute log return (its stochastic vol,
jumps, trend/revert shapes and divergence episodes included), so the stocks co-move with SPY
minute by minute; sector (shared within a sector) and idiosyncratic normals on the U-shaped
variance clock make the rest, and the sum is bridged along the noise's variance clock to the
day's move. High/low/volume as for the ETFs.

Options
-------
Expiries: every Friday within ``weekly_horizon_days`` and every monthly (third Friday) within
``monthly_horizon_days``; a Friday that is a holiday moves to the Thursday before it
(``SimulatorConfig.holiday_friday_to_thursday``). Strikes: every ``strike_step(prior close)``
($0.5 under $25, $1 under $100, $2.5 under $500, $5 above) within ``max(strike_range,
strike_range_sigmas x sd to expiry)`` of the prior close. The surface is the ETFs' (same code,
``chains.quote_chain``): total variance to the expiry close on the shared variance clock at the
diffusive IV now (VIX and ``h`` interpolated through the session) x the ETF term factor (and the
0DTE premium), **plus the squared implied move of every earnings event whose gap is still ahead
and before the expiry**, so expiries spanning a report are rich and the IV is crushed once the
gap is priced. The skew coefficient is the name's ``skew`` plus an AR(1) deviation
(``skew_persistence``, ``skew_daily_vol``). Quotes, open interest and faults: the ETF rules with
the stock's ``spread_multiplier`` and ``peak_open_interest``.

ATM IV history: the 30-day (``SimulatorConfig.atm_iv_history_days``) ATM IV at each close is the same formula for an
expiry on the last session within 30 calendar days, seen at the close (nothing of the day left,
VIX and ``h`` at their closes), so it equals what the chain quotes there.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from types import MappingProxyType

import numpy as np

from adapters.simulator.chains import (
    ExpiryListing,
    build_listing,
    is_monthly,
    quote_chain,
    variance_units,
)
from adapters.simulator.mag7_config import Mag7MarketConfig
from adapters.simulator.paths import (
    DayPaths,
    PathEngine,
    SimulatorConfig,
    SymbolPath,
    _extremes,
    _readonly,
    _u_shape,
    all_sessions,
    day_rng,
    session_index,
    session_minutes,
    variance_weights,
)
from core import calendar as cal
from core.marketdata import ChainSnapshot, FloatArray
from core.pricing import year_fraction

_FRIDAY = 4
_THURSDAY = 3
_DAILY_STREAM = "mag7:daily"
_MINUTE_STREAM = "mag7:minute"


class EarningsTiming(StrEnum):
    BEFORE_OPEN = "before_open"
    AFTER_CLOSE = "after_close"


@dataclass(frozen=True, slots=True)
class EarningsEvent:
    """One quarterly report of a simulated stock (ground truth)."""

    symbol: str
    report_day: date  # the session on which the report is released
    timing: EarningsTiming
    session: date  # the first session whose open prices it (the earnings gap's session)
    implied_move: float  # sd of the log gap the options price before it


@dataclass(frozen=True, slots=True, eq=False)
class StockDraw:
    """The random numbers of one session for the whole Mag7 block (``mag7:daily`` stream)."""

    sector_gap: FloatArray  # per sector
    idio_gap: FloatArray  # per stock
    sector_move: FloatArray
    idio_move: FloatArray
    earnings: FloatArray  # per stock: the earnings jump's normal (used on earnings sessions)
    iv_shock: FloatArray  # per stock, before the correlation with the move
    skew_shock: FloatArray


@dataclass(frozen=True, slots=True, eq=False)
class StockDay:
    """Daily process of one session, arrays over the stocks in configuration order."""

    log_gap: FloatArray
    log_move: FloatArray
    sigma_day: FloatArray  # open-to-close sd (earnings multiplier included)
    move_z: FloatArray  # standardised open-to-close shock of each stock
    market_move_z: float  # the market factor's move (unit variance over the regime mix)
    market_sd: float  # the market ETF's regime-free open-to-close sd
    earnings: FloatArray  # 1.0 on the stock's earnings session, else 0.0


def market_move_sd(config: SimulatorConfig) -> float:
    """sd of the market ETF's open-to-close move in regime-free sds, over the regime mix."""
    c = config
    lo, hi = c.trend_strength_min, c.trend_strength_max
    strength_sq = (hi**3 - lo**3) / (3.0 * (hi - lo)) if hi > lo else lo * lo
    p_normal = 1.0 - c.p_calm - c.p_trend - c.p_revert
    variance = (
        c.p_calm * c.calm_vol_multiplier**2
        + p_normal
        + c.p_trend * (strength_sq + c.trend_noise**2)
        + c.p_revert * (c.revert_vol_multiplier * c.revert_residual) ** 2
    )
    return math.sqrt(variance)


def _ma_weights(persistence: float, window: int) -> FloatArray:
    weights: FloatArray = persistence ** np.arange(window, dtype=np.float64)
    return weights


class Mag7Engine:
    """Daily process, earnings, IV state, 1-minute paths and chains of the simulated stocks."""

    def __init__(self, seed: int, config: SimulatorConfig, paths: PathEngine) -> None:
        if config.mag7 is None:
            raise ValueError("SimulatorConfig.mag7 is None: no stocks to simulate")
        self.seed = seed
        self.config = config
        self.mag7: Mag7MarketConfig = config.mag7
        self.paths = paths
        m = self.mag7
        specs = list(m.stocks.values())
        self.symbols: tuple[str, ...] = tuple(m.stocks)
        self._index = MappingProxyType({s: i for i, s in enumerate(self.symbols)})
        sectors = m.sectors
        self._sector_of = np.array([sectors.index(s.sector) for s in specs], dtype=np.int64)
        self._n_sectors = len(sectors)
        self._a = np.array([s.market_loading for s in specs])
        self._b = np.array([s.sector_loading for s in specs])
        self._c = np.array([s.idio_loading for s in specs])
        self._base_log = np.log(np.array([s.base_price for s in specs]))
        self._base_iv = np.array([s.base_iv for s in specs])
        self._daily_volume = np.array([s.daily_volume for s in specs])
        self._market_etf = list(config.underlyings).index(m.market_symbol)
        self._market_sd = market_move_sd(config)
        self._iv_weights = _ma_weights(m.iv_persistence, m.iv_window_days) * m.iv_daily_vol
        self._skew_weights = _ma_weights(m.skew_persistence, m.iv_window_days) * m.skew_daily_vol
        sessions = all_sessions()
        anchor = config.anchor_date
        self._anchor = next((i for i, d in enumerate(sessions) if d >= anchor), len(sessions) - 1)

        self._draws: dict[int, StockDraw] = {}
        self._days: dict[int, StockDay] = {}
        n_sessions, n_stocks = len(sessions), len(self.symbols)
        # per-session shocks of the IV and skew factors, filled on demand (row i: session i)
        self._iv_shocks = np.zeros((n_sessions, n_stocks))
        self._skew_shocks = np.zeros((n_sessions, n_stocks))
        self._shock_filled = np.zeros(n_sessions, dtype=bool)
        self._market: dict[int, tuple[float, float, float]] = {}
        self._h: dict[int, FloatArray] = {}
        self._skew_dev: dict[int, FloatArray] = {}
        self._log_close: dict[int, FloatArray] = {}
        self._events: dict[tuple[str, int], tuple[EarningsEvent, ...]] = {}
        self._event_sessions: dict[int, dict[date, list[tuple[int, float]]]] = {}
        self._paths: OrderedDict[date, DayPaths] = OrderedDict()
        self._daily_bars: dict[date, dict[str, tuple[float, float, float, float, float]]] = {}
        self._expiries: dict[date, tuple[date, ...]] = {}
        self._listings: OrderedDict[tuple[str, date, date], ExpiryListing] = OrderedDict()
        self._snapshots: OrderedDict[tuple[str, date, float], ChainSnapshot] = OrderedDict()
        self._cumw: dict[int, FloatArray] = {}

    def index_of(self, symbol: str) -> int:
        return self._index[symbol]

    # -- earnings ---------------------------------------------------------------------------------

    def events(self, symbol: str, year: int) -> tuple[EarningsEvent, ...]:
        """The reports of ``symbol`` in calendar ``year`` whose session is in the calendar span."""
        key = (symbol, year)
        found = self._events.get(key)
        if found is not None:
            return found
        spec = self.mag7.stocks[symbol]
        rng = day_rng(self.seed, date(year, 1, 1), f"mag7:earnings:{symbol}")
        sessions = all_sessions()
        out: list[EarningsEvent] = []
        for month in spec.earnings_months:
            u_day, u_timing = rng.random(2)
            z_move = float(rng.standard_normal())
            offset = spec.earnings_first_day - 1 + int(u_day * spec.earnings_window_days)
            offset = min(offset, spec.earnings_first_day - 1 + spec.earnings_window_days - 1)
            drawn = date(year, month, 1) + timedelta(days=offset)
            if not sessions[0] <= drawn <= sessions[-1]:
                continue
            report = drawn if _is_session(drawn) else _next_session(drawn)
            if report is None:
                continue
            if u_timing < spec.after_close_share:
                timing = EarningsTiming.AFTER_CLOSE
                priced = _next_session(report)
            else:
                timing = EarningsTiming.BEFORE_OPEN
                priced = report
            if priced is None:
                continue
            dispersion = self.mag7.earnings_move_dispersion
            implied = spec.earnings_move * math.exp(dispersion * z_move - 0.5 * dispersion**2)
            out.append(EarningsEvent(symbol, report, timing, priced, implied))
        result = tuple(out)
        self._events[key] = result
        return result

    def events_between(self, symbol: str, start: date, end: date) -> list[EarningsEvent]:
        """Events whose earnings session is in ``[start, end]``, in date order."""
        if end < start:
            return []
        found: list[EarningsEvent] = []
        for year in range(start.year - 1, end.year + 1):
            found.extend(e for e in self.events(symbol, year) if start <= e.session <= end)
        return sorted(found, key=lambda e: e.session)

    def _events_of_sessions(self, year: int) -> dict[date, list[tuple[int, float]]]:
        """Earnings session -> [(stock index, implied move)] for the events priced in ``year``."""
        found = self._event_sessions.get(year)
        if found is None:
            found = {}
            for j, symbol in enumerate(self.symbols):
                for y in (year - 1, year):
                    for e in self.events(symbol, y):
                        if e.session.year == year:
                            found.setdefault(e.session, []).append((j, e.implied_move))
            self._event_sessions[year] = found
        return found

    def _earnings_on(self, day: date) -> tuple[FloatArray, FloatArray]:
        """(mask, implied move) over the stocks for earnings sessions on ``day``."""
        n = len(self.symbols)
        mask = np.zeros(n)
        implied = np.zeros(n)
        for j, move in self._events_of_sessions(day.year).get(day, ()):
            mask[j] = 1.0
            implied[j] = move
        return mask, implied

    def event_variance(self, symbol: str, day: date, expiry: date) -> float:
        """Sum of squared implied moves of events with earnings session in ``(day, expiry]``."""
        if expiry <= day:
            return 0.0
        events = self.events_between(symbol, day + timedelta(days=1), expiry)
        return math.fsum(e.implied_move**2 for e in events)

    # -- daily process ----------------------------------------------------------------------------

    def draw(self, index: int) -> StockDraw:
        found = self._draws.get(index)
        if found is not None:
            return found
        rng = day_rng(self.seed, all_sessions()[index], _DAILY_STREAM)
        n, s = len(self.symbols), self._n_sectors
        result = StockDraw(
            sector_gap=rng.standard_normal(s),
            idio_gap=rng.standard_normal(n),
            sector_move=rng.standard_normal(s),
            idio_move=rng.standard_normal(n),
            earnings=rng.standard_normal(n),
            iv_shock=rng.standard_normal(n),
            skew_shock=rng.standard_normal(n),
        )
        self._draws[index] = result
        return result

    def _market_shock(self, index: int) -> tuple[float, float, float]:
        found = self._market.get(index)
        if found is None:
            found = self.paths.daily.market_shock(index, self._market_etf)
            self._market[index] = found
        return found

    def _move_z(self, index: int) -> tuple[FloatArray, float, float]:
        """(standardised moves of the stocks, market move z, market ETF regime-free sd)."""
        d = self.draw(index)
        _, move_z, market_sd = self._market_shock(index)
        market = move_z / self._market_sd
        z: FloatArray = (
            self._a * market + self._b * d.sector_move[self._sector_of] + self._c * d.idio_move
        )
        return z, market, market_sd

    def _fill_shocks(self, lo: int, hi: int) -> None:
        """IV shocks (correlated with the move) and skew shocks of sessions ``lo..hi``."""
        rho = self.mag7.iv_return_correlation
        for i in range(lo, hi + 1):
            if self._shock_filled[i]:
                continue
            z, _, _ = self._move_z(i)
            d = self.draw(i)
            self._iv_shocks[i] = rho * z + math.sqrt(1.0 - rho * rho) * d.iv_shock
            self._skew_shocks[i] = d.skew_shock
            self._shock_filled[i] = True

    def _moving_sum(self, weights: FloatArray, shocks: FloatArray, index: int) -> FloatArray:
        """sum_k weights[k] shocks[index - k] over the window (same arithmetic in any order)."""
        k = min(weights.shape[0], index + 1)
        self._fill_shocks(index - k + 1, index)
        window = shocks[index - k + 1 : index + 1][::-1]
        total: FloatArray = (weights[:k, None] * window).sum(axis=0)
        return total

    def iv_factor(self, index: int) -> FloatArray:
        """``h`` of every stock at the close of session ``index`` (moving-average sum)."""
        found = self._h.get(index)
        if found is None:
            found = self._moving_sum(self._iv_weights, self._iv_shocks, index)
            self._h[index] = found
        return found

    def skew_deviation(self, index: int) -> FloatArray:
        """The skew coefficient's deviation from the names' ``skew`` at session ``index``'s close."""
        found = self._skew_dev.get(index)
        if found is None:
            found = self._moving_sum(self._skew_weights, self._skew_shocks, index)
            self._skew_dev[index] = found
        return found

    def diffusive_iv(self, index: int, vix: float, progress: float = 1.0) -> FloatArray:
        """Diffusive ATM IV of the stocks at VIX ``vix``, ``progress`` of session ``index`` done.

        ``h`` moves linearly from the prior close's value to this close's through the session.
        """
        h_now = self.iv_factor(index)
        h = h_now
        if progress < 1.0:
            h_prev = self.iv_factor(index - 1) if index > 0 else h_now
            h = h_prev + progress * (h_now - h_prev)
        level: FloatArray = (
            self._base_iv * (vix / self.config.vix_base) ** self.mag7.vix_elasticity * np.exp(h)
        )
        return level

    def _close_iv(self, index: int) -> FloatArray:
        vix = math.exp(self.paths.daily.log_vix_close(index))
        return self.diffusive_iv(index, vix)

    def stock_day(self, index: int) -> StockDay:
        found = self._days.get(index)
        if found is not None:
            return found
        c = self.config
        m = self.mag7
        sessions = all_sessions()
        day = sessions[index]
        d = self.draw(index)
        prev = max(index - 1, 0)
        nights = (day - sessions[prev]).days if index > 0 else 1
        night_units = c.overnight_variance_share * (
            1.0 + c.nontrading_day_variance_weight * (nights - 1)
        )
        day_units = (1.0 - c.overnight_variance_share) * (
            session_minutes(day) / c.regular_session_minutes
        )
        tdpy = c.trading_days_per_year
        annual = self._close_iv(prev) * c.rv_to_iv
        earn_mask, implied = self._earnings_on(day)
        gap_z, _, _ = self._market_shock(index)
        gz = self._a * gap_z + self._b * d.sector_gap[self._sector_of] + self._c * d.idio_gap
        gap: FloatArray = annual * math.sqrt(night_units / tdpy) * gz + (
            earn_mask * implied * c.rv_to_iv * d.earnings
        )
        vol_mult = 1.0 + earn_mask * (m.earnings_day_vol_multiplier - 1.0)
        sigma_day: FloatArray = annual * math.sqrt(day_units / tdpy) * vol_mult
        move_z, market, market_sd = self._move_z(index)
        result = StockDay(
            log_gap=gap,
            log_move=sigma_day * move_z,
            sigma_day=sigma_day,
            move_z=move_z,
            market_move_z=market,
            market_sd=market_sd,
            earnings=earn_mask,
        )
        self._days[index] = result
        return result

    def log_close(self, index: int) -> FloatArray:
        """Log closes of session ``index`` (-1: the session before the span), memoised."""
        found = self._log_close.get(index)
        if found is not None:
            return found
        a = self._anchor
        value: FloatArray
        if index >= a:
            start = max((i for i in self._log_close if a <= i < index), default=None)
            if start is None:
                value, i = self._base_log.copy(), a
            else:
                value, i = self._log_close[start], start + 1
            while i <= index:
                sd = self.stock_day(i)
                value = (value + sd.log_gap) + sd.log_move
                self._log_close[i] = value
                i += 1
            return value
        start = min((i for i in self._log_close if index < i < a), default=None)
        if start is None:
            value, i = self._base_log.copy(), a - 1
            self._log_close[i] = value
        else:
            value, i = self._log_close[start], start
        while i > index:
            sd = self.stock_day(i)
            value = value - sd.log_move - sd.log_gap
            i -= 1
            self._log_close[i] = value
        return value

    def close(self, symbol: str, index: int) -> float:
        return math.exp(float(self.log_close(index)[self._index[symbol]]))

    # -- intraday ---------------------------------------------------------------------------------

    def day(self, day: date) -> DayPaths:
        """The session's 1-minute paths of every stock (LRU-cached; the ETF day is cached too)."""
        found = self._paths.get(day)
        if found is not None:
            self._paths.move_to_end(day)
            return found
        result = self._generate(day, self.paths.day(day))
        self._paths[day] = result
        while len(self._paths) > self.mag7.day_cache_size:
            self._paths.popitem(last=False)
        return result

    def daily_bar(self, symbol: str, day: date) -> tuple[float, float, float, float, float]:
        """(open, high, low, close, volume) of a session, consistent with its 1-minute bars."""
        found = self._daily_bars.get(day)
        if found is None:
            paths = self._paths.get(day)
            if paths is None:  # history sweep: leave both LRU caches to the live days
                paths = self._generate(day, self.paths.peek(day))
            found = {
                sym: (
                    float(p.open[0]),
                    float(p.high.max()),
                    float(p.low.min()),
                    float(p.close[-1]),
                    float(p.volume.sum()),
                )
                for sym, p in paths.paths.items()
            }
            self._daily_bars[day] = found
        return found[symbol]

    def _generate(self, day: date, etf: DayPaths) -> DayPaths:
        c = self.config
        m = self.mag7
        index = session_index(day)
        sd = self.stock_day(index)
        n = etf.n_minutes
        n_stocks = len(self.symbols)
        log_prev = self.log_close(index - 1)
        log_open = log_prev + sd.log_gap
        log_close = self.log_close(index)

        rng = day_rng(self.seed, day, _MINUTE_STREAM)
        sector_z = rng.standard_normal((n, self._n_sectors))
        idio_z = rng.standard_normal((n, n_stocks))
        u_high = rng.random((n, n_stocks))
        u_low = rng.random((n, n_stocks))
        vol_noise = rng.standard_normal((n, n_stocks))

        spy = etf.paths[m.market_symbol]
        spy_log = np.log(np.concatenate((spy.open[:1], spy.close)))
        spy_ret = np.diff(spy_log)  # sums to the ETF's open-to-close move
        weights = variance_weights(n, c)
        share = weights / weights.sum()  # of the day's variance, per minute
        root = np.sqrt(share)[:, None]
        sigma = sd.sigma_day[None, :]
        market_inc = (self._a * sd.sigma_day / (self._market_sd * sd.market_sd))[None, :] * (
            spy_ret[:, None]
        )
        noise_inc = sigma * root * (self._b * sector_z[:, self._sector_of] + self._c * idio_z)
        noise_var = (sigma * root) ** 2 * (self._b**2 + self._c**2)[None, :]
        free = np.cumsum(market_inc + noise_inc, axis=0)
        clock = np.cumsum(noise_var, axis=0)
        clock /= clock[-1]
        path = free + clock * (sd.log_move[None, :] - free[-1])
        logs = np.concatenate((log_open[None, :], log_open[None, :] + path), axis=0)
        logs[-1] = log_close
        minute_sd = sigma * root * np.ones((1, n_stocks))
        z_total = (market_inc + noise_inc) / minute_sd

        vol_u = (np.arange(n) + 0.5) / n
        vol_shape = _u_shape(
            vol_u, c.volume_open_amplitude, c.volume_close_amplitude, c.volume_width
        )
        vol_shape = vol_shape / vol_shape.sum() * (n / c.regular_session_minutes)
        earn_volume = 1.0 + sd.earnings * (m.earnings_volume_multiplier - 1.0)

        prices = np.exp(logs)
        # the session close is bit-identical to the daily process close (prior_close next day)
        prices[-1] = [math.exp(float(v)) for v in log_close]
        hi_log, lo_log = _extremes(logs[:-1], logs[1:], minute_sd, u_high, u_low)
        o, cl = prices[:-1], prices[1:]
        high = np.maximum(np.exp(hi_log), np.maximum(o, cl))
        low = np.minimum(np.exp(lo_log), np.minimum(o, cl))
        raw = (
            (self._daily_volume * earn_volume)[None, :]
            * vol_shape[:, None]
            * (1.0 + c.volume_move_sensitivity * np.abs(z_total))
            * np.exp(c.volume_noise * vol_noise - 0.5 * c.volume_noise**2)
        )
        volume = np.maximum(np.round(raw), 1.0)
        out = {
            sym: SymbolPath(
                open=_readonly(np.ascontiguousarray(o[:, j])),
                high=_readonly(np.ascontiguousarray(high[:, j])),
                low=_readonly(np.ascontiguousarray(low[:, j])),
                close=_readonly(np.ascontiguousarray(cl[:, j])),
                volume=_readonly(np.ascontiguousarray(volume[:, j])),
            )
            for j, sym in enumerate(self.symbols)
        }
        return DayPaths(
            day=day,
            open_at=etf.open_at,
            close_at=etf.close_at,
            times=etf.times,
            start_ts=etf.start_ts,
            paths=MappingProxyType(out),
            regime=etf.regime,
            divergence=None,
        )

    # -- listings ---------------------------------------------------------------------------------

    def expiries(self, on: date) -> tuple[date, ...]:
        """Weeklies within ``weekly_horizon_days`` and monthlies within ``monthly_horizon_days``."""
        found = self._expiries.get(on)
        if found is not None:
            return found
        c, m = self.config, self.mag7
        weekly_last = on + timedelta(days=m.weekly_horizon_days)
        monthly_last = on + timedelta(days=m.monthly_horizon_days)
        last = min(max(weekly_last, monthly_last), all_sessions()[-1])
        listed: list[date] = []
        for d in cal.trading_days(on, last) if on <= last else []:
            friday_like = d.weekday() == _FRIDAY or (
                c.holiday_friday_to_thursday
                and d.weekday() == _THURSDAY
                and not _is_session(d + timedelta(days=1))
            )
            if friday_like and (d <= weekly_last or (d <= monthly_last and is_monthly(d))):
                listed.append(d)
        result = tuple(listed)
        self._expiries[on] = result
        return result

    def listing(self, symbol: str, day: date, expiry: date) -> ExpiryListing:
        key = (symbol, day, expiry)
        found = self._listings.get(key)
        if found is not None:
            self._listings.move_to_end(key)
            return found
        found = self._build_listing(symbol, day, expiry)
        self._listings[key] = found
        while len(self._listings) > self.config.listing_cache_size:
            self._listings.popitem(last=False)
        return found

    def _build_listing(self, symbol: str, day: date, expiry: date) -> ExpiryListing:
        c, m = self.config, self.mag7
        spec = m.stocks[symbol]
        j = self._index[symbol]
        index = session_index(day)
        ref = self.close(symbol, index - 1)
        future = variance_units(c, day, expiry)
        today = (1.0 - c.overnight_variance_share) * (
            session_minutes(day) / c.regular_session_minutes
        )
        events = self.event_variance(symbol, day, expiry)
        iv_prev = float(self._close_iv(max(index - 1, 0))[j])
        sd_to_expiry = math.sqrt(iv_prev**2 * (today + future) / c.trading_days_per_year + events)
        return build_listing(
            c,
            self.seed,
            f"mag7:listing:{symbol}",
            symbol,
            day,
            expiry,
            ref=ref,
            half_width=ref * max(m.strike_range, c.strike_range_sigmas * sd_to_expiry),
            step=m.strike_step(ref),
            peak_open_interest=spec.peak_open_interest,
            future_units=future,
            event_variance=events,
        )

    # -- the vol model ----------------------------------------------------------------------------

    def atm_total_sd(
        self,
        symbol: str,
        index: int,
        vix: float,
        progress: float,
        units: float,
        dte: int,
        event_variance: float,
    ) -> float:
        """ATM log sd to an expiry: ``units`` of diffusive variance (session days) + events."""
        c = self.config
        term = 1.0 + c.term_slope * (vix / c.vix_base - 1.0) * math.exp(-dte / c.term_decay_days)
        if dte == 0:
            term *= 1.0 + c.zero_dte_iv_premium
        annual = float(self.diffusive_iv(index, vix, progress)[self._index[symbol]]) * term
        return math.sqrt(annual * annual * units / c.trading_days_per_year + event_variance)

    def close_atm_iv(self, symbol: str, day: date) -> float:
        """The 30-day ATM IV at ``day``'s close (see the module doc)."""
        index = session_index(day)
        expiry = constant_maturity_expiry(day, self.config.atm_iv_history_days)
        if expiry <= day:
            raise ValueError(f"no session after {day.isoformat()} in the calendar span")
        vix = math.exp(self.paths.daily.log_vix_close(index))
        total_sd = self.atm_total_sd(
            symbol,
            index,
            vix,
            1.0,
            variance_units(self.config, day, expiry),
            (expiry - day).days,
            self.event_variance(symbol, day, expiry),
        )
        t = year_fraction(cal.session(day).close, cal.session(expiry).close)
        return total_sd / math.sqrt(t)

    # -- quotes -----------------------------------------------------------------------------------

    def snapshot(self, symbol: str, expiry: date, at: datetime, day: date) -> ChainSnapshot:
        """The chain at ``at`` (inside ``day``'s session, expiry listed: checked by the caller)."""
        key = (symbol, expiry, at.timestamp())
        found = self._snapshots.get(key)
        if found is not None:
            self._snapshots.move_to_end(key)
            return found
        result = self._price(symbol, expiry, at, day)
        self._snapshots[key] = result
        while len(self._snapshots) > self.config.chain_cache_size:
            self._snapshots.popitem(last=False)
        return result

    def _cumulative_weights(self, n: int) -> FloatArray:
        found = self._cumw.get(n)
        if found is None:
            found = _readonly(np.concatenate(([0.0], np.cumsum(variance_weights(n, self.config)))))
            self._cumw[n] = found
        return found

    def _price(self, symbol: str, expiry: date, at: datetime, day: date) -> ChainSnapshot:
        c = self.config
        spec = self.mag7.stocks[symbol]
        j = self._index[symbol]
        listing = self.listing(symbol, day, expiry)
        etf = self.paths.day(day)
        stocks = self.day(day)
        n = etf.n_minutes
        elapsed = (at.timestamp() - etf.open_at.timestamp()) / 60.0
        done = min(int(elapsed), n)
        path = stocks.paths[symbol]
        vix_path = etf.paths[c.vix_symbol]
        spot = float(path.open[0] if done == 0 else path.close[done - 1])
        vix = float(vix_path.open[0] if done == 0 else vix_path.close[done - 1])

        cumw = self._cumulative_weights(n)
        minute = min(int(elapsed), n - 1)
        frac = elapsed - minute
        used = cumw[minute] + frac * (cumw[minute + 1] - cumw[minute])
        remaining = max(float(cumw[-1] - used), 0.0)
        units = (1.0 - c.overnight_variance_share) * remaining + listing.future_units
        progress = min(max(elapsed / n, 0.0), 1.0)
        index = session_index(day)
        total_sd = self.atm_total_sd(
            symbol, index, vix, progress, units, listing.dte, listing.event_variance
        )
        t = year_fraction(at, listing.expiry_close)
        atm_iv = total_sd / math.sqrt(t)
        dev = self.skew_deviation(index)[j]
        dev_prev = self.skew_deviation(index - 1)[j] if index > 0 else dev
        skew = spec.skew + float(dev_prev + progress * (dev - dev_prev))
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
            skew=skew,
        )


def constant_maturity_expiry(day: date, days: int) -> date:
    """The last session within ``days`` calendar days after ``day`` (clipped to the span)."""
    target = min(day + timedelta(days=days), all_sessions()[-1])
    return target if _is_session(target) else cal.previous_trading_day(target)


def _is_session(day: date) -> bool:
    try:
        session_index(day)
    except KeyError:
        return False
    return True


def _next_session(day: date) -> date | None:
    """The first session strictly after ``day`` in the calendar span (None past its end)."""
    sessions = all_sessions()
    for k in range(1, 8):
        candidate = day + timedelta(days=k)
        if candidate > sessions[-1]:
            return None
        if _is_session(candidate):
            return candidate
    return None
