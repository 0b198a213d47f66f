"""Mag7 orchestration pieces that need no market and no Prefect: the calendar guard of the two
Mag7 flows, the earnings-calendar source, the settings-block overrides and the tier marker."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from types import SimpleNamespace

import pytest

from blocks.settings import TradingSettings, mag7_config_from
from core.calendar import NY
from core.models import SystemName
from flows.common import window_reason
from systems.mag7.config import DEFAULT, EarningsConfig
from tasks import mag7
from tasks.execution import _tiers_from, tiers_marker

FRIDAY = date(2026, 12, 4)
WEDNESDAY = date(2026, 12, 2)
EARLY_CLOSE = date(2026, 11, 27)  # the Friday after Thanksgiving, closes 13:00
GOOD_FRIDAY = date(2027, 3, 26)  # NYSE closed: the entry moves to Thursday
GF_THURSDAY = date(2027, 3, 25)


def at(day: date, hh: int, mm: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=NY)


@pytest.mark.parametrize(("hh", "mm"), [(10, 0), (12, 0), (14, 0), (15, 30), (15, 39)])
def test_manage_window_when_full_day_management_time_then_acts(hh, mm):
    assert window_reason("mag7-manage", at(WEDNESDAY, hh, mm)) is None


@pytest.mark.parametrize(("hh", "mm"), [(9, 45), (12, 45), (15, 41), (16, 15)])
def test_manage_window_when_full_day_other_time_then_skips_naming_the_times(hh, mm):
    why = window_reason("mag7-manage", at(WEDNESDAY, hh, mm))
    assert why is not None
    assert "10:00, 12:00, 14:00, 15:30" in why


def test_manage_window_when_early_close_then_1245_acts_and_1530_skips():
    assert window_reason("mag7-manage", at(EARLY_CLOSE, 12, 45)) is None
    why = window_reason("mag7-manage", at(EARLY_CLOSE, 15, 30))
    assert why is not None
    assert "10:00, 12:00, 12:45 today (early close)" in why


def test_management_times_when_early_close_then_last_check_is_the_closeout():
    times = mag7.management_times_on(EARLY_CLOSE)
    assert [f"{t:%H:%M}" for t in times] == ["10:00", "12:00", "12:45"]
    assert mag7.is_last_check(times[-1], DEFAULT)
    assert not mag7.is_last_check(times[1], DEFAULT)


def test_entry_window_when_friday_10_then_acts_and_after_cutoff_skips():
    assert window_reason("mag7-weekly-entry", at(FRIDAY, 10, 0)) is None
    assert window_reason("mag7-weekly-entry", at(FRIDAY, 14, 59)) is None
    late = window_reason("mag7-weekly-entry", at(FRIDAY, 15, 0))
    assert late is not None
    assert "10:00..15:00" in late


def test_entry_window_when_not_the_entry_day_then_skipped_naming_the_next_scan():
    why = window_reason("mag7-weekly-entry", at(WEDNESDAY, 10, 0))
    assert why == (
        "2026-12-02 (Wednesday) is not the Mag7 entry day; next entry scan 2026-12-04 (Friday) "
        "10:00"
    )


def test_entry_window_when_good_friday_then_thursday_acts_and_friday_is_closed():
    assert window_reason("mag7-weekly-entry", at(GF_THURSDAY, 10, 0)) is None
    closed = window_reason("mag7-weekly-entry", at(GOOD_FRIDAY, 10, 0))
    assert closed is not None
    assert closed.startswith("market closed")
    assert mag7.entry_day_reason(GF_THURSDAY) is None


def test_entry_day_reason_when_after_the_entry_day_then_names_next_weeks():
    why = mag7.entry_day_reason(date(2026, 12, 7))  # Monday
    assert why is not None
    assert "next entry scan 2026-12-11 (Friday)" in why


def test_entry_window_when_early_close_friday_then_cutoff_is_close_minus_60():
    assert window_reason("mag7-weekly-entry", at(EARLY_CLOSE, 11, 59)) is None
    why = window_reason("mag7-weekly-entry", at(EARLY_CLOSE, 12, 0))
    assert why is not None
    assert "10:00..12:00" in why


class NoCalendarMarket:
    """A market adapter without an earnings calendar (like the Polygon adapter)."""


class FailingCalendarMarket:
    def earnings_dates(self, symbol: str, start: date, end: date) -> list[date]:
        raise NotImplementedError("no fundamentals feed")


def fake_runtime(market: object, dates: dict[str, tuple[date, ...]] | None = None) -> object:
    cfg = DEFAULT
    if dates is not None:
        cfg = DEFAULT.with_overrides({"earnings": EarningsConfig(dates=dates)})
    return SimpleNamespace(market=market, mag7=cfg)


def test_earnings_calendar_when_adapter_has_none_and_config_has_dates_then_config():
    dates = {"AAPL": (date(2027, 1, 26), date(2027, 4, 29)), "MSFT": (date(2027, 1, 27),)}
    cal = mag7.earnings_calendar(
        fake_runtime(NoCalendarMarket(), dates), date(2027, 1, 1), date(2027, 2, 1)
    )
    assert cal.source == "config"
    assert cal.configured
    assert cal.dates["AAPL"] == (date(2027, 1, 26),)  # only inside the window
    assert cal.dates["MSFT"] == (date(2027, 1, 27),)
    assert cal.dates["NVDA"] == ()


def test_earnings_calendar_when_no_source_then_none_and_says_so():
    cal = mag7.earnings_calendar(
        fake_runtime(FailingCalendarMarket()), date(2027, 1, 1), date(2027, 2, 1)
    )
    assert cal.source == "none"
    assert not cal.configured
    assert "no fundamentals feed" in cal.note
    assert "not checked against earnings dates" in cal.note
    assert mag7._with_calendar(DEFAULT, cal).earnings.calendar_configured is False


def test_settings_when_mag7_overrides_given_then_typed_config():
    settings = TradingSettings(
        mag7_overrides={
            "management_times": ["10:00", "15:30"],
            "sizing": {"max_open_positions": 2},
            "earnings": {"dates": {"AAPL": ["2027-01-26"]}},
        },
        approval_timeout_mag7_s=600,
    )
    cfg = settings.mag7_config()
    assert cfg.management_times == (time(10, 0), time(15, 30))
    assert cfg.sizing.max_open_positions == 2
    assert cfg.sizing.risk_fraction == Decimal("0.02")  # the rest of the table: defaults
    assert cfg.earnings.dates == {"AAPL": (date(2027, 1, 26),)}
    assert settings.approval_timeout(SystemName.MAG7).total_seconds() == 600


def test_settings_when_unknown_mag7_key_then_refused_naming_it():
    with pytest.raises(ValueError, match="unknown Mag7 settings: target_dtee"):
        TradingSettings(mag7_overrides={"target_dtee": 8})
    with pytest.raises(ValueError, match="invalid Mag7 setting management_times"):
        mag7_config_from({"management_times": ["soon"]})


def test_tiers_marker_when_in_a_reason_then_read_back():
    reason = f"tier: tier(s) 2..3 at +35%, +50% [{tiers_marker(3)}]"
    assert _tiers_from(reason) == 3
    assert _tiers_from("take_profit: +50% of debit") is None  # Smart-0DTE reasons: unchanged
