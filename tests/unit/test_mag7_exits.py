"""Mag7 exits: DTE-scaled debit stop, credit stop, profit tiers (never repeated), the trailing
stop on the last quarter, the calendar-aware 1-DTE close and the pre-earnings close."""

from datetime import date, datetime
from decimal import Decimal

import pytest

from core.calendar import NY, session
from core.exits import ExitReason
from core.models import SystemName
from core.spreads import bull_call_debit, bull_put_credit
from systems.mag7.config import DEFAULT
from systems.mag7.exits import (
    Mag7ExitKind,
    check_mag7_exit,
    debit_stop_fraction,
    earnings_close_at,
    one_dte_close_at,
    trail_floor,
)
from systems.mag7.strategy import management_times, plan_exits
from tests.builders import c
from tests.unit.test_mag7_support import ENTRY_AT, EXPIRY, at, mag7_position

CFG = DEFAULT.exits
D = Decimal


def debit(qty=4, tiers=0, expiry=EXPIRY, pid="m7-debit", opened_at=ENTRY_AT):
    spread = bull_call_debit(c(200, und="AAPL", expiry=expiry), c(205, und="AAPL", expiry=expiry))
    return mag7_position(spread, "2.00", qty=qty, tiers=tiers, pid=pid, opened_at=opened_at)


def credit(qty=4, tiers=0):
    spread = bull_put_credit(c(195, "P", "AAPL", EXPIRY), c(190, "P", "AAPL", EXPIRY))
    return mag7_position(spread, "-1.00", qty=qty, tiers=tiers, pid="m7-credit")


def check(pos, value, now, peak=None, earnings=()):
    v = None if value is None else D(value)
    p = None if peak is None else D(peak)
    return check_mag7_exit(pos, v, now, CFG, p, earnings)


# --------------------------------------------------------------------------- stops


@pytest.mark.parametrize(
    ("dte", "fraction"),
    [(7, 0.20), (10, 0.20), (3, 0.20 * 3 / 7), (1, 0.20 / 7), (0, 0.0)],
)
def test_debit_stop_fraction_when_dte_then_20_percent_times_min_1_dte_over_7(dte, fraction):
    assert float(debit_stop_fraction(dte, CFG)) == pytest.approx(fraction, abs=1e-15)


@pytest.mark.parametrize(
    ("now", "stopped", "not_stopped"),
    [
        (at(date(2026, 3, 6), 12), "1.60", "1.61"),  # DTE 7: -20%
        (at(date(2026, 3, 10), 12), "1.82", "1.83"),  # DTE 3: -8.57%
        (at(date(2026, 3, 12), 10), "1.94", "1.95"),  # DTE 1: -2.86%
    ],
)
def test_check_exit_when_debit_loses_dte_scaled_stop_then_full_stop(now, stopped, not_stopped):
    decision = check(debit(), stopped, now)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.STOP
    assert decision.reason is ExitReason.STOP_LOSS
    assert decision.quantity == 4
    assert check(debit(), not_stopped, now) is None


def test_check_exit_when_credit_loss_equals_credit_then_stop():
    now = at(date(2026, 3, 9), 12)
    decision = check(credit(), "-2.00", now)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.STOP
    assert check(credit(), "-1.99", now) is None


# --------------------------------------------------------------------------- profit tiers

NOW = at(date(2026, 3, 9), 12)


@pytest.mark.parametrize(
    ("qty", "tiers", "value", "close_qty", "tiers_after"),
    [
        (4, 0, "2.40", 1, 1),  # +20%: first quarter
        (3, 1, "2.70", 1, 2),  # +35%: second quarter
        (2, 2, "3.00", 1, 3),  # +50%: third quarter, the last one stays to trail
        (4, 0, "3.00", 3, 3),  # jumped straight past +50%: three quarters at once
        (3, 1, "3.00", 2, 3),  # +50% with one tier of 4 taken: the next two quarters
        (8, 0, "2.70", 4, 2),  # +35% from nothing: two quarters of 8
        (1, 0, "2.40", 1, 1),  # one contract: the quarter rounds up to the whole position
    ],
)
def test_check_exit_when_tier_reached_then_quarter_of_original_closed(
    qty, tiers, value, close_qty, tiers_after
):
    decision = check(debit(qty=qty, tiers=tiers), value, NOW)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.TIER
    assert decision.reason is ExitReason.TIER
    assert decision.quantity == close_qty
    assert decision.tiers_after == tiers_after


@pytest.mark.parametrize(
    ("qty", "tiers", "value"),
    [(4, 0, "2.39"), (3, 1, "2.40"), (3, 1, "2.69"), (2, 2, "2.70"), (2, 2, "2.99")],
)
def test_check_exit_when_tier_already_taken_then_not_repeated(qty, tiers, value):
    assert check(debit(qty=qty, tiers=tiers), value, NOW) is None


def test_check_exit_when_credit_keeps_20_percent_then_first_tier():
    decision = check(credit(), "-0.80", NOW)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.TIER
    assert decision.quantity == 1


# --------------------------------------------------------------------------- trailing stop


@pytest.mark.parametrize(
    ("peak", "floor"),
    [("0.1499", None), ("0.15", "0.0375"), ("0.29", "0.0725"), ("0.30", "0.15"), ("0.60", "0.30")],
)
def test_trail_floor_when_peak_then_locked_share_of_gain(peak, floor):
    expected = None if floor is None else D(floor)
    assert trail_floor(D(peak), CFG) == expected


@pytest.mark.parametrize(
    ("peak", "exit_value", "hold_value"),
    [
        ("0.15", "2.075", "2.08"),  # lock 25% of a +15% peak: +3.75%
        ("0.30", "2.30", "2.31"),  # lock 50% of a +30% peak: +15%
        ("0.50", "2.50", "2.52"),  # lock 50% of +50%: +25%
    ],
)
def test_check_exit_when_last_quarter_falls_to_locked_gain_then_trailing_stop(
    peak, exit_value, hold_value
):
    last = debit(qty=1, tiers=3)
    decision = check(last, exit_value, NOW, peak=peak)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.TRAILING
    assert decision.quantity == 1
    assert check(last, hold_value, NOW, peak=peak) is None


def test_check_exit_when_peak_below_15_percent_then_no_trail():
    assert check(debit(qty=1, tiers=3), "2.00", NOW, peak="0.1499") is None


def test_check_exit_when_peak_not_recorded_then_current_pnl_is_the_peak():
    assert check(debit(qty=1, tiers=3), "3.00", NOW) is None


def test_check_exit_when_tiers_not_all_taken_then_no_trailing_stop():
    assert check(debit(qty=2, tiers=2), "2.05", NOW, peak="0.45") is None


# --------------------------------------------------------------------------- 1-DTE close


def test_one_dte_close_when_normal_week_then_thursday_1530():
    assert one_dte_close_at(EXPIRY, CFG) == datetime(2026, 3, 12, 15, 30, tzinfo=NY)


def test_check_exit_when_1530_on_day_before_expiry_then_close_everything_without_mark():
    pos = debit(qty=3, tiers=1)
    assert check(pos, None, at(date(2026, 3, 12), 15, 29)) is None
    decision = check(pos, None, at(date(2026, 3, 12), 15, 30))
    assert decision is not None
    assert decision.kind is Mag7ExitKind.ONE_DTE
    assert decision.reason is ExitReason.CLOSEOUT
    assert decision.quantity == 3


def test_one_dte_close_when_friday_before_monday_expiry_is_good_friday_then_thursday():
    # 2027-03-26 is Good Friday (XNYS closed): a Monday 2027-03-29 expiry closes Thursday
    assert one_dte_close_at(date(2027, 3, 29), CFG) == datetime(2027, 3, 25, 15, 30, tzinfo=NY)
    pos = debit(expiry=date(2027, 3, 29), opened_at=datetime(2027, 3, 19, 10, tzinfo=NY))
    decision = check(pos, "2.00", datetime(2027, 3, 25, 15, 30, tzinfo=NY))
    assert decision is not None
    assert decision.kind is Mag7ExitKind.ONE_DTE


def test_one_dte_close_when_weekly_moved_to_holiday_thursday_then_wednesday():
    assert one_dte_close_at(date(2027, 3, 25), CFG) == datetime(2027, 3, 24, 15, 30, tzinfo=NY)


def test_one_dte_close_when_day_before_is_early_close_then_closeout_1245():
    # Friday 2026-11-27 closes at 13:00: the 15:30 close moves to the 12:45 close-out
    assert one_dte_close_at(date(2026, 11, 30), CFG) == datetime(2026, 11, 27, 12, 45, tzinfo=NY)


def test_check_exit_when_past_the_1dte_time_then_still_closes():
    decision = check(debit(), "2.50", at(EXPIRY, 10))
    assert decision is not None
    assert decision.kind is Mag7ExitKind.ONE_DTE


# --------------------------------------------------------------------------- earnings


def test_earnings_close_when_earnings_wednesday_then_tuesday_1530():
    assert earnings_close_at(date(2026, 3, 11), CFG) == datetime(2026, 3, 10, 15, 30, tzinfo=NY)


def test_check_exit_when_session_before_earnings_then_close_everything():
    pos = debit()
    earnings = (date(2026, 3, 11),)
    assert check(pos, "2.10", at(date(2026, 3, 10), 14), earnings=earnings) is None
    decision = check(pos, "2.10", at(date(2026, 3, 10), 15, 30), earnings=earnings)
    assert decision is not None
    assert decision.kind is Mag7ExitKind.PRE_EARNINGS
    assert decision.quantity == 4


def test_check_exit_when_earnings_monday_then_closed_friday_before():
    pos = debit(opened_at=datetime(2026, 3, 4, 10, tzinfo=NY))
    decision = check(pos, None, at(date(2026, 3, 6), 15, 30), earnings=(date(2026, 3, 9),))
    assert decision is not None
    assert decision.kind is Mag7ExitKind.PRE_EARNINGS


def test_check_exit_when_earnings_after_expiry_or_before_entry_then_ignored():
    earnings = (date(2026, 3, 20), date(2026, 3, 2))
    assert check(debit(), "2.10", at(date(2026, 3, 10), 15, 30), earnings=earnings) is None


# --------------------------------------------------------------------------- plan_exits


def test_plan_exits_when_mixed_book_then_only_open_mag7_positions_decided():
    now = at(date(2026, 3, 12), 15, 30)
    mag7 = debit(pid="a")
    smart = mag7_position(mag7.spread, "2.00", pid="b", system=SystemName.SMART0DTE)
    out = plan_exits([mag7, smart], {}, now, session(now.date()), DEFAULT)
    assert [(p.position_id, d.kind) for p, d in out] == [("a", Mag7ExitKind.ONE_DTE)]


def test_plan_exits_when_marks_peaks_and_earnings_then_each_rule_applies():
    now = at(date(2026, 3, 9), 15, 30)
    tier = debit(pid="tier")
    trail = debit(qty=1, tiers=3, pid="trail")
    quiet = debit(pid="quiet")
    earn = mag7_position(
        bull_call_debit(c(300, und="MSFT", expiry=EXPIRY), c(310, und="MSFT", expiry=EXPIRY)),
        "3.00",
        pid="earn",
    )
    out = plan_exits(
        [tier, trail, quiet, earn],
        {"tier": D("2.40"), "trail": D("2.05"), "quiet": D("2.10")},
        now,
        session(now.date()),
        DEFAULT,
        peaks={"trail": D("0.40")},
        earnings={"MSFT": [date(2026, 3, 10)]},
    )
    kinds = {p.position_id: d.kind for p, d in out}
    assert kinds == {
        "tier": Mag7ExitKind.TIER,
        "trail": Mag7ExitKind.TRAILING,
        "earn": Mag7ExitKind.PRE_EARNINGS,
    }


def test_plan_exits_when_now_not_on_session_day_then_error():
    with pytest.raises(ValueError, match="session day"):
        plan_exits([], {}, at(date(2026, 3, 9), 12), session(date(2026, 3, 10)), DEFAULT)


def test_management_times_when_normal_day_then_four_checks():
    times = management_times(session(date(2026, 3, 9)), DEFAULT)
    assert [t.strftime("%H:%M") for t in times] == ["10:00", "12:00", "14:00", "15:30"]


def test_management_times_when_early_close_then_last_checks_at_closeout():
    times = management_times(session(date(2026, 11, 27)), DEFAULT)
    assert [t.strftime("%H:%M") for t in times] == ["10:00", "12:00", "12:45"]
