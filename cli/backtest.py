"""``dte backtest``: replay history through the same strategy code (Typer sub-app).

``dte backtest --system smart0dte --start 2026-11-16 --end 2026-11-20 --source sim`` runs the
backtest in this process with a progress bar (no Prefect server needed); ``--prefect`` runs the
``backtest`` flow instead (artifacts in the Prefect UI, no progress bar). ``dte backtest list``
shows the stored runs, ``dte backtest show RUN_ID`` one run's metrics and files.
"""

from __future__ import annotations

import json
import os
import time as _time
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from tasks.backtest import BacktestResult

backtest_app = typer.Typer(
    help="Backtest Smart-0DTE / Mag7-7DTE over past days through the same strategy code.",
    invoke_without_command=True,
)
console = Console()

DEFAULT_OUT = Path("reports/backtests")


def _day(value: str | None, name: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(
            f"{value!r} is not a date: use YYYY-MM-DD", param_hint=name
        ) from exc


def _decimal(value: float, name: str) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation as exc:  # pragma: no cover - typer gives floats
        raise typer.BadParameter(f"{value!r} is not a number", param_hint=name) from exc


def _overrides(items: list[str], name: str) -> dict[str, Any]:
    """``KEY=VALUE`` pairs; a value is read as JSON when it parses (numbers, lists, objects)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{item!r}: use KEY=VALUE", param_hint=name)
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            out[key.strip()] = raw
    return out


def _prefect_env(home: Path) -> None:
    """The same quiet, self-contained Prefect defaults as ``dte demo`` (kept if already set)."""
    home.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PREFECT_HOME", str(home.resolve()))
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def _results_url(out: Path, results_db: str | None) -> str:
    from tasks.backtest import RESULTS_DB_NAME

    return results_db or f"sqlite:///{out / RESULTS_DB_NAME}"


@backtest_app.callback(invoke_without_command=True)
def backtest(
    ctx: typer.Context,
    system: Annotated[str, typer.Option(help="smart0dte | mag7 | both")] = "smart0dte",
    start: Annotated[str | None, typer.Option(help="first day YYYY-MM-DD")] = None,
    end: Annotated[str | None, typer.Option(help="last day YYYY-MM-DD (inclusive)")] = None,
    source: Annotated[
        str, typer.Option(help="sim (seeded simulator) | polygon (history, parquet cache)")
    ] = "sim",
    seed: Annotated[int, typer.Option(help="simulator seed (also seeds partial fills)")] = 7,
    db: Annotated[
        str | None,
        typer.Option(help="ledger URL for this run (must be empty; default <out>/<run>/ledger.db)"),
    ] = None,
    out: Annotated[Path, typer.Option(help="where run folders and backtests.db go")] = DEFAULT_OUT,
    results_db: Annotated[
        str | None, typer.Option(help="results database URL (default <out>/backtests.db)")
    ] = None,
    capital: Annotated[float, typer.Option(help="starting equity ($)")] = 100_000.0,
    fill_fraction: Annotated[
        float, typer.Option(help="fill once the limit is this far from mid to natural (>= 0.5)")
    ] = 0.5,
    slippage: Annotated[float, typer.Option(help="$ per contract per leg, against us")] = 0.01,
    commission: Annotated[float, typer.Option(help="$ per contract per leg")] = 0.65,
    partial_fill_prob: Annotated[
        float, typer.Option(help="chance a fillable limit fills only part (seeded)")
    ] = 0.1,
    risk: Annotated[
        list[str] | None, typer.Option(help="risk limit KEY=VALUE, e.g. max_daily_loss=2000")
    ] = None,
    smart: Annotated[
        list[str] | None, typer.Option(help="Smart-0DTE setting KEY=VALUE (JSON values)")
    ] = None,
    mag7: Annotated[list[str] | None, typer.Option(help="Mag7 setting KEY=VALUE (JSON)")] = None,
    polygon_mode: Annotated[
        str, typer.Option(help="mode whose Polygon block (or DTE_<MODE>_POLYGON_*) to use")
    ] = "testing",
    prefect: Annotated[
        bool,
        typer.Option("--prefect", help="run the Prefect `backtest` flow (artifacts in the UI)"),
    ] = False,
) -> None:
    """Run a backtest day by day: Smart-0DTE's minute loop and close-out, Mag7's checks and
    weekly scan, the same risk gate and order path, a broker that fills no better than paper."""
    if ctx.invoked_subcommand is not None:
        return
    first, last = _day(start, "--start"), _day(end, "--end")
    if first is None or last is None:
        console.print("[red]--start and --end are required[/red] (YYYY-MM-DD)")
        raise typer.Exit(2)
    overrides = {
        "risk_overrides": _overrides(risk or [], "--risk"),
        "smart_overrides": _overrides(smart or [], "--smart"),
        "mag7_overrides": _overrides(mag7 or [], "--mag7"),
    }
    if prefect:
        _run_flow(
            system, first, last, source, seed, db, out, results_db, capital, fill_fraction,
            slippage, commission, partial_fill_prob, overrides, polygon_mode,
        )  # fmt: skip
        return

    from tasks.backtest import BacktestParams, BacktestUnavailable, run_backtest

    try:
        params = BacktestParams(
            system=system,
            start=first,
            end=last,
            source=source,
            seed=seed,
            capital=_decimal(capital, "--capital"),
            fill_fraction=_decimal(fill_fraction, "--fill-fraction"),
            slippage_per_leg=_decimal(slippage, "--slippage"),
            commission_per_contract=_decimal(commission, "--commission"),
            partial_fill_probability=partial_fill_prob,
            **overrides,
        )
        polygon = None
        if source == "polygon":
            from tasks.backtest_steps import polygon_access

            polygon = polygon_access(polygon_mode)
    except (BacktestUnavailable, ValueError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from exc
    days = params.days()
    console.print(
        f"[bold]dte backtest[/bold] {system} {first}..{last} ({len(days)} trading days), "
        f"source {source}" + (f" seed {seed}" if source == "sim" else "")
    )
    started = _time.perf_counter()
    with Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} days"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        bar = progress.add_task("starting", total=len(days))
        equity = {"text": ""}

        def on_minute(day: date, at: datetime) -> None:
            progress.update(bar, description=f"{day:%a %Y-%m-%d} {at:%H:%M}{equity['text']}")

        def on_day(result: Any) -> None:
            equity["text"] = f"  equity ${result.equity:,.2f}"
            progress.update(
                bar,
                advance=1,
                description=f"{result.day:%a %Y-%m-%d} done, P&L {result.pnl:+,.2f}{equity['text']}",
            )

        try:
            result = run_backtest(
                params,
                out_dir=out,
                db_url=db,
                results_url=results_db,
                polygon=polygon,
                on_day=on_day,
                on_minute=on_minute,
            )
        except ValueError as exc:
            console.print(f"[red]{exc}[/red]")
            raise typer.Exit(2) from exc
    _print_result(result)
    console.print(f"wall time: {_time.perf_counter() - started:.1f} s for {len(days)} days")


def _run_flow(
    system: str,
    first: date,
    last: date,
    source: str,
    seed: int,
    db: str | None,
    out: Path,
    results_db: str | None,
    capital: float,
    fill_fraction: float,
    slippage: float,
    commission: float,
    partial_fill_prob: float,
    overrides: dict[str, dict[str, Any]],
    polygon_mode: str,
) -> None:
    _prefect_env(Path("var") / "prefect")
    from flows.backtest import backtest as backtest_flow

    started = _time.perf_counter()
    summary = backtest_flow(
        system=system,
        start=first,
        end=last,
        source=source,
        seed=seed,
        db_url=db,
        out_dir=str(out),
        results_db=results_db,
        capital=capital,
        fill_fraction=fill_fraction,
        slippage_per_leg=slippage,
        commission_per_contract=commission,
        partial_fill_probability=partial_fill_prob,
        polygon_mode=polygon_mode,
        **overrides,
    )
    _print_metrics(summary["metrics"])
    console.print(f"run {summary['run_id']}: {summary['trades']} trades")
    console.print(f"tearsheet: {summary['files']['markdown']}")
    console.print(f"wall time: {_time.perf_counter() - started:.1f} s (Prefect flow `backtest`)")


def _print_metrics(metrics: dict[str, Any]) -> None:
    from tasks.backtest_report import metric_rows, money, num, pct

    systems = list(metrics["systems"])
    table = Table(title="backtest metrics (after commissions)")
    table.add_column("metric")
    table.add_column("account", justify="right")
    if len(systems) > 1:
        for s in systems:
            table.add_column(s, justify="right")
    per = {s: dict(metric_rows(metrics["systems"][s])) for s in systems}
    for label, value in metric_rows(metrics["overall"]):
        extra = [per[s].get(label, "") for s in systems] if len(systems) > 1 else []
        table.add_row(label, value, *extra)
    console.print(table)
    if metrics["signals"]:
        sig = Table(title="per signal type")
        for col in ("signal", "trades", "win rate", "profit factor", "P&L", "exposure"):
            sig.add_column(col, justify="right")
        for kind, b in metrics["signals"].items():
            sig.add_row(
                kind,
                str(b["trades"]),
                pct(b["win_rate"], 1),
                num(b["profit_factor"]),
                money(b["total_pnl"]),
                pct(b["exposure"], 1),
            )
        console.print(sig)


def _print_result(result: BacktestResult) -> None:
    _print_metrics(result.metrics)
    days = Table(title="days")
    for col in ("day", "equity", "P&L", "orders", "settled", "flat", "state"):
        days.add_column(col, justify="right")
    for d in result.days:
        days.add_row(
            f"{d.day:%a %Y-%m-%d}",
            f"{d.equity:,.2f}",
            f"{d.pnl:+,.2f}",
            str(d.orders),
            str(d.settled),
            "-" if d.flat is None else str(d.flat),
            d.state,
        )
    console.print(days)
    if result.open_at_end:
        console.print(f"{result.open_at_end} position(s) open at the end (marked in the equity)")
    console.print(f"run id:    {result.run_id}  (code {result.code_version})")
    console.print(f"tearsheet: {result.files['markdown']}")
    console.print(f"chart:     {result.files['chart']}")
    console.print(f"trades:    {result.files['trades']} ({len(result.trades)} trades)")
    console.print(f"ledger:    {result.ledger_url}")
    console.print(f"results:   {result.results_url}")


@backtest_app.command("list")
def list_runs(
    out: Annotated[Path, typer.Option(help="the backtest folder")] = DEFAULT_OUT,
    results_db: Annotated[str | None, typer.Option(help="results database URL")] = None,
    limit: Annotated[int, typer.Option(help="newest runs shown")] = 20,
) -> None:
    """Stored backtest runs, newest first."""
    from adapters.backtest_store import BacktestStore
    from tasks.backtest_report import pct

    store = BacktestStore(_results_url(out, results_db))
    try:
        table = Table(title="backtest runs")
        for col in ("run id", "system", "source", "span", "status", "trades", "return", "code"):
            table.add_column(col)
        for r in store.runs(limit):
            overall = r.metrics.get("overall", {})
            table.add_row(
                r.run_id,
                r.system,
                r.source + (f" seed {r.seed}" if r.seed is not None else ""),
                f"{r.start_day}..{r.end_day}",
                r.status,
                str(overall.get("trades", "")),
                pct(overall.get("total_return")) if overall else "",
                r.code_version[:12],
            )
        console.print(table)
    finally:
        store.dispose()


@backtest_app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(help="run id (see `dte backtest list`)")],
    out: Annotated[Path, typer.Option(help="the backtest folder")] = DEFAULT_OUT,
    results_db: Annotated[str | None, typer.Option(help="results database URL")] = None,
) -> None:
    """One stored run: parameters, metrics and where its tearsheet is."""
    from adapters.backtest_store import BacktestStore

    store = BacktestStore(_results_url(out, results_db))
    try:
        run = store.run(run_id)
        if run is None:
            console.print(f"[red]no backtest run {run_id!r}[/red]")
            raise typer.Exit(1)
        console.print(
            f"[bold]{run.run_id}[/bold] {run.status} ({run.system}, {run.source}, "
            f"{run.start_day}..{run.end_day}); code {run.code_version}"
        )
        if run.message:
            console.print(f"message: {run.message}")
        if run.metrics:
            _print_metrics(run.metrics)
        console.print(f"trades stored: {len(store.trades(run_id))}")
        console.print(f"tearsheet: {Path(run.report_dir) / 'tearsheet.md'}")
    finally:
        store.dispose()
