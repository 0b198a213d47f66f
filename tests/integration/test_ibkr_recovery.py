"""``IBKRBroker`` across crashes, socket drops, gateway restarts and TWS connectivity loss.

The fake TWS keeps orders, executions, positions and used order ids across client connections,
so a new adapter instance (a restarted process) or a reconnect sees exactly what IB would show.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters.ibkr import IBKRBroker, IBKRError, OrderHeld
from core.models import OrderStatus
from core.spreads import bull_call_debit
from tests.builders import c, intent
from tests.fixtures.fake_tws import FakeTWS

HOST = "127.0.0.1"
ACCOUNT = "DU1234567"
SINCE = datetime(2000, 1, 1).astimezone()
FAST: dict[str, Any] = {
    "connect_timeout": 3.0,
    "request_timeout": 3.0,
    "ack_timeout": 2.0,
    "hold_timeout": 0.3,
    "commission_timeout": 2.0,
    "backoff": (0.05, 0.1, 0.2),
}


def make_broker(tws: FakeTWS, **overrides: Any) -> IBKRBroker:
    options = {"client_id": 7, "expected_account": ACCOUNT, "mode": "testing", **FAST, **overrides}
    return IBKRBroker(HOST, tws.port, **options)


@contextmanager
def connected(tws: FakeTWS, **overrides: Any) -> Iterator[IBKRBroker]:
    broker = make_broker(tws, **overrides).connect()
    try:
        yield broker
    finally:
        broker.dispose()


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def entry(signal_id: str = "sig-1", qty: int = 2) -> Any:
    return intent(
        bull_call_debit(c(590), c(595)), qty=qty, limit="1.10", worst="1.30", signal_id=signal_id
    )


# --------------------------------------------------------------------------- process crash
def test_submit_when_new_instance_after_crash_then_order_found_by_ref_and_not_resent() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws:
        order_intent = entry()
        first = make_broker(tws).connect()
        placed = first.submit(order_intent)
        first.dispose()  # the process dies between submit and fill
        assert tws.wait_until_idle(5.0)
        tws.fill(order_intent.client_order_id)  # IB fills it while nobody is connected

        with connected(tws) as restarted:
            found = restarted.find(order_intent.client_order_id)
            again = restarted.submit(order_intent)
            fills = restarted.executions(SINCE)
            fills_again = restarted.executions(SINCE)
            positions = {p.contract.symbol: p.quantity for p in restarted.positions()}

    assert len(tws.placed_new()) == 1
    assert restarted.placements == 0
    assert found is not None
    assert found.broker_order_id == placed.broker_order_id
    assert found.status is OrderStatus.FILLED
    assert found.spread == order_intent.spread  # legs read back from IB, kind inferred
    assert again.broker_order_id == placed.broker_order_id
    (fill,) = fills
    assert fills_again == fills
    assert (fill.client_order_id, fill.quantity, fill.price, fill.commission) == (
        order_intent.client_order_id,
        2,
        Decimal("1.10"),
        Decimal("2.60"),
    )
    assert positions == {"SPY261127C00590000": 2, "SPY261127C00595000": -2}


def test_find_when_new_instance_has_other_client_id_then_working_order_found_and_modify_refused() -> (
    None
):
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws:
        order_intent = entry()
        with connected(tws, client_id=7) as first:
            first.submit(order_intent)

        with connected(tws, client_id=8) as other:
            found = other.find(order_intent.client_order_id)
            again = other.submit(order_intent)
            with pytest.raises(IBKRError, match="client id 7"):
                other.modify(order_intent.client_order_id, Decimal("1.20"))

    assert found is not None
    assert found.status is OrderStatus.WORKING
    assert again.broker_order_id == found.broker_order_id
    assert len(tws.placed_new()) == 1


# --------------------------------------------------------------------------- socket loss
def test_disconnect_when_fake_drops_sockets_then_reconnects_with_backoff_and_reconciles() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        working = entry("sig-1")
        later = entry("sig-2", qty=1)
        broker.submit(working)

        tws.stop_listening()  # sockets dropped, connections refused for a while
        assert eventually(lambda: not broker.connected)
        tws.fill(working.client_order_id)  # filled while we are away
        with pytest.raises(OrderHeld, match="held, not sent"):
            broker.submit(later)
        cached = broker.submit(working)  # known order: answered from state, nothing sent
        assert eventually(lambda: len(broker.session.reconnect_delays) >= 2)
        tws.start_listening()
        assert broker.wait_connected(5.0)

        reconciled = broker.find(working.client_order_id)
        fills = broker.executions(SINCE)
        placed_later = broker.submit(later)
        placed_again = broker.submit(later)

    assert cached.status is OrderStatus.WORKING
    assert broker.session.reconnect_delays[:2] == [0.05, 0.1]
    assert broker.session.connects == 2
    assert reconciled is not None
    assert reconciled.status is OrderStatus.FILLED
    assert [(f.client_order_id, f.quantity) for f in fills] == [(working.client_order_id, 2)]
    assert placed_again.broker_order_id == placed_later.broker_order_id
    assert [p.order_ref for p in tws.placed_new()] == [
        working.client_order_id,
        later.client_order_id,
    ]


def test_submit_when_disconnected_briefly_then_waits_for_the_reconnect_and_places_once() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws,
        connected(tws, hold_timeout=5.0) as broker,
    ):
        tws.drop_connections()  # the port keeps listening: the reconnect comes quickly
        assert eventually(lambda: not broker.connected)

        order = broker.submit(entry())
        again = broker.submit(entry())

    assert broker.session.connects == 2
    assert order.broker_order_id == again.broker_order_id
    assert len(tws.placed_new()) == 1


# --------------------------------------------------------------------------- gateway restart
def test_restart_when_next_valid_id_rolled_back_then_no_duplicate_id_and_one_order_each() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="rest", next_valid_id=1) as tws,
        connected(tws) as broker,
    ):
        first = entry("sig-1")
        broker.submit(first)
        tws.restart(next_valid_id=1)  # the gateway forgot how far the ids went
        assert broker.wait_connected(5.0)
        second = entry("sig-2")
        broker.submit(second)
        orders = {o.client_order_id: o.status for o in broker.open_orders()}
        assert broker.errors == []

    assert [p.outcome for p in tws.placed] == ["new", "new"]
    ids = [p.order_id for p in tws.placed]
    assert ids[1] > ids[0]
    assert orders == {
        first.client_order_id: OrderStatus.WORKING,
        second.client_order_id: OrderStatus.WORKING,
    }


def test_restart_when_new_instance_reuses_an_id_then_error_103_retried_once_above_it() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest", next_valid_id=1) as tws:
        with connected(tws) as broker:
            gone = entry("sig-1")
            broker.submit(gone)
            broker.cancel(gone.client_order_id)  # leaves no open order, no execution
        tws.restart(next_valid_id=1)

        with connected(tws) as restarted:
            fresh = entry("sig-2")
            order = restarted.submit(fresh)
            assert restarted.errors == []

    outcomes = [(p.order_ref, p.outcome) for p in tws.placed]
    assert outcomes == [
        (gone.client_order_id, "new"),
        (fresh.client_order_id, "duplicate_id"),
        (fresh.client_order_id, "new"),
    ]
    assert order.status is OrderStatus.WORKING
    assert restarted.placements == 2
    assert len(tws.placed_new(fresh.client_order_id)) == 1
    assert tws.placed[2].order_id > tws.placed[1].order_id


# --------------------------------------------------------------------------- TWS <-> IB link
def test_submit_when_tws_lost_ib_1100_then_held_until_1102_and_state_reread() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        resyncs = broker.resyncs
        tws.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")
        assert eventually(lambda: not broker.connected)

        with pytest.raises(OrderHeld, match="1100"):
            broker.submit(entry())
        tws.send_error(
            1102,
            "Connectivity between IB and Trader Workstation has been restored - data maintained.",
        )
        assert broker.wait_connected(5.0)
        order = broker.submit(entry())

        assert broker.resyncs == resyncs + 1
        assert broker.errors == []
    assert order.client_order_id == entry().client_order_id
    assert len(tws.placed_new()) == 1


def test_submit_when_ib_never_acknowledges_then_reported_working_and_never_resent() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="hold") as tws,
        connected(tws, ack_timeout=0.3) as broker,
    ):
        order_intent = entry()

        first = broker.submit(order_intent)
        found = broker.find(order_intent.client_order_id)
        with pytest.raises(IBKRError, match="never acknowledged"):
            broker.submit(order_intent)

    assert first.status is OrderStatus.WORKING
    assert found is not None
    assert found.broker_order_id == first.broker_order_id
    assert [p.outcome for p in tws.placed] == ["held"]


def test_link_when_1100_lasts_too_long_then_socket_dropped_and_reconnected() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws,
        connected(tws, link_loss_reconnect_after=0.2) as broker,
    ):
        tws.send_error(1100, "Connectivity between IB and Trader Workstation has been lost.")

        assert eventually(lambda: broker.session.connects == 2)
        assert broker.wait_connected(5.0)
        order = broker.submit(entry())

    assert tws.connections == 2
    assert order.client_order_id == entry().client_order_id
    assert len(tws.placed_new()) == 1
