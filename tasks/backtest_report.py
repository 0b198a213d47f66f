"""The backtest tearsheet folder ``<out>/<run id>/``: markdown, equity + drawdown PNG, CSVs, JSON.

Files: ``tearsheet.md`` (parameters, code version, metrics overall / per system / per signal
type, monthly returns, daily table), ``equity.png`` (equity curve and drawdown, matplotlib Agg),
``trades.csv`` (every closed position), ``daily.csv`` (end-of-day equity per system) and
``metrics.json`` (the same numbers, machine-readable). The run's ledger (``ledger.db``) sits in
the same folder when the default was used.
"""

from __future__ import annotations

import csv
import json
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from core.calendar import NY, previous_trading_day
from tasks.backtest_metrics import drawdowns

if TYPE_CHECKING:
    from tasks.backtest import BacktestResult

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

TRADE_COLUMNS = (
    "position_id",
    "system",
    "signal_kind",
    "underlying",
    "structure",
    "quantity",
    "opened_at",
    "closed_at",
    "entry_price",
    "exit_price",
    "commissions",
    "pnl",
    "exit_reason",
)


def pct(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{100 * value:.{digits}f}%"


def num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:,.2f}"


def metric_rows(block: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) of one metrics block, in tearsheet order (equity metrics when present)."""
    rows: list[tuple[str, str]] = []
    if "total_return" in block:
        rows += [
            ("total return", pct(block["total_return"])),
            ("CAGR (252 d)", pct(block["cagr"])),
            ("Sharpe (daily, 252)", num(block["sharpe"])),
            ("Sortino (daily, 252)", num(block["sortino"])),
            ("max drawdown", pct(block["max_drawdown"])),
            ("end equity", money(block["end_equity"])),
        ]
    rows += [
        ("trades", str(block["trades"])),
        ("win rate", pct(block["win_rate"], 1)),
        ("profit factor", num(block["profit_factor"])),
        ("average win", money(block["average_win"])),
        ("average loss", money(block["average_loss"])),
        ("total P&L (closed, after commissions)", money(block["total_pnl"])),
        ("exposure (time with a position open)", pct(block["exposure"], 1)),
        ("commissions (closed trades)", money(block["commissions"])),
    ]
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def monthly_table(monthly: dict[str, float]) -> list[str]:
    """Markdown: one row per year, a column per month and the year's compounded return."""
    years: dict[int, dict[int, float]] = {}
    for key, value in monthly.items():
        year, month = (int(p) for p in key.split("-"))
        years.setdefault(year, {})[month] = value
    rows = []
    for year in sorted(years):
        compounded = 1.0
        for value in years[year].values():
            compounded *= 1.0 + value
        cells = [pct(years[year].get(m)) if m in years[year] else "" for m in range(1, 13)]
        rows.append([str(year), *cells, pct(compounded - 1.0)])
    return _table(["year", *MONTHS, "year"], rows)


def _x(day: date) -> float:
    return float(mdates.date2num(day))  # type: ignore[no-untyped-call]


def equity_chart(result: BacktestResult, path: Path) -> Path:
    """Equity curve (account, and each system when there are two) over the drawdown."""
    capital = float(result.params.capital)
    series: dict[str, tuple[list[float], list[float]]] = {}
    if result.days:  # every curve starts at the capital, the session before the first day
        before = previous_trading_day(result.days[0].day)
        for name in dict.fromkeys(r.system for r in result.equity):
            series[name] = ([_x(before)], [capital])
    for row in result.equity:
        xs, ys = series.setdefault(row.system, ([], []))
        xs.append(_x(row.day))
        ys.append(float(row.equity))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(10, 6), dpi=110, sharex=True, gridspec_kw={"height_ratios": [3, 1.3]}
    )
    if "all" in series:
        xs, ys = series["all"]
        top.plot(xs, ys, "o-", color="#1f77b4", linewidth=1.6, markersize=3, label="account")
        colors = {"smart0dte": "#2ca02c", "mag7": "#9467bd"}
        for name, (sx, sy) in series.items():
            if name != "all":
                top.plot(sx, sy, "--", color=colors.get(name, "grey"), linewidth=1.0, label=name)
        dd = [-100 * v for v in drawdowns(capital, ys)]
        span = xs[-1] - xs[0]
        locator = mdates.DayLocator() if span <= 20 else mdates.AutoDateLocator()  # type: ignore[no-untyped-call]
        bottom.xaxis.set_major_locator(locator)
        bottom.fill_between(xs, dd, 0, color="#d62728", alpha=0.35)
        bottom.plot(xs, dd, "o-", color="#d62728", linewidth=0.8, markersize=2)
    else:
        top.text(0.5, 0.5, "no days", ha="center", va="center", transform=top.transAxes)
    top.axhline(capital, color="black", linewidth=0.6)
    top.set_title(
        f"Backtest {result.run_id}: {result.params.system}, {result.params.source}, "
        f"{result.params.start}..{result.params.end} (end-of-day equity, after commissions)",
        fontsize=9,
    )
    top.set_ylabel("equity ($)")
    top.grid(alpha=0.3)
    top.legend(loc="best", fontsize=8)
    bottom.set_ylabel("drawdown (%)")
    bottom.grid(alpha=0.3)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_trades_csv(result: BacktestResult, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRADE_COLUMNS)
        for t in result.trades:
            writer.writerow(
                [
                    t.position_id,
                    t.system,
                    t.signal_kind,
                    t.underlying,
                    t.structure,
                    t.quantity,
                    t.opened_at.astimezone(NY).isoformat(),
                    t.closed_at.astimezone(NY).isoformat(),
                    t.entry_price,
                    t.exit_price,
                    t.commissions,
                    t.pnl,
                    t.exit_reason,
                ]
            )
    return path


def write_daily_csv(result: BacktestResult, path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(
            ["day", "system", "equity", "realized", "unrealized", "commissions", "trades"]
        )
        for r in result.equity:
            writer.writerow(
                [
                    r.day.isoformat(),
                    r.system,
                    r.equity,
                    r.realized,
                    r.unrealized,
                    r.commissions,
                    r.trades,
                ]
            )
    return path


def tearsheet_markdown(result: BacktestResult, created_at: datetime) -> str:
    p = result.params
    m = result.metrics
    lines = [
        f"# Backtest {result.run_id}",
        "",
        f"- system **{p.system}**, source **{p.source}**"
        + (f" (seed {p.seed})" if p.source == "sim" else "")
        + f", {p.start.isoformat()}..{p.end.isoformat()} ({len(result.days)} trading days)",
        f"- code version `{result.code_version}`; created {created_at.isoformat(timespec='seconds')}",
        f"- starting capital {money(float(p.capital))}; fills: fraction {p.fill_fraction} of the "
        f"half-spread toward the natural, slippage ${p.slippage_per_leg}/contract/leg, commission "
        f"${p.commission_per_contract}/contract/leg, partial-fill probability "
        f"{p.partial_fill_probability}",
        f"- risk limits: {', '.join(f'{k} {v}' for k, v in p.as_dict()['risk_limits'].items())}",
        f"- ledger `{result.ledger_url}`; results `{result.results_url}`",
    ]
    if p.smart_overrides:
        lines.append(f"- Smart-0DTE overrides: `{json.dumps(dict(p.smart_overrides))}`")
    if p.mag7_overrides:
        lines.append(f"- Mag7 overrides: `{json.dumps(dict(p.mag7_overrides))}`")
    if result.open_at_end:
        lines.append(
            f"- {result.open_at_end} position(s) still open at the end (marked, not in the trades)"
        )
    lines += ["", "![equity and drawdown](equity.png)", "", "## Metrics", ""]
    systems = list(m["systems"])
    header = ["metric", "account", *systems] if len(systems) > 1 else ["metric", "account"]
    overall = metric_rows(m["overall"])
    per_system = [dict(metric_rows(m["systems"][s])) for s in systems]
    rows = [
        [label, value, *(block.get(label, "") for block in per_system)]
        if len(systems) > 1
        else [label, value]
        for label, value in overall
    ]
    rows.append(
        ["commissions charged (all fills)", money(m["overall"]["commissions_charged"])]
        + ([""] * len(systems) if len(systems) > 1 else [])
    )
    lines += _table(header, rows)
    lines += ["", "## Per signal type", ""]
    sig_rows = []
    for kind, block in m["signals"].items():
        sig_rows.append(
            [
                kind,
                str(block["trades"]),
                pct(block["win_rate"], 1),
                num(block["profit_factor"]),
                money(block["average_win"]),
                money(block["average_loss"]),
                money(block["total_pnl"]),
                pct(block["exposure"], 1),
                money(block["commissions"]),
            ]
        )
    lines += _table(
        [
            "signal",
            "trades",
            "win rate",
            "profit factor",
            "avg win",
            "avg loss",
            "P&L",
            "exposure",
            "commissions",
        ],
        sig_rows,
    )
    lines += ["", "## Monthly returns", "", *monthly_table(m["monthly"]), "", "## Days", ""]
    day_rows = [
        [
            d.day.isoformat(),
            money(float(d.equity)),
            money(float(d.pnl)),
            str(sum(s.trades for s in d.systems.values())),
            str(d.orders),
            str(d.settled),
            "" if d.flat is None else str(d.flat),
            d.state,
        ]
        for d in result.days
    ]
    lines += _table(
        ["day", "equity", "P&L", "trades closed", "orders", "settled", "flat", "state"], day_rows
    )
    lines += [
        "",
        "Files: `trades.csv` (every closed position), `daily.csv` (end-of-day equity), "
        "`metrics.json`, `equity.png`.",
        "",
        "Definitions: daily returns of end-of-day equity (open positions marked at the session's "
        "last minute, mid); Sharpe = mean / stdev x sqrt(252); Sortino uses the downside "
        "deviation of all days (target 0); max drawdown from the running peak (capital "
        "included); a trade is one closed position (partial closes count separately), its P&L "
        "after both commissions; exposure = share of session time with a position open.",
    ]
    return "\n".join(lines) + "\n"


def write_tearsheet(result: BacktestResult, created_at: datetime) -> dict[str, Path]:
    folder = result.report_dir
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "chart": equity_chart(result, folder / "equity.png"),
        "trades": write_trades_csv(result, folder / "trades.csv"),
        "daily": write_daily_csv(result, folder / "daily.csv"),
    }
    metrics = folder / "metrics.json"
    metrics.write_text(json.dumps(result.metrics, indent=2, sort_keys=True), encoding="utf-8")
    files["metrics"] = metrics
    md = folder / "tearsheet.md"
    md.write_text(tearsheet_markdown(result, created_at), encoding="utf-8")
    files["markdown"] = md
    return files
