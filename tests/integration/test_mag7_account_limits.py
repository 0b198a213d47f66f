"""Both systems on one account, interleaved minute by minute over two simulated days.

The Smart-0DTE loop (``steps.iteration``, every minute from 09:45) and Mag7-7DTE (its management
checks and, on Friday, the weekly scan at 10:00) run against one ledger and one paper account,
each with its own runtime and clock, exactly as their flows do. The account-wide limits are
forced low on both runtimes (``Runtime.limits``): whichever system asks second is denied by the
same risk gate, with a reason naming the limit, and the limits hold across both systems.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

import pytest

from adapters.store import StoredIntent, TradeStore
from core.calendar import NY, session
from core.models import (
    IntentAction,
    IntentStatus,
    Position,
    RiskLimits,
    SystemName,
    TradingState,
)
from tasks import mag7, steps, trading
from tasks.runtime import Runtime, build_runtime

pytestmark = pytest.mark.slow

SMART = SystemName.SMART0DTE
MAG7 = SystemName.MAG7
FRIDAY = date(2026, 11, 27)  # Mag7 entry day, early close 13:00
MONDAY = date(2026, 11, 30)
LOSING_FRIDAY = date(2026, 12, 4)  # the loop loses > $2,000 before 10:00 (seed 21)
SEED = 21


@dataclass
class Account:
    smart: Runtime
    mag7: Runtime

    def close(self) -> None:
        self.smart.close()
        self.mag7.close()


def open_account(url: str, day: date, limits: RiskLimits) -> Account:
    smart = build_runtime(day, SEED, time(9, 35), db_url=url)
    other = build_runtime(day, SEED, time(9, 35), db_url=url)
    smart.limits = limits
    other.limits = limits
    trading.start_session(smart)
    return Account(smart, other)


def mag7_check(rt: Runtime, at: datetime) -> None:
    if rt.clock.now() < at:
        rt.clock.sleep_until(at)
    mag7.process_approvals(rt)
    mag7.manage(rt, rt.clock.now())
    mag7.update_risk(rt)


def mag7_entry(rt: Runtime, at: datetime) -> mag7.ScanOutcome:
    if rt.clock.now() < at:
        rt.clock.sleep_until(at)
    change = mag7.update_risk(rt)
    return mag7.enter(rt, rt.clock.now(), change.daily_pnl)


def smart_tick(rt: Runtime, at: datetime) -> None:
    if rt.clock.now() > at + timedelta(seconds=59):  # an order walk ran past this minute
        return
    rt.clock.sleep_until(at)
    steps.iteration.fn(rt, at)


def run_day(url: str, day: date, limits: RiskLimits) -> list[mag7.ScanOutcome]:
    """The whole session: Smart ticks, Mag7 checks and (entry day) scan in time order; at the
    same minute Smart goes first, so Mag7's 10:00 scan asks second."""
    sess = session(day)
    acct = open_account(url, day, limits)
    checks = mag7.management_times_on(day)
    events: list[tuple[datetime, int, str]] = []
    t = datetime.combine(day, time(9, 45), tzinfo=NY)
    while t < sess.closeout:
        events.append((t, 0, "smart"))
        t += timedelta(minutes=1)
    events += [(c, 1, "check") for c in checks]
    if mag7.entry_day_reason(day) is None:
        events.append((checks[0], 2, "entry"))
    scans = []
    try:
        for at, _, what in sorted(events):
            if what == "smart":
                smart_tick(acct.smart, at)
                continue
            # Mag7 acts once the loop's minute is done (its order walks move the loop's clock)
            when = max(at, acct.smart.clock.now())
            if what == "check":
                mag7_check(acct.mag7, when)
            else:
                scans.append(mag7_entry(acct.mag7, when))
        acct.smart.clock.sleep_until(max(acct.smart.clock.now(), sess.closeout))
        steps.closeout.fn(acct.smart)
    finally:
        acct.close()
    return scans


def open_at(positions: list[Position], t: datetime) -> list[Position]:
    return [p for p in positions if p.opened_at <= t and (p.closed_at is None or p.closed_at > t)]


def whole_positions(store: TradeStore) -> list[Position]:
    """Positions as opened (partial-close children fold into their parent's interval)."""
    return [p for p in store.positions() if "-p" not in p.position_id]


@pytest.fixture(scope="module")
def two_days(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    url = f"sqlite:///{tmp_path_factory.mktemp('account') / 'dte.db'}"
    limits = RiskLimits(max_open_positions=3)
    scans = run_day(url, FRIDAY, limits) + run_day(url, MONDAY, limits)
    store = TradeStore(url)
    try:
        yield {"store": store, "limits": limits, "scans": scans, "url": url}
    finally:
        store.dispose()


def test_two_days_when_both_systems_trade_then_each_has_fills_on_the_account(two_days):
    store = two_days["store"]
    for system in (SMART, MAG7):
        opens = [
            i
            for i in store.intents(system=system, statuses=(IntentStatus.FILLED,))
            if i.intent.action is IntentAction.OPEN
        ]
        assert opens, f"{system.value} never entered"
    assert [i for i in store.intents(day=MONDAY, system=SMART) if i.status is IntentStatus.FILLED]
    # the Mag7 book is carried over the weekend: on Monday's open both systems are exposed
    monday_open = datetime.combine(MONDAY, time(9, 45), tzinfo=NY)
    assert open_at([p for p in whole_positions(store) if p.system is MAG7], monday_open)


def test_two_days_when_max_open_positions_is_3_then_never_more_than_3_across_both(two_days):
    store = two_days["store"]
    limit = two_days["limits"].max_open_positions
    positions = whole_positions(store)
    instants = sorted({p.opened_at for p in positions})
    peak = max(len(open_at(positions, t)) for t in instants)
    assert peak <= limit
    assert peak == limit, "the run should reach the limit (else it shows nothing)"


def test_two_days_when_the_limit_binds_then_second_asker_denied_naming_it(two_days):
    store = two_days["store"]
    positions = whole_positions(store)
    denied = store.intents(statuses=(IntentStatus.DENIED,))
    assert denied
    for stored in denied:
        assert "max_open_positions 3" in stored.status_reason, stored.status_reason
    events = store.risk_events(kinds=("intent_denied",))
    assert len(events) == len(denied)
    assert {e.system for e in events} == {s.intent.system for s in denied}

    def held_by_other(stored: StoredIntent) -> bool:
        intent = stored.intent
        others = [p for p in open_at(positions, intent.created_at) if p.system is not intent.system]
        return bool(others)

    # Smart-0DTE asked while Mag7 held its spreads (both days), and Mag7's 10:00 scan asked
    # after the loop had filled the account: each was denied because of the other's book
    smart_second = [s for s in denied if s.intent.system is SMART and held_by_other(s)]
    mag7_second = [s for s in denied if s.intent.system is MAG7 and held_by_other(s)]
    assert {s.intent.created_at.astimezone(NY).date() for s in smart_second} == {FRIDAY, MONDAY}
    assert mag7_second
    assert all(s.intent.created_at.astimezone(NY).date() == FRIDAY for s in mag7_second)


def test_two_days_when_sized_then_no_position_risks_more_than_max_position_size(two_days):
    store = two_days["store"]
    cap = two_days["limits"].max_position_size
    assert cap == Decimal("5000")
    for stored in store.intents():
        if stored.intent.action is IntentAction.OPEN:
            assert stored.intent.max_loss <= cap, stored.intent.client_order_id
    for p in whole_positions(store):
        assert p.max_loss <= cap, p.position_id


def test_daily_pnl_when_mag7_carried_over_weekend_then_measured_from_friday_close(two_days):
    """Monday's daily-loss figure counts a carried Mag7 spread from Friday's last mark (its
    close mark), not from its entry: Friday's gain or loss is not charged to Monday again."""
    store = two_days["store"]
    at = datetime.combine(MONDAY, time(9, 40), tzinfo=NY)  # before anything trades on Monday
    carried = [p for p in store.positions_open_at(at, MAG7) if p.opened_at.date() < MONDAY]
    assert carried, "the run carries Mag7 spreads into Monday"
    baselines = store.baseline_marks([p.position_id for p in carried], MONDAY)
    assert set(baselines) == {p.position_id.split("-p", maxsplit=1)[0] for p in carried}
    rt = build_runtime(MONDAY, SEED, time(9, 40), db_url=two_days["url"])
    try:
        view = mag7.account_view(rt, at)
        since_entry = Decimal("0")
        expected = Decimal("0")
        for p in carried:
            units = p.quantity * p.spread.multiplier
            base = baselines[p.position_id.split("-p", maxsplit=1)[0]]
            expected += (view.marks[p.position_id] - base) * units
            since_entry += p.unrealized(view.marks[p.position_id]) - p.entry_commission
        assert view.by_system[MAG7].unrealized == expected
        assert view.by_system[MAG7].without_baseline == ()
        assert expected != since_entry  # the old rule would have charged Friday's move again
    finally:
        rt.close()


def test_daily_loss_when_smart_losses_breach_it_then_mag7_scan_denied_with_reasons(tmp_path):
    """Default limits (max_daily_loss $1,000, both systems): on Friday 2026-12-04 the loop's
    losses pass 200% before 10:00 (HALTED, everything flattened); Mag7's weekly scan asks after
    that and the same gate denies each of its entries with the state and the loss as reasons."""
    url = f"sqlite:///{tmp_path / 'dte.db'}"
    limits = RiskLimits()
    acct = open_account(url, LOSING_FRIDAY, limits)
    store = acct.smart.store
    try:
        t = datetime.combine(LOSING_FRIDAY, time(9, 45), tzinfo=NY)
        scan_at = datetime.combine(LOSING_FRIDAY, time(10, 0), tzinfo=NY)
        while t < scan_at and trading.current_state(acct.smart) is TradingState.ACTIVE:
            smart_tick(acct.smart, t)
            t += timedelta(minutes=1)
        state = trading.current_state(acct.smart)
        assert state is not TradingState.ACTIVE, "the seeded loop should breach $1,000 by 10:00"
        breach = store.risk_events(day=LOSING_FRIDAY, kinds=(f"state_{state.value.lower()}",))
        assert breach
        assert "daily loss" in breach[0].message
        assert "1000" in breach[0].message

        scan = mag7_entry(acct.mag7, scan_at)
        assert scan.plan is not None
        assert scan.plan.entries, "the seeded Friday has Mag7 candidates to deny"
        assert not scan.results  # nothing placed
        assert len(scan.denied) == len(scan.plan.entries)
        for _, why in scan.denied:
            assert f"trading state is {state.value}: entries are not allowed" in why
            assert "breaches max_daily_loss 1000" in why
        mag7_denials = [
            e
            for e in store.risk_events(day=LOSING_FRIDAY, kinds=("intent_denied",))
            if e.system is MAG7
        ]
        assert len(mag7_denials) == len(scan.plan.entries)
        assert all(
            i.status is IntentStatus.DENIED for i in store.intents(day=LOSING_FRIDAY, system=MAG7)
        )
        # the loop asks for nothing more once the state left ACTIVE (it enters only when ACTIVE)
        for _ in range(5):
            smart_tick(acct.smart, t)
            t += timedelta(minutes=1)
        later = [
            i
            for i in store.intents(day=LOSING_FRIDAY, system=SMART)
            if i.intent.action is IntentAction.OPEN and i.intent.created_at > breach[0].at
        ]
        assert later == []
    finally:
        acct.close()
