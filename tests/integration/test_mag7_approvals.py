"""Mag7 approvals (T2/T3, tasks level): the Smart-0DTE mechanism with the Mag7 timeout (30 min).

The entry run is one-shot, so it waits for its decisions (``mag7.await_approvals``) on the run's
clock: an approval arriving in time places the entry exactly once; none within 30 minutes
expires it and nothing reaches the broker. The requester here stands in for the approve-entry
flow (``flows.approvals``), which the Prefect tests exercise.
"""

from __future__ import annotations

from datetime import date, time, timedelta

from core.approvals import ApprovalTier
from core.calendar import NY
from core.models import IntentAction, IntentStatus, OrderIntent, SystemName
from tasks import mag7
from tasks.runtime import Runtime, build_runtime

DAY = date(2026, 11, 27)
SEED = 21
MAG7 = SystemName.MAG7


def runtime(tmp_path, requester) -> Runtime:
    rt = build_runtime(DAY, SEED, time(10, 0), db_url=f"sqlite:///{tmp_path / 'dte.db'}")
    rt.approvals_enabled = True
    rt.approval_requester = requester
    return rt


def test_approval_when_approved_in_time_then_placed_exactly_once(tmp_path):
    asked: list[tuple[str, ApprovalTier, str]] = []
    holder: dict[str, Runtime] = {}

    def approve(intent: OrderIntent, approval_id: int, tier: ApprovalTier, summary: str) -> None:
        asked.append((intent.client_order_id, tier, summary))
        rt = holder["rt"]
        rt.store.update_approval(
            approval_id, "approve", "ana", rt.clock.now() + timedelta(minutes=3), "fine"
        )

    rt = runtime(tmp_path, approve)
    holder["rt"] = rt
    try:
        out = mag7.enter(rt, rt.clock.now(), mag7.account_pnl(rt))
        assert out.awaiting, "seeded Mag7 confidence < 0.80: T2, approval needed"
        assert not out.results
        assert [cid for cid, _, _ in asked] == out.awaiting
        for _, tier, summary in asked:
            assert tier in (ApprovalTier.T2, ApprovalTier.T3)
            assert "mag7" in summary
            assert "expiry 2026-12-04" in summary
        done = mag7.await_approvals(rt)
        assert sorted(r.client_order_id for r in done) == sorted(out.awaiting)
        assert all(r.status is IntentStatus.FILLED and r.placed for r in done)
        rows = rt.store.approvals(day=DAY)
        assert {(a.system, a.decision, a.decided_by) for a in rows} == {(MAG7, "approve", "ana")}
        again = mag7.process_approvals(rt) + mag7.await_approvals(rt)
        assert again == []
        orders = rt.store.orders(day=DAY, system=MAG7)
        assert len(orders) == len(out.awaiting)
    finally:
        rt.close()


def test_approval_when_no_answer_in_30_minutes_then_expired_and_nothing_sent(tmp_path):
    rt = runtime(tmp_path, lambda *_: None)
    try:
        start = rt.clock.now()
        out = mag7.enter(rt, start, mag7.account_pnl(rt))
        assert out.awaiting
        done = mag7.await_approvals(rt)
        assert done == []
        waited = rt.clock.now() - start
        assert timedelta(minutes=30) <= waited <= timedelta(minutes=31)
        for cid in out.awaiting:
            stored = rt.store.intent_by_client_id(cid)
            assert stored is not None
            assert stored.status is IntentStatus.EXPIRED
            assert rt.broker.find(cid) is None
        assert {a.decision for a in rt.store.approvals(day=DAY)} == {"expired"}
        expired = rt.store.risk_events(day=DAY, kinds=("approval_expired",))
        assert {e.system for e in expired} == {MAG7}
        assert len(expired) == len(out.awaiting)
        opens = [
            i
            for i in rt.store.intents(day=DAY, system=MAG7)
            if i.intent.action is IntentAction.OPEN
        ]
        assert opens
        assert all(i.status is IntentStatus.EXPIRED for i in opens)
        assert rt.clock.now().astimezone(NY).strftime("%H:%M") == "10:30"
    finally:
        rt.close()


def test_smart_loop_approvals_when_mag7_request_older_than_5_min_then_left_to_mag7(tmp_path):
    """The Smart-0DTE loop expires its own requests after 5 min; a Mag7 request (30 min) that
    is 10 min old is not the loop's to expire."""
    from datetime import time as clock_time
    from datetime import timedelta as span

    from core.models import IntentStatus, SystemName
    from core.spreads import bull_call_debit
    from tasks import trading
    from tasks.runtime import build_runtime
    from tests.builders import c, intent

    rt = build_runtime(
        date(2026, 11, 24), 3, clock_time(10, 40), db_url=f"sqlite:///{tmp_path / 'a.db'}"
    )
    try:
        asked = rt.clock.now() - span(minutes=10)
        mag7 = intent(bull_call_debit(c(590), c(595)), system=SystemName.MAG7, at=asked)
        rt.store.save_intent(mag7)
        rt.store.set_intent_status(
            mag7.client_order_id, IntentStatus.AWAITING_APPROVAL, "T2", at=asked
        )
        rt.store.record_approval(mag7.client_order_id, SystemName.MAG7, "T2", asked)
        assert trading.process_approvals(rt) == []
        stored = rt.store.intent_by_client_id(mag7.client_order_id)
        assert stored is not None and stored.status is IntentStatus.AWAITING_APPROVAL
        assert rt.store.approvals(client_order_id=mag7.client_order_id)[-1].decision == "pending"
    finally:
        rt.close()
