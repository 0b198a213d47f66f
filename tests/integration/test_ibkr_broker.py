"""``adapters.ibkr.IBKRBroker`` with the real ``ib_async`` client against ``tests.fixtures.fake_tws``.

Every test talks TCP on 127.0.0.1 to a fake TWS that speaks the TWS socket protocol for the
negotiated server version: combo placement, fills (per leg, with or without the BAG row),
commissions, rejections, error codes, account checks and server-version differences.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from adapters.ibkr import (
    AccountMismatch,
    ContractNotFound,
    IBKRBroker,
    OrderRejected,
    PacingViolation,
    ReadOnlyError,
)
from adapters.ports import Broker, BrokerError
from core.models import (
    IntentAction,
    Leg,
    OrderStatus,
    Side,
    Spread,
    StructureKind,
)
from core.spreads import bull_call_debit, iron_condor, long_call
from tests.builders import DAY, c, intent
from tests.fixtures.fake_tws import FakeTWS

HOST = "127.0.0.1"
ACCOUNT = "DU1234567"
SINCE = datetime(2000, 1, 1).astimezone()
FAST: dict[str, Any] = {
    "connect_timeout": 3.0,
    "request_timeout": 3.0,
    "ack_timeout": 2.0,
    "hold_timeout": 0.5,
    "commission_timeout": 2.0,
    "backoff": (0.05, 0.1, 0.2),
    "pacing_backoff": (0.05, 0.05),
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


def debit_spread() -> Spread:
    return bull_call_debit(c(590), c(595))


def condor() -> Spread:
    return iron_condor(c(580, "P"), c(585, "P"), c(595), c(600))


def con_id(tws: FakeTWS, strike: int, right: str = "C") -> int:
    return tws.contract("SPY", DAY, strike, right).con_id


def wait_status(broker: IBKRBroker, cid: str, status: OrderStatus, timeout: float = 3.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        order = broker.find(cid)
        if order is not None and order.status is status:
            return order
        if time.monotonic() > deadline:
            raise AssertionError(f"{cid} did not become {status}: {order}")
        broker.wait_connected(0.05)


# --------------------------------------------------------------------------- placement
def test_submit_when_debit_spread_then_one_bag_combo_with_conids_actions_and_order_ref() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        assert isinstance(broker, Broker)
        order_intent = intent(debit_spread(), qty=2, limit="1.20", worst="1.30")

        order = broker.submit(order_intent)

        (placed,) = tws.placed_new()
        assert placed.sec_type == "BAG"
        assert placed.order_ref == order_intent.client_order_id
        assert placed.action == "BUY"
        assert placed.order_type == "LMT"
        assert placed.tif == "DAY"
        assert placed.limit == pytest.approx(1.20)
        assert placed.quantity == 2
        assert placed.account == ACCOUNT
        assert [(leg.con_id, leg.ratio, leg.action, leg.exchange) for leg in placed.legs] == [
            (con_id(tws, 590), 1, "BUY", "SMART"),
            (con_id(tws, 595), 1, "SELL", "SMART"),
        ]
        assert tws.bag_detail_requests == 0  # a BAG is never "qualified"
        assert order.status is OrderStatus.WORKING
        assert order.client_order_id == order_intent.client_order_id
        assert order.side is Side.BUY
        assert order.spread == order_intent.spread
        assert order.limit_price == Decimal("1.20")
        assert order.broker_order_id.startswith("IB-")


def test_submit_when_credit_structure_then_buy_at_negative_limit_with_legs_as_listed() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        opening = intent(condor(), qty=1, limit="-1.20", worst="-1.10")

        broker.submit(opening)

        (placed,) = tws.placed_new()
        assert placed.action == "BUY"
        assert placed.limit == pytest.approx(-1.20)  # IB BAG: negative limit = credit received
        assert [leg.action for leg in placed.legs] == ["BUY", "SELL", "SELL", "BUY"]
        assert [leg.con_id for leg in placed.legs] == [
            con_id(tws, 580, "P"),
            con_id(tws, 585, "P"),
            con_id(tws, 595),
            con_id(tws, 600),
        ]


def test_submit_when_closing_debit_spread_then_sell_combo_at_positive_value() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        closing = intent(
            debit_spread(), qty=1, limit="0.80", worst="0.70", action=IntentAction.CLOSE
        )

        order = broker.submit(closing)

        (placed,) = tws.placed_new()
        assert placed.action == "SELL"
        assert placed.limit == pytest.approx(0.80)
        assert [leg.action for leg in placed.legs] == ["BUY", "SELL"]  # legs as opened
        assert order.side is Side.SELL


def test_submit_when_leg_ratio_two_then_combo_leg_carries_the_ratio() -> None:
    ratio_spread = Spread(
        StructureKind.BULL_CALL_DEBIT, (Leg(c(590), Side.BUY, 1), Leg(c(595), Side.SELL, 2))
    )
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        order_intent = intent(ratio_spread, qty=3, limit="0.40", worst="0.50")

        broker.submit(order_intent)
        filled = wait_status(broker, order_intent.client_order_id, OrderStatus.FILLED)
        (fill,) = broker.executions(SINCE)

    (placed,) = tws.placed_new()
    assert [(leg.ratio, leg.action) for leg in placed.legs] == [(1, "BUY"), (2, "SELL")]
    assert filled.filled_quantity == 3
    assert fill.quantity == 3
    assert fill.price == Decimal("0.40")
    assert fill.commission == Decimal("5.85")  # 0.65 x (1 + 2) contracts x 3
    assert tws.position_of(con_id(tws, 590)) == 3
    assert tws.position_of(con_id(tws, 595)) == -6


def test_submit_when_single_leg_then_the_option_itself_not_a_bag() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        order_intent = intent(long_call(c(600)), qty=2, limit="0.55", worst="0.60")

        broker.submit(order_intent)
        (fill,) = broker.executions(SINCE)

    (placed,) = tws.placed_new()
    assert (placed.sec_type, placed.con_id, placed.legs) == ("OPT", con_id(tws, 600), ())
    assert (fill.quantity, fill.price, fill.commission) == (2, Decimal("0.55"), Decimal("1.30"))


def test_find_when_ib_cancels_the_order_itself_then_cancelled_with_ib_reason() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        order_intent = intent(debit_spread(), qty=1)
        broker.submit(order_intent)

        tws.cancel_at_server(order_intent.client_order_id, "Order Canceled - reason:margin")
        order = wait_status(broker, order_intent.client_order_id, OrderStatus.CANCELLED)

    assert "margin" in order.reason
    assert order.filled_quantity == 0


def test_submit_when_same_intent_twice_then_one_place_order() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        order_intent = intent(debit_spread(), qty=1)

        first = broker.submit(order_intent)
        second = broker.submit(order_intent)
        found = broker.find(order_intent.client_order_id)

        assert len(tws.placed_new()) == 1
        assert broker.placements == 1
        assert second.broker_order_id == first.broker_order_id
        assert found is not None
        assert found.broker_order_id == first.broker_order_id
        assert broker.find("no-such-ref") is None
        assert [o.client_order_id for o in broker.open_orders()] == [order_intent.client_order_id]


# --------------------------------------------------------------------------- fills
@pytest.mark.parametrize("bag_row", [True, False], ids=["with-bag-row", "legs-only"])
@pytest.mark.parametrize(
    ("structure", "limit", "worst", "legs"),
    [
        (debit_spread, "1.20", "1.30", 2),
        (condor, "-1.20", "-1.10", 4),
    ],
    ids=["debit", "condor-credit"],
)
def test_executions_when_combo_fills_per_leg_then_one_net_fill_per_unit(
    bag_row: bool, structure: Any, limit: str, worst: str, legs: int
) -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill", bag_row=bag_row) as tws,
        connected(tws) as broker,
    ):
        order_intent = intent(structure(), qty=3, limit=limit, worst=worst)

        broker.submit(order_intent)
        order = wait_status(broker, order_intent.client_order_id, OrderStatus.FILLED)
        fills = broker.executions(SINCE)
        again = broker.executions(SINCE)

    rows = [e for e in tws.executions if e.order_ref == order_intent.client_order_id]
    assert len(rows) == legs + (1 if bag_row else 0)
    (fill,) = fills
    assert again == fills
    assert fill.client_order_id == order_intent.client_order_id
    assert fill.broker_order_id == order.broker_order_id
    assert fill.quantity == 3
    assert fill.price == Decimal(limit)
    assert fill.commission == Decimal("0.65") * legs * 3
    assert order.filled_quantity == 3
    assert order.avg_fill_price == Decimal(limit)


def test_executions_when_commission_reports_delayed_then_joined_to_the_fill() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill", commission_delay=0.4) as tws,
        connected(tws, commission_timeout=3.0) as broker,
    ):
        order_intent = intent(debit_spread(), qty=2, limit="1.10", worst="1.20")
        broker.submit(order_intent)

        (fill,) = broker.executions(SINCE)

    assert fill.quantity == 2
    assert fill.commission == Decimal("2.60")


def test_find_when_status_filled_arrives_before_executions_then_fills_still_complete() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill", status_before_executions=True) as tws,
        connected(tws) as broker,
    ):
        order_intent = intent(debit_spread(), qty=2, limit="1.10", worst="1.20")
        broker.submit(order_intent)
        wait_status(broker, order_intent.client_order_id, OrderStatus.FILLED)

        fills = broker.executions(SINCE)

    assert sum(f.quantity for f in fills) == 2


def test_cancel_when_partially_filled_then_cancelled_with_the_filled_part() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        order_intent = intent(debit_spread(), qty=3, limit="1.10", worst="1.20")
        broker.submit(order_intent)
        tws.fill(order_intent.client_order_id, quantity=1)

        cancelled = broker.cancel(order_intent.client_order_id)
        fills = broker.executions(SINCE)
        again = broker.cancel(order_intent.client_order_id)
        still_open = broker.open_orders()

    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.filled_quantity == 1
    assert "cancel" in cancelled.reason.lower()
    assert [f.quantity for f in fills] == [1]
    assert again.status is OrderStatus.CANCELLED
    assert still_open == []


def test_modify_when_fill_after_modifies_then_same_order_id_and_filled_at_new_limit() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill_after_modifies", fill_after_modifies=2) as tws,
        connected(tws) as broker,
    ):
        order_intent = intent(debit_spread(), qty=1, limit="1.10", worst="1.40")
        broker.submit(order_intent)
        cid = order_intent.client_order_id

        first = broker.modify(cid, Decimal("1.20"))
        second = broker.modify(cid, Decimal("1.30"))
        filled = wait_status(broker, cid, OrderStatus.FILLED)
        after = broker.modify(cid, Decimal("1.40"))  # already filled: nothing sent
        (fill,) = broker.executions(SINCE)

    assert first.status is OrderStatus.WORKING
    assert first.limit_price == Decimal("1.20")
    assert second.limit_price == Decimal("1.30")
    assert second.status in (OrderStatus.WORKING, OrderStatus.FILLED)  # the fill may trail
    assert filled.avg_fill_price == Decimal("1.30")
    assert after.status is OrderStatus.FILLED
    assert fill.price == Decimal("1.30")
    ids = {p.order_id for p in tws.placed}
    assert len(ids) == 1
    assert [p.outcome for p in tws.placed] == ["new", "modify", "modify"]


def test_modify_when_price_off_the_tick_grid_then_refused_and_order_keeps_its_limit() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="rest", min_tick=0.05) as tws,
        connected(tws) as broker,
    ):
        order_intent = intent(debit_spread(), qty=1, limit="1.20", worst="1.40")
        broker.submit(order_intent)
        cid = order_intent.client_order_id

        with pytest.raises(OrderRejected) as refused:
            broker.modify(cid, Decimal("1.23"))
        kept = broker.find(cid)
        moved = broker.modify(cid, Decimal("1.25"))

    assert refused.value.code == 110
    assert "110" in refused.value.reason
    assert "minimum price variation" in refused.value.reason
    assert kept is not None
    assert kept.status is OrderStatus.WORKING
    assert kept.limit_price == Decimal("1.20")
    assert moved.limit_price == Decimal("1.25")


# --------------------------------------------------------------------------- errors
def test_submit_when_rejected_only_by_error_201_then_reason_surfaced_and_not_resent() -> None:
    with (
        FakeTWS(
            accounts=[ACCOUNT], order_mode="reject", reject_reason="Insufficient margin"
        ) as tws,
        connected(tws) as broker,
    ):
        order_intent = intent(debit_spread(), qty=1)

        with pytest.raises(OrderRejected) as rejected:
            broker.submit(order_intent)
        found = broker.find(order_intent.client_order_id)
        again = broker.submit(order_intent)

    assert isinstance(rejected.value, BrokerError)
    assert rejected.value.code == 201
    assert "Insufficient margin" in rejected.value.reason
    assert found is not None
    assert found.status is OrderStatus.REJECTED
    assert "Insufficient margin" in found.reason
    assert again.status is OrderStatus.REJECTED
    assert [p.outcome for p in tws.placed] == ["rejected"]


def test_submit_when_price_off_the_tick_grid_then_rejected_with_error_110() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="rest", min_tick=0.05) as tws,
        connected(tws) as broker,
    ):
        with pytest.raises(OrderRejected, match="110"):
            broker.submit(intent(debit_spread(), qty=1, limit="1.23", worst="1.30"))
        assert tws.placed_new() == []


def test_submit_when_contract_not_listed_then_contract_not_found_from_error_200() -> None:
    chains = {"SPY": ([DAY], [585.0, 590.0, 595.0])}
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="rest", chains=chains) as tws,
        connected(tws) as broker,
    ):
        with pytest.raises(ContractNotFound) as missing:
            broker.submit(intent(bull_call_debit(c(590), c(600)), qty=1))

        assert tws.placed == []
    assert "200" in missing.value.reason
    assert "no security definition" in missing.value.reason.lower()
    assert "SPY261127C00600000" in missing.value.reason


def test_submit_when_contract_details_pacing_violation_then_retried_and_placed_once() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        tws.fail_next("contract_details", 162)
        tws.fail_next("contract_details", 420)

        broker.submit(intent(debit_spread(), qty=1))

        assert broker.pacing_violations == 2
        assert len(tws.placed_new()) == 1
        assert broker.errors == []


def test_submit_when_pacing_violations_persist_then_pacing_error_and_nothing_placed() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="rest") as tws, connected(tws) as broker:
        tws.fail_next("contract_details", 162, count=5)

        with pytest.raises(PacingViolation, match="162"):
            broker.submit(intent(debit_spread(), qty=1))
        assert tws.placed == []


def test_connect_when_info_codes_arrive_then_no_errors_and_orders_unaffected() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        for code in (2107, 2108, 2119, 2104, 2106, 2158):
            tws.send_error(code, "farm status")
        order_intent = intent(debit_spread(), qty=1)
        broker.submit(order_intent)
        order = wait_status(broker, order_intent.client_order_id, OrderStatus.FILLED)

        codes = {code for code, _ in broker.info}
    assert broker.errors == []
    assert {2104, 2106, 2158, 2107, 2108, 2119} <= codes
    assert order.reason == ""


# --------------------------------------------------------------------------- modes, account
def test_submit_when_read_only_then_refused_and_nothing_sent_but_reads_work() -> None:
    with (
        FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws,
        connected(tws, read_only=True) as broker,
    ):
        order_intent = intent(debit_spread(), qty=1)

        with pytest.raises(ReadOnlyError, match="read-only"):
            broker.submit(order_intent)
        with pytest.raises(ReadOnlyError):
            broker.modify(order_intent.client_order_id, Decimal("1.00"))
        with pytest.raises(ReadOnlyError):
            broker.cancel(order_intent.client_order_id)
        info = broker.account()

    assert tws.placed == []
    assert info.equity == Decimal("100000.00")


def test_account_when_summary_served_then_equity_buying_power_and_masked_id() -> None:
    values = {"NetLiquidation": "123456.78", "BuyingPower": "250000.00"}
    with FakeTWS(accounts=[ACCOUNT], account_values=values) as tws, connected(tws) as broker:
        info = broker.account()
        assert broker.account_id == "DU****567"

    assert info.account_id == "DU****567"
    assert info.equity == Decimal("123456.78")
    assert info.buying_power == Decimal("250000.00")


@pytest.mark.parametrize(
    ("accounts", "mode", "expected", "shown", "hidden"),
    [
        (["DU1234567"], "live", None, "DU****567", "DU1234567"),
        (["U7654321"], "testing", None, "U****321", "U7654321"),
        (["DU1234567"], "testing", "DU9999999", "DU****999", "DU9999999"),
    ],
    ids=["live-on-paper", "testing-on-live", "wrong-account"],
)
def test_connect_when_account_does_not_suit_mode_then_refused_with_masked_ids(
    accounts: list[str], mode: str, expected: str | None, shown: str, hidden: str
) -> None:
    with FakeTWS(accounts=accounts) as tws:
        broker = make_broker(tws, mode=mode, expected_account=expected)
        with pytest.raises(AccountMismatch) as refused:
            broker.connect()
        assert tws.wait_until_idle(5.0)
    assert shown in refused.value.reason
    assert hidden not in refused.value.reason


def test_connect_when_live_account_in_live_mode_then_accepted() -> None:
    with FakeTWS(accounts=["U7654321"]) as tws:
        with connected(tws, mode="live", expected_account="U7654321") as broker:
            assert broker.connected
            assert broker.account_id == "U****321"
        assert tws.wait_until_idle(5.0)


# --------------------------------------------------------------------------- server versions
@pytest.mark.parametrize("version", [157, 163, 166, 170, 176, 177, 178])
def test_order_cycle_when_server_version_differs_then_decoded_the_same(version: int) -> None:
    with FakeTWS(accounts=[ACCOUNT], server_version=version, order_mode="fill") as tws:
        with connected(tws) as broker:
            order_intent = intent(debit_spread(), qty=2, limit="1.10", worst="1.20")
            broker.submit(order_intent)
            filled = wait_status(broker, order_intent.client_order_id, OrderStatus.FILLED)
            positions = {p.contract.symbol: p.quantity for p in broker.positions()}
            assert broker.session.server_versions == [version]
        with connected(tws) as fresh:  # reads the completed order and executions back
            found = fresh.find(order_intent.client_order_id)
            fills = fresh.executions(SINCE)

    assert filled.avg_fill_price == Decimal("1.10")
    assert positions == {"SPY261127C00590000": 2, "SPY261127C00595000": -2}
    assert found is not None
    assert found.status is OrderStatus.FILLED
    assert found.spread == order_intent.spread
    assert [(f.quantity, f.price, f.commission) for f in fills] == [
        (2, Decimal("1.10"), Decimal("2.60"))
    ]


def test_positions_when_filled_then_equal_to_the_fake_ledger_per_contract() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        broker.submit(intent(debit_spread(), qty=2, limit="1.10", worst="1.20"))
        broker.submit(intent(condor(), qty=1, limit="-1.20", worst="-1.10", signal_id="sig-2"))
        broker.wait_connected(0.1)
        positions = broker.positions()

        fake = {
            c.local_symbol.replace(" ", ""): int(q) for c, q in tws.positions_by_contract().items()
        }
    ours = {p.contract.symbol: p.quantity for p in positions}
    assert ours == fake
    assert ours["SPY261127C00595000"] == -2 - 1  # short in both structures
    assert all(p.order_refs for p in positions)


def test_since_when_filtering_executions_then_only_later_fills() -> None:
    with FakeTWS(accounts=[ACCOUNT], order_mode="fill") as tws, connected(tws) as broker:
        broker.submit(intent(debit_spread(), qty=1, limit="1.10", worst="1.20"))
        (fill,) = broker.executions(SINCE)

        later = broker.executions(fill.at + timedelta(seconds=1))

    assert later == []
