"""NYSE sessions from exchange-calendars (XNYS): trading days, early closes, close-out and cut-off.

Every market time here is a timezone-aware ``datetime`` in America/New_York; DST is handled by
``zoneinfo`` because the exchange calendar gives UTC instants and we convert them, never by adding
fixed offsets. The calendar object is built once per process (it takes ~0.3 s) for a fixed span
(``CALENDAR_START``..``CALENDAR_END``), so answers do not depend on the day the process started.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import exchange_calendars as xcals

NY = ZoneInfo("America/New_York")
CALENDAR_START = "2015-01-02"
CALENDAR_END = "2030-12-31"
CLOSEOUT_BEFORE_CLOSE = timedelta(minutes=15)


class CalendarError(ValueError):
    """A date outside the calendar's span, or a naive datetime."""


class NotATradingDay(CalendarError):
    """``day`` is not an NYSE session; ``next_session`` names the next one."""

    def __init__(self, day: date, next_session: date) -> None:
        super().__init__(
            f"{day.isoformat()} ({day:%A}) is not an NYSE trading day; "
            f"the next trading day is {next_session.isoformat()} ({next_session:%A})"
        )
        self.day = day
        self.next_session = next_session


@dataclass(frozen=True, slots=True)
class Session:
    day: date
    open: datetime
    close: datetime
    early_close: bool

    @property
    def closeout(self) -> datetime:
        """Close minus 15 minutes: 15:45, or 12:45 on an early-close day."""
        return self.close - CLOSEOUT_BEFORE_CLOSE

    def entry_cutoff(self, latest: time = time(15, 0), before_close: int = 60) -> datetime:
        """New entries stop at ``latest`` or ``before_close`` minutes before the close, if earlier."""
        by_clock = datetime.combine(self.day, latest, tzinfo=NY)
        return min(by_clock, self.close - timedelta(minutes=before_close))

    def contains(self, t: datetime) -> bool:
        _require_aware(t)
        return self.open <= t < self.close


@functools.cache
def _xnys() -> Any:
    return xcals.get_calendar("XNYS", start=CALENDAR_START, end=CALENDAR_END)


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise CalendarError(f"naive datetime {t!r}: market times must be timezone-aware")


def _check_span(day: date) -> None:
    if not (date.fromisoformat(CALENDAR_START) <= day <= date.fromisoformat(CALENDAR_END)):
        raise CalendarError(
            f"{day.isoformat()} is outside the calendar span {CALENDAR_START}..{CALENDAR_END}"
        )


def _to_ny(ts: Any) -> datetime:
    """pandas Timestamp (UTC) -> aware datetime in New York."""
    utc = datetime.fromtimestamp(ts.timestamp(), tz=UTC)
    return utc.astimezone(NY)


@functools.lru_cache(maxsize=8192)
def is_trading_day(day: date) -> bool:
    """``day`` is an NYSE session (the calendar is fixed for the process: answers are kept)."""
    _check_span(day)
    return bool(_xnys().is_session(day.isoformat()))


def next_trading_day(day: date) -> date:
    """The first session strictly after ``day``."""
    candidate = day + timedelta(days=1)
    while not is_trading_day(candidate):
        candidate += timedelta(days=1)
    return candidate


def previous_trading_day(day: date) -> date:
    """The last session strictly before ``day``."""
    candidate = day - timedelta(days=1)
    while not is_trading_day(candidate):
        candidate -= timedelta(days=1)
    return candidate


def trading_days(start: date, end: date) -> list[date]:
    """Sessions in [start, end], ascending."""
    return list(_trading_days(start, end))


@functools.lru_cache(maxsize=4096)
def _trading_days(start: date, end: date) -> tuple[date, ...]:
    # the simulator and the backtest ask for the same spans every minute
    _check_span(start)
    _check_span(end)
    if end < start:
        return ()
    sessions = _xnys().sessions_in_range(start.isoformat(), end.isoformat())
    return tuple(ts.date() for ts in sessions)


@functools.lru_cache(maxsize=4096)
def session(day: date) -> Session:
    """Open/close of ``day``'s session; raises NotATradingDay (naming the next one) otherwise."""
    if not is_trading_day(day):
        raise NotATradingDay(day, next_trading_day(day))
    cal = _xnys()
    label = day.isoformat()
    open_ = _to_ny(cal.session_open(label))
    close = _to_ny(cal.session_close(label))
    regular_close = datetime.combine(day, time(16, 0), tzinfo=NY)
    return Session(day=day, open=open_, close=close, early_close=close < regular_close)


def session_at(t: datetime) -> Session | None:
    """The session whose day is ``t``'s New York date, or None on a non-trading day."""
    _require_aware(t)
    day = t.astimezone(NY).date()
    return session(day) if is_trading_day(day) else None


def closeout_time(day: date) -> datetime:
    return session(day).closeout


def entry_cutoff(day: date, latest: time = time(15, 0), before_close: int = 60) -> datetime:
    return session(day).entry_cutoff(latest, before_close)


def is_market_open(t: datetime) -> bool:
    current = session_at(t)
    return current is not None and current.contains(t)


def next_session_open(t: datetime) -> datetime:
    """The next session open at or after ``t``."""
    _require_aware(t)
    day = t.astimezone(NY).date()
    if is_trading_day(day) and t < session(day).open:
        return session(day).open
    return session(next_trading_day(day)).open
