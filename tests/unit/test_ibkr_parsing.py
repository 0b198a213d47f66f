"""Pure conversions of ``adapters.ibkr.parsing``: combo fills from executions, statuses, spreads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.ibkr.parsing import (
    ExecRow,
    LegSpec,
    clean_price,
    combo_fills,
    domain_status,
    infer_spread,
    legs_from_executions,
    option_from_ib,
)
from core.models import Leg, OrderStatus, Right, Side, Spread, StructureKind
from core.spreads import bear_put_debit, bull_call_debit, iron_condor, long_call, long_straddle
from tests.builders import DAY, c

T = datetime(2026, 11, 27, 15, 30, tzinfo=UTC)
LONG, SHORT = 111, 222
DEBIT = [LegSpec(LONG, 1, 1), LegSpec(SHORT, 1, -1)]


def row(
    exec_id: str,
    con_id: int,
    side: str,
    shares: str,
    price: str,
    commission: str | None = "0.65",
    at: datetime = T,
    sec_type: str = "OPT",
) -> ExecRow:
    return ExecRow(
        exec_id=exec_id,
        order_ref="ref-1",
        perm_id=42,
        order_id=7,
        client_id=1,
        con_id=con_id,
        sec_type=sec_type,
        side=side,
        shares=Decimal(shares),
        price=Decimal(price),
        at=at,
        commission=None if commission is None else Decimal(commission),
    )


def bag(exec_id: str, side: str, shares: str, price: str, at: datetime = T) -> ExecRow:
    return row(exec_id, 28812380, side, shares, price, commission=None, at=at, sec_type="BAG")


def test_combo_fills_when_legs_and_bag_row_then_bag_row_not_counted_twice() -> None:
    rows = [
        row("e.01", LONG, "BOT", "2", "3.20", "1.30"),
        row("e.02", SHORT, "SLD", "2", "2.00", "1.30"),
        bag("e.00", "BOT", "2", "1.20"),
    ]

    result = combo_fills("ref-1", "IB-42", DEBIT, rows)

    (fill,) = result.fills
    assert (fill.quantity, fill.price, fill.commission) == (2, Decimal("1.20"), Decimal("2.60"))
    assert result.units == 2
    assert result.missing_commissions == frozenset()
    assert fill.client_order_id == "ref-1"
    assert fill.broker_order_id == "IB-42"


def test_combo_fills_when_only_legs_then_net_price_from_signed_leg_prices() -> None:
    rows = [row("e.01", LONG, "BOT", "3", "3.20"), row("e.02", SHORT, "SLD", "3", "2.00")]

    (fill,) = combo_fills("ref-1", "IB-42", DEBIT, rows).fills

    assert (fill.quantity, fill.price) == (3, Decimal("1.20"))


def test_combo_fills_when_only_bag_rows_then_one_fill_per_bag_row() -> None:
    rows = [bag("b.1", "BOT", "1", "1.20"), bag("b.2", "BOT", "2", "1.25", T + timedelta(1))]

    result = combo_fills("ref-1", "IB-42", DEBIT, rows)

    assert [(f.quantity, f.price) for f in result.fills] == [
        (1, Decimal("1.20")),
        (2, Decimal("1.25")),
    ]
    assert result.avg_price == Decimal("1.2333")


def test_combo_fills_when_closing_sell_then_price_is_the_value_in_the_opening_convention() -> None:
    rows = [  # selling the debit spread: long leg sold, short leg bought back
        row("e.01", LONG, "SLD", "1", "2.10"),
        row("e.02", SHORT, "BOT", "1", "1.30"),
        bag("e.00", "SLD", "1", "0.80"),
    ]

    (fill,) = combo_fills("ref-1", "IB-42", DEBIT, rows).fills

    assert fill.price == Decimal("0.80")


def test_combo_fills_when_credit_condor_then_negative_net_price() -> None:
    legs = [LegSpec(1, 1, 1), LegSpec(2, 1, -1), LegSpec(3, 1, -1), LegSpec(4, 1, 1)]
    rows = [
        row("e.1", 1, "BOT", "1", "0.30"),
        row("e.2", 2, "SLD", "1", "1.00"),
        row("e.3", 3, "SLD", "1", "0.90"),
        row("e.4", 4, "BOT", "1", "0.40"),
    ]

    (fill,) = combo_fills("ref-1", "IB-42", legs, rows).fills

    assert fill.price == Decimal("-1.20")
    assert fill.commission == Decimal("2.60")


def test_combo_fills_when_legs_arrive_unevenly_then_only_complete_units_count() -> None:
    rows = [
        row("e.1", LONG, "BOT", "2", "3.20", "1.30", T),
        row("e.2", SHORT, "SLD", "1", "2.00", "0.65", T + timedelta(seconds=1)),
    ]

    result = combo_fills("ref-1", "IB-42", DEBIT, rows)

    (fill,) = result.fills
    assert result.units == 1
    assert (fill.quantity, fill.exec_id, fill.commission) == (1, "e.2", Decimal("1.30"))
    rows.append(row("e.3", SHORT, "SLD", "1", "2.10", "0.65", T + timedelta(seconds=2)))
    later = combo_fills("ref-1", "IB-42", DEBIT, rows)
    assert [(f.exec_id, f.quantity, f.price) for f in later.fills] == [
        ("e.2", 1, Decimal("1.20")),
        ("e.3", 1, Decimal("1.10")),
    ]


def test_combo_fills_when_ratio_two_then_leg_shares_are_ratio_times_units() -> None:
    legs = [LegSpec(LONG, 1, 1), LegSpec(SHORT, 2, -1)]
    rows = [row("e.1", LONG, "BOT", "3", "2.00", "1.95"), row("e.2", SHORT, "SLD", "6", "0.80")]

    (fill,) = combo_fills("ref-1", "IB-42", legs, rows).fills

    assert (fill.quantity, fill.price) == (3, Decimal("0.40"))


def test_combo_fills_when_commission_not_reported_yet_then_listed_as_missing() -> None:
    rows = [row("e.1", LONG, "BOT", "1", "3.20", None), row("e.2", SHORT, "SLD", "1", "2.00")]

    result = combo_fills("ref-1", "IB-42", DEBIT, rows)

    assert result.missing_commissions == frozenset({"e.1"})
    assert result.fills[0].commission == Decimal("0.65")


def test_combo_fills_when_same_execution_reported_twice_then_counted_once() -> None:
    once = [row("e.1", LONG, "BOT", "1", "3.20"), row("e.2", SHORT, "SLD", "1", "2.00")]

    result = combo_fills("ref-1", "IB-42", DEBIT, once + once)

    assert result.units == 1


def test_legs_from_executions_when_order_unknown_then_ratios_and_signs_from_rows() -> None:
    rows = [
        row("e.1", LONG, "SLD", "2", "2.10"),
        row("e.2", SHORT, "BOT", "4", "1.00"),
        bag("e.0", "SLD", "2", "0.10"),
    ]

    assert legs_from_executions(rows) == (LegSpec(LONG, 1, 1), LegSpec(SHORT, 2, -1))


@pytest.mark.parametrize(
    ("ib_status", "rejected", "units", "status"),
    [
        ("Submitted", False, 0, OrderStatus.WORKING),
        ("PreSubmitted", False, 1, OrderStatus.WORKING),
        ("PendingCancel", False, 0, OrderStatus.WORKING),
        ("Filled", False, 2, OrderStatus.FILLED),
        ("Submitted", False, 2, OrderStatus.FILLED),  # executions beat the status
        ("Cancelled", False, 1, OrderStatus.CANCELLED),
        ("ApiCancelled", False, 0, OrderStatus.CANCELLED),
        ("Inactive", False, 0, OrderStatus.REJECTED),
        ("", True, 0, OrderStatus.REJECTED),
    ],
)
def test_domain_status_when_ib_status_then_order_status(
    ib_status: str, rejected: bool, units: int, status: OrderStatus
) -> None:
    assert domain_status(ib_status, rejected, units, quantity=2) is status


@pytest.mark.parametrize(
    "spread",
    [
        bull_call_debit(c(590), c(595)),
        bear_put_debit(c(595, "P"), c(590, "P")),
        iron_condor(c(580, "P"), c(585, "P"), c(595), c(600)),
        long_straddle(c(590), c(590, "P")),
        long_call(c(600)),
    ],
    ids=lambda s: s.kind.value,
)
def test_infer_spread_when_legs_read_back_then_same_spread(spread: Spread) -> None:
    assert infer_spread(list(spread.legs)) == spread


def test_infer_spread_when_legs_fit_no_factory_then_kept_in_order() -> None:
    legs = [Leg(c(590), Side.BUY, 1), Leg(c(595), Side.SELL, 2)]

    spread = infer_spread(legs)

    assert spread.legs == tuple(legs)
    assert spread.kind is StructureKind.BULL_CALL_DEBIT


def test_option_from_ib_when_option_fields_then_contract_else_none() -> None:
    option = option_from_ib("SPY", "OPT", "20261127", 592.5, "C", "100")

    assert option is not None
    assert (option.expiry, option.strike, option.right) == (DAY, Decimal("592.5"), Right.CALL)
    assert option_from_ib("SPY", "STK", "", 0.0, "", "") is None
    assert option_from_ib("SPY", "BAG", "", 0.0, "", "") is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("1.2", "1.20"), ("1.23456", "1.2346"), ("-1.2", "-1.20"), ("2.6", "2.60")],
)
def test_clean_price_when_rounding_then_cents_if_exact_else_four_places(
    raw: str, clean: str
) -> None:
    assert str(clean_price(Decimal(raw))) == clean
