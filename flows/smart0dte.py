"""Smart-0DTE day flows: market-open-scan, smart0dte-intraday, eod-closeout, eod-report.

Thin on purpose: resolve the day, ask the calendar, build adapters, call tasks in order. Every
flow rebuilds its adapters from its parameters, so runs hold no state between them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Completed

from core.calendar import NY, closeout_time
from flows.approvals import attach_approvals
from flows.common import resolve_day, skip_reason, window_reason
from tasks import steps
from tasks.runtime import database_url as database_url_of

DEFAULT_SEED = 7


def _catch_up(tick: datetime, now: datetime, interval: timedelta) -> datetime:
    """The first loop tick from ``tick`` on that is not a whole interval behind ``now``.

    A late wall-clock start, or order walks that ran past the next boundary, skip the minutes
    already gone instead of replaying them in a burst.
    """
    while tick <= now - interval:
        tick += interval
    return tick


def _guard(flow_name: str, day: date, clock: str) -> str | None:
    """Skip reason for this run: the trading day always; the flow's window on the wall clock.

    With ``clock="simulated"`` the flow replays ``day`` at its own scheduled time, so only the
    trading-day check applies; with ``clock="wall"`` (scheduled deployments) the calendar window
    of the flow is checked against now, and ``day`` must be today.
    """
    if clock not in ("simulated", "wall"):
        raise ValueError(f"clock must be 'simulated' or 'wall', got {clock!r}")
    if (why := skip_reason(day)) is not None:
        return why
    if clock == "wall":
        now = datetime.now(tz=NY)
        if day != now.date():
            raise ValueError(f"a wall-clock run acts on today ({now.date()}), not {day}")
        return window_reason(flow_name, now)
    return None


@flow(name="market-open-scan", log_prints=False)
def market_open_scan(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: str | None = None,
    clock: str = "simulated",
) -> dict[str, Any] | State:
    """09:35: reconcile with the broker, reset the daily state, scan chains and the regime."""
    d = resolve_day(day)
    if (why := _guard("market-open-scan", d, clock)) is not None:
        return Completed(name="Skipped", message=why)
    rt = steps.prepare(d, seed, time(9, 35), speed, db_url, mode, clock)
    try:
        state = steps.start_session(rt)
        recon = steps.reconcile(rt)
        candidates = steps.scan(rt)
        return {"state": state, "reconciliation": recon, "candidates": candidates}
    finally:
        rt.close()


@flow(name="smart0dte-intraday", log_prints=False)
def smart0dte_intraday(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: str | None = None,
    clock: str = "simulated",
    approvals: bool | None = None,
    approval_timeout_seconds: int | None = None,
) -> dict[str, Any] | State:
    """Every 60 s from 09:45 to the close-out time: exits, risk, entries (one run per day).

    ``mode`` defaults to the active mode (Prefect Variable ``dte-mode``), read once here;
    ``approvals`` (default from the mode's trading settings: on in live only) sends T2/T3 entries to a human through one
    ``approve-entry`` run each; the loop keeps managing exits while they wait.
    """
    d = resolve_day(day)
    if (why := _guard("smart0dte-intraday", d, clock)) is not None:
        return Completed(name="Skipped", message=why)
    log = get_run_logger()
    rt = steps.prepare(d, seed, time(9, 40), speed, db_url, mode, clock)
    if approval_timeout_seconds is not None:
        rt.approval_timeout = timedelta(seconds=approval_timeout_seconds)
    attach_approvals(rt, approvals, rt.approval_timeout)
    try:
        steps.reconcile(rt)
        cfg = rt.smart
        interval = timedelta(seconds=cfg.loop_interval_seconds)
        tick = _catch_up(datetime.combine(d, cfg.loop_start, tzinfo=NY), rt.clock.now(), interval)
        end = rt.session.closeout
        iterations = 0
        entries = exits = 0
        while tick < end:
            rt.clock.sleep_until(tick)
            out = steps.iteration(rt, tick)
            iterations += 1
            entries += len(out["entries"])
            exits += len(out["exits"])
            if out["entries"] or out["exits"]:
                log.info(
                    "%s entries=%s exits=%s", tick.strftime("%H:%M"), out["entries"], out["exits"]
                )
            tick = _catch_up(tick + interval, rt.clock.now(), interval)
        log.info(
            "loop ended at close-out %s after %d iterations", end.strftime("%H:%M"), iterations
        )
        return {"iterations": iterations, "entries": entries, "exits": exits}
    finally:
        rt.close()


@flow(name="eod-closeout", log_prints=False)
def eod_closeout(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: str | None = None,
    clock: str = "simulated",
) -> dict[str, Any] | State:
    """At close - 15 min (12:45 on early closes, else 15:45): flatten all 0DTE and verify flat."""
    d = resolve_day(day)
    if (why := _guard("eod-closeout", d, clock)) is not None:
        return Completed(name="Skipped", message=why)
    at = closeout_time(d)
    rt = steps.prepare(d, seed, at.time(), speed, db_url, mode, clock)
    try:
        steps.reconcile(rt)
        result = steps.closeout(rt)
        result["closeout_at"] = at.isoformat()
        return result
    finally:
        rt.close()


@flow(name="eod-report", log_prints=False)
def eod_report(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    db_url: str | None = None,
    out_dir: str = "reports",
    mode: str | None = None,
    clock: str = "simulated",
) -> dict[str, Any] | State:
    """16:15: markdown + table artifacts and the intraday P&L chart, also under reports/<date>/."""
    d = resolve_day(day)
    if (why := _guard("eod-report", d, clock)) is not None:
        return Completed(name="Skipped", message=why)
    rt = steps.prepare(d, seed, time(16, 15), 0.0, db_url, mode, clock)
    try:
        return steps.report(rt, out_dir)
    finally:
        rt.close()


@flow(name="kill-switch", log_prints=False)
def kill_switch(
    reason: str = "manual kill switch",
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    db_url: str | None = None,
    mode: str | None = None,
    at: str | None = None,
) -> dict[str, Any]:
    """HALTED (manual) and flatten both systems; outside market hours HALTED alone is recorded.

    ``at`` (HH:MM) replays the kill at that simulated time of ``day`` (development mode).
    """
    d = resolve_day(day)
    if skip_reason(d) is not None:
        if at is not None:
            raise ValueError(f"cannot replay a kill at {at} on {d}: {skip_reason(d)}")
        return steps.halt(database_url_of(db_url), reason)
    start = time.fromisoformat(at) if at else datetime.now(tz=NY).time().replace(microsecond=0)
    rt = steps.prepare(d, seed, start, 0.0, db_url, mode, "simulated" if at else "wall")
    try:
        return steps.kill(rt, reason)
    finally:
        rt.close()
