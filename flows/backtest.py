"""The ``backtest`` flow (manual): replay history day by day through the same strategy code.

Thin, like the trading flows: validate the parameters, build the engine, one ``backtest-day``
task per trading day, then ``backtest-publish`` (tearsheet folder ``<out_dir>/<run id>/``, stored
results, artifacts ``backtest-report``, ``backtest-equity``, ``backtest-metrics``,
``backtest-trades``). What a day runs and how orders fill is described in ``tasks.backtest``.

Without ``start``/``end`` it replays the last five completed sessions. ``source="polygon"`` reads
the key and base URL of ``polygon_mode``'s Polygon block (or ``DTE_<MODE>_POLYGON_*``) and the
parquet history cache of the testing mode; ``"sim"`` needs nothing. The run's ledger is its own
(``<out_dir>/<run id>/ledger.db`` unless ``db_url`` names another empty database), never the
trading ledger; results are catalogued in ``results_db`` (default ``<out_dir>/backtests.db``).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from prefect import flow, get_run_logger

from core.calendar import NY
from tasks import backtest_steps
from tasks.backtest import BacktestParams, default_span


@flow(name="backtest", log_prints=False)
def backtest(
    system: str = "smart0dte",
    start: date | None = None,
    end: date | None = None,
    source: str = "sim",
    seed: int = 7,
    db_url: str | None = None,
    out_dir: str = "reports/backtests",
    results_db: str | None = None,
    capital: float = 100_000.0,
    fill_fraction: float = 0.5,
    slippage_per_leg: float = 0.01,
    commission_per_contract: float = 0.65,
    partial_fill_probability: float = 0.1,
    risk_overrides: dict[str, Any] | None = None,
    smart_overrides: dict[str, Any] | None = None,
    mag7_overrides: dict[str, Any] | None = None,
    polygon_mode: str = "testing",
) -> dict[str, Any]:
    """Backtest ``system`` (smart0dte, mag7, both) over [start, end] from ``source`` (sim,
    polygon) with the backtest broker's fill model; returns the run id, files and metrics."""
    if start is None or end is None:
        first, last = default_span(datetime.now(tz=NY).date())
        start, end = start or first, end or last
    params = BacktestParams(
        system=system,
        start=start,
        end=end,
        source=source,
        seed=seed,
        capital=Decimal(str(capital)),
        fill_fraction=Decimal(str(fill_fraction)),
        slippage_per_leg=Decimal(str(slippage_per_leg)),
        commission_per_contract=Decimal(str(commission_per_contract)),
        partial_fill_probability=partial_fill_probability,
        risk_overrides=risk_overrides or {},
        smart_overrides=smart_overrides or {},
        mag7_overrides=mag7_overrides or {},
    )
    bt = backtest_steps.prepare(params, out_dir, db_url, results_db, polygon_mode)
    try:
        for day in bt.days:
            backtest_steps.run_day(bt, day)
        out = backtest_steps.publish(bt)
    except BaseException as exc:
        bt.fail(exc)
        raise
    finally:
        bt.close()
    overall = out["metrics"]["overall"]
    get_run_logger().info(
        "backtest %s done: %d trades, total return %.2f%%, report %s",
        out["run_id"],
        out["trades"],
        100 * overall["total_return"],
        out["files"]["markdown"],
    )
    return out
