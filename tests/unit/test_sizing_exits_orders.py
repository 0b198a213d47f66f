from datetime import datetime
from decimal import Decimal

import pytest

from core.calendar import NY
from core.chains import ComboQuote
from core.exits import ExitProfile, ExitReason, ExitRules, check_exit
from core.orders import WalkRules, exit_prices, walk_prices
from core.sizing import confidence_factor, contracts_for_budget
from core.spreads import bull_call_debit, iron_condor
from systems.smart0dte.config import DEFAULT
from tests.builders import c, position

CLOSEOUT = datetime(2026, 11, 27, 12, 45, tzinfo=NY)
NOW = datetime(2026, 11, 27, 10, 30, tzinfo=NY)
DEBIT = bull_call_debit(c(590), c(595))
CONDOR = iron_condor(c(575, "P"), c(580, "P"), c(600), c(605))


@pytest.mark.parametrize(
    ("budget", "per_contract", "expected"),
    [("5000", "210", 23), ("5000", "5000", 1), ("5000", "5001", 0), ("6500", "1000", 5)],
)
def test_contracts_for_budget_when_budget_then_floor_and_capped(budget, per_contract, expected):
    assert contracts_for_budget(Decimal(budget), Decimal(per_contract), Decimal("5000")) == expected


@pytest.mark.parametrize(
    ("conf", "factor"), [(0.95, "1.3"), (0.9, "1.3"), (0.85, "1.1"), (0.7, "1.0"), (0.66, "0.8")]
)
def test_confidence_factor_when_confidence_then_step(conf, factor):
    assert confidence_factor(conf, DEFAULT.confidence_steps) == Decimal(factor)


def test_check_exit_when_debit_up_50pct_then_take_profit():
    pos = position(DEBIT, "2.00")
    assert check_exit(pos, Decimal("2.99"), NOW, CLOSEOUT, ExitRules()) is None
    d = check_exit(pos, Decimal("3.00"), NOW, CLOSEOUT, ExitRules())
    assert d is not None and d.reason is ExitReason.TAKE_PROFIT and d.quantity == 1


def test_check_exit_when_debit_down_50pct_then_stop():
    pos = position(DEBIT, "2.00", qty=4)
    assert check_exit(pos, Decimal("1.01"), NOW, CLOSEOUT, ExitRules()) is None
    d = check_exit(pos, Decimal("1.00"), NOW, CLOSEOUT, ExitRules())
    assert d is not None and d.reason is ExitReason.STOP_LOSS and d.quantity == 4


def test_check_exit_when_credit_half_kept_then_take_profit():
    pos = position(CONDOR, "-1.20")  # received 1.20
    assert check_exit(pos, Decimal("-0.61"), NOW, CLOSEOUT, ExitRules()) is None
    d = check_exit(pos, Decimal("-0.60"), NOW, CLOSEOUT, ExitRules())
    assert d is not None and d.reason is ExitReason.TAKE_PROFIT


def test_check_exit_when_credit_loss_equals_credit_then_stop():
    pos = position(CONDOR, "-1.20")
    assert check_exit(pos, Decimal("-2.39"), NOW, CLOSEOUT, ExitRules()) is None
    d = check_exit(pos, Decimal("-2.40"), NOW, CLOSEOUT, ExitRules())
    assert d is not None and d.reason is ExitReason.STOP_LOSS


def test_check_exit_when_closeout_time_then_close_everything_regardless_of_pnl():
    pos = position(DEBIT, "2.00", qty=3)
    d = check_exit(pos, Decimal("2.00"), CLOSEOUT, CLOSEOUT, ExitRules())
    assert d is not None and d.reason is ExitReason.CLOSEOUT and d.quantity == 3


def test_check_exit_when_tiered_morning_then_third_closed_per_target():
    rules = ExitRules(profile=ExitProfile.TIERED)
    pos = position(DEBIT, "2.00", qty=9)
    morning = datetime(2026, 11, 27, 10, 0, tzinfo=NY)
    assert check_exit(pos, Decimal("2.09"), morning, CLOSEOUT, rules) is None  # +4.5% < 5%
    d = check_exit(pos, Decimal("2.10"), morning, CLOSEOUT, rules)
    assert d is not None and d.reason is ExitReason.TIER and d.quantity == 3


def test_check_exit_when_tiered_midday_then_lower_targets():
    rules = ExitRules(profile=ExitProfile.TIERED)
    pos = position(DEBIT, "2.00", qty=6)
    midday = datetime(2026, 11, 27, 12, 0, tzinfo=NY)
    d = check_exit(pos, Decimal("2.06"), midday, datetime(2026, 12, 1, 15, 45, tzinfo=NY), rules)
    assert d is not None and d.quantity == 2  # +3% target, a third of 6


def test_check_exit_when_tiered_late_then_rest_closed_at_5pct():
    rules = ExitRules(profile=ExitProfile.TIERED)
    pos = position(DEBIT, "2.00", qty=6)
    late = datetime(2026, 12, 1, 14, 30, tzinfo=NY)
    d = check_exit(pos, Decimal("2.10"), late, datetime(2026, 12, 1, 15, 45, tzinfo=NY), rules)
    assert d is not None and d.quantity == 6


def test_walk_prices_when_buy_then_mid_to_natural_in_four_steps():
    assert walk_prices(Decimal("1.00"), Decimal("1.20"), 4) == [
        Decimal("1.00"),
        Decimal("1.05"),
        Decimal("1.10"),
        Decimal("1.15"),
        Decimal("1.20"),
    ]


def test_walk_prices_when_sell_then_walks_down_and_never_past_worst():
    prices = walk_prices(Decimal("-1.00"), Decimal("-1.13"), 4)
    assert prices[0] == Decimal("-1.00") and prices[-1] == Decimal("-1.13")
    assert all(Decimal("-1.13") <= p <= Decimal("-1.00") for p in prices)
    assert prices == sorted(prices, reverse=True)


def test_exit_prices_when_marketable_then_start_at_natural_with_buffer_beyond():
    q = ComboQuote(bid=Decimal("1.00"), ask=Decimal("1.20"))
    start, worst = exit_prices(q, marketable=True, rules=WalkRules())
    assert start == Decimal("1.00") and worst == Decimal("0.95")
    start, worst = exit_prices(q, marketable=False, rules=WalkRules())
    assert start == Decimal("1.10") and worst == Decimal("1.00")
