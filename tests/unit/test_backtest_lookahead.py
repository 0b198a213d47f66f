"""The look-ahead guard: any market-data request beyond the run clock's now is refused.

(The proof on a whole backtest day, every request of the real strategy code recorded and
checked, is ``tests/integration/test_backtest_run.py``.)
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from adapters.clock import SimClock
from adapters.ports import MarketDataError
from adapters.simulator import SimulatedMarket
from core.calendar import NY
from tasks.backtest_market import LookAheadError, LookAheadGuard

DAY = date(2026, 11, 24)
NOW = datetime(2026, 11, 24, 11, 0, tzinfo=NY)
OPEN = datetime(2026, 11, 24, 9, 30, tzinfo=NY)
LATER = NOW + timedelta(minutes=1)


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(5)


@pytest.fixture
def guard(market: SimulatedMarket) -> LookAheadGuard:
    return LookAheadGuard(market, SimClock(NOW), record=True)


def test_guard_when_asked_up_to_now_then_answers_like_the_source(
    guard: LookAheadGuard, market: SimulatedMarket
) -> None:
    bars = guard.bars("SPY", OPEN, NOW)

    assert len(bars) == 90
    assert bars.times[-1] + timedelta(minutes=1) <= NOW
    assert guard.chain("SPY", DAY, NOW).spot == market.chain("SPY", DAY, NOW).spot
    assert guard.last_price("VIX", NOW) == market.last_price("VIX", NOW)
    assert guard.prior_close("SPY", DAY) == market.prior_close("SPY", DAY)
    assert DAY in guard.expiries("SPY", DAY)
    assert not guard.violations
    assert guard.accesses
    assert not any(a.ahead for a in guard.accesses)


@pytest.mark.parametrize(
    "ask",
    [
        lambda g: g.bars("SPY", OPEN, LATER),
        lambda g: g.chain("SPY", DAY, LATER),
        lambda g: g.last_price("SPY", LATER),
        lambda g: g.prior_close("SPY", DAY + timedelta(days=1)),
        lambda g: g.expiries("SPY", DAY + timedelta(days=1)),
        lambda g: g.atm_iv_history("SPY", DAY, 5),  # today's close IV before the close
        lambda g: g.quote(g.chain("SPY", DAY, NOW).contract(0), LATER),
    ],
    ids=["bars", "chain", "last_price", "prior_close", "expiries", "iv_history", "quote"],
)
def test_guard_when_asked_beyond_now_then_raises_and_records_the_violation(
    guard: LookAheadGuard, ask
) -> None:
    with pytest.raises(LookAheadError, match="look-ahead"):
        ask(guard)

    assert len(guard.violations) == 1


def test_guard_error_when_raised_then_not_a_market_data_error_the_steps_would_swallow() -> None:
    assert not issubclass(LookAheadError, (MarketDataError, ValueError, RuntimeError))


def test_guard_when_source_has_ground_truth_extras_then_they_are_hidden(
    guard: LookAheadGuard,
) -> None:
    with pytest.raises(AttributeError, match="not available to a backtest"):
        _ = guard.day_info
    assert getattr(guard, "no_such_thing", None) is None


def test_guard_when_iv_history_of_today_after_the_close_then_allowed(
    market: SimulatedMarket,
) -> None:
    guard = LookAheadGuard(market, SimClock(datetime(2026, 11, 24, 16, 0, tzinfo=NY)))

    days, _ = guard.atm_iv_history("SPY", DAY, 3)

    assert days[-1] == DAY
