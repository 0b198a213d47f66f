from datetime import datetime

import pytest

from core.calendar import NY
from flows.common import window_reason


def at(y, m, d, hh, mm):
    return datetime(y, m, d, hh, mm, tzinfo=NY)


@pytest.mark.parametrize(
    ("now", "acts"),
    [
        (at(2026, 11, 27, 12, 45), True),  # early close: 12:45 acts
        (at(2026, 11, 27, 15, 45), False),  # ... and the 15:45 cron run is skipped
        (at(2026, 12, 1, 15, 45), True),  # full day: 15:45 acts
        (at(2026, 12, 1, 12, 45), False),  # ... and the 12:45 cron run is skipped
        (at(2026, 12, 24, 12, 45), True),  # Christmas Eve early close
        (at(2026, 12, 25, 15, 45), False),  # holiday
    ],
)
def test_window_reason_when_eod_closeout_cron_fires_then_acts_only_at_that_days_closeout(now, acts):
    assert (window_reason("eod-closeout", now) is None) is acts


def test_window_reason_when_holiday_then_message_names_next_session():
    why = window_reason("market-open-scan", at(2026, 11, 26, 9, 35))
    assert why is not None
    assert why.startswith("market closed")
    assert "2026-11-27" in why


def test_window_reason_when_intraday_after_early_closeout_then_skipped_with_next_session():
    why = window_reason("smart0dte-intraday", at(2026, 11, 27, 12, 50))
    assert why is not None
    assert "12:45" in why
    assert "2026-11-30" in why


@pytest.mark.parametrize(
    ("flow", "now", "acts"),
    [
        ("market-open-scan", at(2026, 12, 1, 9, 35), True),
        ("market-open-scan", at(2026, 12, 1, 9, 0), False),
        ("smart0dte-intraday", at(2026, 3, 9, 9, 40), True),  # first Monday of EDT
        ("eod-report", at(2026, 11, 27, 16, 15), True),
        ("eod-report", at(2026, 11, 27, 12, 0), False),
    ],
)
def test_window_reason_when_flow_and_time_then_window_applies(flow, now, acts):
    assert (window_reason(flow, now) is None) is acts
