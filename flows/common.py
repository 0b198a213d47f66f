"""What every flow does first: resolve the trading day and ask the calendar whether to run now.

Cron cannot express holidays, early closes or "the close-out is 15 minutes before *today's*
close", so every scheduled flow calls ``guard`` and, when it says no, ends at once in a
``Completed(name="Skipped")`` state whose message names the reason and the next session.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

from core.calendar import NY, NotATradingDay, Session, next_trading_day, session
from tasks import mag7

CLOSEOUT_TOLERANCE = timedelta(minutes=10)
REPORT_EARLIEST = time(16, 0)
HEALTH_WINDOW = (time(9, 0), time(16, 30))
BRIEF_WINDOW_START = time(7, 0)


def resolve_day(day: date | str | None, now: datetime | None = None) -> date:
    """The requested trading day; the New York date of ``now`` (default: wall clock) if omitted."""
    if day is None:
        return (now or datetime.now(tz=NY)).astimezone(NY).date()
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


def _next(sess: Session) -> str:
    nxt = session(next_trading_day(sess.day))
    return f"next session {nxt.day.isoformat()} {nxt.open:%H:%M}-{nxt.close:%H:%M}"


def window_reason(flow_name: str, now: datetime) -> str | None:
    """None when ``flow_name`` should act at wall time ``now``; else why not (for a Skipped state).

    * market-open-scan, smart0dte-intraday: from the open until the close-out time;
    * eod-closeout: only within 10 minutes of that day's close-out (12:45 on an early close,
      15:45 on a full day), so one of its two daily cron runs is always skipped;
    * eod-report: from 16:00 (after any close) to midnight;
    * health-check: 09:00-16:30 on trading days;
    * premarket-brief: from 07:00 until the open;
    * mag7-weekly-entry: on the week's entry day (Friday; Thursday when Friday is a holiday)
      from 10:00 until the entry cut-off (15:00, or close - 60 min);
    * mag7-manage: within 10 minutes after a management time (10:00, 12:00, 14:00, 15:30; on an
      early close 10:00, 12:00 and 12:45);
    * anything: not on a non-trading day.
    """
    day = now.astimezone(NY).date()
    if (why := skip_reason(day)) is not None:
        return why
    sess = session(day)
    if flow_name in ("market-open-scan", "smart0dte-intraday"):
        if now < sess.open:
            return f"before the open at {sess.open:%H:%M}"
        if now >= sess.closeout:
            return f"after today's close-out at {sess.closeout:%H:%M}; {_next(sess)}"
        return None
    if flow_name == "eod-closeout":
        if abs(now - sess.closeout) <= CLOSEOUT_TOLERANCE:
            return None
        kind = "early close" if sess.early_close else "full day"
        return (
            f"close-out is at {sess.closeout:%H:%M} today ({kind}), not {now.astimezone(NY):%H:%M}"
        )
    if flow_name == "health-check":
        first, last = HEALTH_WINDOW
        if first <= now.astimezone(NY).time() <= last:
            return None
        return f"health checks run {first:%H:%M}-{last:%H:%M} on trading days"
    if flow_name == "premarket-brief":
        if now.astimezone(NY).time() >= BRIEF_WINDOW_START and now < sess.open:
            return None
        return f"the brief runs {BRIEF_WINDOW_START:%H:%M}-{sess.open:%H:%M} before the open"
    if flow_name == "mag7-weekly-entry":
        return mag7.entry_window_reason(now)
    if flow_name == "mag7-manage":
        return mag7.manage_window_reason(now)
    if flow_name == "eod-report":
        if now.astimezone(NY).time() >= REPORT_EARLIEST:
            return None
        return f"the report runs after the close ({REPORT_EARLIEST:%H:%M})"
    return None
