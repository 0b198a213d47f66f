"""Prefect task wrappers around the trading steps: one adapter call or one pure step each.

Inputs include live adapters, so no task is cached (``NO_CACHE``). Retrying a step is safe: the
order path is idempotent by client_order_id.
"""

from __future__ import annotations

import base64
import logging
from datetime import date, datetime, time, timedelta
from pathlib import Path
from time import perf_counter
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from adapters.store import TradeStore
from blocks.registry import active_mode, load_mode_blocks
from core.calendar import NY, is_market_open
from core.models import SystemName, TradingMode, TradingState
from tasks import mag7, trading
from tasks.brief import narrative_markdown, write_brief
from tasks.events import Publisher, emit_halt
from tasks.execution import ExecutionResult
from tasks.report import write_report
from tasks.runtime import Runtime, build_runtime, database_url


def _logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:  # outside a run (plain function call in a test)
        return logging.getLogger("dte.steps")


@task(name="build-runtime", cache_policy=NO_CACHE)
def prepare(
    day: date,
    seed: int,
    start: time,
    speed: float,
    db_url: str | None,
    mode: str | None,
    clock: str = "simulated",
) -> Runtime:
    """Adapters and settings for one run, read once at its start.

    ``mode`` None reads the active mode (Prefect Variable ``dte-mode``). The mode's trading
    settings block supplies risk limits, Smart-0DTE overrides, approval tiers and timeouts; in
    development, missing block documents mean the embedded defaults. ``clock`` "simulated" starts
    at ``start``, "wall" follows real time.
    """
    trading_mode = TradingMode(mode) if mode else active_mode()
    blocks = load_mode_blocks(trading_mode)
    if trading_mode is not TradingMode.DEVELOPMENT and not blocks.ready:
        raise ValueError(f"{trading_mode.value} blocks incomplete: {'; '.join(blocks.problems())}")
    # the ledger: the parameter, else $DTE_DATABASE_URL, else the mode's storage block
    url = database_url(db_url, blocks.storage.database_url.get_secret_value())
    rt = build_runtime(
        day, seed, start, speed, url, trading_mode, simulated=clock != "wall", blocks=blocks
    )
    settings = blocks.trading
    rt.limits = settings.risk_limits()
    rt.smart = settings.smart0dte_config()
    rt.tier_rules = settings.tier_rules()
    rt.approval_timeout = settings.approval_timeout(SystemName.SMART0DTE)
    rt.approvals_enabled = settings.approvals_on(trading_mode)
    rt.publisher = Publisher(trading_mode.value)
    rt.publisher.prime(rt)
    return rt


def _publish(rt: Runtime, results: list[ExecutionResult] | None = None) -> None:
    if rt.publisher is None:
        return
    if results:
        rt.publisher.orders(results)
    rt.publisher.risk(rt)


@task(name="reconcile", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1)
def reconcile(rt: Runtime) -> dict[str, Any]:
    """Resume non-terminal intents, then compare broker positions with the ledger."""
    recovered = trading.recover(rt)
    problems = trading.reconcile(rt)
    for p in problems:
        _logger().warning("reconciliation mismatch: %s", p)
    _publish(rt, recovered)
    return {"recovered": len(recovered), "mismatches": problems}


@task(name="start-session", cache_policy=NO_CACHE)
def start_session(rt: Runtime) -> str:
    """Reset or keep the trading state; a manual HALT with positions left flattens them now."""
    state = trading.start_session(rt)
    if state is TradingState.HALTED and rt.store.open_positions():
        _publish(rt, trading.flatten(rt, "HALTED: flatten deferred from a closed market"))
    return state.value


@task(name="scan-candidates", cache_policy=NO_CACHE)
def scan(rt: Runtime) -> list[dict[str, Any]]:
    """Which underlyings list a same-day expiry, their implied move and ATM IV, and the regime."""
    from systems.smart0dte.signals import classify_regime

    obs = trading.observe(rt, rt.clock.now())
    regime = classify_regime(obs.vix_last, rt.smart.regime).value
    rows: list[dict[str, Any]] = []
    for sym, view in obs.views.items():
        row: dict[str, Any] = {
            "underlying": sym,
            "spot": round(view.last, 2),
            "prior_close": round(view.prior_close, 2),
            "vix": round(obs.vix_last, 2),
            "regime": regime,
        }
        if view.analysis is None:
            row.update(same_day_expiry=False, note=view.unavailable)
        else:
            row.update(
                same_day_expiry=True,
                implied_move_pct=round(100 * view.analysis.implied_move(), 3),
                atm_iv_pct=round(100 * view.analysis.atm_iv(), 1),
                liquid_contracts=int(view.analysis.liquid.sum()),
                skipped_quotes=view.analysis.skipped_count,
                note="",
            )
        rows.append(row)
    create_table_artifact(key="market-open-candidates", table=rows, description="09:35 scan")
    return rows


@task(name="intraday-iteration", cache_policy=NO_CACHE, retries=1, retry_delay_seconds=0)
def iteration(rt: Runtime, at: datetime) -> dict[str, Any]:
    """One loop iteration: observe, exits, risk, entries. Exits run even when entries may not."""
    started = perf_counter()
    obs = trading.observe(rt, at)
    exits = trading.manage_exits(rt, obs)
    approved = trading.process_approvals(rt)
    change = trading.update_risk(rt, obs)
    plan = None
    entries: list[Any] = []
    if change.state is TradingState.ACTIVE:
        plan, entries = trading.enter(rt, obs, change.daily_pnl)
    _publish(rt, [*exits, *approved, *entries])
    trading.record_iteration(
        rt,
        at,
        change,
        elapsed_ms=1000 * (perf_counter() - started),
        orders=len(exits) + len(approved) + len(entries),
        skipped_quotes=obs.skipped_count,
    )
    return {
        "at": at.isoformat(),
        "state": change.state.value,
        "signals": len(plan.signals) if plan else 0,
        "entries": [(r.client_order_id, r.status.value) for r in entries],
        "exits": [(r.client_order_id, r.status.value) for r in exits],
        "skipped_quotes": obs.skipped_count,
    }


@task(name="expire-approvals", cache_policy=NO_CACHE)
def expire_approvals(rt: Runtime) -> int:
    """At the end of the loop every pending approval of the day expires (recorded)."""
    done = trading.process_approvals(rt, closing=True)
    _publish(rt, done)
    return len(done)


@task(name="closeout", cache_policy=NO_CACHE)
def closeout(rt: Runtime, attempts: int = 3) -> dict[str, Any]:
    """Flatten every Smart-0DTE position with marketable limits; retry with fresh quotes."""
    log = _logger()
    for attempt in range(1, attempts + 1):
        open_now = rt.store.open_positions(SystemName.SMART0DTE)
        if not open_now:
            break
        log.info("close-out attempt %d: %d positions", attempt, len(open_now))
        _publish(
            rt,
            trading.flatten(rt, "closeout: 0DTE book must be flat", systems=[SystemName.SMART0DTE]),
        )
        rt.clock.sleep_until(rt.clock.now() + timedelta(seconds=5))
    left = rt.store.open_positions(SystemName.SMART0DTE)
    broker_0dte = [
        bp
        for bp in rt.broker.positions()
        if bp.contract.expiry == rt.session.day and bp.contract.underlying in rt.smart.underlyings
    ]
    flat = not left and not broker_0dte
    trading.update_risk(rt, None)  # the day's last P&L mark, after the close-out fills
    now = rt.clock.now()
    if flat:
        rt.store.record_risk_event(
            "eod_flat", "info", f"0DTE book flat at {now.astimezone(NY):%H:%M:%S}", now
        )
    else:
        rt.store.record_risk_event(
            "eod_not_flat",
            "critical",
            f"{len(left)} ledger positions and {len(broker_0dte)} broker legs still open",
            now,
        )
    _publish(rt)
    return {"flat": flat, "ledger_open": len(left), "broker_legs": len(broker_0dte)}


@task(name="kill", cache_policy=NO_CACHE)
def kill(rt: Runtime, reason: str) -> dict[str, Any]:
    now = rt.clock.now()
    rt.store.set_trading_state(TradingState.HALTED, f"kill switch: {reason}", now, manual=True)
    rt.store.record_risk_event("kill_switch", "critical", reason, now)
    if not is_market_open(now):
        rt.store.record_risk_event(
            "kill_switch", "critical", "market closed: flatten at the next open", now
        )
        _publish(rt)
        return {"closed": [], "deferred": len(rt.store.open_positions())}
    results = trading.flatten(rt, f"kill: {reason}")
    _publish(rt, results)
    return {"closed": [(r.client_order_id, r.status.value) for r in results]}


@task(name="halt", cache_policy=NO_CACHE)
def halt(db_url: str, reason: str) -> dict[str, Any]:
    """HALTED (manual) in the ledger alone: for a kill on a day the market does not open."""
    store = TradeStore(db_url)
    try:
        store.migrate()
        now = datetime.now(tz=NY)
        store.set_trading_state(TradingState.HALTED, f"kill switch: {reason}", now, manual=True)
        store.record_risk_event("kill_switch", "critical", f"{reason} (market closed)", now)
        emit_halt("development", reason)
        return {"closed": [], "deferred": len(store.open_positions())}
    finally:
        store.dispose()


@task(name="eod-report", cache_policy=NO_CACHE)
def report(rt: Runtime, out_dir: str) -> dict[str, Any]:
    marked = trading.record_close_marks(rt)
    if marked:
        _logger().info("close marks of %d carried position(s) stored", marked)
    # after the close: the Mag7 names' 30-day ATM IV at the session's last minute replaces the
    # value the day's last management check stored (IV history for tomorrow's IV rank)
    ivs = mag7.record_daily_iv(rt, trading.last_minute(rt))
    _logger().info("30-day ATM IV at the close stored for %d Mag7 name(s)", len(ivs))
    md, chart, summary = write_report(rt.store, rt.session, Path(out_dir), rt.limits)
    section, story = narrative_markdown(rt)
    md.write_text(md.read_text(encoding="utf-8").rstrip() + "\n\n" + section, encoding="utf-8")
    if story.fallback_reason is not None:
        _logger().info("narrative: fallback text (%s)", story.fallback_reason.value)
    rt.store.upsert_daily_pnl(
        rt.session.day,
        SystemName.SMART0DTE,
        summary.realized,
        summary.unrealized,
        summary.commissions,
        summary.fills,
    )
    create_markdown_artifact(
        key="eod-report", markdown=md.read_text(encoding="utf-8"), description=str(md)
    )
    create_table_artifact(
        key="eod-summary", table=[{"metric": k, "value": v} for k, v in summary.as_rows()]
    )
    create_table_artifact(
        key="eod-positions",
        table=[
            {
                "position": p.position_id,
                "structure": p.spread.describe(),
                "qty": p.quantity,
                "entry": str(p.entry_price),
                "exit": str(p.exit_price) if p.exit_price is not None else "",
                "realised": f"{p.realized():.2f}",
                "status": p.status.value,
            }
            for p in rt.store.positions(day=rt.session.day)
        ],
    )
    for key, png in (
        ("eod-pnl-chart", chart),
        ("eod-risk-chart", chart.with_name("risk-usage.png")),
    ):
        data = base64.b64encode(png.read_bytes()).decode("ascii")
        create_image_artifact(image_url=f"data:image/png;base64,{data}", key=key)
    return {"markdown": str(md), "chart": str(chart), "summary": dict(summary.as_rows())}


@task(name="premarket-brief", cache_policy=NO_CACHE)
def brief(rt: Runtime, out_dir: str) -> dict[str, Any]:
    """Write the pre-market brief (model or fallback) and publish it as a markdown artifact."""
    path, written = write_brief(rt, Path(out_dir))
    create_markdown_artifact(
        key="premarket-brief", markdown=path.read_text(encoding="utf-8"), description=str(path)
    )
    if written.fallback_reason is not None:
        _logger().info("brief: fallback text (%s)", written.fallback_reason.value)
    return {
        "path": str(path),
        "source": written.source.value,
        "fallback_reason": written.fallback_reason.value if written.fallback_reason else None,
        "tokens": written.tokens,
    }
