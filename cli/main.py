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
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from adapters.store import TradeStore

app = typer.Typer(help="dte-trader: Smart-0DTE and Mag7-7DTE on Prefect 3", no_args_is_help=True)
console = Console()


def _mount() -> None:
    from cli.backtest import backtest_app
    from cli.backup import backup_app
    from cli.blocks import blocks_app, mode_app

    app.add_typer(
        backtest_app, name="backtest", help="replay past days through the same strategy code"
    )
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


def _demo_sessions(first: date, days: int) -> list[date]:
    from core.calendar import next_trading_day

    sessions = [first]
    while len(sessions) < days:
        sessions.append(next_trading_day(sessions[-1]))
    return sessions


class _Steps:
    """Progress of one demo day: a bar per flow for a one-day demo, one bar per day otherwise."""

    def __init__(self, progress: Progress, prefix: str, detailed: bool) -> None:
        self.progress = progress
        self.prefix = prefix
        self.detailed = detailed
        self.day_bar: TaskID | None = None
        self.total = 0

    def start(self, label: str, total: float = 1.0) -> TaskID:
        if self.detailed:
            return self.progress.add_task(label, total=total)
        if self.day_bar is None:
            self.day_bar = self.progress.add_task(f"{self.prefix}{label}", total=self.total)
        self.progress.update(self.day_bar, description=f"{self.prefix}{label}")
        return self.day_bar

    def done(self, bar: TaskID, label: str | None = None, completed: float = 1.0) -> None:
        if self.detailed:
            self.progress.update(bar, completed=completed, description=label)
        else:
            self.progress.advance(bar, 1)


def _run_demo_day(
    steps: _Steps, url: str, d: date, seed: int, speed: float, reports: Path
) -> dict[str, object]:
    """One simulated session through the flows, one after another: the scan (09:35), the
    Smart-0DTE loop (09:45 to the close-out), then Mag7's checks at their times (10:00, and on
    the entry day the weekly scan right after it; 12:00, 14:00, 15:30), the close-out and the
    report. The Mag7 runs read the ledger as of their own simulated time (``tasks.mag7``), so
    replaying the loop's whole day first does not show them the loop's later positions, losses
    or trading state; the loop, having run first, does not see Mag7's entries (see README)."""
    from adapters.store import TradeStore
    from core.calendar import NY, session
    from core.models import SystemName
    from flows.mag7 import mag7_manage, mag7_weekly_entry
    from flows.smart0dte import eod_closeout, eod_report, market_open_scan, smart0dte_intraday
    from tasks.mag7 import entry_day_reason, management_times_on

    sess = session(d)
    checks = management_times_on(d)
    entry_day = entry_day_reason(d) is None
    steps.total = 4 + len(checks) + (1 if entry_day else 0)
    loop_start = datetime.combine(d, time(9, 45), tzinfo=NY)
    total_minutes = (sess.closeout - loop_start).total_seconds() / 60
    out: dict[str, object] = {"day": d}

    bar = steps.start("market-open-scan 09:35 (starting Prefect)")
    market_open_scan(day=d, seed=seed, speed=speed, db_url=url)
    steps.done(bar, "market-open-scan 09:35")

    store = TradeStore(url)
    bar = steps.start("smart0dte-intraday 09:45", total=total_minutes)
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            marks = store.pnl_marks(d, SystemName.SMART0DTE)
            if marks:
                last = marks[-1]
                minutes = (last.at - loop_start).total_seconds() / 60
                pnl = last.realized + last.unrealized
                text = f"smart0dte-intraday {last.at.astimezone(NY):%H:%M}  P&L {pnl:+,.2f}"
                if steps.detailed:
                    steps.progress.update(bar, completed=max(0.0, minutes), description=text)
                else:
                    steps.progress.update(bar, description=f"{steps.prefix}{text}")
            _time.sleep(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        out["intraday"] = smart0dte_intraday(day=d, seed=seed, speed=speed, db_url=url)
    finally:
        done.set()
        watcher.join()
        store.dispose()
    steps.done(bar, completed=total_minutes)
    for i, check in enumerate(checks):
        bar = steps.start(f"mag7-manage {check:%H:%M}")
        mag7_manage(day=d, seed=seed, db_url=url, at=f"{check:%H:%M}")
        steps.done(bar)
        if i == 0 and entry_day:
            bar = steps.start("mag7-weekly-entry 10:00 (entry day)")
            out["entry"] = mag7_weekly_entry(day=d, seed=seed, db_url=url)
            steps.done(bar)
    bar = steps.start(f"eod-closeout {sess.closeout:%H:%M}")
    out["closeout"] = eod_closeout(day=d, seed=seed, speed=speed, db_url=url)
    steps.done(bar)
    bar = steps.start("eod-report 16:15")
    out["report"] = eod_report(day=d, seed=seed, db_url=url, out_dir=str(reports))
    steps.done(bar)
    return out


@app.command()
def demo(
    day: Annotated[
        str | None, typer.Option("--date", help="trading day YYYY-MM-DD (default: today or last)")
    ] = None,
    seed: Annotated[int, typer.Option(help="simulator seed")] = 21,
    speed: Annotated[
        float, typer.Option(help="simulated seconds per real second; 0 = instant")
    ] = 0.0,
    days: Annotated[
        int, typer.Option(min=1, help="trading days to run from --date (10 = two weekly cycles)")
    ] = 1,
    var: Annotated[Path, typer.Option(help="working folder for databases")] = Path("var"),
    reports: Annotated[Path, typer.Option(help="where reports are written")] = Path("reports"),
) -> None:
    """Run simulated trading days of both systems (Smart-0DTE, Mag7-7DTE) through the real
    Prefect flows: one ledger, one simulated market, each flow at its time of day."""
    d = _parse_day(day) or _default_demo_day()
    _session_or_exit(d)
    _prefect_env(var / "prefect")
    sessions = _demo_sessions(d, days)
    db_dir = var / "demo"
    db_dir.mkdir(parents=True, exist_ok=True)
    suffix = "" if days == 1 else f"-{days}d"
    db_path = db_dir / f"{d.isoformat()}-seed{seed}{suffix}.db"
    for stale in (db_path, db_path.with_name(db_path.stem + "-paper.db")):
        stale.unlink(missing_ok=True)
    url = f"sqlite:///{db_path}"
    span = d.isoformat() if days == 1 else f"{d.isoformat()}..{sessions[-1].isoformat()}"
    console.print(
        f"[bold]dte demo[/bold] {span} seed={seed}: Smart-0DTE + Mag7-7DTE, simulator + paper "
        f"broker, ledger {db_path}"
    )

    from adapters.store import TradeStore

    started = _time.perf_counter()
    store = TradeStore(url)
    store.migrate()
    runs: list[dict[str, object]] = []
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        for i, sd in enumerate(sessions):
            prefix = "" if days == 1 else f"{i + 1}/{days} {sd:%a %m-%d} "
            runs.append(
                _run_demo_day(_Steps(progress, prefix, days == 1), url, sd, seed, speed, reports)
            )
    elapsed = _time.perf_counter() - started
    if days == 1:
        _print_day(store, runs[0], seed)
    else:
        _print_days(store, runs, seed)
    last = runs[-1].get("report")
    if isinstance(last, dict):
        console.print(f"report: {last['markdown']}\nchart:  {last['chart']}")
    console.print(f"wall time: {elapsed:.1f} s for {days} simulated day{'s' if days > 1 else ''}")
    console.print(f"status: dte status --db {url} --date {sessions[-1].isoformat()}")
    store.dispose()


def _print_day(store: TradeStore, run: dict[str, object], seed: int) -> None:
    from core.models import SystemName
    from tasks.report import summarize

    d = run["day"]
    assert isinstance(d, date)
    smart = summarize(store, d)
    table = Table(title=f"Smart-0DTE simulated day {d.isoformat()} (seed {seed})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for k, v in smart.as_rows():
        table.add_row(k, v)
    intraday, closeout = run.get("intraday"), run.get("closeout")
    if isinstance(intraday, dict):
        table.add_row("loop iterations", str(intraday["iterations"]))
    if isinstance(closeout, dict):
        table.add_row("close-out", f"{closeout['closeout_at'][11:16]} flat={closeout['flat']}")
    for kind, n in sorted(smart.risk_event_kinds.items()):
        table.add_row(f"  risk event: {kind}", str(n))
    console.print(table)
    mag7 = summarize(store, d, SystemName.MAG7)
    m7 = Table(title=f"Mag7-7DTE simulated day {d.isoformat()} (seed {seed})")
    m7.add_column("metric")
    m7.add_column("value", justify="right")
    for k, v in mag7.as_rows():
        if k not in ("trading state", "risk events"):
            m7.add_row(k, v)
    entry = run.get("entry")
    if isinstance(entry, dict):
        m7.add_row("weekly scan", f"{entry['signals']} signals, {len(entry['entries'])} entries")
        m7.add_row("earnings calendar", str(entry["earnings_calendar"]))
    else:
        m7.add_row("weekly scan", "not the entry day")
    console.print(m7)
    console.print(
        f"account P&L today: realised {smart.realized + mag7.realized:+,.2f}, unrealised "
        f"{smart.unrealized + mag7.unrealized:+,.2f} (Smart-0DTE {smart.realized:+,.2f}, "
        f"Mag7-7DTE {mag7.realized:+,.2f} + {mag7.unrealized:+,.2f} open)"
    )


def _print_days(store: TradeStore, runs: list[dict[str, object]], seed: int) -> None:
    from decimal import Decimal

    from core.calendar import NY, session
    from core.models import PositionStatus, SystemName
    from tasks.report import summarize

    table = Table(title=f"Simulated days (seed {seed}): P&L per system, after commissions")
    for col in ("day", "0DTE orders", "0DTE P&L", "Mag7 orders", "Mag7 P&L", "Mag7 open P&L",
                "held", "flat", "state"):  # fmt: skip
        table.add_column(col, justify="right", no_wrap=True)
    totals = {SystemName.SMART0DTE: Decimal("0"), SystemName.MAG7: Decimal("0")}
    orders = {SystemName.SMART0DTE: 0, SystemName.MAG7: 0}
    last_mag7_unrealized = Decimal("0")
    for run in runs:
        d = run["day"]
        assert isinstance(d, date)
        smart = summarize(store, d)
        mag7 = summarize(store, d, SystemName.MAG7)
        totals[SystemName.SMART0DTE] += smart.realized
        totals[SystemName.MAG7] += mag7.realized
        orders[SystemName.SMART0DTE] += smart.orders_placed
        orders[SystemName.MAG7] += mag7.orders_placed
        last_mag7_unrealized = mag7.unrealized
        close = session(d).close
        carried = len(  # Mag7 positions held over the day's close (partial closes folded)
            {p.position_id.split("-p")[0] for p in store.positions_open_at(close, SystemName.MAG7)}
        )
        state = store.trading_state(close)
        closeout = run.get("closeout")
        entry = "E " if isinstance(run.get("entry"), dict) else ""
        table.add_row(
            f"{entry}{d:%a %m-%d}",
            str(smart.orders_placed),
            f"{smart.realized:,.2f}",
            str(mag7.orders_placed),
            f"{mag7.realized:,.2f}",
            f"{mag7.unrealized:,.2f}",
            str(carried),
            str(closeout.get("flat")) if isinstance(closeout, dict) else "-",
            state.state.value if state else "ACTIVE",
        )
    table.add_row(
        "total",
        str(orders[SystemName.SMART0DTE]),
        f"{totals[SystemName.SMART0DTE]:,.2f}",
        str(orders[SystemName.MAG7]),
        f"{totals[SystemName.MAG7]:,.2f}",
        f"{last_mag7_unrealized:,.2f}",
        "",
        "",
        "",
    )
    console.print(table)
    console.print(
        "E = Mag7 entry day (weekly scan at 10:00); P&L = realised that day; held = Mag7 "
        "positions held over the close; state = trading state at the close"
    )
    first = runs[0]["day"]
    assert isinstance(first, date)
    cycle = Table(title="Mag7-7DTE positions of the run (a partial close is a row of its own)")
    for col in ("structure", "qty", "opened", "closed", "rule", "realised"):
        cycle.add_column(col, no_wrap=col != "structure")
    for p in store.positions(system=SystemName.MAG7):
        if p.opened_at.astimezone(NY).date() < first:
            continue
        cycle.add_row(
            p.spread.describe(),
            str(p.quantity),
            f"{p.opened_at.astimezone(NY):%a %m-%d %H:%M}",
            f"{p.closed_at.astimezone(NY):%a %m-%d %H:%M}" if p.closed_at else "open",
            _exit_reason(store, p.position_id) if p.status is PositionStatus.CLOSED else "",
            f"{p.realized():,.2f}" if p.status is PositionStatus.CLOSED else "",
        )
    console.print(cycle)


def _exit_reason(store: TradeStore, position_id: str) -> str:
    """The rule that closed a Mag7 position or partial: the last filled close of its parent at
    or before its closing time (the reason starts with the rule: one_dte, stop, tier, ...)."""
    pos = store.position(position_id)
    if pos is None or pos.closed_at is None:
        return ""
    parent = position_id.split("-p", maxsplit=1)[0]
    closes = [
        s.intent
        for s in store.intents(system=pos.system)
        if s.intent.position_id == parent
        and s.status.value == "FILLED"
        and s.intent.created_at <= pos.closed_at
    ]
    return closes[-1].reason.split(":")[0] if closes else ""


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
    from core.models import SystemName

    smart = summarize(store, d)
    mag7 = summarize(store, d, SystemName.MAG7)
    pnl = Table(title=f"day {d.isoformat()}")
    pnl.add_column("metric")
    pnl.add_column("Smart-0DTE", justify="right")
    pnl.add_column("Mag7-7DTE", justify="right")
    for (k, v), (_, m) in zip(smart.as_rows(), mag7.as_rows(), strict=True):
        pnl.add_row(k.replace("0DTE ", ""), v, m)
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
