"""The ``backtest`` flow on a temporary Prefect API: one task run per day, results stored and
published as artifacts, the tearsheet folder written; a bad request fails the run clearly."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from adapters.backtest_store import BacktestStore

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

DAY = date(2026, 11, 27)  # early close: the loop ends at the 12:45 close-out


def _artifacts() -> dict[str, str]:
    from prefect.client.orchestration import get_client

    async def read() -> dict[str, str]:
        async with get_client() as client:
            arts = await client.read_artifacts()
            return {a.key: str(a.data) for a in arts if a.key}

    return asyncio.run(read())


def test_backtest_flow_when_one_sim_day_then_results_stored_and_artifacts_published(
    tmp_path: Path,
) -> None:
    from flows.backtest import backtest

    out = backtest(
        system="smart0dte",
        start=DAY,
        end=DAY,
        source="sim",
        seed=7,
        out_dir=str(tmp_path),
        smart_overrides={"loop_interval_seconds": 600},
    )

    folder = Path(out["report_dir"])
    assert folder.parent == tmp_path
    assert Path(out["files"]["markdown"]).exists()
    assert Path(out["files"]["chart"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["metrics"]["overall"]["days"] == 1
    store = BacktestStore(f"sqlite:///{tmp_path / 'backtests.db'}")
    try:
        run = store.run(out["run_id"])
        assert run is not None
        assert run.status == "completed"
        assert len(store.trades(out["run_id"])) == out["trades"]
    finally:
        store.dispose()
    artifacts = _artifacts()
    assert {"backtest-report", "backtest-equity", "backtest-metrics", "backtest-trades"} <= set(
        artifacts
    )
    assert out["run_id"] in artifacts["backtest-report"]
    assert "Sharpe" in artifacts["backtest-report"]


def test_backtest_flow_when_no_trading_day_in_span_then_fails_with_the_reason(
    tmp_path: Path,
) -> None:
    from flows.backtest import backtest

    state = backtest(
        start=date(2026, 11, 28),
        end=date(2026, 11, 29),  # a weekend
        out_dir=str(tmp_path),
        return_state=True,
    )

    assert state.is_failed()
    with pytest.raises(ValueError, match="no trading day"):
        state.result()
