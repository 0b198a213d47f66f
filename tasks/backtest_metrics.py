"""Backtest metrics: pure functions of an equity series, trade P&Ls and holding intervals.

Conventions (stated once, used by the tearsheet):

* An equity series is the account value at the end of each trading day, preceded by the starting
  capital; daily returns are ``E[i] / E[i-1] - 1``. Annualisation uses 252 trading days.
* Sharpe = mean(daily returns) / sample stdev (ddof 1) x sqrt(252), risk-free rate 0.
* Sortino = mean(daily returns) / downside deviation x sqrt(252), with the downside deviation
  sqrt(mean(min(r, 0)^2)) over *all* days (target 0).
* CAGR = (E_end / E_start) ^ (252 / trading days) - 1.
* Max drawdown: the largest fall from a running peak (the starting capital counts as a peak),
  as a positive fraction of that peak.
* A trade wins when its P&L after all commissions is > 0 and loses when < 0 (0 is neither).
  Profit factor = gross wins / |gross losses|; average loss is negative.
* Exposure: the fraction of session time (open to close, summed over the run's sessions) during
  which at least one position was open.

Undefined values (a Sharpe of a flat series, a profit factor without losses, anything of an empty
run) are ``None``, never NaN or infinity, so they serialise to JSON and print as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import date, datetime

TRADING_DAYS = 252


def daily_returns(start: float, equity: Sequence[float]) -> list[float]:
    """Returns of each day's end-of-day equity against the day before (the first vs ``start``)."""
    out: list[float] = []
    previous = start
    for value in equity:
        out.append(value / previous - 1.0 if previous else 0.0)
        previous = value
    return out


def total_return(start: float, equity: Sequence[float]) -> float:
    return (equity[-1] / start - 1.0) if equity and start else 0.0


def cagr(start: float, end: float, days: int, periods: int = TRADING_DAYS) -> float | None:
    if days <= 0 or start <= 0 or end <= 0:
        return None
    return float((end / start) ** (periods / days) - 1.0)


def sharpe(returns: Sequence[float], periods: int = TRADING_DAYS) -> float | None:
    n = len(returns)
    if n < 2:
        return None
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    if var <= 0:
        return None
    return mean / math.sqrt(var) * math.sqrt(periods)


def sortino(returns: Sequence[float], periods: int = TRADING_DAYS) -> float | None:
    n = len(returns)
    if n < 1:
        return None
    mean = sum(returns) / n
    downside = math.sqrt(sum(min(r, 0.0) ** 2 for r in returns) / n)
    if downside <= 0:
        return None
    return mean / downside * math.sqrt(periods)


def drawdowns(start: float, equity: Sequence[float]) -> list[float]:
    """Each day's drawdown from the running peak (0 at a new high), as a positive fraction."""
    peak = start
    out: list[float] = []
    for value in equity:
        peak = max(peak, value)
        out.append(1.0 - value / peak if peak > 0 else 0.0)
    return out


def max_drawdown(start: float, equity: Sequence[float]) -> float:
    return max(drawdowns(start, equity), default=0.0)


@dataclass(frozen=True, slots=True)
class TradeStats:
    trades: int
    wins: int
    losses: int
    win_rate: float | None
    profit_factor: float | None
    average_win: float | None
    average_loss: float | None
    total_pnl: float
    gross_profit: float
    gross_loss: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def trade_stats(pnls: Iterable[float]) -> TradeStats:
    values = list(pnls)
    wins = [p for p in values if p > 0]
    losses = [p for p in values if p < 0]
    gross_profit = sum(wins)
    gross_loss = sum(losses)
    return TradeStats(
        trades=len(values),
        wins=len(wins),
        losses=len(losses),
        win_rate=len(wins) / len(values) if values else None,
        profit_factor=gross_profit / -gross_loss if losses else None,
        average_win=gross_profit / len(wins) if wins else None,
        average_loss=gross_loss / len(losses) if losses else None,
        total_pnl=sum(values),
        gross_profit=gross_profit,
        gross_loss=gross_loss,
    )


def exposure(
    intervals: Iterable[tuple[datetime, datetime]], sessions: Iterable[tuple[datetime, datetime]]
) -> float | None:
    """Fraction of the sessions' time covered by at least one of ``intervals`` (overlaps once)."""
    spans = sorted(sessions)
    total = sum((end - begin).total_seconds() for begin, end in spans)
    if total <= 0:
        return None
    held = sorted(intervals)
    covered = 0.0
    active: list[tuple[datetime, datetime]] = []  # begun before the session ends, by begin
    taken = 0  # held[:taken] have begun
    for s_begin, s_end in spans:
        while taken < len(held) and held[taken][0] < s_end:
            active.append(held[taken])
            taken += 1
        # an interval over by this session's start adds nothing to it or to any later one
        active = [iv for iv in active if iv[1] > s_begin]
        cursor = s_begin
        for begin, end in active:
            lo, hi = max(begin, cursor), min(end, s_end)
            if hi > lo:
                covered += (hi - lo).total_seconds()
                cursor = hi
    return covered / total


def monthly_returns(
    start: float, days: Sequence[date], equity: Sequence[float]
) -> dict[tuple[int, int], float]:
    """(year, month) -> return of the month: its last equity vs the previous month's last (the
    first month against ``start``)."""
    if len(days) != len(equity):
        raise ValueError("one equity value per day")
    last: dict[tuple[int, int], float] = {}
    for d, value in zip(days, equity, strict=True):
        last[(d.year, d.month)] = value
    out: dict[tuple[int, int], float] = {}
    previous = start
    for key in sorted(last):
        out[key] = last[key] / previous - 1.0 if previous else 0.0
        previous = last[key]
    return out


@dataclass(frozen=True, slots=True)
class EquityMetrics:
    start_equity: float
    end_equity: float
    days: int
    total_return: float
    cagr: float | None
    sharpe: float | None
    sortino: float | None
    max_drawdown: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def equity_metrics(start: float, equity: Sequence[float]) -> EquityMetrics:
    returns = daily_returns(start, equity)
    end = equity[-1] if equity else start
    return EquityMetrics(
        start_equity=start,
        end_equity=end,
        days=len(equity),
        total_return=total_return(start, equity),
        cagr=cagr(start, end, len(equity)),
        sharpe=sharpe(returns),
        sortino=sortino(returns),
        max_drawdown=max_drawdown(start, equity),
    )
