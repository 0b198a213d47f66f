"""A backtest with ``source="polygon"``: history replayed through ``PolygonMarketData`` (the real
``massive`` client) from the Polygon fixture server in simulator mode, downloaded once into the
parquet cache and read back from it on the next run."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest

from adapters.simulator import SimulatedMarket
from core.calendar import NY
from tasks.backtest import BacktestParams, run_backtest
from tasks.backtest_market import PolygonAccess
from tests.fixtures.polygon_server import PolygonFixtureServer

DAY = date(2026, 11, 24)
AFTER = datetime(2026, 11, 25, 20, 0, tzinfo=NY)  # the day is complete: it goes to parquet
SEED = 21


@pytest.fixture(scope="module")
def server() -> Iterator[PolygonFixtureServer]:
    with PolygonFixtureServer(market=SimulatedMarket(SEED)) as srv:
        yield srv


def test_polygon_backtest_when_run_twice_then_replays_from_parquet_without_new_downloads(
    server: PolygonFixtureServer, tmp_path: Path
) -> None:
    access = PolygonAccess(
        api_key=server.api_key,
        base_url=server.base_url,
        cache_dir=tmp_path / "history",
        now=lambda: AFTER,
    )
    params = BacktestParams(
        system="smart0dte",
        start=DAY,
        end=DAY,
        source="polygon",
        smart_overrides={"loop_interval_seconds": 600},
    )

    first = run_backtest(params, out_dir=tmp_path / "bt", polygon=access)
    downloads = len(server.requests)
    second = run_backtest(params, out_dir=tmp_path / "bt", polygon=access)

    assert server.errors == []
    assert downloads > 0
    assert len(server.requests) == downloads  # the second run read parquet only
    assert list((tmp_path / "history" / "option_quotes").rglob("*.parquet"))
    (day,) = first.days
    assert day.flat is True
    assert day.iterations == 36  # 09:45 .. 15:35 every 10 minutes
    assert first.data_accesses["chain"] > 0
    assert first.trades
    assert [(t.position_id, t.pnl) for t in second.trades] == [
        (t.position_id, t.pnl) for t in first.trades
    ]
    assert second.metrics == first.metrics
    assert first.params.as_dict()["source"] == "polygon"
