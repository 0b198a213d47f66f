"""The Mag7 entry scan at tasks level: one entry per weekly signal across reruns, and recovery /
reconciliation that leave the Smart-0DTE loop's in-flight orders alone."""

from __future__ import annotations

from datetime import date, time
from decimal import Decimal

from core.chains import combo_quote
from core.models import (
    Direction,
    IntentAction,
    IntentStatus,
    OptionContract,
    Right,
    Signal,
    SignalKind,
    SystemName,
)
from core.orders import open_intent
from core.spreads import bull_call_debit
from tasks import mag7
from tasks.runtime import Runtime, build_runtime

DAY = date(2026, 11, 27)
SEED = 21
MAG7 = SystemName.MAG7


def runtime(tmp_path, at: time) -> Runtime:
    return build_runtime(DAY, SEED, at, db_url=f"sqlite:///{tmp_path / 'dte.db'}")


def test_scan_when_rerun_later_the_same_day_then_no_second_entry_per_signal(tmp_path):
    rt = runtime(tmp_path, time(10, 0))
    try:
        first = mag7.enter(rt, rt.clock.now(), mag7.account_pnl(rt))
        assert first.results
        assert all(r.status is IntentStatus.FILLED for r in first.results)
    finally:
        rt.close()
    rt = runtime(tmp_path, time(11, 30))  # the chains have moved: other legs, other ids
    try:
        again = mag7.enter(rt, rt.clock.now(), mag7.account_pnl(rt))
        assert again.results == []
        opens = [
            i
            for i in rt.store.intents(day=DAY, system=MAG7)
            if i.intent.action is IntentAction.OPEN
        ]
        assert len(opens) == len(first.results)
        signals = {i.intent.signal_id for i in opens}
        assert len(signals) == len(opens)
        assert again.skipped, "the 11:30 scan re-derives the 10:00 signals"
        for underlying, why in again.skipped:
            assert "already has entry" in why, (underlying, why)
        decisions = {r["underlying"]: r["decision"] for r in again.rows()}
        for underlying, _ in again.skipped:
            assert "already has entry" in str(decisions[underlying])
    finally:
        rt.close()


def smart_pending(rt: Runtime) -> str:
    """A Smart-0DTE entry persisted and left PENDING, as the loop leaves one mid-flight."""
    now = rt.clock.now()
    snap = rt.market.chain("SPY", DAY, now)
    k = Decimal(round(snap.spot))
    spread = bull_call_debit(
        OptionContract("SPY", DAY, k, Right.CALL), OptionContract("SPY", DAY, k + 2, Right.CALL)
    )
    signal = Signal(
        f"smart0dte:{DAY}:SPY:momentum:bullish",
        SystemName.SMART0DTE,
        SignalKind.MOMENTUM,
        "SPY",
        Direction.BULLISH,
        0.75,
        now,
        "in flight",
    )
    rt.store.record_signal(signal)
    quote = combo_quote({("SPY", DAY): snap}, spread)
    intent = open_intent(SystemName.SMART0DTE, signal.signal_id, spread, 1, quote, now, "x")
    rt.store.save_intent(intent)
    return intent.client_order_id


def test_recover_when_smart_intent_in_flight_then_left_to_its_loop(tmp_path):
    rt = runtime(tmp_path, time(12, 0))
    try:
        cid = smart_pending(rt)
        assert mag7.recover(rt) == []
        stored = rt.store.intent_by_client_id(cid)
        assert stored is not None
        assert stored.status is IntentStatus.PENDING
        assert rt.broker.find(cid) is None
        assert not rt.store.risk_events(day=DAY, kinds=("recovery",))
    finally:
        rt.close()


def test_reconcile_when_smart_legs_at_the_broker_then_no_mag7_mismatch(tmp_path):
    rt = runtime(tmp_path, time(10, 0))
    try:
        out = mag7.enter(rt, rt.clock.now(), mag7.account_pnl(rt))
        assert out.results
        cid = smart_pending(rt)
        # the broker fills the loop's order while its ledger rows are not written yet
        rt.broker.submit(rt.store.intent_by_client_id(cid).intent)
        rt.clock.sleep_until(rt.clock.now().replace(minute=5))
        assert mag7.reconcile(rt) == []
        assert not rt.store.risk_events(day=DAY, kinds=("reconciliation_mismatch",))
    finally:
        rt.close()


def test_account_view_when_ledger_holds_later_rows_then_read_as_of_the_clock(tmp_path):
    """A replay that ran the loop's whole day first (the demo): the ledger already holds an
    11:00 Smart-0DTE position and a 14:00 HALT; a Mag7 run at 10:00 must see neither."""
    from datetime import datetime

    from core.calendar import NY
    from core.models import TradingState
    from tasks.execution import execute_intent

    rt = runtime(tmp_path, time(11, 0))
    try:
        cid = smart_pending(rt)
        stored = rt.store.intent_by_client_id(cid)
        result = execute_intent(
            stored.intent, rt.broker, rt.store, rt.clock, rt.smart.walk, SignalKind.MOMENTUM
        )
        assert result.status is IntentStatus.FILLED
        halt_at = datetime.combine(DAY, time(14, 0), tzinfo=NY)
        rt.store.set_trading_state(TradingState.HALTED, "later loss", halt_at, manual=False)
    finally:
        rt.close()
    rt = runtime(tmp_path, time(10, 0))
    try:
        view = mag7.account_view(rt)
        assert view.rows == ()
        assert view.state is TradingState.ACTIVE
        assert view.daily_pnl == 0
        assert mag7.risk_snapshot(rt, view).exposures == ()
    finally:
        rt.close()
    rt = runtime(tmp_path, time(14, 30))
    try:
        view = mag7.account_view(rt)
        assert view.state is TradingState.HALTED
        assert [p.position_id for p in view.positions()] == [cid]
        assert len(mag7.risk_snapshot(rt, view).exposures) == 1
    finally:
        rt.close()
