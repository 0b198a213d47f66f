"""The Smart-0DTE day through the real flows on a temporary Prefect API."""

from __future__ import annotations

import asyncio
from datetime import date
from pathlib import Path

import pytest

from adapters.store import TradeStore
from core.models import IntentAction, IntentStatus, SystemName

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

DAY = date(2026, 11, 27)  # early close: the loop must stop at 12:45
SEED = 7


@pytest.fixture(scope="module")
def day_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flows.smart0dte import eod_closeout, eod_report, market_open_scan, smart0dte_intraday

    tmp = tmp_path_factory.mktemp("day")
    url = f"sqlite:///{tmp / 'dte.db'}"
    out = {
        "url": url,
        "reports": tmp / "reports",
        "scan": market_open_scan(day=DAY, seed=SEED, db_url=url),
        "intraday": smart0dte_intraday(day=DAY, seed=SEED, db_url=url),
        "closeout": eod_closeout(day=DAY, seed=SEED, db_url=url),
        "report": eod_report(day=DAY, seed=SEED, db_url=url, out_dir=str(tmp / "reports")),
    }
    return out


def test_market_open_scan_when_trading_day_then_candidates_for_three_underlyings(day_run):
    rows = day_run["scan"]["candidates"]
    assert {r["underlying"] for r in rows} == {"SPY", "QQQ", "IWM"}
    assert all(r["same_day_expiry"] for r in rows)  # a Friday: all three list 0DTE
    assert all(r["implied_move_pct"] > 0 for r in rows)


def test_intraday_when_early_close_then_loop_runs_0945_to_1245_every_minute(day_run):
    assert day_run["intraday"]["iterations"] == 180  # 09:45 .. 12:44


def test_intraday_when_seeded_day_then_orders_placed_once_each(day_run):
    store = TradeStore(day_run["url"])
    intents = store.intents(day=DAY)
    placed = [i for i in intents if i.status is IntentStatus.FILLED]
    assert placed, "the seeded day should trade"
    ids = [i.intent.client_order_id for i in intents]
    assert len(ids) == len(set(ids))
    orders = store.orders(day=DAY)
    assert len({o.client_order_id for o in orders}) == len(orders)
    assert all(i.intent.system is SystemName.SMART0DTE for i in intents)
    opens = [i for i in placed if i.intent.action is IntentAction.OPEN]
    assert opens
    store.dispose()


def test_eod_closeout_when_early_close_then_runs_at_1245_and_book_is_flat(day_run):
    result = day_run["closeout"]
    assert result["closeout_at"].startswith("2026-11-27T12:45")
    assert result["flat"] is True
    store = TradeStore(day_run["url"])
    assert store.open_positions(SystemName.SMART0DTE) == []
    assert store.risk_events(day=DAY, kinds=("eod_flat",))
    store.dispose()


def test_eod_report_when_day_done_then_markdown_and_png_written_and_artifacts_published(day_run):
    rep = day_run["report"]
    md, png = Path(rep["markdown"]), Path(rep["chart"])
    assert md.exists()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = md.read_text()
    assert "## Execution" in text
    assert "## Risk events" in text
    # the advisor's narrative: no key in development, so the deterministic fallback text
    assert "## Narrative" in text
    assert "fallback text: no api key" in text

    from prefect.client.orchestration import get_client

    async def keys() -> set[str]:
        async with get_client() as client:
            arts = await client.read_artifacts()
            return {a.key for a in arts if a.key}

    found = asyncio.run(keys())
    assert {"eod-report", "eod-summary", "market-open-candidates"} <= found


def test_eod_report_when_after_the_close_then_mag7_iv_history_has_the_day(day_run):
    """The IV history is updated after the close by eod-report, even on a day no Mag7 run did."""
    from adapters.store import TradeStore
    from systems.mag7.config import DEFAULT as MAG7

    store = TradeStore(day_run["url"])
    try:
        for symbol in MAG7.underlyings:
            (last,) = store.iv_history(symbol, limit=1)
            assert last.day == DAY and last.atm_iv > 0, symbol
    finally:
        store.dispose()


def test_flows_when_rerun_same_day_then_nothing_placed_twice(day_run):
    from flows.smart0dte import smart0dte_intraday

    store = TradeStore(day_run["url"])
    before = len(store.orders(day=DAY))
    fills_before = len(store.fills(day=DAY))
    smart0dte_intraday(day=DAY, seed=SEED, db_url=day_run["url"])
    assert len(store.fills(day=DAY)) >= fills_before
    orders_after = store.orders(day=DAY)
    ids = [o.client_order_id for o in orders_after]
    assert len(ids) == len(set(ids))
    # the rerun repeats the same minutes: every entry it derives already exists, so the only new
    # orders can be closes of positions the earlier close-out flattened (none: the book is flat)
    assert len(orders_after) == before
    store.dispose()


@pytest.mark.parametrize("flow_name", ["market_open_scan", "smart0dte_intraday", "eod_closeout"])
def test_flow_when_holiday_then_completed_skipped_naming_next_session(flow_name, tmp_path):
    import flows.smart0dte as f

    state = getattr(f, flow_name)(
        day=date(2026, 11, 26), db_url=f"sqlite:///{tmp_path / 'x.db'}", return_state=True
    )
    assert state.is_completed()
    assert state.name == "Skipped"
    assert "2026-11-27" in (state.message or "")
