from datetime import UTC, date, datetime, time

import pytest

from core.calendar import (
    NY,
    CalendarError,
    NotATradingDay,
    closeout_time,
    entry_cutoff,
    is_market_open,
    is_trading_day,
    next_session_open,
    next_trading_day,
    previous_trading_day,
    session,
    trading_days,
)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 11, 26), False),  # Thanksgiving
        (date(2026, 11, 27), True),  # day after: early close
        (date(2026, 12, 25), False),  # Christmas
        (date(2026, 7, 3), False),  # Independence Day observed (Jul 4 is a Saturday)
        (date(2026, 4, 3), False),  # Good Friday: a market holiday, not a federal one
        (date(2026, 11, 11), True),  # Veterans Day: federal holiday, market open
        (date(2026, 10, 12), True),  # Columbus Day: federal holiday, market open
        (date(2026, 11, 28), False),  # Saturday
    ],
)
def test_is_trading_day_when_holiday_or_federal_only_then_follows_xnys(day, expected):
    assert is_trading_day(day) is expected


def test_session_when_day_after_thanksgiving_then_early_close_at_13_and_closeout_12_45():
    s = session(date(2026, 11, 27))
    assert s.early_close
    assert s.open == datetime(2026, 11, 27, 9, 30, tzinfo=NY)
    assert s.close == datetime(2026, 11, 27, 13, 0, tzinfo=NY)
    assert closeout_time(date(2026, 11, 27)) == datetime(2026, 11, 27, 12, 45, tzinfo=NY)
    # entries stop at close - 60 min = 12:00 because that is earlier than 15:00
    assert entry_cutoff(date(2026, 11, 27)) == datetime(2026, 11, 27, 12, 0, tzinfo=NY)


def test_session_when_christmas_eve_then_early_close():
    s = session(date(2026, 12, 24))
    assert s.early_close
    assert s.closeout.time() == time(12, 45)


def test_session_when_regular_day_then_closeout_15_45_and_cutoff_15_00():
    s = session(date(2026, 12, 1))
    assert not s.early_close
    assert s.closeout == datetime(2026, 12, 1, 15, 45, tzinfo=NY)
    assert s.entry_cutoff() == datetime(2026, 12, 1, 15, 0, tzinfo=NY)


def test_session_when_holiday_then_error_names_next_trading_day():
    with pytest.raises(NotATradingDay) as err:
        session(date(2026, 11, 26))
    assert err.value.next_session == date(2026, 11, 27)
    assert "2026-11-27" in str(err.value)


@pytest.mark.parametrize(
    ("day", "utc_open_hour"),
    [
        (date(2026, 3, 6), 14),  # EST, the Friday before the spring change
        (date(2026, 3, 9), 13),  # EDT, the Monday after (DST began Sunday 2026-03-08)
        (date(2026, 10, 30), 13),  # EDT, before the autumn change
        (date(2026, 11, 2), 14),  # EST, after (DST ended Sunday 2026-11-01)
    ],
)
def test_session_when_dst_week_then_open_is_0930_new_york_and_utc_shifts(day, utc_open_hour):
    s = session(day)
    assert s.open.astimezone(NY).time() == time(9, 30)
    assert s.open.astimezone(UTC).hour == utc_open_hour
    assert s.closeout.astimezone(NY).time() == time(15, 45)


def test_next_and_previous_trading_day_when_around_holiday_weekend_then_skip_closed_days():
    assert next_trading_day(date(2026, 11, 25)) == date(2026, 11, 27)
    assert previous_trading_day(date(2026, 11, 30)) == date(2026, 11, 27)
    assert next_trading_day(date(2026, 12, 24)) == date(2026, 12, 28)


def test_trading_days_when_thanksgiving_week_then_four_sessions():
    days = trading_days(date(2026, 11, 23), date(2026, 11, 27))
    assert days == [date(2026, 11, 23), date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 27)]


def test_is_market_open_when_after_early_close_then_false():
    assert is_market_open(datetime(2026, 11, 27, 12, 59, tzinfo=NY))
    assert not is_market_open(datetime(2026, 11, 27, 13, 0, tzinfo=NY))
    assert not is_market_open(datetime(2026, 11, 26, 11, 0, tzinfo=NY))


def test_next_session_open_when_on_holiday_then_next_morning():
    t = datetime(2026, 11, 26, 10, 0, tzinfo=NY)
    assert next_session_open(t) == datetime(2026, 11, 27, 9, 30, tzinfo=NY)


def test_is_market_open_when_naive_datetime_then_error():
    with pytest.raises(CalendarError):
        is_market_open(datetime(2026, 11, 27, 10, 0))  # noqa: DTZ001


def test_is_trading_day_when_outside_span_then_error():
    with pytest.raises(CalendarError):
        is_trading_day(date(2040, 1, 2))
