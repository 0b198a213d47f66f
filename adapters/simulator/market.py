"""``SimulatedMarket``: the seeded synthetic market behind the ``MarketData`` port.

It implements ``adapters.ports.MarketData`` structurally (plus ``quote`` for the paper broker and
``day_info`` with the day's ground truth for demos and tests). The model is described in
``adapters.simulator.paths`` (prices) and ``adapters.simulator.chains`` (listings and quotes) for
the ETFs and the VIX, and in ``adapters.simulator.mag7`` for the Mag7 stocks (factor model on
SPY, earnings, IV dynamics, weekly/monthly chains); every number lives in ``SimulatorConfig``.

The stocks are an add-on: they draw only from their own random streams and are generated only
when a stock is asked for, so every ETF/VIX number is the same with or without them
(``SimulatorConfig(mag7=None)`` removes them). For the stocks only: ``earnings_dates`` /
``earnings_events`` (the quarterly calendar, ground truth) and ``atm_iv_history`` (the daily
30-day ATM IV, also for the ETFs).

Semantics
---------
* Times must be timezone-aware (a naive datetime raises ``ValueError``); dates are New York dates.
* The simulator has no "now": any session of the XNYS calendar span can be asked for, and the
  answer depends only on (seed, config, arguments), never on call order.
* ``bars(..., "1min")``: bars whose start is in ``[start, end)`` and that have completed by ``end``,
  concatenated over the sessions in range. A range with no session in it (a holiday such as
  2026-11-26, a weekend) gives **empty** ``Bars`` rather than an error: "no trading" is a valid answer
  for a range query. ``"1d"``: one bar per session whose open is in ``[start, end)`` and whose close
  is ``<= end``; bar time = the session open; open/close are the daily process, high/low/volume are
  those of the session's 1-minute simulation (exactly consistent, generated on demand).
* ``chain`` and ``last_price`` use the last *completed* 1-minute bar's close as the price (the
  session open before the first bar completes). ``chain`` needs ``at`` inside the session of
  ``at``'s date and raises ``MarketDataError`` for an unknown underlying, the VIX (no chain), an
  expiry not listed that day (including an expired one), a configured missing chain, or a time
  outside the session. ``last_price`` outside a session gives the latest close.
* ``prior_close(symbol, on)`` is the close of the last session before ``on`` and equals the last
  1-minute close of that session exactly.
* Stocks follow every rule above; their ``expiries`` are weeklies and monthlies (Friday, Thursday
  when the Friday is a holiday), never the ETFs' dailies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import numpy as np

from adapters.ports import MarketDataError
from adapters.simulator.chains import ChainEngine, variance_units
from adapters.simulator.mag7 import EarningsEvent, Mag7Engine, constant_maturity_expiry
from adapters.simulator.paths import (
    DayPaths,
    DayRegime,
    DivergenceEpisode,
    PathEngine,
    SimulatorConfig,
    all_sessions,
    session_index,
)
from core import calendar as cal
from core.marketdata import Bars, ChainSnapshot, FloatArray
from core.models import OptionContract, require_aware
from core.pricing import year_fraction

_BAR_SECONDS = 60.0
_FREQ_MINUTE = "1min"
_FREQ_DAY = "1d"


@dataclass(frozen=True, slots=True)
class DayInfo:
    """Ground truth of one simulated session (never needed by a strategy; for demos and tests)."""

    day: date
    regime: DayRegime
    divergence: DivergenceEpisode | None
    vix_open: float
    vix_close: float


class SimulatedMarket:
    """Seeded synthetic SPY/QQQ/IWM + VIX + Mag7 market with option chains (``MarketData``)."""

    def __init__(self, seed: int, config: SimulatorConfig | None = None) -> None:
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self._seed = seed
        self._config = config if config is not None else SimulatorConfig()
        self._paths = PathEngine(seed, self._config)
        self._chains = ChainEngine(seed, self._config, self._paths)
        self._symbol_index = {sym: i for i, sym in enumerate(self._config.symbols)}
        self._stocks = frozenset(self._config.stock_symbols)
        self._mag7_engine: Mag7Engine | None = None  # built on the first stock request

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @property
    def symbols(self) -> tuple[str, ...]:
        """ETFs, the VIX, then the Mag7 stocks (when configured)."""
        return (*self._config.symbols, *self._config.stock_symbols)

    # -- helpers ----------------------------------------------------------------------------------

    def _mag7(self) -> Mag7Engine:
        if self._mag7_engine is None:
            self._mag7_engine = Mag7Engine(self._seed, self._config, self._paths)
        return self._mag7_engine

    def _check_symbol(self, symbol: str) -> int:
        """ETF/VIX column of ``symbol``; -1 for a stock; MarketDataError when unknown."""
        index = self._symbol_index.get(symbol)
        if index is None:
            if symbol in self._stocks:
                return -1
            raise MarketDataError(f"simulator: unknown symbol {symbol!r} (have {self.symbols})")
        return index

    def _check_underlying(self, underlying: str) -> None:
        if underlying == self._config.vix_symbol:
            raise MarketDataError(f"simulator: {underlying} is an index without an option chain")
        if underlying not in self._config.underlyings and underlying not in self._stocks:
            raise MarketDataError(f"simulator: unknown underlying {underlying!r}")

    def _check_stock(self, symbol: str) -> Mag7Engine:
        if symbol not in self._stocks:
            raise MarketDataError(f"simulator: {symbol!r} is not a simulated stock")
        return self._mag7()

    def _listed(self, underlying: str, on: date) -> tuple[date, ...]:
        if underlying in self._stocks:
            return self._mag7().expiries(on)
        return self._chains.expiries(underlying, on)

    def _day_paths(self, symbol: str, day: date) -> DayPaths:
        return self._mag7().day(day) if symbol in self._stocks else self._paths.day(day)

    @staticmethod
    def _ny(t: datetime, name: str) -> datetime:
        require_aware(t, name)
        return t.astimezone(cal.NY)

    def _is_session(self, day: date) -> bool:
        try:
            return cal.is_trading_day(day)
        except cal.CalendarError as exc:
            raise MarketDataError(f"simulator: {exc}") from exc

    def _open_session(self, at: datetime) -> tuple[date, DayPaths]:
        """The session containing ``at`` and its paths; MarketDataError outside any session."""
        day = self._ny(at, "at").date()
        if not self._is_session(day):
            raise MarketDataError(f"simulator: {day.isoformat()} is not a trading day")
        paths = self._paths.day(day)
        if not paths.open_at <= at < paths.close_at:
            raise MarketDataError(
                f"simulator: {at.isoformat()} is outside the session "
                f"{paths.open_at:%H:%M}-{paths.close_at:%H:%M} of {day.isoformat()}"
            )
        return day, paths

    # -- MarketData port --------------------------------------------------------------------------

    def expiries(self, underlying: str, on: date) -> list[date]:
        """Listed expiries from ``on`` (inclusive, if a session) up to ``expiry_horizon_days``."""
        self._check_underlying(underlying)
        try:
            return list(self._listed(underlying, on))
        except cal.CalendarError as exc:
            raise MarketDataError(f"simulator: {exc}") from exc

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        self._check_underlying(underlying)
        day, _ = self._open_session(at)
        if (underlying, day) in self._config.missing_chains:
            raise MarketDataError(
                f"simulator: no chain for {underlying} on {day.isoformat()} (configured missing)"
            )
        if expiry < day:
            raise MarketDataError(
                f"simulator: {underlying} {expiry.isoformat()} expired before {day.isoformat()}"
            )
        if expiry not in self._listed(underlying, day):
            raise MarketDataError(
                f"simulator: {underlying} lists no {expiry.isoformat()} expiry on {day.isoformat()}"
            )
        if underlying in self._stocks:
            return self._mag7().snapshot(underlying, expiry, at, day)
        return self._chains.snapshot(underlying, expiry, at, day)

    def quote(self, contract: OptionContract, at: datetime) -> tuple[float, float]:
        """(bid, ask) of one contract at ``at``, the same numbers as its row in ``chain``."""
        snap = self.chain(contract.underlying, contract.expiry, at)
        row = snap.index_of(contract)
        if row is None:
            raise MarketDataError(f"simulator: {contract.symbol} is not listed at {at.isoformat()}")
        return float(snap.bid[row]), float(snap.ask[row])

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        self._check_symbol(symbol)
        start_ny, end_ny = self._ny(start, "start"), self._ny(end, "end")
        if freq not in (_FREQ_MINUTE, _FREQ_DAY):
            raise MarketDataError(f"simulator: unsupported bar frequency {freq!r}")
        if end_ny <= start_ny:
            return _empty_bars(symbol)
        try:
            days = cal.trading_days(start_ny.date(), end_ny.date())
        except cal.CalendarError as exc:
            raise MarketDataError(f"simulator: {exc}") from exc
        if freq == _FREQ_DAY:
            return self._daily_bars(symbol, days, start_ny, end_ny)
        lo_ts, hi_ts = start_ny.timestamp(), end_ny.timestamp() - _BAR_SECONDS
        times: list[tuple[datetime, ...]] = []
        parts: list[tuple[FloatArray, ...]] = []
        for day in days:
            paths = self._day_paths(symbol, day)
            lo = int(paths.start_ts.searchsorted(lo_ts, side="left"))
            hi = int(paths.start_ts.searchsorted(hi_ts, side="right"))
            if hi <= lo:
                continue
            p = paths.paths[symbol]
            times.append(paths.times[lo:hi])
            parts.append(
                (p.open[lo:hi], p.high[lo:hi], p.low[lo:hi], p.close[lo:hi], p.volume[lo:hi])
            )
        if not parts:
            return _empty_bars(symbol)
        if len(parts) == 1:  # the loop's case: today's bars so far, views of the day's paths
            return Bars(symbol, times[0], *parts[0])
        o, h, low, c, v = (np.concatenate([part[k] for part in parts]) for k in range(5))
        return Bars(symbol, tuple(t for day in times for t in day), o, h, low, c, v)

    def _daily_bars(self, symbol: str, days: list[date], start: datetime, end: datetime) -> Bars:
        times: list[datetime] = []
        rows: list[tuple[float, float, float, float, float]] = []
        for day in days:
            session = cal.session(day)
            if session.open < start or session.close > end:
                continue
            times.append(session.open)
            if symbol in self._stocks:
                rows.append(self._mag7().daily_bar(symbol, day))
            else:
                rows.append(self._paths.daily_bar(symbol, day))
        if not rows:
            return _empty_bars(symbol)
        table = np.array(rows, dtype=np.float64)
        return Bars(
            symbol,
            tuple(times),
            table[:, 0].copy(),
            table[:, 1].copy(),
            table[:, 2].copy(),
            table[:, 3].copy(),
            table[:, 4].copy(),
        )

    def prior_close(self, symbol: str, on: date) -> float:
        """Close of the last session strictly before ``on``."""
        index = self._check_symbol(symbol)
        try:
            previous = cal.previous_trading_day(on)
            if index < 0:
                return self._mag7().close(symbol, session_index(previous))
            return self._paths.daily.close(index, session_index(previous))
        except (cal.CalendarError, KeyError) as exc:
            raise MarketDataError(f"simulator: no session before {on.isoformat()}: {exc}") from exc

    def last_price(self, symbol: str, at: datetime) -> float:
        """Last completed 1-minute close in the session, the open before it, the latest close."""
        index = self._check_symbol(symbol)
        at_ny = self._ny(at, "at")
        day = at_ny.date()
        if not self._is_session(day):
            return self.prior_close(symbol, day)
        session = cal.session(day)
        if at_ny < session.open:
            return self.prior_close(symbol, day)
        if at_ny >= session.close:
            if index < 0:
                return self._mag7().close(symbol, session_index(day))
            return self._paths.daily.close(index, session_index(day))
        paths = self._day_paths(symbol, day)
        done = min(
            int((at_ny.timestamp() - paths.open_at.timestamp()) // _BAR_SECONDS), len(paths.times)
        )
        p = paths.paths[symbol]
        return float(p.open[0] if done == 0 else p.close[done - 1])

    # -- ground truth -----------------------------------------------------------------------------

    def day_info(self, day: date) -> DayInfo:
        """The regime and divergence episode the simulator drew for a session (ground truth)."""
        if not self._is_session(day):
            raise MarketDataError(f"simulator: {day.isoformat()} is not a trading day")
        paths = self._paths.day(day)
        vix = paths.paths[self._config.vix_symbol]
        return DayInfo(
            day=day,
            regime=paths.regime,
            divergence=paths.divergence,
            vix_open=float(vix.open[0]),
            vix_close=float(vix.close[-1]),
        )

    # -- Mag7 extras ------------------------------------------------------------------------------

    def earnings_events(self, symbol: str, start: date, end: date) -> list[EarningsEvent]:
        """The stock's quarterly reports whose earnings session is in ``[start, end]`` (truth)."""
        return self._check_stock(symbol).events_between(symbol, start, end)

    def earnings_dates(self, symbol: str, start: date, end: date) -> list[date]:
        """Earnings sessions in ``[start, end]``: the session whose open first prices a report
        (the report day when before the open, the next session when after the close)."""
        return [e.session for e in self.earnings_events(symbol, start, end)]

    def atm_iv_history(
        self, symbol: str, end: date, sessions: int
    ) -> tuple[tuple[date, ...], FloatArray]:
        """(dates, IVs) of the last ``sessions`` sessions up to ``end`` (inclusive when a session):
        the 30-day ATM implied vol at each session's close, on the chains' own vol model.

        Stocks and ETFs. Fewer values when the calendar span starts later; a value is the IV of
        an expiry on the last session within ``atm_iv_history_days`` (30) calendar days, priced at
        the close, with the earnings events still ahead in it (so it drops after a report).
        """
        self._check_underlying(symbol)
        if sessions < 0:
            raise ValueError(f"sessions must be >= 0, got {sessions}")
        all_days = all_sessions()
        try:
            last_day = end if self._is_session(end) else cal.previous_trading_day(end)
            last = session_index(last_day)
        except (cal.CalendarError, KeyError) as exc:
            raise MarketDataError(f"simulator: no session up to {end.isoformat()}: {exc}") from exc
        days = all_days[max(last - sessions + 1, 0) : last + 1] if sessions else ()
        if symbol in self._stocks:
            engine = self._mag7()
            try:
                values = [engine.close_atm_iv(symbol, d) for d in days]
            except ValueError as exc:
                raise MarketDataError(f"simulator: {exc}") from exc
        else:
            values = [self._etf_close_atm_iv(symbol, d) for d in days]
        return tuple(days), np.array(values, dtype=np.float64)

    def _etf_close_atm_iv(self, symbol: str, day: date) -> float:
        """The ETF chain's ATM IV at ``day``'s close for the constant-maturity expiry."""
        c = self._config
        expiry = constant_maturity_expiry(day, c.atm_iv_history_days)
        if expiry <= day:
            raise MarketDataError(f"simulator: no session after {day.isoformat()} in the span")
        vix = float(np.exp(self._paths.daily.log_vix_close(session_index(day))))
        dte = (expiry - day).days
        term = 1.0 + c.term_slope * (vix / c.vix_base - 1.0) * np.exp(-dte / c.term_decay_days)
        annual = vix / 100.0 * c.underlyings[symbol].iv_multiplier * term
        units = variance_units(c, day, expiry)
        t = year_fraction(cal.session(day).close, cal.session(expiry).close)
        return float(annual * np.sqrt(units / c.trading_days_per_year) / np.sqrt(t))


def _empty_bars(symbol: str) -> Bars:
    empty = np.empty(0, dtype=np.float64)
    return Bars(symbol, (), empty.copy(), empty.copy(), empty.copy(), empty.copy(), empty.copy())
