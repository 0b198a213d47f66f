"""Backtest metrics against hand-computed values on tiny series."""

from __future__ import annotations

import math
import random
from datetime import date, datetime, timedelta

import pytest

from core.calendar import NY
from tasks.backtest_metrics import (
    cagr,
    daily_returns,
    drawdowns,
    equity_metrics,
    exposure,
    max_drawdown,
    monthly_returns,
    sharpe,
    sortino,
    total_return,
    trade_stats,
)

START = 100.0
# +10%, -10%, +10%: 110, 99, 108.9
EQUITY = [110.0, 99.0, 108.9]


def ny(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, day, hour, minute, tzinfo=NY)


def test_daily_returns_when_equity_series_then_each_day_against_the_day_before() -> None:
    assert daily_returns(START, EQUITY) == pytest.approx([0.1, -0.1, 0.1])


def test_total_return_when_equity_series_then_last_over_start() -> None:
    assert total_return(START, EQUITY) == pytest.approx(0.089)


def test_sharpe_when_returns_plus_minus_ten_percent_then_sqrt_21() -> None:
    # mean 1/30, sample stdev sqrt(0.02/1.5) = 0.11547 -> ratio 1/sqrt(12); x sqrt(252) = sqrt(21)
    assert sharpe([0.1, -0.1, 0.1]) == pytest.approx(math.sqrt(21))


def test_sortino_when_one_down_day_then_downside_of_all_days_gives_sqrt_84() -> None:
    # downside deviation sqrt(0.01 / 3); mean 1/30 -> ratio 1/sqrt(3); x sqrt(252) = sqrt(84)
    assert sortino([0.1, -0.1, 0.1]) == pytest.approx(math.sqrt(84))


def test_sharpe_and_sortino_when_undefined_then_none() -> None:
    assert sharpe([0.01]) is None
    assert sharpe([0.01, 0.01]) is None  # zero variance
    assert sortino([0.01, 0.02]) is None  # no down day
    assert sortino([]) is None


def test_max_drawdown_when_peak_110_trough_99_then_ten_percent() -> None:
    assert drawdowns(START, EQUITY) == pytest.approx([0.0, 0.1, 0.01])
    assert max_drawdown(START, EQUITY) == pytest.approx(0.1)


def test_max_drawdown_when_first_day_loses_then_capital_is_the_peak() -> None:
    assert max_drawdown(100.0, [90.0, 95.0]) == pytest.approx(0.1)


def test_cagr_when_121_percent_over_two_years_of_days_then_ten_percent() -> None:
    assert cagr(100.0, 121.0, 504) == pytest.approx(0.1)
    assert cagr(100.0, 121.0, 0) is None


def test_trade_stats_when_two_wins_two_losses_then_hand_computed_values() -> None:
    stats = trade_stats([100.0, -50.0, 30.0, -20.0, 0.0])

    assert stats.trades == 5
    assert (stats.wins, stats.losses) == (2, 2)
    assert stats.win_rate == pytest.approx(0.4)
    assert stats.profit_factor == pytest.approx(130 / 70)
    assert stats.average_win == pytest.approx(65.0)
    assert stats.average_loss == pytest.approx(-35.0)
    assert stats.total_pnl == pytest.approx(60.0)


def test_trade_stats_when_no_losses_or_no_trades_then_none_not_infinity() -> None:
    assert trade_stats([10.0]).profit_factor is None
    empty = trade_stats([])
    assert empty.win_rate is None
    assert empty.average_win is None
    assert empty.total_pnl == 0


def test_exposure_when_overlapping_intervals_then_union_over_session_time() -> None:
    sessions = [(ny(23, 9, 30), ny(23, 16)), (ny(24, 9, 30), ny(24, 16))]  # 2 x 390 min
    held = [
        (ny(23, 10), ny(23, 10, 30)),
        (ny(23, 10, 15), ny(23, 11)),  # overlaps: the union is 10:00-11:00
        (ny(24, 15, 30), ny(25, 10)),  # clipped to the 24th's close: 30 min
    ]

    assert exposure(held, sessions) == pytest.approx(90 / 780)
    assert exposure([], sessions) == 0
    assert exposure([], []) is None


def test_monthly_returns_when_two_months_then_each_against_previous_month_end() -> None:
    days = [date(2026, 11, 27), date(2026, 11, 30), date(2026, 12, 1)]
    out = monthly_returns(100.0, days, [105.0, 110.0, 99.0])

    assert out == pytest.approx({(2026, 11): 0.10, (2026, 12): -0.10})


def test_equity_metrics_when_series_then_bundles_the_pure_functions() -> None:
    m = equity_metrics(START, EQUITY)

    assert m.end_equity == 108.9
    assert m.days == 3
    assert m.sharpe == pytest.approx(math.sqrt(21))
    assert m.max_drawdown == pytest.approx(0.1)


def test_exposure_when_many_intervals_over_many_sessions_then_same_as_checking_every_pair() -> None:
    # exposure walks only the intervals that can still overlap a session; the sum must be the
    # one of checking every interval against every session, to the last bit
    rng = random.Random(5)
    sessions = [(ny(d, 9, 30), ny(d, 16)) for d in range(2, 28)]
    held = []
    for _ in range(120):
        begin = ny(rng.randint(1, 27), rng.randint(8, 17), rng.randint(0, 59))
        held.append((begin, begin + timedelta(minutes=rng.choice([1, 30, 200, 600, 2000]))))

    covered = 0.0
    for s_begin, s_end in sorted(sessions):
        cursor = s_begin
        for begin, end in sorted(held):
            lo, hi = max(begin, cursor), min(end, s_end)
            if hi > lo:
                covered += (hi - lo).total_seconds()
                cursor = hi
    total = sum((end - begin).total_seconds() for begin, end in sessions)

    assert exposure(held, sessions) == covered / total
    assert 0 < covered / total < 1
