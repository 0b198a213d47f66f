"""Prefect task wrappers of the backtest (``tasks.backtest``) for the ``backtest`` flow.

The engine holds in-process state (clock, broker, ledger connection), so the tasks take it as an
input and nothing is cached (``NO_CACHE``). One ``backtest-day`` task run per trading day makes
a long run readable in the UI; ``backtest-publish`` writes the tearsheet, stores the results and
publishes them as artifacts (markdown report, equity chart image, metrics and trades tables).
"""

from __future__ import annotations

import base64
import os
from dataclasses import asdict
from datetime import date
from pathlib import Path
from typing import Any

from prefect import get_run_logger, task
from prefect.artifacts import (
    create_image_artifact,
    create_markdown_artifact,
    create_table_artifact,
)
from prefect.cache_policies import NO_CACHE

from core.models import TradingMode
from tasks.backtest import Backtest, BacktestParams, BacktestResult, DayResult
from tasks.backtest_market import PolygonAccess, history_dir
from tasks.backtest_report import metric_rows

MAX_TRADE_ROWS = 1000  # the trades table artifact; trades.csv always has every trade


def polygon_access(mode: str = "testing") -> PolygonAccess:
    """Polygon key and base URL for a polygon backtest: ``DTE_<MODE>_POLYGON_API_KEY`` /
    ``..._BASE_URL`` from the environment when set, else the mode's Polygon block document; the
    parquet history cache is the one the testing mode uses ($DTE_HISTORY_DIR or var/history)."""
    m = TradingMode(mode)
    prefix = f"DTE_{m.value.upper()}_POLYGON_"
    key = os.environ.get(prefix + "API_KEY", "").strip()
    base = os.environ.get(prefix + "BASE_URL", "").strip()
    if not key or not base:
        from blocks.registry import load_mode_blocks

        block = load_mode_blocks(m).polygon
        if not key and block.api_key is not None:
            key = block.api_key.get_secret_value()
        base = base or block.base_url
    if not key:
        raise ValueError(
            f"source 'polygon' needs a Polygon API key: set {prefix}API_KEY or register the "
            f"{m.value} blocks (dte blocks register --mode {m.value})"
        )
    return PolygonAccess(api_key=key, base_url=base, cache_dir=history_dir())


@task(name="backtest-prepare", cache_policy=NO_CACHE)
def prepare(
    params: BacktestParams,
    out_dir: str,
    db_url: str | None,
    results_url: str | None,
    polygon_mode: str,
) -> Backtest:
    polygon = polygon_access(polygon_mode) if params.source == "polygon" else None
    bt = Backtest(params, out_dir=out_dir, db_url=db_url, results_url=results_url, polygon=polygon)
    get_run_logger().info(
        "backtest %s: %s %s..%s (%d days), source %s, ledger %s",
        bt.run_id,
        params.system,
        params.start,
        params.end,
        len(bt.days),
        params.source,
        bt.ledger_url,
    )
    return bt


def day_summary(result: DayResult) -> dict[str, Any]:
    return {
        "day": result.day.isoformat(),
        "equity": str(result.equity),
        "pnl": str(result.pnl),
        "orders": result.orders,
        "iterations": result.iterations,
        "mag7_checks": result.mag7_checks,
        "settled": result.settled,
        "flat": result.flat,
        "state": result.state,
        "systems": {
            k: {f: str(v) for f, v in asdict(s).items()} for k, s in result.systems.items()
        },
    }


@task(name="backtest-day", cache_policy=NO_CACHE)
def run_day(bt: Backtest, day: date) -> dict[str, Any]:
    result = bt.run_day(day)
    get_run_logger().info(
        "%s (%d/%d): equity %s (%+.2f), %d orders, state %s",
        day,
        result.index,
        result.total,
        result.equity,
        result.pnl,
        result.orders,
        result.state,
    )
    return day_summary(result)


def result_summary(result: BacktestResult) -> dict[str, Any]:
    return {
        "run_id": result.run_id,
        "report_dir": str(result.report_dir),
        "files": {k: str(v) for k, v in result.files.items()},
        "trades": len(result.trades),
        "open_at_end": result.open_at_end,
        "code_version": result.code_version,
        "ledger": result.ledger_url,
        "results": result.results_url,
        "metrics": result.metrics,
    }


@task(name="backtest-publish", cache_policy=NO_CACHE)
def publish(bt: Backtest) -> dict[str, Any]:
    """Finish the run (metrics, tearsheet folder, stored results) and publish the artifacts."""
    result = bt.finish()
    md = result.files["markdown"].read_text(encoding="utf-8")
    chart = result.files["chart"]
    md = md.replace(
        "![equity and drawdown](equity.png)",
        f"Equity and drawdown: image artifact `backtest-equity`, file `{chart}`.",
    )
    create_markdown_artifact(key="backtest-report", markdown=md, description=result.run_id)
    data = base64.b64encode(Path(chart).read_bytes()).decode("ascii")
    create_image_artifact(
        image_url=f"data:image/png;base64,{data}",
        key="backtest-equity",
        description=result.run_id,
    )
    systems = list(result.metrics["systems"])
    per_system = {s: dict(metric_rows(result.metrics["systems"][s])) for s in systems}
    create_table_artifact(
        key="backtest-metrics",
        table=[
            {
                "metric": label,
                "account": value,
                **{s: per_system[s].get(label, "") for s in systems},
            }
            for label, value in metric_rows(result.metrics["overall"])
        ],
        description=result.run_id,
    )
    create_table_artifact(
        key="backtest-trades",
        table=[
            {
                "position": t.position_id,
                "system": t.system,
                "signal": t.signal_kind,
                "structure": t.structure,
                "qty": t.quantity,
                "opened": t.opened_at.isoformat(),
                "closed": t.closed_at.isoformat(),
                "entry": str(t.entry_price),
                "exit": str(t.exit_price),
                "pnl": str(t.pnl),
                "exit_reason": t.exit_reason,
            }
            for t in result.trades[:MAX_TRADE_ROWS]
        ],
        description=f"{result.run_id}: {len(result.trades)} trades"
        + (
            f" (first {MAX_TRADE_ROWS}; all in trades.csv)"
            if len(result.trades) > MAX_TRADE_ROWS
            else ""
        ),
    )
    return result_summary(result)
