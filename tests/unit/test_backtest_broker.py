"""The backtest broker's fill model: one test per rule, against a fixed two-strike quote.

The combo is a SPY 590/592 bull call debit spread. Leg quotes: 590C 2.00 x 2.20, 592C 1.00 x
1.10, so the combo is bid 0.90, ask 1.20, exact mid 1.05; with the default fill fraction 0.5 a
buy fills from 1.125 up and a sell from 0.975 down; slippage 0.01 x 2 legs = 0.02.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest

from adapters.backtest_broker import BacktestBroker, BacktestFillConfig, fill_price
from adapters.clock import SimClock
from adapters.paper import PaperBroker
from adapters.ports import Broker, BrokerError, MarketDataError
from adapters.store import TradeStore
from core.calendar import NY
from core.chains import ComboQuote
from core.marketdata import ChainSnapshot
from core.models import IntentAction, IntentStatus, OrderIntent, OrderStatus, Side, SignalKind
from core.orders import WalkRules
from core.spreads import bull_call_debit, iron_condor
from tasks.backtest_market import intrinsic_value
from tasks.execution import execute_intent
from tests.builders import c, intent

DAY = date(2026, 11, 27)  # an early close (13:00): the market is open at 10:00
T0 = datetime(2026, 11, 27, 10, 0, tzinfo=NY)
SPREAD = bull_call_debit(c(590), c(592))
QUOTE = ComboQuote(bid=Decimal("0.90"), ask=Decimal("1.20"))
Legs = dict[tuple[float, bool], tuple[float, float]]
LEGS: Legs = {(590.0, True): (2.00, 2.20), (592.0, True): (1.00, 1.10)}


class FakeMarket:
    """The chain of ``legs(at)`` for SPY at any time (only ``chain`` is needed by a broker)."""

    def __init__(self, legs: Callable[[datetime], Legs] = lambda _at: LEGS) -> None:
        self.legs = legs

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        if underlying != "SPY":
            raise MarketDataError(f"no {underlying}")
        quotes = self.legs(at)
        keys = sorted(quotes)
        return ChainSnapshot(
            underlying,
            expiry,
            at,
            591.0,
            np.array([k for k, _ in keys], dtype=np.float64),
            np.array([call for _, call in keys], dtype=np.bool_),
            np.array([quotes[k][0] for k in keys], dtype=np.float64),
            np.array([quotes[k][1] for k in keys], dtype=np.float64),
            np.full(len(keys), 500, dtype=np.int64),
        )


def broker(market: FakeMarket | None = None, **config: object) -> BacktestBroker:
    cfg = BacktestFillConfig(**{"partial_fill_probability": 0.0, **config})  # type: ignore[arg-type]
    return BacktestBroker(market or FakeMarket(), SimClock(T0), cfg)


def buy(limit: str, qty: int = 1, signal: str = "sig-1", worst: str = "1.20") -> OrderIntent:
    return intent(SPREAD, qty=qty, limit=limit, worst=worst, signal_id=signal)


def test_broker_when_built_then_implements_the_broker_port() -> None:
    assert isinstance(broker(), Broker)


@pytest.mark.parametrize(
    ("side", "limit", "expected"),
    [
        (Side.BUY, "1.05", None),  # at mid: never fills
        (Side.BUY, "1.12", None),  # below mid + 0.5 x half-spread (1.125)
        (Side.BUY, "1.13", "1.15"),  # inside: the limit + 0.02 slippage
        (Side.BUY, "1.25", "1.22"),  # marketable: the natural 1.20 + 0.02
        (Side.SELL, "1.05", None),
        (Side.SELL, "0.98", None),  # above mid - 0.5 x half-spread (0.975)
        (Side.SELL, "0.97", "0.95"),
        (Side.SELL, "0.85", "0.88"),  # marketable: the natural 0.90 - 0.02
    ],
)
def test_fill_price_when_limit_vs_threshold_then_fills_only_past_the_fraction_with_slippage(
    side: Side, limit: str, expected: str | None
) -> None:
    got = fill_price(side, Decimal(limit), QUOTE, SPREAD, BacktestFillConfig())

    assert got == (None if expected is None else Decimal(expected))


def test_fill_price_when_fraction_is_stricter_then_the_threshold_moves_toward_natural() -> None:
    strict = BacktestFillConfig(fill_fraction=Decimal("0.9"))  # buy threshold 1.05 + 0.135

    assert fill_price(Side.BUY, Decimal("1.18"), QUOTE, SPREAD, strict) is None
    assert fill_price(Side.BUY, Decimal("1.19"), QUOTE, SPREAD, strict) == Decimal("1.21")


def test_fill_price_when_any_limit_then_never_better_than_mid_nor_than_paper(
    tmp_path: Path,
) -> None:
    paper = PaperBroker(FakeMarket(), SimClock(T0), f"sqlite:///{tmp_path / 'paper.db'}")
    mid = (QUOTE.bid + QUOTE.ask) / 2
    try:
        for cents in range(80, 131):
            limit = Decimal(cents) / 100
            for side in (Side.BUY, Side.SELL):
                ours = fill_price(side, limit, QUOTE, SPREAD, BacktestFillConfig())
                theirs = paper._fill_price(side, limit, QUOTE)
                if ours is None:
                    continue
                assert theirs is not None, f"{side} {limit}: we fill where paper does not"
                if side is Side.BUY:
                    assert ours > mid
                    assert ours >= theirs
                else:
                    assert ours < mid
                    assert ours <= theirs
    finally:
        paper.dispose()


def test_fill_config_when_looser_than_paper_then_refused() -> None:
    with pytest.raises(ValueError, match="at least as strict"):
        BacktestFillConfig(fill_fraction=Decimal("0.4"))
    with pytest.raises(ValueError, match="slippage"):
        BacktestFillConfig(slippage_per_leg=Decimal("-0.01"))
    with pytest.raises(ValueError, match="commission"):
        BacktestFillConfig(commission_per_contract=Decimal("0.50"))
    with pytest.raises(ValueError, match="partial_fill_probability"):
        BacktestFillConfig(partial_fill_probability=1.5)


def test_submit_when_fillable_then_filled_with_commission_per_contract_per_leg() -> None:
    b = broker()

    order = b.submit(buy("1.13", qty=3))

    assert order.status is OrderStatus.FILLED
    assert order.avg_fill_price == Decimal("1.15")
    (fill,) = b.executions(T0 - timedelta(days=1))
    assert fill.quantity == 3
    assert fill.commission == Decimal("0.65") * 2 * 3  # 2 legs x 3 combos
    assert {(p.contract.strike, p.quantity) for p in b.positions()} == {
        (Decimal("590"), 3),
        (Decimal("592"), -3),
    }


def test_submit_when_same_client_order_id_twice_then_one_order() -> None:
    b = broker()
    first = b.submit(buy("1.05"))

    second = b.submit(buy("1.05"))

    assert second.broker_order_id == first.broker_order_id
    assert len(b.open_orders()) == 1


def test_submit_when_bad_price_or_unknown_contract_or_closed_market_then_rejected() -> None:
    b = broker()
    with pytest.raises(BrokerError, match=r"0\.01 tick"):
        b.submit(buy("1.055", worst="1.20"))
    with pytest.raises(BrokerError, match="exceeds the structure width"):
        b.submit(buy("2.50", worst="2.60", signal="wide"))
    other = intent(bull_call_debit(c(590, und="QQQ"), c(592, und="QQQ")), signal_id="qqq")
    with pytest.raises(BrokerError, match="unknown contract"):
        b.submit(other)
    b.clock.sleep_until(datetime(2026, 11, 27, 13, 30, tzinfo=NY))  # after the early close
    with pytest.raises(BrokerError, match="market closed"):
        b.submit(buy("1.13", signal="late"))


def test_execute_intent_when_walk_reaches_the_fraction_then_fills_one_step_later_than_mid() -> None:
    b = broker()
    store = TradeStore("sqlite:///:memory:")
    store.migrate()
    it = buy("1.05", qty=2)  # walk 1.05, 1.09, 1.12, 1.16, 1.20

    result = execute_intent(it, b, store, b.clock, WalkRules(), SignalKind.MOMENTUM)

    assert result.status is IntentStatus.FILLED
    assert result.fill_price == Decimal("1.18")  # the first fillable step 1.16 + 0.02
    assert b.clock.now() == T0 + timedelta(seconds=30)  # three 10 s steps
    assert store.position(it.client_order_id).entry_price == Decimal("1.18")


def test_execute_intent_when_quote_runs_away_then_walk_ends_unfilled_and_cancelled() -> None:
    def away(at: datetime) -> Legs:  # the 590 call's offer rises 0.10 every 10 s
        step = int((at - T0).total_seconds() // 10)
        return {(590.0, True): (2.00, 2.20 + 0.10 * step), (592.0, True): (1.00, 1.10)}

    b = broker(FakeMarket(away))
    store = TradeStore("sqlite:///:memory:")
    store.migrate()
    it = buy("1.05", qty=2)

    result = execute_intent(it, b, store, b.clock, WalkRules(), SignalKind.MOMENTUM)

    assert result.status is IntentStatus.CANCELLED
    assert result.filled_quantity == 0
    assert b.find(it.client_order_id).status is OrderStatus.CANCELLED
    assert store.positions() == []


def test_execute_intent_when_partial_fills_then_position_holds_what_filled_and_rest_cancelled() -> (
    None
):
    b = broker(partial_fill_probability=1.0, seed=3)
    store = TradeStore("sqlite:///:memory:")
    store.migrate()
    it = buy("1.05", qty=5)

    result = execute_intent(it, b, store, b.clock, WalkRules(), SignalKind.MOMENTUM)

    assert result.status is IntentStatus.CANCELLED
    assert 1 <= result.filled_quantity < 5
    assert result.reason.startswith("partially filled")
    pos = store.position(it.client_order_id)
    assert pos.quantity == result.filled_quantity
    fills = b.executions(T0 - timedelta(days=1))
    assert sum(f.quantity for f in fills) == result.filled_quantity
    assert all(f.commission == Decimal("1.30") * f.quantity for f in fills)


def test_execute_intent_when_one_contract_and_partial_certain_then_no_fill() -> None:
    b = broker(partial_fill_probability=1.0)
    store = TradeStore("sqlite:///:memory:")
    store.migrate()

    result = execute_intent(buy("1.05"), b, store, b.clock, WalkRules(), SignalKind.MOMENTUM)

    assert result.status is IntentStatus.CANCELLED
    assert result.filled_quantity == 0


def test_partial_fills_when_same_seed_then_identical_and_other_seed_differs() -> None:
    def run(seed: int) -> list[tuple[str, int, Decimal]]:
        b = broker(partial_fill_probability=0.5, seed=seed)
        for i in range(40):
            b.submit(buy("1.13", qty=10, signal=f"s{i}"))
        return [(f.client_order_id, f.quantity, f.price) for f in b.executions(T0)]

    assert run(11) == run(11)
    assert run(11) != run(12)


@pytest.mark.parametrize(
    ("spot", "expected"),
    [(580.0, "0"), (591.5, "1.5"), (600.0, "2")],
)
def test_intrinsic_value_when_call_debit_at_expiry_then_capped_payoff(
    spot: float, expected: str
) -> None:
    assert intrinsic_value(SPREAD, spot) == Decimal(expected)


@pytest.mark.parametrize(
    ("spot", "expected"),
    [(590.0, "0"), (597.0, "-2"), (570.0, "-5"), (582.25, "-2.75")],
)
def test_intrinsic_value_when_iron_condor_at_expiry_then_minus_the_breached_side(
    spot: float, expected: str
) -> None:
    condor = iron_condor(c(580, "P"), c(585, "P"), c(595), c(600))

    assert intrinsic_value(condor, spot) == Decimal(expected)


def test_settle_when_position_left_open_then_sold_at_value_without_commission_and_flat() -> None:
    b = broker()
    b.submit(buy("1.13", qty=3))  # 3 x 1.15, commission 3.90
    close = intent(
        SPREAD,
        qty=3,
        limit="1.5",
        worst="1.5",
        max_loss="0",
        signal_id="settle:x",
        action=IntentAction.CLOSE,
    )

    fill = b.settle(close, datetime(2026, 11, 27, 13, 0, tzinfo=NY))

    assert fill.commission == 0
    assert b.positions() == []
    assert b.find(close.client_order_id).status is OrderStatus.FILLED
    expected = Decimal("100000") - Decimal("345") - Decimal("3.90") + Decimal("450")
    assert b.account().equity == expected


def _from_scratch(b: BacktestBroker, since: datetime) -> tuple[object, ...]:
    """The broker's views recomputed over every execution and order of the run (what its
    running book must equal: positions in first-execution order, cash, fills since, working)."""
    net: dict[object, int] = {}
    refs: dict[object, list[str]] = {}
    cash = Decimal("0")
    for ex in b._executions:
        sign = -1 if ex.side is Side.BUY else 1
        cash += sign * ex.fill.price * ex.fill.quantity * ex.spread.multiplier - ex.fill.commission
        for leg in ex.spread.legs:
            qty = (1 if ex.side is Side.BUY else -1) * leg.side.sign * leg.ratio * ex.fill.quantity
            net[leg.contract] = net.get(leg.contract, 0) + qty
            refs.setdefault(leg.contract, []).append(ex.fill.client_order_id)
    positions = [(c, q, tuple(dict.fromkeys(refs[c]))) for c, q in net.items() if q != 0]
    fills = [ex.fill for ex in b._executions if ex.fill.at >= since]
    working = [o.client_order_id for o in b._orders.values() if o.status is OrderStatus.WORKING]
    return positions, Decimal("100000") + cash, fills, working


def test_book_when_many_orders_fill_partly_cancel_and_settle_then_views_match_a_full_recount() -> (
    None
):
    # the broker keeps its positions, cash, fill index and working orders as they change; a
    # recount over the whole run after every step must give the same answers
    def moving(at: datetime) -> Legs:  # quotes that drift with the clock
        step = int((at - T0).total_seconds() // 60) % 5
        return {
            (590.0, True): (2.00 + 0.01 * step, 2.20),
            (592.0, True): (1.00, 1.10 - 0.01 * step),
        }

    b = broker(FakeMarket(moving), partial_fill_probability=0.5, seed=3)
    for i in range(24):
        at = b.clock.now()
        if i % 3 == 2:
            it = intent(SPREAD, qty=1 + i % 4, limit="0.95", worst="0.90", signal_id=f"s{i}",
                        action=IntentAction.CLOSE)  # fmt: skip
        else:
            it = buy("1.15" if i % 2 else "1.05", qty=1 + i % 5, signal=f"b{i}")
        b.submit(it)
        if i % 4 == 3:
            b.cancel(it.client_order_id)
        b.clock.sleep_until(at + timedelta(minutes=1))
        if i % 5 == 4:
            b.modify(it.client_order_id, Decimal("1.20"))
        since = T0 + timedelta(minutes=i // 2)
        got = [(p.contract, p.quantity, p.order_refs) for p in b.positions()]  # (sweeps first)
        positions, equity, fills, working = _from_scratch(b, since)
        assert got == positions
        assert b.account().equity == equity
        assert b.executions(since) == fills
        assert [o.client_order_id for o in b.open_orders()] == working
    assert len(b._executions) > 10 and any(q < 0 for _, q, _ in positions)
    settle = intent(SPREAD, qty=1, limit="1.5", worst="1.5", max_loss="0", signal_id="settle:z",
                    action=IntentAction.CLOSE)  # fmt: skip
    b.settle(settle, b.clock.now())
    got = [(p.contract, p.quantity, p.order_refs) for p in b.positions()]
    positions, equity, fills, _ = _from_scratch(b, T0)
    assert got == positions
    assert b.account().equity == equity and b.executions(T0) == fills
