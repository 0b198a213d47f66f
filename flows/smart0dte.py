"""Smart-0DTE day flows: market-open-scan, smart0dte-intraday, eod-closeout, eod-report.

Thin on purpose: resolve the day, ask the calendar, build adapters, call tasks in order. Every
flow rebuilds its adapters from its parameters, so runs hold no state between them.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

from prefect import State, flow, get_run_logger
from prefect.states import Completed

from core.calendar import NY
from flows.common import resolve_day, skip_reason
from tasks import steps

DEFAULT_SEED = 7


@flow(name="market-open-scan", log_prints=False)
def market_open_scan(
    day: date | None = None,
    seed: int = DEFAULT_SEED,
    speed: float = 0.0,
    db_url: str | None = None,
    mode: str = "development",
) -> dict[str, Any] | State:
    """09:35: reconcile with the broker, reset the daily state, scan chains and the regime."""
    d = resolve_day(day)
    if (why := skip_reason(d)) is not None:
        return Completed(name="Skipped", message=why)
    rt = steps.prepare(d, seed, time(9, 35), speed, db_url, mode)
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
    mode: str = "development",
) -> dict[str, Any] | State:
    """Every 60 s from 09:45 to the close-out time: exits, risk, entries (one run per day)."""
    d = resolve_day(day)
    if (why := skip_reason(d)) is not None:
        return Completed(name="Skipped", message=why)
    log = get_run_logger()
    rt = steps.prepare(d, seed, time(9, 40), speed, db_url, mode)
    try:
        steps.reconcile(rt)
        cfg = rt.smart
        tick = datetime.combine(d, cfg.loop_start, tzinfo=NY)
        interval = timedelta(seconds=cfg.loop_interval_seconds)
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
            # the next minute boundary after whatever time order walks consumed
            tick += interval
            while tick <= rt.clock.now() - interval:
                tick += interval
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
    mode: str = "development",
) -> dict[str, Any] | State:
    """At close - 15 min (12:45 on early closes, else 15:45): flatten all 0DTE and verify flat."""
    d = resolve_day(day)
    if (why := skip_reason(d)) is not None:
        return Completed(name="Skipped", message=why)
    from core.calendar import closeout_time

    at = closeout_time(d)
    rt = steps.prepare(d, seed, at.timetz().replace(tzinfo=None), speed, db_url, mode)
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
    mode: str = "development",
) -> dict[str, Any] | State:
    """16:15: markdown + table artifacts and the intraday P&L chart, also under reports/<date>/."""
    d = resolve_day(day)
    if (why := skip_reason(d)) is not None:
        return Completed(name="Skipped", message=why)
    rt = steps.prepare(d, seed, time(16, 15), 0.0, db_url, mode)
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
    mode: str = "development",
    at: str | None = None,
) -> dict[str, Any]:
    """HALTED (manual) and flatten both systems."""
    d = resolve_day(day)
    start = time.fromisoformat(at) if at else datetime.now(tz=NY).time().replace(microsecond=0)
    rt = steps.prepare(d, seed, start, 0.0, db_url, mode)
    try:
        return steps.kill(rt, reason)
    finally:
        rt.close()
