"""The order path (``tasks.execution.execute_intent``) end to end on ``IBKRBroker`` + the fake TWS.

Real components only: the ledger is ``adapters.store.TradeStore`` on a SQLite file, time is a
``SimClock`` (the fake stamps executions with the same clock), the broker is the real ``ib_async``
client over TCP. The fake fills the combo on the walk's second modify, so submit, find, modify,
executions and positions are all exercised; the ledger position must equal the fake's own
per-contract bookkeeping and the broker's positions.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from adapters.clock import SimClock
from adapters.ibkr import IBKRBroker
from adapters.store import TradeStore
from core.calendar import NY
from core.models import IntentStatus, OrderStatus, PositionStatus, SignalKind
from core.orders import WalkRules
from core.spreads import bull_call_debit
from tasks.execution import execute_intent
from tests.builders import c, intent
from tests.fixtures.fake_tws import FakeTWS

START = datetime(2026, 11, 27, 10, 30, tzinfo=NY)
WALK = WalkRules()  # 4 steps, 10 s apart (simulated)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TradeStore]:
    trade_store = TradeStore(f"sqlite:///{tmp_path / 'db' / 'dte.db'}")
    trade_store.migrate()
    try:
        yield trade_store
    finally:
        trade_store.dispose()


def ledger_legs(store: TradeStore) -> dict[str, int]:
    out: dict[str, int] = {}
    for pos in store.open_positions():
        for leg in pos.spread.legs:
            sym = leg.contract.symbol
            out[sym] = out.get(sym, 0) + leg.side.sign * leg.ratio * pos.quantity
    return out


def test_execute_intent_when_ibkr_fills_during_the_walk_then_filled_and_ledger_equals_fake(
    store: TradeStore,
) -> None:
    clock = SimClock(START)
    with FakeTWS(
        accounts=["DU1234567"],
        order_mode="fill_after_modifies",
        fill_after_modifies=2,
        clock=clock.now,
    ) as tws:
        broker = IBKRBroker(
            "127.0.0.1",
            tws.port,
            client_id=11,
            expected_account="DU1234567",
            mode="testing",
            connect_timeout=3.0,
            request_timeout=3.0,
            ack_timeout=2.0,
            hold_timeout=1.0,
            commission_timeout=2.0,
            backoff=(0.05, 0.1),
        ).connect()
        try:
            entry = intent(
                bull_call_debit(c(590), c(595)),
                qty=3,
                limit="1.00",
                worst="1.40",
                max_loss="420",
                at=clock.now(),
            )

            result = execute_intent(entry, broker, store, clock, WALK, SignalKind.MOMENTUM)
            rerun = execute_intent(entry, broker, store, clock, WALK, SignalKind.MOMENTUM)
            broker_positions = {p.contract.symbol: p.quantity for p in broker.positions()}
            order = broker.find(entry.client_order_id)
        finally:
            broker.dispose()

    assert result.status is IntentStatus.FILLED
    assert result.placed is True
    assert result.filled_quantity == 3
    assert result.fill_price == Decimal("1.20")  # walk 1.00 -> 1.10 -> 1.20: filled on modify 2
    assert rerun.placed is False
    assert rerun.status is IntentStatus.FILLED
    outcomes = [p.outcome for p in tws.placed]
    assert outcomes[:3] == ["new", "modify", "modify"]
    # a fill that trails the modify's acknowledgement can let the walk send one more modify,
    # which IB refuses ("can't modify a filled order"): harmless, and never a second order
    assert set(outcomes[3:]) <= {"modify_refused"}
    assert len(tws.placed_new()) == 1
    assert order is not None
    assert order.status is OrderStatus.FILLED

    (fill,) = store.fills(client_order_id=entry.client_order_id)
    assert (fill.quantity, fill.price, fill.commission) == (3, Decimal("1.20"), Decimal("3.90"))
    assert fill.at == START + timedelta(seconds=20)  # second walk step, simulated time
    position = store.position(entry.client_order_id)
    assert position is not None
    assert position.status is PositionStatus.OPEN
    assert position.quantity == 3
    assert position.entry_price == Decimal("1.20")
    assert position.entry_commission == Decimal("3.90")
    stored = store.intent_by_client_id(entry.client_order_id)
    assert stored is not None
    assert stored.broker_order_id == order.broker_order_id

    fake = {c.local_symbol.replace(" ", ""): int(q) for c, q in tws.positions_by_contract().items()}
    assert ledger_legs(store) == fake == broker_positions
    assert fake == {"SPY261127C00590000": 3, "SPY261127C00595000": -3}


def test_execute_intent_when_gateway_down_then_kept_open_and_placed_once_after_reconnect(
    store: TradeStore,
) -> None:
    """Disconnected: the order is held (nothing sent), the intent stays open, not REJECTED,
    and is not counted as a failed order; once the gateway is back the same intent is placed
    exactly once."""
    clock = SimClock(START)
    with FakeTWS(accounts=["DU1234567"], clock=clock.now) as tws:
        broker = IBKRBroker(
            "127.0.0.1",
            tws.port,
            client_id=12,
            expected_account="DU1234567",
            mode="testing",
            connect_timeout=3.0,
            request_timeout=3.0,
            ack_timeout=2.0,
            hold_timeout=0.5,
            commission_timeout=2.0,
            backoff=(0.05, 0.1),
        ).connect()
        try:
            entry = intent(
                bull_call_debit(c(590), c(595)),
                qty=2,
                limit="1.00",
                worst="1.40",
                max_loss="280",
                at=clock.now(),
            )
            tws.stop_listening()
            tws.drop_connections()
            held = execute_intent(entry, broker, store, clock, WALK, SignalKind.MOMENTUM)
            stored = store.intent_by_client_id(entry.client_order_id)
            events = {e.kind for e in store.risk_events()}
            placed_while_down = len(tws.placed_new())

            tws.start_listening()
            assert broker.wait_connected(10.0)
            done = execute_intent(entry, broker, store, clock, WALK, SignalKind.MOMENTUM)
        finally:
            broker.dispose()

    assert held.status is IntentStatus.PENDING
    assert held.placed is False
    assert stored is not None and stored.status is IntentStatus.PENDING
    assert "broker_unavailable" in events
    assert not events & {"order_rejected", "order_error"}
    assert placed_while_down == 0
    assert done.status is IntentStatus.FILLED
    assert done.placed is True
    assert len(tws.placed_new()) == 1
