"""One run at a time works an intent's order (``TradeStore.claim_intent``, ``execute_intent``).

Two runs can reach the same close at once: the Smart-0DTE loop flattening both books on HALT
while a Mag7 check closes the same spread derives the same client_order_id. The ledger claim
decides which one talks to the broker; the other leaves the intent alone. A claim whose holder
died, or whose lease ran out, is taken over so recovery still works.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.store import TradeStore
from core.calendar import next_trading_day
from core.exits import ExitReason
from core.models import IntentStatus, OrderIntent, Position, SignalKind, SystemName
from core.orders import close_intent, walk_prices
from systems.mag7.exits import Mag7ExitDecision, Mag7ExitKind
from tasks import mag7, trading
from tasks.execution import CLAIM_LEASE, execute_intent, run_owner
from tasks.runtime import Runtime, build_runtime
from tests.integration import test_order_path as order_path
from tests.integration.test_order_path import (
    DAY,
    SEED,
    START,
    WALK,
    call_debit,
    chain_now,
    entry,
    paper_counts,
    quote_of,
    run,
)
from tests.integration.test_store import intent as stored_intent

SMART = SystemName.SMART0DTE
OTHER = "other-host:4242:feedbeef"  # a run on another machine: never judged dead from here


# the order-path tests' fixtures: a fresh SQLite ledger and a runtime on it
db_url = order_path.db_url
rt = order_path.rt


def held_intent(rt: Runtime, holder: str) -> tuple[OrderIntent, datetime]:
    """A marketable SPY call debit entry, stored and claimed by ``holder`` now (returned)."""
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    intent = entry(rt, spread, q.ask, q.ask)
    rt.store.save_intent(intent)
    now = datetime.now(UTC)
    assert rt.store.claim_intent(intent.client_order_id, holder, now, now + CLAIM_LEASE) is None
    return intent, now


def test_claim_intent_when_two_owners_race_then_one_wins_until_released_or_expired(
    store: TradeStore,
) -> None:
    it = stored_intent()
    store.save_intent(it)
    cid = it.client_order_id
    now = datetime.now(UTC)
    assert store.claim_intent(cid, "a", now, now + CLAIM_LEASE) is None
    assert store.claim_intent(cid, "b", now, now + CLAIM_LEASE) == "a"
    assert store.claim_intent(cid, "a", now, now + 2 * CLAIM_LEASE) is None  # renewal
    store.release_intent(cid, "b")  # not b's to release
    assert store.claim_intent(cid, "b", now, now + CLAIM_LEASE) == "a"
    store.release_intent(cid, "a")
    assert store.claim_intent(cid, "b", now, now + CLAIM_LEASE) is None
    # b's lease runs out: a takes it back
    later = now + 3 * CLAIM_LEASE
    assert store.claim_intent(cid, "a", later, later + CLAIM_LEASE) is None
    assert store.take_over_intent(cid, "c", "b", later) == "a"  # b no longer holds it
    with pytest.raises(KeyError):
        store.claim_intent("no-such-intent", "a", now, now + CLAIM_LEASE)
    # stored and claimed in one statement: held from the first instant; a second save changes
    # nothing, not even the claim
    second = stored_intent(signal_id="sig-2")
    assert store.save_intent(second, claim=("a", now + CLAIM_LEASE)) is True
    assert store.claim_intent(second.client_order_id, "b", now, now + CLAIM_LEASE) == "a"
    assert store.save_intent(second, claim=("b", now + CLAIM_LEASE)) is False
    assert store.claim_intent(second.client_order_id, "b", now, now + CLAIM_LEASE) == "a"


def test_execute_intent_when_another_live_run_holds_it_then_broker_untouched(
    rt: Runtime, db_url: str
) -> None:
    intent, now = held_intent(rt, OTHER)

    result = run(rt, intent)

    assert result.placed is False
    assert result.elsewhere is True
    assert result.status is IntentStatus.PENDING
    assert OTHER in result.reason
    assert paper_counts(db_url) == (0, 0)
    # the other run's lease runs out (it stalled or crashed on its host): this run takes over
    past = now - 2 * CLAIM_LEASE
    rt.store.release_intent(intent.client_order_id, OTHER)
    rt.store.claim_intent(intent.client_order_id, OTHER, past, past + CLAIM_LEASE)

    result = run(rt, intent)

    assert result.placed is True
    assert result.status is IntentStatus.FILLED
    assert paper_counts(db_url) == (1, 1)
    # released at the end: any run may look at it again (and finds it terminal)
    assert rt.store.claim_intent(intent.client_order_id, OTHER, now, now + CLAIM_LEASE) is None


def test_execute_intent_when_holder_process_died_on_this_host_then_taken_over_at_once(
    rt: Runtime, db_url: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "from tasks.execution import run_owner; print(run_owner())"],
        capture_output=True,
        text=True,
        check=True,
    )
    dead = proc.stdout.strip()  # host:pid:token of a process that has exited
    intent, _ = held_intent(rt, dead)

    result = run(rt, intent)

    assert result.placed is True
    assert result.status is IntentStatus.FILLED
    assert paper_counts(db_url) == (1, 1)


def test_execute_intent_when_two_runs_race_for_one_close_then_one_order(
    rt: Runtime, db_url: str
) -> None:
    """Two threads, two owners, one intent, started together: exactly one broker order."""
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    intent = entry(rt, spread, q.mid, q.ask)  # walks: the first run holds it for a while
    barrier = threading.Barrier(2)
    results = {}

    def go(owner: str) -> None:
        barrier.wait()
        results[owner] = execute_intent(
            intent, rt.broker, rt.store, rt.clock, WALK, SignalKind.MOMENTUM, owner=owner
        )

    threads = [threading.Thread(target=go, args=(f"{run_owner()}-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2
    placed = [r for r in results.values() if r.placed]
    assert len(placed) == 1
    orders, _ = paper_counts(db_url, intent.client_order_id)
    assert orders == 1


# ---- closing one position from two runs ---------------------------------------------------------


def weekly_spread(rt: Runtime):
    """A call debit on SPY's expiry about a week out (a position that lives past today)."""
    expiry = next(e for e in rt.market.expiries("SPY", rt.session.day) if e > rt.session.day)
    snap = rt.market.chain("SPY", expiry, rt.clock.now())
    return call_debit(snap)


def open_position(rt: Runtime, qty: int) -> Position:
    spread = weekly_spread(rt)
    q = quote_of(rt, spread)
    intent = entry(rt, spread, q.ask, q.ask, qty=qty)
    assert run(rt, intent).status is IntentStatus.FILLED
    pos = rt.store.position(intent.client_order_id)
    assert pos is not None
    return pos


def test_close_position_when_closed_meanwhile_by_other_run_then_nothing_sent(
    rt: Runtime, db_url: str
) -> None:
    pos = open_position(rt, 2)
    other = build_runtime(DAY, SEED, START, speed=0.0, db_url=db_url)
    try:
        other.clock.sleep_until(rt.clock.now())
        done = trading.close_position(other, pos, 2, "mag7 stop", True, WALK)
    finally:
        other.close()
    assert done is not None and done.status is IntentStatus.FILLED

    again = trading.close_position(rt, pos, 2, "risk: flatten", True, WALK)  # stale view

    assert again is None
    assert paper_counts(db_url) == (2, 2)  # the entry and one close


def test_close_position_when_close_already_persisted_then_resumed_not_duplicated(
    rt: Runtime, db_url: str
) -> None:
    pos = open_position(rt, 2)
    q = quote_of(rt, pos.spread)
    # another run persisted its close and died before reaching the broker
    pending = close_intent(
        SMART, pos.position_id, pos.spread, 2, q, rt.clock.now(), "stop", True, WALK
    )
    rt.store.save_intent(pending)

    result = trading.close_position(rt, pos, 2, "risk: flatten", True, WALK)

    assert result is not None
    assert result.client_order_id == pending.client_order_id
    assert result.status is IntentStatus.FILLED
    assert paper_counts(db_url) == (2, 2)
    assert [i.intent.client_order_id for i in rt.store.position_intents(pos.position_id)] == [
        pending.client_order_id
    ]


def test_flatten_when_part_closed_on_an_earlier_day_then_rest_closed_with_a_new_order(
    db_url: str,
) -> None:
    """A tier taken on Friday is attempt 0; Monday's flatten must be attempt 1 (a new client
    order id), not Friday's filled order found again with the rest left open."""
    friday = build_runtime(DAY, SEED, START, speed=0.0, db_url=db_url)
    try:
        pos = open_position(friday, 3)
        tier = trading.close_position(friday, pos, 1, "tier 1", False, WALK, tiers_after=1)
        assert tier is not None and tier.status is IntentStatus.FILLED
    finally:
        friday.close()
    monday = build_runtime(next_trading_day(DAY), SEED, START, speed=0.0, db_url=db_url)
    try:
        results = trading.flatten(monday, "risk: daily loss at halt level")
        assert [r.status for r in results] == [IntentStatus.FILLED]
        assert results[0].filled_quantity == 2
        assert results[0].client_order_id != tier.client_order_id
        assert monday.store.open_positions() == []
    finally:
        monday.close()


class StallingClock:
    """The run's clock (a ``Clock``) that, at the walk's second step, lets another run take the
    intent over, as if this process had stalled past its lease."""

    def __init__(self, inner, store: TradeStore, cid: str) -> None:
        self.inner, self.store, self.cid, self.steps = inner, store, cid, 0

    def now(self) -> datetime:
        return self.inner.now()

    def sleep_until(self, t: datetime) -> None:
        self.steps += 1
        if self.steps == 2:  # this run's lease (0 s in the test) has run out: OTHER claims
            wall = datetime.now(UTC)
            assert self.store.claim_intent(self.cid, OTHER, wall, wall + timedelta(hours=1)) is None
        self.inner.sleep_until(t)


def test_execute_intent_when_taken_over_mid_walk_then_stops_touching_the_order(
    rt: Runtime, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tasks.execution.CLAIM_LEASE", timedelta(0))  # renew at every step
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    start, worst = q.mid - Decimal("0.09"), q.mid - Decimal("0.01")  # never fills: walks
    intent = entry(rt, spread, start, worst)
    clock = StallingClock(rt.clock, rt.store, intent.client_order_id)

    result = execute_intent(intent, rt.broker, rt.store, clock, WALK, SignalKind.MOMENTUM)

    assert "taken over by" in result.reason and OTHER in result.reason
    assert result.elsewhere is True
    assert result.status is IntentStatus.SUBMITTED  # left working for the run that holds it
    order = rt.broker.find(intent.client_order_id)
    # one step walked before the take-over (the walk's second price), none after it
    assert order is not None and order.limit_price == walk_prices(start, worst, WALK.steps)[1]
    assert paper_counts(db_url) == (1, 0)


def test_recover_when_another_live_run_holds_a_pending_intent_then_neither_sent_nor_dropped(
    rt: Runtime, db_url: str
) -> None:
    """A flow starting while another run sits between persist and submit: its recovery must not
    submit the intent (a second order) nor drop it as stale (the other run is about to send it)."""
    intent, _ = held_intent(rt, OTHER)
    rt.clock.sleep_until(rt.smart.cutoff(rt.session))  # past the entry cut-off: "stale"

    assert trading.recover(rt) == []

    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None and stored.status is IntentStatus.PENDING
    assert paper_counts(db_url) == (0, 0)
    # the other run is gone (its lease ran out): the next recovery drops it as stale
    rt.store.release_intent(intent.client_order_id, OTHER)
    assert trading.recover(rt) == []
    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None and stored.status is IntentStatus.CANCELLED
    assert paper_counts(db_url) == (0, 0)


def test_mag7_calendar_close_when_another_run_is_closing_it_then_no_failure_raised(
    rt: Runtime, db_url: str
) -> None:
    """A Mag7 1-DTE close finding the loop's flatten of the same spread in flight (claimed by
    that run) leaves it to that run: no second order, no 'close failed' alarm after retries."""
    pos = open_position(rt, 2)
    q = quote_of(rt, pos.spread)
    flatten = close_intent(
        SMART, pos.position_id, pos.spread, 2, q, rt.clock.now(), "halt", True, WALK
    )
    now = datetime.now(UTC)
    rt.store.save_intent(flatten, claim=(OTHER, now + CLAIM_LEASE))
    decision = Mag7ExitDecision(
        ExitReason.CLOSEOUT, 2, "1-DTE close", kind=Mag7ExitKind.ONE_DTE, tiers_after=0
    )
    out = mag7.ManageOutcome(rt.clock.now(), {}, {}, [], [])

    mag7._exit(rt, pos, decision, rt.clock.now(), out)

    assert [r.elsewhere for r in out.results] == [True]
    assert out.failed == []
    assert rt.store.risk_events(kinds=("mag7_close_failed",)) == []
    assert paper_counts(db_url) == (1, 1)  # the entry only: the close is the other run's
