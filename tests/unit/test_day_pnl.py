"""Today's P&L from the prior close for carried positions (core.pnl), the daily-loss basis."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

from core.models import PositionStatus, SystemName
from core.pnl import base_id, day_pnl, row_day_pnl
from core.spreads import bull_call_debit
from tests.builders import c
from tests.unit.test_mag7_support import ENTRY_AT, EXPIRY, at, mag7_position

MONDAY = date(2026, 3, 9)  # the session after the Friday 2026-03-06 entry
SPREAD = bull_call_debit(c(200, und="AAPL", expiry=EXPIRY), c(205, und="AAPL", expiry=EXPIRY))


def carried(qty: int = 4, entry: str = "2.00", commission: str = "5.20", pid: str = "m7-1"):
    return replace(
        mag7_position(SPREAD, entry, qty=qty, pid=pid), entry_commission=Decimal(commission)
    )


def closed(pos, exit_price: str, when, commission: str = "5.20"):
    return replace(
        pos,
        status=PositionStatus.CLOSED,
        exit_price=Decimal(exit_price),
        closed_at=when,
        exit_commission=Decimal(commission),
    )


def test_row_day_pnl_when_carried_with_baseline_then_measured_from_prior_close():
    # entry 2.00, Friday close mark 1.50 (lost $200 on Friday), now 1.40: today -$40 only
    realized, unrealized = row_day_pnl(carried(), MONDAY, Decimal("1.40"), Decimal("1.50"))
    assert (realized, unrealized) == (Decimal("0"), Decimal("-40.00"))


def test_row_day_pnl_when_carried_gain_yesterday_then_not_credited_today():
    # entry 2.00, Friday close 3.00 (+$400 Friday), now 2.50: today -$200, not +$200
    _, unrealized = row_day_pnl(carried(), MONDAY, Decimal("2.50"), Decimal("3.00"))
    assert unrealized == Decimal("-200.00")


def test_row_day_pnl_when_opened_today_then_from_entry_with_entry_commission():
    pos = replace(carried(), opened_at=at(MONDAY, 10))
    _, unrealized = row_day_pnl(pos, MONDAY, Decimal("1.90"), Decimal("9.99"))
    assert unrealized == Decimal("-40.00") - Decimal("5.20")


def test_row_day_pnl_when_carried_closed_today_then_exit_minus_baseline_minus_exit_cost():
    pos = closed(carried(), "1.20", at(MONDAY, 12))
    realized, unrealized = row_day_pnl(pos, MONDAY, None, Decimal("1.50"))
    assert (realized, unrealized) == (Decimal("-120.00") - Decimal("5.20"), Decimal("0"))


def test_row_day_pnl_when_closed_another_day_then_nothing_today():
    pos = closed(carried(), "1.20", ENTRY_AT.replace(hour=15))
    assert row_day_pnl(pos, MONDAY, None, None) == (Decimal("0"), Decimal("0"))


def test_day_pnl_when_baseline_missing_then_falls_back_to_entry_and_lists_row():
    out = day_pnl([carried()], MONDAY, {"m7-1": Decimal("1.40")}, {})
    assert out.unrealized == Decimal("-240.00") - Decimal("5.20")
    assert out.without_baseline == ("m7-1",)


def test_day_pnl_when_days_chain_then_daily_sums_equal_total_since_entry():
    # Friday: entry 2.00 -> close mark 1.50; Monday: 1.50 -> exit 1.20
    pos = carried()
    friday = day_pnl([pos], ENTRY_AT.date(), {"m7-1": Decimal("1.50")}, {})
    monday = day_pnl([closed(pos, "1.20", at(MONDAY, 12))], MONDAY, {}, {"m7-1": Decimal("1.50")})
    whole = closed(pos, "1.20", at(MONDAY, 12)).realized()
    assert friday.total + monday.total == whole


def test_day_pnl_when_partial_close_row_then_uses_parent_baseline():
    parent = carried(qty=3)
    child = closed(carried(qty=1, commission="1.30", pid="m7-1-p1"), "1.60", at(MONDAY, 11), "1.30")
    assert base_id(child.position_id) == "m7-1"
    out = day_pnl([parent, child], MONDAY, {"m7-1": Decimal("1.55")}, {"m7-1": Decimal("1.50")})
    assert out.realized == Decimal("10.00") - Decimal("1.30")
    assert out.unrealized == Decimal("15.00")
    assert out.without_baseline == ()


def test_day_pnl_when_until_before_close_then_closed_row_counts_as_open():
    pos = closed(carried(), "1.20", at(MONDAY, 12))
    out = day_pnl(
        [pos], MONDAY, {"m7-1": Decimal("1.45")}, {"m7-1": Decimal("1.50")}, until=at(MONDAY, 11)
    )
    assert (out.realized, out.unrealized) == (Decimal("0"), Decimal("-20.00"))


def test_day_pnl_when_smart_position_same_day_then_unchanged_rule():
    pos = replace(carried(), system=SystemName.SMART0DTE, opened_at=at(MONDAY, 9, 45))
    out = day_pnl([closed(pos, "2.30", at(MONDAY, 10))], MONDAY, {}, {"m7-1": Decimal("9")})
    assert out.realized == closed(pos, "2.30", at(MONDAY, 10)).realized()
