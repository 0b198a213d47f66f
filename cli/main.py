"""The ``dte`` command: demo, status, kill.

Prefect is imported lazily, after the environment defaults below are set, so ``dte --help`` is fast
and a fresh machine needs no Prefect profile: the demo keeps its Prefect home under ``./var``.
"""

from __future__ import annotations

import os
import threading
import time as _time
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="dte-trader: Smart-0DTE and Mag7-7DTE on Prefect 3", no_args_is_help=True)
console = Console()


def _mount() -> None:
    from cli.backup import backup_app
    from cli.blocks import blocks_app, mode_app

    app.add_typer(backup_app, name="backup", help="daily backup and restore of the ledger")
    app.add_typer(blocks_app, name="blocks")
    app.add_typer(mode_app, name="mode")


def _prefect_env(home: Path) -> None:
    """Quiet, self-contained Prefect defaults for local runs (kept if the user set them)."""
    home.mkdir(parents=True, exist_ok=True)  # Prefect does not create PREFECT_HOME's parents
    os.environ.setdefault("PREFECT_HOME", str(home.resolve()))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def _parse_day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD", param_hint="--date"
        ) from exc


def _session_or_exit(day: date) -> None:
    from core.calendar import NotATradingDay, session

    try:
        session(day)
    except NotATradingDay as exc:
        console.print(f"[red]{exc}[/red]\nTry: dte demo --date {exc.next_session.isoformat()}")
        raise typer.Exit(2) from exc


def _default_demo_day() -> date:
    from core.calendar import NY, is_trading_day, previous_trading_day

    today = datetime.now(tz=NY).date()
    return today if is_trading_day(today) else previous_trading_day(today)


@app.command()
def demo(
    day: Annotated[
        str | None, typer.Option("--date", help="trading day YYYY-MM-DD (default: today or last)")
    ] = None,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 21,
    speed: Annotated[
        float, typer.Option(help="simulated seconds per real second; 0 = instant")
    ] = 0.0,
    var: Annotated[Path, typer.Option(help="working folder for databases")] = Path("var"),
    reports: Annotated[Path, typer.Option(help="where reports are written")] = Path("reports"),
) -> None:
    """Run one simulated trading day of Smart-0DTE through the real Prefect flows."""
    d = _parse_day(day) or _default_demo_day()
    _session_or_exit(d)
    _prefect_env(var / "prefect")
    db_dir = var / "demo"
    db_dir.mkdir(parents=True, exist_ok=True)
    db_path = db_dir / f"{d.isoformat()}-seed{seed}.db"
    for stale in (db_path, db_path.with_name(db_path.stem + "-paper.db")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    console.print(
        f"[bold]dte demo[/bold] {d.isoformat()} seed={seed}: simulator + paper broker, "
        f"ledger {db_path}"
    )

    from adapters.store import TradeStore
    from core.calendar import NY, session
    from flows.smart0dte import eod_closeout, eod_report, market_open_scan, smart0dte_intraday
    from tasks.report import summarize

    sess = session(d)
    store = TradeStore(url)
    store.migrate()
    total_minutes = (
        sess.closeout - datetime.combine(d, time(9, 45), tzinfo=NY)
    ).total_seconds() / 60

    done = threading.Event()

    def watch(progress: Progress, task_id: TaskID) -> None:
        while not done.is_set():
            marks = store.pnl_marks(d)
            if marks:
                last = marks[-1]
                minutes = (
                    last.at - datetime.combine(d, time(9, 45), tzinfo=NY)
                ).total_seconds() / 60
                pnl = last.realized + last.unrealized
                progress.update(
                    task_id,
                    completed=max(0.0, minutes),
                    description=f"smart0dte-intraday {last.at.astimezone(NY):%H:%M}  P&L {pnl:+,.2f}",
                )
            _time.sleep(0.5)

    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        t0 = progress.add_task("market-open-scan 09:35 (starting Prefect)", total=1)
        market_open_scan(day=d, seed=seed, speed=speed, db_url=url)
        progress.update(t0, completed=1, description="market-open-scan 09:35")
        t1 = progress.add_task("smart0dte-intraday 09:45", total=total_minutes)
        watcher = threading.Thread(target=watch, args=(progress, t1), daemon=True)
        watcher.start()
        intraday = smart0dte_intraday(day=d, seed=seed, speed=speed, db_url=url)
        done.set()
        watcher.join()
        progress.update(t1, completed=total_minutes)
        t2 = progress.add_task(f"eod-closeout {sess.closeout:%H:%M}", total=1)
        closeout = eod_closeout(day=d, seed=seed, speed=speed, db_url=url)
        progress.update(t2, completed=1)
        t3 = progress.add_task("eod-report 16:15", total=1)
        rep = eod_report(day=d, seed=seed, db_url=url, out_dir=str(reports))
        progress.update(t3, completed=1)

    summary = summarize(store, d)
    table = Table(title=f"Smart-0DTE simulated day {d.isoformat()} (seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in summary.as_rows():
        table.add_row(k, v)
    if isinstance(intraday, dict):
        table.add_row("loop iterations", str(intraday["iterations"]))
    if isinstance(closeout, dict):
        table.add_row("close-out", f"{closeout['closeout_at'][11:16]} flat={closeout['flat']}")
    for kind, n in sorted(summary.risk_event_kinds.items()):
        table.add_row(f"  risk event: {kind}", str(n))
    console.print(table)
    if isinstance(rep, dict):
        console.print(f"report: {rep['markdown']}\nchart:  {rep['chart']}")
    console.print(f"status: dte status --db {url} --date {d.isoformat()}")
    store.dispose()


@app.command()
def status(
    db: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL (default $DTE_DATABASE_URL or var/dte.db)")
    ] = None,
    day: Annotated[str | None, typer.Option("--date", help="day for P&L (default today)")] = None,
) -> None:
    """Positions, P&L and trading state from the ledger."""
    from adapters.store import TradeStore
    from core.calendar import NY
    from tasks.report import summarize
    from tasks.runtime import database_url

    store = TradeStore(database_url(db))
    store.migrate()
    d = _parse_day(day) or datetime.now(tz=NY).date()
    state = store.trading_state()
    console.print(
        f"trading state: [bold]{state.state.value if state else 'ACTIVE'}[/bold]"
        + (f" ({'manual' if state.manual else 'auto'}: {state.reason})" if state else "")
    )
    positions = store.open_positions()
    table = Table(title="open positions")
    for col in ("position", "system", "structure", "qty", "entry", "max loss", "opened"):
        table.add_column(col)
    for p in positions:
        table.add_row(
            p.position_id,
            p.system.value,
            p.spread.describe(),
            str(p.quantity),
            str(p.entry_price),
            f"{p.max_loss:,.2f}",
            p.opened_at.astimezone(NY).strftime("%Y-%m-%d %H:%M"),
        )
    console.print(table)
    summary = summarize(store, d)
    pnl = Table(title=f"day {d.isoformat()}")
    pnl.add_column("metric")
    pnl.add_column("value", justify="right")
    for k, v in summary.as_rows():
        pnl.add_row(k, v)
    console.print(pnl)
    store.dispose()


@app.command()
def kill(
    reason: Annotated[str, typer.Option(help="why (recorded)")] = "manual kill switch",
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the ledger")] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="simulated day (development mode)")
    ] = None,
    at: Annotated[str | None, typer.Option(help="simulated time HH:MM (development mode)")] = None,
    seed: Annotated[int, typer.Option(help="simulator seed (development mode)")] = 7,
) -> None:
    """Set HALTED (manual) and flatten both systems, through the kill-switch flow."""
    _prefect_env(Path("var") / "prefect")
    from flows.smart0dte import kill_switch

    d = _parse_day(day)
    if d is not None:
        _session_or_exit(d)
    result = kill_switch(reason=reason, day=d, seed=seed, db_url=db, at=at)
    console.print(f"[red bold]HALTED[/red bold] ({reason}); closed: {result['closed']}")


@app.command()
def reset(
    reason: Annotated[str, typer.Option(help="why trading may resume (recorded)")],
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the ledger")] = None,
) -> None:
    """Manual reset: HALTED/REDUCING -> ACTIVE, recorded with the reason."""
    from adapters.store import TradeStore
    from core.calendar import NY
    from core.models import TradingState
    from tasks.runtime import database_url

    store = TradeStore(database_url(db))
    store.migrate()
    before = store.trading_state()
    now = datetime.now(tz=NY)
    store.set_trading_state(TradingState.ACTIVE, f"manual reset: {reason}", now, manual=False)
    store.record_risk_event(
        "manual_reset",
        "warning",
        f"{before.state.value if before else 'ACTIVE'} -> ACTIVE: {reason}",
        now,
    )
    console.print(f"trading state: ACTIVE (was {before.state.value if before else 'ACTIVE'})")
    store.dispose()


_mount()

if __name__ == "__main__":
    app()
