"""Approvals (HITL): timeout -> expired intent; approved -> placed exactly once; never blocking."""

from __future__ import annotations

import time as _time
from datetime import date, datetime, time
from decimal import Decimal

import pytest

from core.approvals import ApprovalTier, TierAssessment
from core.calendar import NY
from core.chains import combo_quote
from core.models import (
    Direction,
    IntentStatus,
    OptionContract,
    Right,
    Signal,
    SignalKind,
    SystemName,
)
from core.orders import open_intent
from core.spreads import bull_call_debit, max_loss_per_unit
from flows.approvals import approval_requester
from systems.smart0dte.strategy import EntryPlan
from tasks import trading
from tasks.runtime import build_runtime

pytestmark = [pytest.mark.usefixtures("prefect_api"), pytest.mark.slow]

DAY = date(2026, 12, 1)


def runtime(url: str, at: time = time(10, 30)):
    return build_runtime(DAY, 5, at, db_url=url)


def enable_approvals(rt, url: str, timeout_seconds: int) -> None:
    rt.approvals_enabled = True
    rt.approval_requester = approval_requester(url, timeout_seconds=timeout_seconds)


def entry_for(rt, tag: str) -> tuple[EntryPlan, object]:
    now = rt.clock.now()
    snap = rt.market.chain("SPY", DAY, now)
    k = Decimal(round(snap.spot))
    spread = bull_call_debit(
        OptionContract("SPY", DAY, k, Right.CALL), OptionContract("SPY", DAY, k + 2, Right.CALL)
    )
    quote = combo_quote({("SPY", DAY): snap}, spread)
    signal = Signal(
        f"smart0dte:{DAY}:SPY:momentum:bullish:{tag}",
        SystemName.SMART0DTE,
        SignalKind.MOMENTUM,
        "SPY",
        Direction.BULLISH,
        0.75,
        now,
        "test signal",
    )
    rt.store.record_signal(signal)
    entry = EntryPlan(signal, spread, 3, quote, max_loss_per_unit(spread, quote.ask) * 100)
    intent = open_intent(SystemName.SMART0DTE, signal.signal_id, spread, 3, quote, now, "test")
    return entry, intent


def wait_decision(rt, cid: str, want: str, timeout: float = 90.0) -> None:
    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        rows = rt.store.approvals(client_order_id=cid)
        if rows and rows[-1].decision == want:
            return
        _time.sleep(0.5)
    raise AssertionError(
        f"approval of {cid} never became {want}: {rt.store.approvals(client_order_id=cid)}"
    )


def paused_run_for(cid: str, timeout: float = 60.0):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    deadline = _time.monotonic() + timeout
    while _time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_filter=FlowFilter(name=FlowFilterName(any_=["approve-entry"])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"]))
                ),
            )
        for run in runs:
            if run.parameters.get("client_order_id") == cid:
                return run
        _time.sleep(0.5)
    raise AssertionError(f"no paused approve-entry run for {cid}")


def test_approval_when_no_answer_within_timeout_then_intent_expired_and_recorded(tmp_path):
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    rt = runtime(url)
    try:
        enable_approvals(rt, url, 3)
        entry, intent = entry_for(rt, "t1")
        trading.request_approval(rt, intent, entry, TierAssessment(ApprovalTier.T2, ("test",)))
        assert (
            rt.store.intent_by_client_id(intent.client_order_id).status
            is IntentStatus.AWAITING_APPROVAL
        )
        wait_decision(rt, intent.client_order_id, "expired")
        assert trading.process_approvals(rt) == []
        stored = rt.store.intent_by_client_id(intent.client_order_id)
        assert stored.status is IntentStatus.EXPIRED
        assert rt.store.risk_events(day=DAY, kinds=("approval_expired",))
        assert rt.broker.find(intent.client_order_id) is None  # nothing was ever sent
    finally:
        rt.close()


def test_approval_when_approved_in_ui_then_placed_exactly_once(tmp_path):
    from prefect.flow_runs import resume_flow_run

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    rt = runtime(url)
    try:
        enable_approvals(rt, url, 120)
        entry, intent = entry_for(rt, "t2")
        cid = intent.client_order_id
        trading.request_approval(rt, intent, entry, TierAssessment(ApprovalTier.T2, ("test",)))
        assert trading.process_approvals(rt) == []  # still pending: nothing happens, no wait
        run = paused_run_for(cid)
        resume_flow_run(
            run.id, run_input={"approve": True, "reason": "looks fine", "approver": "ana"}
        )
        wait_decision(rt, cid, "approve")
        results = trading.process_approvals(rt)
        assert [r.status for r in results] == [IntentStatus.FILLED]
        assert results[0].placed
        # every later look (the next iteration, a rerun deriving the same intent) places nothing
        assert trading.process_approvals(rt) == []
        from tasks.execution import execute_intent

        again = execute_intent(
            intent, rt.broker, rt.store, rt.clock, rt.smart.walk, SignalKind.MOMENTUM
        )
        assert not again.placed
        assert len([o for o in rt.store.orders() if o.client_order_id == cid]) == 1
        assert rt.store.approvals(client_order_id=cid)[-1].decided_by == "ana"
    finally:
        rt.close()


def test_approval_when_t3_approved_without_reason_then_rejected(tmp_path):
    from prefect.flow_runs import resume_flow_run

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    rt = runtime(url)
    try:
        enable_approvals(rt, url, 120)
        entry, intent = entry_for(rt, "t3")
        cid = intent.client_order_id
        trading.request_approval(rt, intent, entry, TierAssessment(ApprovalTier.T3, ("VIX 26",)))
        resume_flow_run(paused_run_for(cid).id, run_input={"approve": True, "reason": ""})
        wait_decision(rt, cid, "reject")
        trading.process_approvals(rt)
        stored = rt.store.intent_by_client_id(cid)
        assert stored.status is IntentStatus.DENIED
        assert "needs a reason" in stored.status_reason
    finally:
        rt.close()


def test_exits_when_approval_pending_then_still_managed(tmp_path):
    from tasks.execution import execute_intent

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    rt = runtime(url)
    try:
        _, held = entry_for(rt, "held")
        assert (
            execute_intent(
                held, rt.broker, rt.store, rt.clock, rt.smart.walk, SignalKind.MOMENTUM
            ).status
            is IntentStatus.FILLED
        )
        enable_approvals(rt, url, 600)
        entry, waiting = entry_for(rt, "waiting")
        trading.request_approval(rt, waiting, entry, TierAssessment(ApprovalTier.T2, ("test",)))
        rt.clock.sleep_until(datetime(2026, 12, 1, 15, 45, tzinfo=NY))  # close-out time
        obs = trading.observe(rt, rt.clock.now())
        exits = trading.manage_exits(rt, obs)
        assert [r.status for r in exits] == [IntentStatus.FILLED]
        assert rt.store.open_positions() == []
        assert rt.store.approvals(client_order_id=waiting.client_order_id)[-1].decision == "pending"
        trading.process_approvals(rt, closing=True)
        assert rt.store.intent_by_client_id(waiting.client_order_id).status is IntentStatus.EXPIRED
    finally:
        rt.close()


def test_intraday_when_approvals_on_then_loop_runs_whole_day_and_unanswered_expire(tmp_path):
    from flows.smart0dte import smart0dte_intraday

    url = f"sqlite:///{tmp_path / 'dte.db'}"
    out = smart0dte_intraday(
        day=date(2026, 11, 27), seed=21, db_url=url, approvals=True, approval_timeout_seconds=600
    )
    assert out["iterations"] == 180
    from adapters.store import TradeStore

    store = TradeStore(url)
    asked = store.approvals(day=date(2026, 11, 27))
    assert asked, "seed 21 has entries above T1"
    assert all(a.decision == "expired" for a in asked)
    statuses = {i.status for i in store.intents(day=date(2026, 11, 27))}
    assert IntentStatus.AWAITING_APPROVAL not in statuses
    assert IntentStatus.EXPIRED in statuses
    store.dispose()
