"""Mag7-7DTE flows: mag7-weekly-entry and mag7-manage.

Thin, like ``flows.smart0dte``: resolve the day, ask the calendar, build adapters, call tasks in
order. Same order path, risk gate, approvals and ledger as Smart-0DTE; every row is attributed to
``mag7``.

* ``mag7-weekly-entry``: on the entry day (Friday, or Thursday when Friday is a holiday) at 10:00,
  scan the seven names, choose the ~7-DTE expiry, and enter through the account-wide risk gate.
  With approvals on (live), T2/T3 entries wait up to the Mag7 timeout (30 min) in this run.
* ``mag7-manage``: at 10:00, 12:00, 14:00 and 15:30 on every trading day (on an early close
  12:45 replaces the later checks, so the 1-DTE close still happens before the close): exits,
  the ladder, the 1-DTE and pre-earnings closes, the account's risk mark. The day's last check
  also stores the day's IV and Mag7's daily P&L.

``clock="simulated"`` replays ``day`` at ``at`` (HH:MM; the entry default 10:00; manage without
``at`` runs every management time of the day in order); ``clock="wall"`` (the deployments)
acts now, and the calendar guard ends a run outside its window as ``Completed(name="Skipped")``.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Completed

from core.calendar import NY, session
from flows.approvals import attach_approvals
from flows.common import resolve_day, skip_reason, window_reason
from flows.smart0dte import DEFAULT_SEED
from tasks import mag7, mag7_steps


def _guard(flow_name: str, day: date, clock: str, at: str | None) -> str | None:
    """Skip reason: the trading day always; the flow's window on the wall clock."""
    if clock not in ("simulated", "wall"):
        raise ValueError(f"clock must be 'simulated' or 'wall', got {clock!r}")
    if (why := skip_reason(day)) is not None:
        return why
    if clock == "wall":
        if at is not None:
            raise ValueError("'at' replays a simulated time: use clock='simulated'")
        now = datetime.now(tz=NY)
        if day != now.date():
            raise ValueError(f"a wall-clock run acts on today ({now.date()}), not {day}")
        return window_reason(flow_name, now)
    return None


def _at(day: date, at: str) -> datetime:
    """``at`` (HH:MM) on ``day``, which must be inside that day's session."""
    t = datetime.combine(day, time.fromisoformat(at), tzinfo=NY)
    sess = session(day)
    if not sess.open <= t < sess.close:
        raise ValueError(
            f"{at} is outside the session {sess.open:%H:%M}-{sess.close:%H:%M} of {day}"
        )
    return t


@flow(name="mag7-weekly-entry", log_prints=False)
def mag7_weekly_entry(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    db_url: str | None = None,
    mode: str | None = None,
    clock: str = "simulated",
    at: str | None = None,
    approvals: bool | None = None,
    approval_timeout_seconds: int | None = None,
) -> dict[str, Any] | State:
    """Entry day 10:00: ensemble scan, ~7-DTE expiry, risk gate, approvals, enter."""
    d = resolve_day(day)
    if (why := _guard("mag7-weekly-entry", d, clock, at)) is not None:
        return Completed(name="Skipped", message=why)
    if (why := mag7.entry_day_reason(d)) is not None:
        return Completed(name="Skipped", message=why)
    start = _at(d, at).time() if at else mag7.entry_time()
    if clock == "wall":
        start = datetime.now(tz=NY).time()
    rt = mag7_steps.prepare(d, seed, start, db_url, mode, clock)
    if approval_timeout_seconds is not None:
        rt.mag7_approval_timeout = timedelta(seconds=approval_timeout_seconds)
    attach_approvals(rt, approvals, rt.mag7_approval_timeout)
    try:
        mag7_steps.reconcile(rt)
        out = mag7_steps.entry_scan(rt)
        if out["awaiting_approval"]:
            out["approved_entries"] = mag7_steps.await_approvals(rt)
        get_run_logger().info(
            "mag7 scan %s: %d signals, entries %s, denied %d",
            d,
            out["signals"],
            out["entries"],
            len(out["denied"]),
        )
        return out
    finally:
        rt.close()


@flow(name="mag7-manage", log_prints=False)
def mag7_manage(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    db_url: str | None = None,
    mode: str | None = None,
    clock: str = "simulated",
    at: str | None = None,
) -> dict[str, Any] | State:
    """Management check(s): exits, ladder, 1-DTE / pre-earnings closes, risk mark.

    ``at`` (HH:MM, simulated) runs one check at that time; without it a simulated run makes
    every management check of the day in order. The day's last check also records the day's
    IV (``iv_history``) and Mag7's daily P&L.
    """
    d = resolve_day(day)
    if (why := _guard("mag7-manage", d, clock, at)) is not None:
        return Completed(name="Skipped", message=why)
    if clock == "wall":
        times: list[datetime] = [datetime.now(tz=NY)]
    elif at is not None:
        times = [_at(d, at)]
    else:
        times = list(mag7.management_times_on(d))
    rt = mag7_steps.prepare(d, seed, times[0].time(), db_url, mode, clock)
    try:
        if clock == "simulated" and at is None:  # the mode's settings may move the times
            times = list(mag7.management_times_on(d, rt.mag7))
        mag7_steps.reconcile(rt)
        checks = []
        for t in times:
            if clock == "simulated":
                rt.clock.sleep_until(t)
            checks.append(mag7_steps.manage_check(rt, rt.clock.now()))
        out: dict[str, Any] = {"checks": checks}
        if mag7.is_last_check(rt.clock.now(), rt.mag7):
            out["end_of_day"] = mag7_steps.end_of_day(rt)
        exits = sum(len(c["exits"]) for c in checks)
        get_run_logger().info("mag7 manage %s: %d checks, %d exit orders", d, len(checks), exits)
        return out
    finally:
        rt.close()
