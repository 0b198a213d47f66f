"""Prefect task wrappers around the Mag7-7DTE steps (``tasks.mag7``).

As in ``tasks.steps``: live adapters are inputs, so nothing is cached; retrying a step is safe
because the order path is idempotent by client_order_id.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, time
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks.registry import load_mode_blocks
from core.calendar import NY, next_trading_day
from core.models import SystemName
from tasks import mag7, steps
from tasks.execution import ExecutionResult
from tasks.runtime import Runtime


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (plain function call in a test)
        return logging.getLogger("dte.mag7")


def _publish(rt: Runtime, results: list[ExecutionResult] | None = None) -> None:
    if rt.publisher is None:
        return
    if results:
        rt.publisher.orders(results)
    rt.publisher.risk(rt)


def _orders(results: list[ExecutionResult]) -> list[tuple[str, str]]:
    return [(r.client_order_id, r.status.value) for r in results]


@task(name="build-runtime-mag7", cache_policy=NO_CACHE)
def prepare(
    day: date,
    seed: int,
    start: time,
    db_url: str | None,
    mode: str | None,
    clock: str = "simulated",
) -> Runtime:
    """``steps.prepare`` (adapters, risk limits, tiers, approvals from the mode's settings block)
    plus the Mag7 settings: ``mag7_overrides`` and the Mag7 approval timeout (30 min)."""
    rt = steps.prepare.fn(day, seed, start, 0.0, db_url, mode, clock)
    try:
        settings = load_mode_blocks(rt.mode).trading
        rt.mag7 = settings.mag7_config()
        rt.mag7_approval_timeout = settings.approval_timeout(SystemName.MAG7)
    except BaseException:
        rt.close()
        raise
    return rt


@task(name="mag7-reconcile", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def reconcile(rt: Runtime) -> dict[str, Any]:
    """Resume Mag7's non-terminal intents, then compare its contracts with the broker's."""
    recovered = mag7.recover(rt)
    problems = mag7.reconcile(rt)
    for p in problems:
        _logger().warning("reconciliation mismatch: %s", p)
    _publish(rt, recovered)
    return {"recovered": len(recovered), "mismatches": problems}


@task(name="mag7-entry-scan", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=0)
def entry_scan(rt: Runtime) -> dict[str, Any]:
    """Mark the account, scan the seven names and enter through the risk gate (which denies
    every entry, with reasons, unless the account is ACTIVE); the per-name outcome is published
    as the ``mag7-scan`` table artifact."""
    now = rt.clock.now()
    change = mag7.update_risk(rt)
    # the scan runs in every state: outside ACTIVE the risk gate denies each entry with the
    # state and the daily P&L as reasons (recorded), instead of a silent skip once a week
    outcome = mag7.enter(rt, now, change.daily_pnl)
    _publish(rt, outcome.results)
    create_table_artifact(
        key="mag7-scan",
        table=outcome.rows(),
        description=f"Mag7 weekly scan {now.astimezone(NY):%Y-%m-%d %H:%M}",
    )
    calendar = outcome.calendar
    log = _logger()
    for cid, why in outcome.denied:
        log.info("denied %s: %s", cid, why)
    return {
        "at": now.isoformat(),
        "state": change.state.value,
        "signals": len(outcome.plan.signals) if outcome.plan else 0,
        "entries": _orders(outcome.results),
        "denied": outcome.denied,
        "awaiting_approval": outcome.awaiting,
        "skips": [(s.underlying, s.reason) for s in outcome.plan.skips] if outcome.plan else [],
        "earnings_calendar": calendar.source if calendar else "",
        "iv_methods": outcome.iv_methods,
        "skipped_at_entry": outcome.skipped,
    }


@task(name="mag7-await-approvals", cache_policy=NO_CACHE)
def await_approvals(rt: Runtime) -> list[tuple[str, str]]:
    """Wait for the scan's T2/T3 approvals (Mag7 timeout), executing the approved entries."""
    done = mag7.await_approvals(rt)
    _publish(rt, done)
    return _orders(done)


@task(name="mag7-manage-check", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=0)
def manage_check(rt: Runtime, at: datetime) -> dict[str, Any]:
    """One management check: late approvals, exits (1-DTE, pre-earnings, stop, trail, tiers),
    then the account's risk mark and state."""
    approved = mag7.process_approvals(rt)
    out = mag7.manage(rt, at)
    change = mag7.update_risk(rt)
    _publish(rt, [*approved, *out.results])
    log = _logger()
    for pid, kind, qty, detail in out.decisions:
        log.info("%s %s x%d: %s", pid, kind.value, qty, detail)
    return {
        "at": at.isoformat(),
        "state": change.state.value,
        "open": len(out.marks) if out.marks else 0,
        "exits": _orders(out.results),
        "decisions": [(pid, kind.value, qty) for pid, kind, qty, _ in out.decisions],
        "failed": out.failed,
        "approved": _orders(approved),
    }


@task(name="mag7-end-of-day", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=0)
def end_of_day(rt: Runtime) -> dict[str, Any]:
    """After the day's last check: expire leftover approvals, store each name's 30-day ATM IV of
    the day (development: backfill a year first), and Mag7's daily P&L row."""
    now = rt.clock.now()
    expired = mag7.process_approvals(rt, closing=True)
    backfilled = mag7.backfill_iv(rt, rt.session.day)
    iv = mag7.record_daily_iv(rt, now)
    day = mag7.record_day(rt)
    _publish(rt, expired)
    return {
        "iv": {s: {"atm_iv": round(v, 4), "source": src} for s, (v, src) in iv.items()},
        "iv_backfilled": backfilled,
        "iv_methods_next_scan": mag7.iv_methods(rt, next_trading_day(rt.session.day)),
        "daily_pnl": day,
    }
