"""A stretch of the Smart-0DTE loop on each ledger backend (SQLite file and PostgreSQL).

Runs the loop steps without Prefect (the plain functions the tasks wrap), then flattens: the same
code path as the intraday and close-out flows, against the real simulator and paper broker.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta

import pytest

from core.calendar import NY
from core.models import IntentStatus, SystemName
from tasks import trading
from tasks.runtime import build_runtime

DAY = date(2026, 12, 1)


def run_stretch(url: str, seed: int, until: time) -> dict[str, int]:
    rt = build_runtime(DAY, seed, time(9, 40), db_url=url)
    try:
        trading.start_session(rt)
        tick = datetime.combine(DAY, time(9, 45), tzinfo=NY)
        end = datetime.combine(DAY, until, tzinfo=NY)
        while tick < end:
            rt.clock.sleep_until(tick)
            obs = trading.observe(rt, tick)
            trading.manage_exits(rt, obs)
            change = trading.update_risk(rt, obs)
            trading.enter(rt, obs, change.daily_pnl)
            tick = max(
                tick + timedelta(minutes=1), rt.clock.now().replace(second=0) + timedelta(minutes=1)
            )
        trading.flatten(rt, "end of test stretch")
        intents = rt.store.intents(day=DAY)
        return {
            "intents": len(intents),
            "filled": sum(1 for i in intents if i.status is IntentStatus.FILLED),
            "open": len(rt.store.open_positions(SystemName.SMART0DTE)),
            "mismatches": len(trading.reconcile(rt)),
            "orders": len(rt.store.orders(day=DAY)),
            "broker_orders": len(rt.broker.open_orders()),
        }
    finally:
        rt.close()


@pytest.mark.slow
def test_loop_stretch_when_each_backend_then_trades_flatten_and_reconcile(trade_db_url):
    out = run_stretch(trade_db_url, seed=3, until=time(11, 30))
    assert out["filled"] >= 1
    assert out["open"] == 0
    assert out["mismatches"] == 0
    assert out["broker_orders"] == 0


@pytest.mark.slow
def test_loop_stretch_when_same_seed_on_both_backends_then_same_decisions(tmp_path, trade_db_url):
    sqlite_url = f"sqlite:///{tmp_path / 'ref' / 'dte.db'}"
    assert run_stretch(trade_db_url, seed=3, until=time(10, 45)) == run_stretch(
        sqlite_url, seed=3, until=time(10, 45)
    )
