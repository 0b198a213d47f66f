"""Kill switch: HALTED (manual) and flatten, through the real flow; it survives the next session."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

import pytest

from core.chains import combo_quote
from core.models import OptionContract, Right, SignalKind, SystemName, TradingState
from core.orders import open_intent
from core.spreads import bull_call_debit
from tasks import trading
from tasks.execution import execute_intent
from tasks.runtime import build_runtime

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

DAY = date(2026, 12, 1)


def _open_one(url: str) -> str:
    rt = build_runtime(DAY, 5, time(10, 30), db_url=url)
    try:
        snap = rt.market.chain("SPY", DAY, rt.clock.now())
        k = Decimal(round(snap.spot))
        spread = bull_call_debit(
            OptionContract("SPY", DAY, k, Right.CALL), OptionContract("SPY", DAY, k + 2, Right.CALL)
        )
        quote = combo_quote({("SPY", DAY): snap}, spread)
        intent = open_intent(
            SystemName.SMART0DTE, "kill-test", spread, 2, quote, rt.clock.now(), "test"
        )
        result = execute_intent(
            intent, rt.broker, rt.store, rt.clock, rt.smart.walk, SignalKind.MOMENTUM
        )
        return result.status.value
    finally:
        rt.close()


def test_kill_switch_when_position_open_then_halted_manual_and_flat_and_kept_next_session(tmp_path):
    from flows.smart0dte import kill_switch

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    assert _open_one(url) == "FILLED"
    rt = build_runtime(DAY, 5, time(10, 32), db_url=url)
    opened = len(rt.store.open_positions())
    assert opened == 1
    rt.close()

    result = kill_switch(reason="test kill", day=DAY, seed=5, db_url=url, at="10:35")
    rt = build_runtime(DAY, 5, time(10, 40), db_url=url)
    try:
        row = rt.store.trading_state()
        assert row is not None
        assert row.state is TradingState.HALTED
        assert row.manual
        assert rt.store.open_positions() == []
        assert len(result["closed"]) == opened
        assert rt.store.risk_events(day=DAY, kinds=("kill_switch",))
    finally:
        rt.close()

    nxt = build_runtime(date(2026, 12, 2), 5, time(9, 35), db_url=url)
    try:
        assert trading.start_session(nxt) is TradingState.HALTED  # manual: not reset
    finally:
        nxt.close()
