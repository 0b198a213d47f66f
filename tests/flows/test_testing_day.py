"""A full simulated day in ``testing`` mode, through the same flows, against real peers.

Nothing of our own is mocked. The mode's blocks point every adapter at a local server:

* market data: ``PolygonMarketData`` on the real ``massive`` client -> the Polygon fixture server,
  which answers the documented endpoints from the seeded simulator (the day is replayed from
  history: contracts reference + per-contract quotes, downloaded once into the parquet cache);
* orders: ``IBKRBroker`` on the real ``ib_async`` client -> the fake TWS wire server (a paper
  ``DU`` account; it fills combos at their limit and keeps its own per-contract positions);
* ledger: PostgreSQL (a fresh database); cache: Redis; metrics: InfluxDB v2 write API ->
  VictoriaMetrics.

The day must end flat with the ledger and the fake broker agreeing contract by contract.
"""

from __future__ import annotations

import json
import urllib.request
from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime, time
from pathlib import Path
from urllib.parse import urlencode

import pytest

from adapters.simulator import SimulatedMarket
from adapters.store import TradeStore
from core.calendar import NY
from core.models import SystemName
from tests.conftest import _pg_database
from tests.fixtures.fake_tws import FakeTWS
from tests.fixtures.polygon_server import PolygonFixtureServer

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

DAY = date(2026, 11, 27)  # early close: the close-out runs at 12:45
SEED = 21
ACCOUNT = "DU7654321"
POLYGON_KEY = "polygon-test-key-1234"


@pytest.fixture
def pg_url(pg_admin_url: str) -> Iterator[str]:
    with _pg_database(pg_admin_url) as url:
        yield url


def _export(base_url: str, selector: str) -> list[dict]:
    with urllib.request.urlopen(f"{base_url}/internal/force_flush", timeout=5):
        pass
    # an explicit range: the simulated day may lie ahead of the wall clock (export ends at now)
    query = urlencode({"match[]": selector, "start": f"{DAY}T00:00:00Z", "end": f"{DAY}T23:59:59Z"})
    with urllib.request.urlopen(f"{base_url}/api/v1/export?{query}", timeout=5) as response:
        return [json.loads(line) for line in response.read().decode().splitlines() if line]


def test_testing_mode_day_when_run_through_flows_then_flat_and_ledger_matches_broker(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pg_url: str,
    redis_url: str,
    victoria_metrics: str,
) -> None:
    import redis

    from blocks.registry import register_documents
    from flows.smart0dte import eod_closeout, eod_report, market_open_scan, smart0dte_intraday

    monkeypatch.setenv("DTE_HISTORY_DIR", str(tmp_path / "history"))
    monkeypatch.delenv("DTE_DATABASE_URL", raising=False)
    with (
        PolygonFixtureServer(api_key=POLYGON_KEY, market=SimulatedMarket(SEED)) as polygon,
        FakeTWS(accounts=[ACCOUNT]) as tws,
    ):
        register_documents(
            "testing",
            {
                "DTE_TESTING_IBKR_HOST": "127.0.0.1",
                "DTE_TESTING_IBKR_PORT": str(tws.port),
                "DTE_TESTING_IBKR_CLIENT_ID": "7",
                "DTE_TESTING_IBKR_ACCOUNT": ACCOUNT,
                "DTE_TESTING_IBKR_READ_ONLY": "false",
                "DTE_TESTING_POLYGON_API_KEY": POLYGON_KEY,
                "DTE_TESTING_POLYGON_BASE_URL": polygon.base_url,
                "DTE_TESTING_STORAGE_DATABASE_URL": pg_url,
                "DTE_TESTING_STORAGE_REDIS_URL": redis_url,
                "DTE_TESTING_STORAGE_INFLUX_URL": victoria_metrics,
                "DTE_TESTING_STORAGE_INFLUX_ORG": "dte",
                "DTE_TESTING_STORAGE_INFLUX_BUCKET": "dte-testing",
                "DTE_TESTING_STORAGE_INFLUX_TOKEN": "influx-test-token",
            },
            replace=True,
        )
        try:
            run = {"day": DAY, "seed": SEED, "mode": "testing"}
            scan = market_open_scan(**run)
            intraday = smart0dte_intraday(**run)
            closeout = eod_closeout(**run)
            report = eod_report(**run, out_dir=str(tmp_path / "reports"))
        finally:
            register_documents("testing", {}, replace=True)

        assert scan["reconciliation"]["mismatches"] == []
        assert {row["underlying"] for row in scan["candidates"]} == {"SPY", "QQQ", "IWM"}
        assert intraday["iterations"] > 100
        assert closeout["flat"] is True

        # --- the ledger (PostgreSQL) and the fake broker agree ---------------------------------
        store = TradeStore(pg_url)
        try:
            assert store.open_positions() == []
            fills = store.fills(day=DAY)
            orders = store.orders(day=DAY)
            positions = store.positions(day=DAY)
            assert fills and orders and positions
            assert all(p.system is SystemName.SMART0DTE for p in positions)
            events = Counter(e.kind for e in store.risk_events(day=DAY))
            assert not {"order_error", "order_rejected", "reconciliation_mismatch"} & set(events)
            ledger_qty = Counter()
            for f in fills:
                ledger_qty[f.client_order_id] += f.quantity
        finally:
            store.dispose()
        assert tws.positions_by_contract() == {}  # the broker is flat too
        # every intent reached the broker as ONE new combo order, and the quantities filled
        # there are the quantities in the ledger
        new_orders = Counter(p.order_ref for p in tws.placed_new())
        assert set(new_orders) >= set(ledger_qty)
        assert all(n == 1 for n in new_orders.values()), new_orders
        bag_qty = Counter()
        for ex in tws.executions:
            if ex.contract.sec_type == "BAG":
                bag_qty[ex.order_ref] += int(ex.shares)
        assert dict(bag_qty) == dict(ledger_qty)
        fills_at = [f.at.astimezone(NY) for f in fills]
        assert all(f.date() == DAY and time(9, 45) <= f.time() <= time(13, 0) for f in fills_at)

        # --- market data came from the Polygon fixture server, once per contract -------------
        assert polygon.errors == []
        pages = [
            (r.path, r.query.get("cursor"))
            for r in polygon.requests
            if r.path.startswith("/v3/quotes/")
        ]
        # each flow run (scan, loop, close-out) reads a day's quotes at most once; only a day
        # before the wall-clock date goes to the parquet cache (tests/integration/
        # test_polygon_cache.py shows a past day is never downloaded twice)
        assert pages and max(Counter(pages).values()) <= 3

    # --- cache (Redis) and metrics (VictoriaMetrics) -----------------------------------------
    state = redis.Redis.from_url(redis_url, db=1).get("smart0dte:state")
    assert state is not None
    cached = json.loads(state)
    assert cached["at"].startswith("2026-11-27T12:4")  # the last loop minute before close-out
    series = _export(victoria_metrics, '{__name__="dte_loop_latency_ms",mode="testing"}')
    assert series, "no loop metrics reached VictoriaMetrics"
    stamps = [datetime.fromtimestamp(ms / 1000, tz=NY) for s in series for ms in s["timestamps"]]
    assert len(stamps) == intraday["iterations"]
    assert {t.date() for t in stamps} == {DAY}
    assert Path(report["markdown"]).exists()
