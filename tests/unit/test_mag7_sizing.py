"""Mag7 sizing: the confidence-scaled 2% budget, each cap (and its reason), the correlation
haircut at its 0.6 / 0.8 boundaries, and the 3-position limit."""

import math
from dataclasses import replace
from decimal import Decimal

import pytest

from core.models import PositionStatus, SystemName
from core.spreads import bull_call_debit
from systems.mag7.config import DEFAULT
from systems.mag7.sizing import (
    SizingCap,
    correlation_factor,
    mean_abs_correlation,
    sector_exposure,
    size_position,
    stock_exposure,
)
from tests.builders import c
from tests.unit.test_mag7_support import EXPIRY, mag7_position

CFG = DEFAULT.sizing
SECTORS = DEFAULT.sectors
EQUITY = Decimal("100000")
MAX_POS = Decimal("5000")
PER_CONTRACT = Decimal("100")


def held(symbol, max_loss, pid=None, system=SystemName.MAG7):
    spread = bull_call_debit(c(190, und=symbol, expiry=EXPIRY), c(200, und=symbol, expiry=EXPIRY))
    pid = pid or f"{symbol}-{max_loss}"
    return mag7_position(spread, "2.00", pid=pid, max_loss=max_loss, system=system)


def size(symbol="AAPL", confidence=0.7, positions=(), correlations=None, **kw):
    return size_position(
        symbol,
        confidence,
        kw.get("per_contract", PER_CONTRACT),
        kw.get("equity", EQUITY),
        list(positions),
        correlations or {},
        kw.get("max_position_size", MAX_POS),
        SECTORS,
        kw.get("cfg", CFG),
    )


@pytest.mark.parametrize(
    ("confidence", "budget"), [(0.0, "1000.00"), (0.7, "2400.00"), (1.0, "3000.00")]
)
def test_size_position_when_no_cap_binds_then_two_percent_times_half_plus_confidence(
    confidence, budget
):
    decision = size(confidence=confidence)
    assert decision.base_budget == Decimal(budget)
    assert decision.budget == Decimal(budget)
    assert decision.quantity == int(Decimal(budget) / PER_CONTRACT)
    assert decision.bound_by is SizingCap.RISK_BUDGET
    assert "bound by risk_budget" in decision.reason


def test_size_position_when_max_position_size_lower_then_it_binds():
    decision = size(max_position_size=Decimal("2000"))
    assert decision.quantity == 20
    assert decision.bound_by is SizingCap.MAX_POSITION_SIZE
    assert "max_position_size 2000" in decision.reason


def test_size_position_when_stock_already_holds_8000_then_10_percent_cap_leaves_2000():
    decision = size(positions=[held("AAPL", "8000")], correlations={"AAPL": 0.0})
    assert decision.budget == Decimal("2000.00")
    assert decision.quantity == 20
    assert decision.bound_by is SizingCap.STOCK
    assert "stock cap 10% of equity less 8000 open in AAPL" in decision.reason


def test_size_position_when_other_system_holds_the_stock_then_counted_in_stock_cap():
    smart = held("AAPL", "9000", system=SystemName.SMART0DTE)
    decision = size(positions=[smart])
    assert decision.bound_by is SizingCap.STOCK
    assert decision.quantity == 10


def test_size_position_when_sector_holds_28500_then_30_percent_cap_leaves_1500():
    positions = [held("MSFT", "14250"), held("NVDA", "14250")]
    decision = size(positions=positions, correlations={"MSFT": 0.0, "NVDA": 0.0})
    assert decision.budget == Decimal("1500.00")
    assert decision.quantity == 15
    assert decision.bound_by is SizingCap.SECTOR
    assert "sector cap 30% of equity less 28500 open in technology" in decision.reason


def test_size_position_when_exposure_in_other_sector_then_sector_cap_not_bound():
    positions = [held("GOOGL", "14250"), held("META", "14250")]
    decision = size(positions=positions, correlations={"GOOGL": 0.0, "META": 0.0})
    assert decision.bound_by is SizingCap.RISK_BUDGET


def test_size_position_when_three_mag7_positions_open_then_no_trade():
    positions = [held("MSFT", "100"), held("GOOGL", "100"), held("TSLA", "100")]
    decision = size(positions=positions)
    assert decision.quantity == 0
    assert decision.bound_by is SizingCap.POSITIONS
    assert "3 Mag7 positions open (max 3)" in decision.reason


def test_size_position_when_two_mag7_and_smart0dte_positions_then_still_allowed():
    positions = [
        held("MSFT", "100"),
        held("GOOGL", "100"),
        held("SPY", "100", system=SystemName.SMART0DTE),
    ]
    assert size(positions=positions, correlations={"MSFT": 0.0, "GOOGL": 0.0}).quantity == 24


def test_size_position_when_position_closed_then_not_counted():
    closed = replace(held("AAPL", "10000"), status=PositionStatus.CLOSED)
    assert stock_exposure("AAPL", [closed]) == 0
    assert size(positions=[closed]).bound_by is SizingCap.RISK_BUDGET


def test_size_position_when_budget_below_one_contract_then_zero_with_cap_named():
    decision = size(per_contract=Decimal("3000"))
    assert decision.quantity == 0
    assert not decision.ok
    assert "no trade: budget 2400.00 below one contract's max loss 3000" in decision.reason
    assert "bound by risk_budget" in decision.reason


def test_size_position_when_stock_cap_exhausted_then_zero_budget():
    decision = size(positions=[held("AAPL", "10500")], correlations={"AAPL": 0.0})
    assert decision.budget == Decimal("0.00")
    assert decision.quantity == 0
    assert decision.bound_by is SizingCap.STOCK


@pytest.mark.parametrize(
    ("mean", "factor"),
    [
        (None, "1"),
        (0.0, "1"),
        (0.6, "1"),
        (0.6000001, "0.75"),
        (0.8, "0.75"),
        (0.8000001, "0.5"),
        (1.0, "0.5"),
    ],
)
def test_correlation_factor_when_mean_abs_corr_at_boundaries_then_haircut(mean, factor):
    assert correlation_factor(mean, CFG) == Decimal(factor)


def test_mean_abs_correlation_when_signs_differ_then_absolute_values_averaged():
    assert mean_abs_correlation({"MSFT": -0.9, "NVDA": 0.7}, 1.0) == pytest.approx(0.8)
    assert mean_abs_correlation({}, 1.0) is None


def test_mean_abs_correlation_when_history_missing_then_counted_as_fully_correlated():
    assert mean_abs_correlation({"MSFT": math.nan}, 1.0) == pytest.approx(1.0)


def test_size_position_when_highly_correlated_with_held_then_budget_halved():
    decision = size(positions=[held("MSFT", "100")], correlations={"MSFT": 0.85})
    assert decision.corr_factor == Decimal("0.5")
    assert decision.budget == Decimal("1200.00")
    assert decision.quantity == 12
    assert "mean |corr| 0.850 with held MSFT: x0.5" in decision.reason


def test_size_position_when_mean_corr_exactly_0_8_then_three_quarters():
    positions = [held("MSFT", "100"), held("NVDA", "100")]
    decision = size(positions=positions, correlations={"MSFT": -0.9, "NVDA": 0.7})
    assert decision.corr_factor == Decimal("0.75")
    assert decision.quantity == 18


def test_exposures_when_mixed_book_then_stock_all_systems_sector_mag7_only():
    book = [
        held("AAPL", "300"),
        held("AAPL", "200", system=SystemName.SMART0DTE),
        held("MSFT", "400"),
    ]
    assert stock_exposure("AAPL", book) == Decimal("500")
    assert sector_exposure(SECTORS["AAPL"], book, SECTORS) == Decimal("700")
