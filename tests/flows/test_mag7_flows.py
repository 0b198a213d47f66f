"""Mag7-7DTE through the real flows on a temporary Prefect API: a whole weekly cycle.

Friday 2026-11-27 (early close 13:00): the weekly scan enters ~7-DTE spreads expiring Friday
2026-12-04; the management checks of Friday to Thursday take profit tiers, stops and the 1-DTE
close at 15:30 on Thursday 2026-12-03; Friday 2026-12-04 starts the next cycle.
"""

from __future__ import annotations

import asyncio
from datetime import date, timedelta

import pytest

from adapters.simulator import SimulatedMarket
from adapters.store import TradeStore
from core.calendar import NY, trading_days
from core.models import IntentAction, IntentStatus, PositionStatus, SystemName

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

MAG7 = SystemName.MAG7
ENTRY = date(2026, 11, 27)
EXPIRY = date(2026, 12, 4)
ONE_DTE_DAY = date(2026, 12, 3)
NEXT_ENTRY = date(2026, 12, 4)
SEED = 21


@pytest.fixture(scope="module")
def cycle(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flows.mag7 import mag7_manage, mag7_weekly_entry

    tmp = tmp_path_factory.mktemp("mag7")
    url = f"sqlite:///{tmp / 'dte.db'}"
    out: dict = {"url": url, "manage": {}}
    out["first_check"] = mag7_manage(day=ENTRY, seed=SEED, db_url=url, at="10:00")
    out["entry"] = mag7_weekly_entry(day=ENTRY, seed=SEED, db_url=url)
    out["manage"][ENTRY] = [
        mag7_manage(day=ENTRY, seed=SEED, db_url=url, at="12:00"),
        mag7_manage(day=ENTRY, seed=SEED, db_url=url, at="12:45"),
    ]
    for day in trading_days(ENTRY + timedelta(days=1), NEXT_ENTRY):
        out["manage"][day] = [mag7_manage(day=day, seed=SEED, db_url=url)]  # every check
    out["next_entry"] = mag7_weekly_entry(day=NEXT_ENTRY, seed=SEED, db_url=url)
    return out


def first_cycle(store: TradeStore) -> list:
    return [p for p in store.positions(system=MAG7) if p.opened_at.astimezone(NY).date() == ENTRY]


def test_weekly_entry_when_friday_then_seven_day_spreads_attributed_to_mag7(cycle):
    entry = cycle["entry"]
    assert entry["earnings_calendar"] == "market data"
    assert set(entry["iv_methods"]) == {"AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "TSLA", "META"}
    assert all(m.startswith("rank") for m in entry["iv_methods"].values())  # a year backfilled
    assert entry["entries"], "the seeded Friday should enter"
    store = TradeStore(cycle["url"])
    try:
        opens = [
            i for i in store.intents(day=ENTRY, system=MAG7) if i.intent.action is IntentAction.OPEN
        ]
        assert opens
        for i in opens:
            assert i.intent.spread.expiry == EXPIRY  # 7 DTE, the listed weekly
            assert i.intent.created_at.astimezone(NY).strftime("%H:%M") == "10:00"
            assert i.intent.max_loss <= 5000
        signals = store.signals(day=ENTRY, system=MAG7)
        assert {s.signal_id for s in signals} >= {i.intent.signal_id for i in opens}
        assert all(p.system is MAG7 for p in store.positions(system=MAG7))
        assert len({p.position_id.split("-p")[0] for p in first_cycle(store)}) <= 3
    finally:
        store.dispose()


def test_manage_when_last_trading_day_before_expiry_then_everything_closed_by_1530(cycle):
    store = TradeStore(cycle["url"])
    try:
        positions = first_cycle(store)
        assert positions
        assert all(p.status is PositionStatus.CLOSED for p in positions)
        for p in positions:
            closed = p.closed_at.astimezone(NY)
            assert closed.date() <= ONE_DTE_DAY
            if closed.date() == ONE_DTE_DAY:
                assert closed.strftime("%H:%M") <= "15:31"
        one_dte = [
            i
            for i in store.intents(day=ONE_DTE_DAY, system=MAG7)
            if i.intent.reason.startswith("one_dte")
        ]
        for i in one_dte:
            assert i.status is IntentStatus.FILLED
            assert i.intent.created_at.astimezone(NY).strftime("%H:%M") == "15:30"
        assert store.open_positions(MAG7) == [] or all(
            p.opened_at.astimezone(NY).date() == NEXT_ENTRY for p in store.open_positions(MAG7)
        )
    finally:
        store.dispose()


def test_manage_when_tiers_taken_then_partial_closes_record_the_tier_count(cycle):
    store = TradeStore(cycle["url"])
    try:
        partials = [p for p in store.positions(system=MAG7) if "-p" in p.position_id]
        for child in partials:
            tiers = int(child.position_id.rsplit("-p", 1)[1])
            assert 1 <= tiers <= 3
            assert child.closed_fraction_tiers == tiers
            parent = store.position(child.position_id.rsplit("-p", 1)[0])
            assert parent is not None
            assert parent.closed_fraction_tiers >= tiers
        tier_closes = [
            i
            for i in store.intents(system=MAG7)
            if i.intent.action is IntentAction.CLOSE and i.intent.reason.startswith("tier")
        ]
        assert len(tier_closes) >= len(partials)
        # peaks are stored for every position the checks marked
        peaks = store.peaks([p.position_id for p in first_cycle(store)])
        assert peaks
    finally:
        store.dispose()


def test_cycle_when_run_then_no_position_life_spans_an_earnings_date(cycle):
    market = SimulatedMarket(SEED)
    store = TradeStore(cycle["url"])
    try:
        for p in store.positions(system=MAG7):
            start = p.opened_at.astimezone(NY).date()
            spans = market.earnings_dates(p.underlying, start, p.spread.expiry)
            assert spans == [], f"{p.position_id} spans earnings {spans}"
    finally:
        store.dispose()


def test_manage_when_every_day_then_iv_history_and_daily_pnl_recorded(cycle):
    store = TradeStore(cycle["url"])
    try:
        for day in cycle["manage"]:
            rows = store.iv_history("NVDA", before=day + timedelta(days=1), limit=1)
            assert rows[-1].day == day
            assert rows[-1].source == "simulator"
            assert [r.system for r in store.daily_pnl(day)] == [MAG7]
        assert len(store.iv_history("TSLA", before=ENTRY)) >= 252  # the backfilled year
        last = cycle["manage"][ONE_DTE_DAY][0]
        assert [c["at"][11:16] for c in last["checks"]] == ["10:00", "12:00", "14:00", "15:30"]
        assert "end_of_day" in last
        early = cycle["manage"][ENTRY]
        assert "end_of_day" not in early[0]
        assert "end_of_day" in early[1]  # 12:45 is the early close's last check
    finally:
        store.dispose()


def test_weekly_entry_when_rerun_then_nothing_placed_twice(cycle):
    from flows.mag7 import mag7_weekly_entry

    store = TradeStore(cycle["url"])
    try:
        before = len(store.orders(system=MAG7))
        again = mag7_weekly_entry(day=NEXT_ENTRY, seed=SEED, db_url=cycle["url"])
        assert all(status != "PENDING" for _, status in again["entries"])
        assert len(store.orders(system=MAG7)) == before
        ids = [o.client_order_id for o in store.orders(system=MAG7)]
        assert len(ids) == len(set(ids))
    finally:
        store.dispose()


def test_weekly_entry_when_run_then_scan_table_artifact_published(cycle):
    from prefect.client.orchestration import get_client

    async def keys() -> set[str]:
        async with get_client() as client:
            return {a.key for a in await client.read_artifacts() if a.key}

    assert "mag7-scan" in asyncio.run(keys())


@pytest.mark.parametrize("flow_name", ["mag7_weekly_entry", "mag7_manage"])
def test_flow_when_holiday_then_completed_skipped_naming_next_session(flow_name, tmp_path):
    import flows.mag7 as f

    state = getattr(f, flow_name)(
        day=date(2026, 11, 26), db_url=f"sqlite:///{tmp_path / 'x.db'}", return_state=True
    )
    assert state.is_completed()
    assert state.name == "Skipped"
    assert "2026-11-27" in (state.message or "")


def test_weekly_entry_when_not_the_entry_day_then_skipped_naming_the_next_scan(tmp_path):
    from flows.mag7 import mag7_weekly_entry

    state = mag7_weekly_entry(
        day=date(2026, 12, 2), db_url=f"sqlite:///{tmp_path / 'x.db'}", return_state=True
    )
    assert state.is_completed()
    assert state.name == "Skipped"
    assert "next entry scan 2026-12-04 (Friday) 10:00" in (state.message or "")
    assert not (tmp_path / "x.db").exists()  # skipped before any adapter was built
