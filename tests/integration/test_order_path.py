"""The order path end to end on real components: SimulatedMarket, PaperBroker, TradeStore (SQLite).

``tasks.execution.execute_intent`` (persist -> find -> submit once -> walk -> settle), the
recovery of non-terminal intents after a crash (a real subprocess killed with SIGKILL between
persist and submit), reconciliation with the broker, the error failsafe, and how a missing chain or
faulty quotes reach the strategy (``tasks.trading.observe``).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from adapters.clock import SimClock
from adapters.paper import FILLS, ORDERS, PaperBroker, paper_url_for
from adapters.simulator import SimulatedMarket, SimulatorConfig
from adapters.store import TradeStore
from core.calendar import NY, session
from core.chains import ComboQuote, combo_quote, quote_problem
from core.marketdata import ChainSnapshot, strike_decimal
from core.models import (
    IntentAction,
    IntentStatus,
    OptionContract,
    OrderIntent,
    OrderStatus,
    PositionStatus,
    Right,
    SignalKind,
    Spread,
    SystemName,
    TradingMode,
    TradingState,
    client_order_id,
)
from core.orders import WalkRules, open_intent
from core.risk import evaluate_state
from core.spreads import bear_put_debit, bull_call_debit, max_loss_dollars
from tasks.execution import ExecutionResult, errors_today, execute_intent
from tasks.runtime import Runtime, build_runtime
from tasks.trading import observe, reconcile, recover, update_risk

SEED = 7
DAY = date(2026, 11, 27)  # early close 13:00: entry cutoff 12:00
START = time(10, 30)
AT = datetime.combine(DAY, START, tzinfo=NY)
SMART = SystemName.SMART0DTE
WALK = WalkRules()  # 4 steps, 10 s apart for entries
ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "fixtures" / "crash_submit.py"
SUBPROCESS_TIMEOUT = 60.0


# ---- helpers ------------------------------------------------------------------------------------


def listed(snap: ChainSnapshot, steps_from_atm: int, right: Right) -> OptionContract:
    """The listed contract ``steps_from_atm`` strikes away from the strike nearest spot."""
    ladder = sorted({float(k) for k in snap.strikes})
    atm = int(np.argmin(np.abs(np.asarray(ladder) - snap.spot)))
    wanted = OptionContract(
        snap.underlying, snap.expiry, strike_decimal(ladder[atm + steps_from_atm]), right
    )
    row = snap.index_of(wanted)
    assert row is not None, f"{wanted.symbol} should be listed"
    return snap.contract(row)


def chain_now(rt: Runtime, underlying: str = "SPY") -> ChainSnapshot:
    return rt.market.chain(underlying, rt.session.day, rt.clock.now())


def call_debit(snap: ChainSnapshot, offset: int = 0) -> Spread:
    return bull_call_debit(listed(snap, offset, Right.CALL), listed(snap, offset + 1, Right.CALL))


def put_debit(snap: ChainSnapshot, offset: int = 0) -> Spread:
    return bear_put_debit(listed(snap, offset, Right.PUT), listed(snap, offset - 1, Right.PUT))


def quote_of(rt: Runtime, spread: Spread) -> ComboQuote:
    snap = rt.market.chain(spread.underlying, spread.expiry, rt.clock.now())
    return combo_quote({(spread.underlying, spread.expiry): snap}, spread)


def entry(
    rt: Runtime,
    spread: Spread,
    start: Decimal,
    worst: Decimal,
    *,
    qty: int = 1,
    signal_id: str = "sig-1",
) -> OrderIntent:
    """An OPEN intent walking from ``start`` up to ``worst``."""
    return OrderIntent(
        client_order_id=client_order_id(SMART, signal_id, spread, IntentAction.OPEN),
        system=SMART,
        signal_id=signal_id,
        spread=spread,
        action=IntentAction.OPEN,
        quantity=qty,
        limit_price=start,
        worst_price=worst,
        max_loss=max_loss_dollars(spread, worst, qty),
        created_at=rt.clock.now(),
        reason="test entry",
    )


def run(rt: Runtime, intent: OrderIntent) -> ExecutionResult:
    return execute_intent(intent, rt.broker, rt.store, rt.clock, WALK, SignalKind.MOMENTUM)


def paper_counts(ledger_url: str, cid: str | None = None) -> tuple[int, int]:
    """(orders, fills) held by the paper broker next to the ledger, optionally for one ref."""
    engine = sa.create_engine(paper_url_for(ledger_url))
    try:
        with engine.connect() as conn:
            orders = sa.select(sa.func.count()).select_from(ORDERS)
            fills = sa.select(sa.func.count()).select_from(FILLS)
            if cid is not None:
                orders = orders.where(ORDERS.c.client_order_id == cid)
                fills = fills.where(FILLS.c.client_order_id == cid)
            return int(conn.execute(orders).scalar_one()), int(conn.execute(fills).scalar_one())
    finally:
        engine.dispose()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'db' / 'dte.db'}"


@pytest.fixture
def rt(db_url: str) -> Iterator[Runtime]:
    runtime = build_runtime(DAY, SEED, START, speed=0.0, db_url=db_url)
    try:
        yield runtime
    finally:
        runtime.close()


# ---- 1. a marketable entry ----------------------------------------------------------------------


def test_execute_intent_when_marketable_entry_then_filled_position_opened_and_rerun_places_nothing(
    rt: Runtime, db_url: str
) -> None:
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    intent = entry(rt, spread, q.ask, q.ask, qty=10)

    result = run(rt, intent)

    assert result.status is IntentStatus.FILLED
    assert result.placed is True
    assert result.filled_quantity == 10
    assert result.fill_price == q.ask  # marketable at the natural: min(limit, ask + slippage)
    (fill,) = rt.store.fills(client_order_id=intent.client_order_id)
    assert fill.price == result.fill_price
    assert fill.quantity == 10
    assert fill.commission == Decimal("13.00")  # 0.65 x 2 legs x 10
    pos = rt.store.position(intent.client_order_id)
    assert pos is not None
    assert pos.status is PositionStatus.OPEN
    assert pos.spread == spread
    assert pos.quantity == 10
    assert pos.entry_price == fill.price
    assert pos.entry_commission == fill.commission
    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.FILLED
    broker_order = rt.broker.find(intent.client_order_id)
    assert broker_order is not None
    assert stored.broker_order_id == broker_order.broker_order_id

    again = run(rt, intent)
    rebuilt = run(rt, entry(rt, spread, q.ask, q.ask, qty=10))  # re-derived, same id

    for second in (again, rebuilt):
        assert second.placed is False
        assert second.status is result.status
        assert second.client_order_id == intent.client_order_id
    assert paper_counts(db_url) == (1, 1)
    assert len(rt.store.fills()) == 1
    assert len(rt.store.orders()) == 1
    assert len(rt.store.open_positions()) == 1


# ---- 2. the walk ends in a cancel ---------------------------------------------------------------


def test_execute_intent_when_natural_never_reached_then_walks_four_steps_and_cancels(
    rt: Runtime, db_url: str
) -> None:
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    exact_mid = (q.bid + q.ask) / 2
    threshold = exact_mid + Decimal("0.5") * (q.ask - exact_mid)
    start, worst = q.mid - Decimal("0.09"), q.mid - Decimal("0.01")
    assert worst < threshold  # the walk never reaches a fillable limit
    intent = entry(rt, spread, start, worst, qty=3)
    before = rt.clock.now()

    result = run(rt, intent)

    assert rt.clock.now() - before >= timedelta(seconds=4 * WALK.step_seconds)
    assert result.status is IntentStatus.CANCELLED
    assert result.reason
    assert result.filled_quantity == 0
    assert result.fill_price is None
    assert result.placed is True
    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.CANCELLED
    assert stored.status_reason
    assert rt.store.position(intent.client_order_id) is None
    assert rt.store.open_positions() == []
    assert rt.store.fills() == []
    order = rt.broker.find(intent.client_order_id)
    assert order is not None
    assert order.status is OrderStatus.CANCELLED
    assert order.limit_price == worst
    assert paper_counts(db_url) == (1, 0)

    events = rt.store.order_events(order.broker_order_id)
    notes = [e.note for e in events]
    assert notes[0] == "submitted"
    assert events[0].limit_price == start
    modifies = [e for e in events if e.note.startswith("limit ")]
    assert len(modifies) == WALK.steps
    limits = [e.limit_price for e in modifies]
    assert limits == sorted(limits)
    assert len(set(limits)) == WALK.steps
    assert limits[-1] == worst
    assert any("cancel" in n for n in notes)
    assert events[-1].status is OrderStatus.CANCELLED
    assert [e.at for e in events] == sorted(e.at for e in events)


# ---- 3. broker rejects and the error failsafe ----------------------------------------------------


def unlisted_spread(snap: ChainSnapshot) -> Spread:
    """A call spread whose short leg sits between two listed strikes."""
    long_leg = listed(snap, 0, Right.CALL)
    off_grid = OptionContract("SPY", DAY, long_leg.strike + Decimal("0.5"), Right.CALL)
    assert snap.index_of(off_grid) is None
    return bull_call_debit(long_leg, off_grid)


def test_execute_intent_when_broker_rejects_then_rejected_with_reason_and_risk_event(
    rt: Runtime, db_url: str
) -> None:
    intent = entry(rt, unlisted_spread(chain_now(rt)), Decimal("0.20"), Decimal("0.25"))

    result = run(rt, intent)

    assert result.status is IntentStatus.REJECTED
    assert result.reason.startswith("unknown contract"), result.reason
    assert result.placed is False
    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.REJECTED
    assert stored.status_reason == result.reason
    (event,) = rt.store.risk_events(day=DAY, kinds=("order_rejected",))
    assert result.reason in event.message
    assert event.system is SMART
    assert rt.broker.find(intent.client_order_id) is None
    assert paper_counts(db_url) == (0, 0)
    assert errors_today(rt.store, DAY) == 1
    # a rerun of a rejected intent does not try again
    assert run(rt, intent).status is IntentStatus.REJECTED
    assert errors_today(rt.store, DAY) == 1


def test_update_risk_when_ten_rejects_in_a_day_then_state_machine_records_halted(
    rt: Runtime,
) -> None:
    spread = unlisted_spread(chain_now(rt))
    limits = rt.limits
    for k in range(limits.max_errors_per_day):
        intent = entry(rt, spread, Decimal("0.20"), Decimal("0.25"), signal_id=f"bad-{k}")
        assert run(rt, intent).status is IntentStatus.REJECTED
        errors = errors_today(rt.store, DAY)
        assert errors == k + 1
        expected = (
            TradingState.HALTED if errors >= limits.max_errors_per_day else TradingState.ACTIVE
        )
        assert evaluate_state(TradingState.ACTIVE, Decimal("0"), errors, limits).state is expected
        if k == limits.max_errors_per_day - 2:  # 9 errors: still ACTIVE, nothing recorded
            assert update_risk(rt, None).state is TradingState.ACTIVE
            assert rt.store.trading_state() is None

    change = update_risk(rt, None)

    assert change.state is TradingState.HALTED
    assert change.flatten is False  # the failsafe halts; only the loss halt flattens
    row = rt.store.trading_state()
    assert row is not None
    assert row.state is TradingState.HALTED
    assert row.manual is False
    assert "error failsafe" in row.reason
    assert rt.store.risk_events(day=DAY, kinds=("state_halted",))
    # a further look at risk keeps HALTED without recording it again
    assert update_risk(rt, None).state is TradingState.HALTED
    assert len(rt.store.risk_events(day=DAY, kinds=("state_halted",))) == 1


# ---- 4. crash between persist and submit (real subprocess, SIGKILL) ------------------------------


def _spawn(db_url: str, mode: str, log: Path) -> subprocess.Popen[str]:
    pythonpath = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": pythonpath}
    args = [sys.executable, str(SCRIPT), db_url, DAY.isoformat(), str(SEED), "10:30", mode]
    with log.open("a", encoding="utf-8") as err:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=err, text=True
        )


def _first_line(proc: subprocess.Popen[str], prefix: str, timeout: float, log: Path) -> str:
    """The first stdout line starting with ``prefix``, read on a thread with a deadline."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    deadline = datetime.now(tz=NY) + timedelta(seconds=timeout)
    while True:
        left = (deadline - datetime.now(tz=NY)).total_seconds()
        try:
            line = lines.get(timeout=max(left, 0.01))
        except queue.Empty:
            proc.kill()
            pytest.fail(f"no {prefix!r} line within {timeout} s; stderr:\n{log.read_text()}")
        if line is None:
            proc.wait(timeout=10)
            pytest.fail(f"exited {proc.returncode} before {prefix!r}; stderr:\n{log.read_text()}")
        if line.startswith(prefix):
            return line


def _run_to_end(db_url: str, log: Path) -> tuple[str, str, bool]:
    """Run the script in ``run`` mode: (client_order_id, status, placed)."""
    proc = _spawn(db_url, "run", log)
    line = _first_line(proc, "RESULT ", SUBPROCESS_TIMEOUT, log)
    assert proc.wait(timeout=SUBPROCESS_TIMEOUT) == 0, log.read_text()
    _, cid, status, placed, _filled = line.split()
    return cid, status, placed == "placed=True"


def _assert_one_order_one_fill(db_url: str, cid: str) -> None:
    assert paper_counts(db_url, cid) == (1, 1)
    assert paper_counts(db_url) == (1, 1)  # and nothing else was placed
    store = TradeStore(db_url)
    try:
        stored = store.intent_by_client_id(cid)
        assert stored is not None
        assert stored.status is IntentStatus.FILLED
        assert len(store.fills(client_order_id=cid)) == 1
        assert len(store.fills()) == 1
        (pos,) = store.open_positions()
        assert pos.position_id == cid
        assert pos.quantity == stored.intent.quantity
    finally:
        store.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("resume", ["rerun_subprocess", "recover_in_process"])
def test_execute_intent_when_killed_between_persist_and_submit_then_submitted_exactly_once(
    db_url: str, tmp_path: Path, resume: str
) -> None:
    log = tmp_path / "crash_submit.stderr"
    proc = _spawn(db_url, "crash", log)
    try:
        line = _first_line(proc, "PERSISTED ", SUBPROCESS_TIMEOUT, log)
    finally:
        proc.kill()  # SIGKILL: no cleanup, no atexit, no flush
        proc.wait(timeout=SUBPROCESS_TIMEOUT)
    assert proc.returncode == -signal.SIGKILL
    cid = line.split()[1]

    store = TradeStore(db_url)
    try:
        stored = store.intent_by_client_id(cid)
        assert stored is not None
        assert stored.status is IntentStatus.PENDING
        assert stored.broker_order_id is None
        assert store.orders() == []
    finally:
        store.dispose()
    probe = PaperBroker(SimulatedMarket(SEED), SimClock(AT), paper_url_for(db_url))
    try:
        assert probe.find(cid) is None
    finally:
        probe.dispose()
    assert paper_counts(db_url) == (0, 0)

    if resume == "rerun_subprocess":
        again_cid, status, placed = _run_to_end(db_url, log)
        assert (again_cid, status, placed) == (cid, IntentStatus.FILLED.value, True)
    else:
        runtime = build_runtime(DAY, SEED, START, speed=0.0, db_url=db_url)
        try:
            (result,) = recover(runtime)
            assert result.client_order_id == cid
            assert result.status is IntentStatus.FILLED
            assert result.placed is True  # the broker never had it: submitted now, once
            assert any(cid in e.message for e in runtime.store.risk_events(kinds=("recovery",)))
        finally:
            runtime.close()
    _assert_one_order_one_fill(db_url, cid)

    third_cid, status, placed = _run_to_end(db_url, log)
    assert (third_cid, status, placed) == (cid, IntentStatus.FILLED.value, False)
    _assert_one_order_one_fill(db_url, cid)
    runtime = build_runtime(DAY, SEED, START, speed=0.0, db_url=db_url)
    try:
        assert recover(runtime) == []  # nothing left to resume
    finally:
        runtime.close()
    _assert_one_order_one_fill(db_url, cid)


@pytest.mark.parametrize("marketable", [True, False])
def test_recover_when_crashed_after_submit_before_ledger_learned_fill_then_adopts_single_order(
    rt: Runtime, db_url: str, marketable: bool
) -> None:
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    if marketable:  # filled at the broker on arrival
        intent = entry(rt, spread, q.ask, q.ask, qty=4)
    else:  # resting at the mid; the walk resumes after the restart
        intent = open_intent(SMART, "sig-walk", spread, 4, q, rt.clock.now(), "walk entry")
    assert rt.store.save_intent(intent)
    at_broker = rt.broker.submit(intent)  # ... and the process dies here
    assert at_broker.status is (OrderStatus.FILLED if marketable else OrderStatus.WORKING)
    stored = rt.store.intent_by_client_id(intent.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.PENDING
    assert rt.store.fills() == []

    (result,) = recover(rt)

    assert result.placed is False  # adopted, not placed again
    assert result.status is IntentStatus.FILLED
    assert result.filled_quantity == 4
    assert paper_counts(db_url) == (1, 1)
    (broker_fill,) = rt.broker.executions(AT - timedelta(days=1))
    (fill,) = rt.store.fills(client_order_id=intent.client_order_id)
    assert fill.exec_id == broker_fill.exec_id
    assert fill.price == broker_fill.price == result.fill_price
    pos = rt.store.position(intent.client_order_id)
    assert pos is not None
    assert pos.entry_price == fill.price
    assert pos.entry_commission == fill.commission == Decimal("5.20")  # 0.65 x 2 legs x 4
    order = rt.broker.find(intent.client_order_id)
    assert order is not None
    assert rt.store.intent_by_client_id(intent.client_order_id).broker_order_id == (
        order.broker_order_id
    )

    assert recover(rt) == []
    assert run(rt, intent).placed is False
    assert paper_counts(db_url) == (1, 1)
    assert len(rt.store.fills()) == 1
    assert reconcile(rt) == []


def test_recover_when_persisted_intent_never_reached_broker_after_entry_cutoff_then_cancelled(
    rt: Runtime, db_url: str
) -> None:
    spread = call_debit(chain_now(rt))
    intent = open_intent(SMART, "sig-late", spread, 1, quote_of(rt, spread), AT, "entry")
    assert rt.store.save_intent(intent)  # crash before submit at 10:30
    later = build_runtime(DAY, SEED, time(12, 30), speed=0.0, db_url=db_url)  # cutoff 12:00
    try:
        assert recover(later) == []
        stored = later.store.intent_by_client_id(intent.client_order_id)
        assert stored is not None
        assert stored.status is IntentStatus.CANCELLED
        assert "stale" in stored.status_reason
        assert later.broker.find(intent.client_order_id) is None
    finally:
        later.close()
    assert paper_counts(db_url) == (0, 0)


# ---- 5. reconciliation --------------------------------------------------------------------------


def test_reconcile_when_broker_holds_unknown_fill_then_mismatch_lines_and_risk_event(
    rt: Runtime,
) -> None:
    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    assert run(rt, entry(rt, spread, q.ask, q.ask, qty=2)).status is IntentStatus.FILLED
    assert reconcile(rt) == []
    assert rt.store.risk_events(kinds=("reconciliation_mismatch",)) == []

    stray = put_debit(chain_now(rt))
    sq = quote_of(rt, stray)
    outside = entry(rt, stray, sq.ask, sq.ask, qty=3, signal_id="placed-by-hand")
    assert rt.broker.submit(outside).status is OrderStatus.FILLED  # the ledger never saw it

    problems = reconcile(rt)

    expected = {leg.contract.symbol: leg.side.sign * 3 for leg in stray.legs}
    assert len(problems) == len(expected)
    for symbol, qty in expected.items():
        assert f"{symbol}: ledger +0, broker {qty:+d}" in problems
    events = rt.store.risk_events(kinds=("reconciliation_mismatch",))
    assert sorted(e.message for e in events) == sorted(problems)
    assert all(e.severity == "critical" for e in events)


# ---- 6. missing chain and faulty quotes ---------------------------------------------------------


def _runtime_on(config: SimulatorConfig, db_url: str) -> Runtime:
    clock = SimClock(AT)
    market = SimulatedMarket(SEED, config)
    store = TradeStore(db_url)
    store.migrate()
    broker = PaperBroker(market, clock, paper_url_for(db_url))
    return Runtime(
        mode=TradingMode.DEVELOPMENT,
        session=session(DAY),
        clock=clock,
        market=market,
        broker=broker,
        store=store,
    )


def test_observe_when_spy_chain_missing_then_spy_unavailable_and_others_analysed(
    db_url: str,
) -> None:
    runtime = _runtime_on(SimulatorConfig(missing_chains=frozenset({("SPY", DAY)})), db_url)
    try:
        obs = observe(runtime, AT)
    finally:
        runtime.close()
    spy = obs.views["SPY"]
    assert spy.analysis is None
    assert "no chain for SPY" in spy.unavailable
    assert len(spy.bars) > 0  # the underlying itself is still observed
    assert ("SPY", DAY) not in obs.snapshots
    for und in ("QQQ", "IWM"):
        assert obs.views[und].analysis is not None, obs.views[und].unavailable
        assert obs.views[und].unavailable == ""
        assert (und, DAY) in obs.snapshots


def test_observe_when_quotes_faulty_then_rows_skipped_with_reasons_and_never_selected(
    db_url: str,
) -> None:
    runtime = _runtime_on(SimulatorConfig(fault_rate=0.2), db_url)
    try:
        obs = observe(runtime, AT)
    finally:
        runtime.close()
    reasons = [reason for _, reason in obs.skipped_quotes]
    for kind in ("non-finite", "zero ask", "negative quote", "crossed quote"):
        assert any(r.startswith(kind) for r in reasons), f"no {kind!r} row skipped"
    selected = 0
    for und, view in obs.views.items():
        analysis = view.analysis
        assert analysis is not None, f"{und}: {view.unavailable}"
        snap = analysis.snapshot
        faulty = {i for i, p in enumerate(analysis.problems) if p}
        assert faulty, f"{und}: fault injection produced no bad row"
        for i in faulty:  # every skipped row is named with its reason
            assert (snap.contract(i).symbol, analysis.problems[i]) in analysis.skipped()
        for right in (Right.CALL, Right.PUT):
            for target in np.linspace(0.05, 0.95, 19):
                i = analysis.select_by_delta(right, float(target))
                if i is None:
                    continue
                selected += 1
                assert i not in faulty
                assert quote_problem(float(snap.bid[i]), float(snap.ask[i])) == ""
                assert bool(analysis.liquid[i])
                assert float(snap.bid[i]) > 0
    assert selected > 0


def test_recover_when_other_system_in_flight_then_each_resumes_only_its_own(
    rt: Runtime, db_url: str
) -> None:
    """A Mag7 order the broker holds but the ledger has not settled yet is not resumed by the
    Smart-0DTE recovery (its walk and cut-off are not Mag7's); the Mag7 recovery adopts it once."""
    from tasks import mag7

    spread = call_debit(chain_now(rt))
    q = quote_of(rt, spread)
    theirs = open_intent(SystemName.MAG7, "mag7-sig", spread, 2, q, rt.clock.now(), "mag7 entry")
    assert rt.store.save_intent(theirs)
    rt.broker.submit(theirs)  # marketable or not: the broker holds it, the ledger is behind

    assert recover(rt) == []
    stored = rt.store.intent_by_client_id(theirs.client_order_id)
    assert stored is not None and stored.status is IntentStatus.PENDING

    (result,) = mag7.recover(rt)
    assert result.placed is False  # adopted, never sent again
    assert paper_counts(db_url)[0] == 1
