"""What every flow does first: resolve the trading day and ask the calendar whether to run."""

from __future__ import annotations

from datetime import date, datetime

from core.calendar import NY, NotATradingDay, session


def resolve_day(day: date | str | None) -> date:
    """The requested trading day; today in New York when omitted."""
    if day is None:
        return datetime.now(tz=NY).date()
    if isinstance(day, str):
        return date.fromisoformat(day)
    return day


def skip_reason(day: date) -> str | None:
    """None when ``day`` is a session, else a message naming the next session."""
    try:
        session(day)
    except NotATradingDay as exc:
        return f"market closed: {exc}"
    return None
