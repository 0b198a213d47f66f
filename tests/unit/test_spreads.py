from datetime import date
from decimal import Decimal

import pytest

from core.models import Side, StructureKind
from core.spreads import (
    SpreadError,
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    closing_legs,
    iron_condor,
    long_call,
    long_put,
    long_straddle,
    long_strangle,
    max_loss_dollars,
    max_loss_per_unit,
    width,
)
from tests.builders import c


def test_bull_call_debit_when_long_below_short_then_built_buy_low_sell_high():
    s = bull_call_debit(c(590), c(595))
    assert s.kind is StructureKind.BULL_CALL_DEBIT
    assert [(leg.side, leg.contract.strike) for leg in s.legs] == [
        (Side.BUY, Decimal(590)),
        (Side.SELL, Decimal(595)),
    ]
    assert width(s) == 5


def test_bull_call_debit_when_strikes_inverted_then_raises():
    with pytest.raises(SpreadError, match="long strike below short"):
        bull_call_debit(c(595), c(590))


def test_bear_put_debit_when_long_above_short_then_built():
    s = bear_put_debit(c(590, "P"), c(585, "P"))
    assert s.legs[0].side is Side.BUY
    assert s.legs[0].contract.strike == 590


def test_bear_put_debit_when_legs_inverted_then_raises():
    # the prototype's bug: a "bear put spread" buying the lower strike
    with pytest.raises(SpreadError):
        bear_put_debit(c(585, "P"), c(590, "P"))


def test_bear_put_debit_when_calls_given_then_raises():
    with pytest.raises(SpreadError, match="put"):
        bear_put_debit(c(590, "C"), c(585, "C"))


def test_bull_put_credit_when_wing_above_short_then_raises():
    assert bull_put_credit(c(585, "P"), c(580, "P")).kind is StructureKind.BULL_PUT_CREDIT
    with pytest.raises(SpreadError):
        bull_put_credit(c(580, "P"), c(585, "P"))


def test_bear_call_credit_when_wing_below_short_then_raises():
    assert bear_call_credit(c(600), c(605)).is_credit
    with pytest.raises(SpreadError):
        bear_call_credit(c(605), c(600))


def test_iron_condor_when_ordered_then_four_legs_and_wider_side_is_width():
    ic = iron_condor(c(575, "P"), c(580, "P"), c(600), c(603))
    assert [leg.side for leg in ic.legs] == [Side.BUY, Side.SELL, Side.SELL, Side.BUY]
    assert width(ic) == 5


@pytest.mark.parametrize(
    "strikes",
    [
        (580, 575, 600, 605),  # put wing above short put
        (575, 580, 580, 585),  # short put not below short call
        (575, 580, 605, 600),  # call wing below short call
    ],
)
def test_iron_condor_when_strike_order_wrong_then_raises(strikes):
    lp, sp, sc, lc = strikes
    with pytest.raises(SpreadError):
        iron_condor(c(lp, "P"), c(sp, "P"), c(sc), c(lc))


def test_factories_when_mixed_underlying_or_expiry_then_raise():
    with pytest.raises(SpreadError, match="underlyings"):
        bull_call_debit(c(590), c(595, und="QQQ"))
    with pytest.raises(SpreadError, match="expiries"):
        bull_call_debit(c(590), c(595, expiry=date(2026, 11, 30)))


def test_straddle_and_strangle_when_strikes_wrong_then_raise():
    assert long_straddle(c(590), c(590, "P")).kind is StructureKind.LONG_STRADDLE
    with pytest.raises(SpreadError):
        long_straddle(c(590), c(591, "P"))
    assert long_strangle(c(585, "P"), c(595)).kind is StructureKind.LONG_STRANGLE
    with pytest.raises(SpreadError):
        long_strangle(c(595, "P"), c(585))


def test_long_call_and_put_when_wrong_right_then_raise():
    assert long_call(c(590)).legs[0].side is Side.BUY
    with pytest.raises(SpreadError):
        long_call(c(590, "P"))
    with pytest.raises(SpreadError):
        long_put(c(590))


def test_max_loss_when_debit_then_debit_and_when_credit_then_width_less_credit():
    debit = bull_call_debit(c(590), c(595))
    assert max_loss_per_unit(debit, Decimal("2.10")) == Decimal("2.10")
    assert max_loss_dollars(debit, Decimal("2.10"), 3) == Decimal("630.00")
    credit = bull_put_credit(c(585, "P"), c(580, "P"))
    assert max_loss_per_unit(credit, Decimal("-1.25")) == Decimal("3.75")
    ic = iron_condor(c(575, "P"), c(580, "P"), c(600), c(605))
    assert max_loss_dollars(ic, Decimal("-1.40"), 2) == Decimal("720.00")


def test_max_loss_when_price_impossible_then_raises():
    debit = bull_call_debit(c(590), c(595))
    with pytest.raises(SpreadError):
        max_loss_per_unit(debit, Decimal("5.10"))  # a debit above the width: bad quote
    with pytest.raises(SpreadError):
        max_loss_per_unit(debit, Decimal("-0.10"))
    credit = bear_call_credit(c(600), c(605))
    with pytest.raises(SpreadError):
        max_loss_per_unit(credit, Decimal("0.50"))  # a credit spread quoted as a debit


def test_closing_legs_when_spread_then_sides_flipped():
    s = bull_call_debit(c(590), c(595))
    assert [leg.side for leg in closing_legs(s)] == [Side.SELL, Side.BUY]
