"""Market data for backtests: the source (simulator or Polygon history) behind a look-ahead guard.

``LookAheadGuard`` wraps any ``MarketData`` and checks every request against the run clock: a
question about a time after ``clock.now()`` is a look-ahead and raises ``LookAheadError``. The
error deliberately derives from ``Exception`` only (not ``MarketDataError``/``ValueError``): the
trading steps catch those to skip an underlying, and a look-ahead must never be skipped quietly.
Every violation is also kept in ``violations``, so a caller that swallows broad exceptions still
cannot hide one (the backtest checks the list after every day).

What counts as "after now":

* ``bars(symbol, start, end)``: ``end`` > now (bars are those completed by ``end``);
* ``chain(u, expiry, at)``, ``last_price(symbol, at)``, ``quote(contract, at)``: ``at`` > now;
* ``prior_close(symbol, on)``, ``expiries(u, on)``: ``on`` after today (the close before today
  and today's listings are known at the open);
* ``atm_iv_history(symbol, end, n)`` (simulator extra, Mag7 IV history): ``end`` after today, or
  today before the session close (the value is the day's close IV);
* ``earnings_dates`` passes through: an earnings calendar is published ahead of time.

Any other attribute of the wrapped adapter is refused (``AttributeError``) so that nothing (for
example the simulator's ``day_info`` ground truth) can reach the strategy around the guard.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from adapters.ports import Clock, MarketData
from adapters.simulator import SimulatedMarket
from core.calendar import NY, is_trading_day, session
from core.marketdata import Bars, ChainSnapshot
from core.models import OptionContract, Right, Spread

SOURCES = ("sim", "polygon")


class LookAheadError(Exception):
    """A backtest asked its market data about a time after the run clock's now."""


@dataclass(frozen=True, slots=True)
class Access:
    method: str
    subject: str
    asked_for: datetime | date
    now: datetime

    @property
    def ahead(self) -> bool:
        """True when the request reached past now (a time after now, or a day after today)."""
        if isinstance(self.asked_for, datetime):
            return self.asked_for > self.now
        return self.asked_for > self.now.astimezone(NY).date()


class LookAheadGuard:
    """``MarketData`` that refuses (and records) any request beyond ``clock.now()``."""

    def __init__(self, inner: MarketData, clock: Clock, record: bool = False) -> None:
        self._inner = inner
        self._clock = clock
        self._record = record
        self.accesses: list[Access] = []  # every request, when ``record``
        self.counts: Counter[str] = Counter()
        self.violations: list[str] = []

    @property
    def inner(self) -> MarketData:
        return self._inner

    def _check(self, method: str, subject: str, asked: datetime | date, late: bool) -> None:
        now = self._clock.now()
        self.counts[method] += 1
        if self._record:
            self.accesses.append(Access(method, subject, asked, now))
        if late:
            text = (
                f"look-ahead: {method}({subject}) asked for {asked.isoformat()} at "
                f"{now.astimezone(NY).isoformat()}"
            )
            self.violations.append(text)
            raise LookAheadError(text)

    def _today(self) -> date:
        return self._clock.now().astimezone(NY).date()

    # -- MarketData -------------------------------------------------------------------------------
    def expiries(self, underlying: str, on: date) -> list[date]:
        self._check("expiries", underlying, on, on > self._today())
        return self._inner.expiries(underlying, on)

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        self._check("chain", f"{underlying} {expiry}", at, at > self._clock.now())
        return self._inner.chain(underlying, expiry, at)

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        self._check("bars", f"{symbol} {freq}", end, end > self._clock.now())
        return self._inner.bars(symbol, start, end, freq)

    def prior_close(self, symbol: str, on: date) -> float:
        self._check("prior_close", symbol, on, on > self._today())
        return self._inner.prior_close(symbol, on)

    def last_price(self, symbol: str, at: datetime) -> float:
        self._check("last_price", symbol, at, at > self._clock.now())
        return self._inner.last_price(symbol, at)

    # -- optional extras of some adapters --------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        target = getattr(self._inner, name)  # AttributeError when the source has no such extra
        if name == "quote":
            return self._quote(target)
        if name == "atm_iv_history":
            return self._iv_history(target)
        if name == "earnings_dates":
            return target
        raise AttributeError(f"{name!r} is not available to a backtest (look-ahead guard)")

    def _quote(self, target: Callable[..., Any]) -> Callable[..., Any]:
        def quote(contract: OptionContract, at: datetime) -> Any:
            self._check("quote", contract.symbol, at, at > self._clock.now())
            return target(contract, at)

        return quote

    def _iv_history(self, target: Callable[..., Any]) -> Callable[..., Any]:
        def atm_iv_history(symbol: str, end: date, sessions: int) -> Any:
            today = self._today()
            late = end > today or (
                end == today and is_trading_day(today) and self._clock.now() < session(today).close
            )
            self._check("atm_iv_history", symbol, end, late)
            return target(symbol, end, sessions)

        return atm_iv_history


# ---------------------------------------------------------------------------------- settlement


def intrinsic_value(spread: Spread, underlying_price: float) -> Decimal:
    """Net value per unit of ``spread`` at expiry (module convention: long legs positive)."""
    spot = Decimal(str(round(underlying_price, 4)))
    total = Decimal("0")
    for leg in spread.legs:
        k = leg.contract.strike
        payoff = (
            max(spot - k, Decimal("0"))
            if leg.contract.right is Right.CALL
            else max(k - spot, Decimal("0"))
        )
        total += leg.side.sign * leg.ratio * payoff
    return total.quantize(Decimal("0.0001"))


# ---------------------------------------------------------------------------------- sources


@dataclass(frozen=True, slots=True)
class PolygonAccess:
    """Where the Polygon history comes from: key, base URL, parquet cache, and the wall clock that
    decides which days are complete (and so cached on disk)."""

    api_key: str
    base_url: str
    cache_dir: Path
    now: Callable[[], datetime] | None = None


def history_dir() -> Path:
    """The parquet cache shared with the testing mode: $DTE_HISTORY_DIR, else ``var/history``."""
    return Path(os.environ.get("DTE_HISTORY_DIR") or "var/history")


def build_market(source: str, seed: int, polygon: PolygonAccess | None = None) -> MarketData:
    """The raw source: ``sim`` = the seeded simulator, ``polygon`` = history replay (parquet)."""
    if source == "sim":
        return SimulatedMarket(seed)
    if source == "polygon":
        if polygon is None:
            raise ValueError("source 'polygon' needs an API key and base URL (PolygonAccess)")
        from adapters.polygon.client import PolygonMarketData

        return PolygonMarketData(
            polygon.api_key,
            base_url=polygon.base_url,
            live=False,
            cache_dir=polygon.cache_dir,
            now=polygon.now,
        )
    raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {source!r}")
