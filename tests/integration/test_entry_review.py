"""The advisor's entry review inside the order path: it may veto or lower, never strengthen.

A simulated Smart-0DTE morning (seed 21, 2026-11-27) runs minute by minute through the real
trading steps with a real ``Advisor`` whose ``openai`` client talks to the local
OpenAI-compatible server; the server's answer decides what the ledger and the paper broker see.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest

from adapters.advisor import Advisor
from adapters.cache import InProcessCache
from core.calendar import NY
from core.models import IntentStatus
from tasks import trading
from tasks.runtime import Runtime, build_runtime
from tests.fixtures.openai_server import OpenAIServer, json_reply

DAY = date(2026, 11, 27)
KEY = "sk-test-review-0123456789"


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY) as srv:
        yield srv


def _runtime(tmp_path: Path, server: OpenAIServer | None) -> Runtime:
    rt = build_runtime(DAY, 21, time(9, 45), db_url=f"sqlite:///{tmp_path / 'review.db'}")
    rt.advisor = Advisor(
        api_key=KEY if server is not None else None,
        base_url=server.base_url if server is not None else None,
        timeout_seconds=5.0,
        max_retries=0,
        cache=InProcessCache(),
        now=rt.clock.now,
    )
    return rt


def _until_first_entries(rt: Runtime) -> trading.IterationPlan:
    """Run the loop's steps minute by minute until the strategy proposes entries."""
    t = datetime.combine(DAY, time(9, 45), tzinfo=NY)
    while t < rt.session.closeout:
        rt.clock.sleep_until(t)
        obs = trading.observe(rt, t)
        change = trading.update_risk(rt, obs)
        plan, _ = trading.enter(rt, obs, change.daily_pnl)
        if plan.entries:
            return plan
        t += timedelta(minutes=1)
    raise AssertionError("no entry proposed all day")


def test_enter_when_advisor_vetoes_then_intent_denied_and_nothing_sent(tmp_path, server):
    server.set_default(json_reply({"decision": "veto", "confidence": None, "reason": "FOMC"}))
    rt = _runtime(tmp_path, server)
    try:
        plan = _until_first_entries(rt)
        intents = rt.store.intents(day=DAY)
        assert len(intents) == len(plan.entries) > 0
        for stored in intents:
            assert stored.status is IntentStatus.DENIED
            assert stored.status_reason == "advisor veto: FOMC"
        assert rt.broker.open_orders() == []
        assert rt.broker.executions(datetime.combine(DAY, time(0), tzinfo=NY)) == []
        assert len(server.completions) == len(plan.entries)
    finally:
        rt.close()


def test_enter_when_advisor_lowers_below_threshold_then_denied_with_reason(tmp_path, server):
    server.set_default(json_reply({"decision": "lower", "confidence": 0.5, "reason": "thin"}))
    rt = _runtime(tmp_path, server)
    try:
        _until_first_entries(rt)
        stored = rt.store.intents(day=DAY)
        assert stored and all(s.status is IntentStatus.DENIED for s in stored)
        assert all("below the 0.65 threshold" in s.status_reason for s in stored)
        assert rt.broker.open_orders() == []
    finally:
        rt.close()


def test_enter_when_advisor_lowers_then_size_shrinks_never_grows(tmp_path, server):
    # 0.66 is at or below every signal's confidence that passed the 0.65 threshold, except a
    # signal at exactly 0.65: for that one "lower" to 0.66 would raise it and is discarded.
    server.set_default(json_reply({"decision": "lower", "confidence": 0.66, "reason": "skew"}))
    rt = _runtime(tmp_path, server)
    baseline_rt = _runtime(tmp_path / "baseline", None)
    try:
        plan = _until_first_entries(rt)
        base_plan = _until_first_entries(baseline_rt)
        assert [e.signal.signal_id for e in plan.entries] == [
            e.signal.signal_id for e in base_plan.entries
        ]
        reviewed = {i.intent.client_order_id: i for i in rt.store.intents(day=DAY)}
        for entry in plan.entries:
            stored = next(
                i for i in reviewed.values() if i.intent.signal_id == entry.signal.signal_id
            )
            assert stored.intent.quantity <= entry.quantity
            if entry.signal.confidence >= 0.7:  # sizing factor 1.0+ drops to 0.8
                assert stored.intent.quantity < entry.quantity
        events = rt.store.risk_events(day=DAY, kinds=("advisor_review",))
        assert events and all("advisor lowered confidence" in e.message for e in events)
    finally:
        rt.close()
        baseline_rt.close()


def test_enter_when_no_key_then_no_call_and_orders_as_without_advisor(tmp_path, server):
    rt = _runtime(tmp_path, None)
    try:
        plan = _until_first_entries(rt)
        statuses = {i.status for i in rt.store.intents(day=DAY)}
        assert statuses <= {IntentStatus.FILLED, IntentStatus.CANCELLED}
        assert len(rt.store.intents(day=DAY)) == len(plan.entries)
        assert server.requests == []
    finally:
        rt.close()
