"""PaperBroker against the real seeded SimulatedMarket, a SimClock and a tmp_path SQLite file.

Checks the documented fill model of ``adapters/paper.py``: combo orders fill whole or not at all,
a buy fills inside the spread once its limit reaches mid + ``inside_fill_fraction`` x (ask - mid)
and at min(limit, natural + slippage) once marketable (sells mirror it), never better than the
live quote allows; commissions per contract per leg; rejects with reasons; idempotent submits;
state that survives a new broker instance on the same database.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from adapters.clock import SimClock
from adapters.paper import FILLS, ORDERS, PaperBroker, PaperConfig
from adapters.ports import BrokerError
from adapters.simulator import SimulatedMarket
from core.calendar import NY
from core.chains import ComboQuote, combo_quote
from core.marketdata import ChainSnapshot, strike_decimal
from core.models import (
    IntentAction,
    OptionContract,
    OrderIntent,
    OrderStatus,
    Right,
    Side,
    Spread,
    SystemName,
    client_order_id,
)
from core.orders import walk_prices
from core.spreads import (
    bear_call_credit,
    bear_put_debit,
    bull_call_debit,
    bull_put_credit,
    iron_condor,
    width,
)

SEED = 7
DAY = date(2026, 11, 27)  # early close 13:00
REGULAR_DAY = date(2026, 12, 1)
HOLIDAY = date(2026, 11, 26)  # Thanksgiving
AT = datetime(2026, 11, 27, 10, 30, tzinfo=NY)
SMART = SystemName.SMART0DTE
FRACTION = PaperConfig().inside_fill_fraction
SLIPPAGE = PaperConfig().slippage
COMMISSION = PaperConfig().commission_per_contract


# ---- helpers ------------------------------------------------------------------------------------


def ny(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=NY)


def strike_ladder(snap: ChainSnapshot) -> list[float]:
    return sorted({float(k) for k in snap.strikes})


def atm_position(snap: ChainSnapshot) -> int:
    ladder = strike_ladder(snap)
    return int(np.argmin(np.abs(np.asarray(ladder) - snap.spot)))


def listed(snap: ChainSnapshot, steps_from_atm: int, right: Right) -> OptionContract:
    """The listed contract ``steps_from_atm`` strikes away from the strike nearest spot."""
    ladder = strike_ladder(snap)
    strike = ladder[atm_position(snap) + steps_from_atm]
    wanted = OptionContract(snap.underlying, snap.expiry, strike_decimal(strike), right)
    row = snap.index_of(wanted)
    assert row is not None, f"{wanted.symbol} should be listed"
    return snap.contract(row)


def call_debit(snap: ChainSnapshot, offset: int = 0) -> Spread:
    return bull_call_debit(listed(snap, offset, Right.CALL), listed(snap, offset + 1, Right.CALL))


def put_debit(snap: ChainSnapshot, offset: int = 0) -> Spread:
    return bear_put_debit(listed(snap, offset, Right.PUT), listed(snap, offset - 1, Right.PUT))


def condor(snap: ChainSnapshot, inner: int = 3, wing: int = 3) -> Spread:
    return iron_condor(
        listed(snap, -inner - wing, Right.PUT),
        listed(snap, -inner, Right.PUT),
        listed(snap, inner, Right.CALL),
        listed(snap, inner + wing, Right.CALL),
    )


def live_quote(market: SimulatedMarket, spread: Spread, at: datetime) -> ComboQuote:
    """The combo quote straight from the market at exactly ``at`` (no broker cache involved)."""
    snap = market.chain(spread.underlying, spread.expiry, at)
    return combo_quote({(spread.underlying, spread.expiry): snap}, spread)


def exact_mid(q: ComboQuote) -> Decimal:
    return (q.bid + q.ask) / 2


def buy_threshold(q: ComboQuote) -> Decimal:
    """Lowest buy limit the documented model fills inside the spread."""
    mid = exact_mid(q)
    return mid + FRACTION * (q.ask - mid)


def sell_threshold(q: ComboQuote) -> Decimal:
    mid = exact_mid(q)
    return mid - FRACTION * (mid - q.bid)


def make_intent(
    spread: Spread,
    limit: Decimal | str,
    *,
    qty: int = 1,
    side: Side = Side.BUY,
    signal_id: str = "sig-1",
    at: datetime = AT,
) -> OrderIntent:
    """An intent whose starting limit is ``limit`` (and whose walk bound is the same price)."""
    price = Decimal(limit)
    action = IntentAction.OPEN if side is Side.BUY else IntentAction.CLOSE
    return OrderIntent(
        client_order_id=client_order_id(SMART, signal_id, spread, action),
        system=SMART,
        signal_id=signal_id,
        spread=spread,
        action=action,
        quantity=qty,
        limit_price=price,
        worst_price=price,
        max_loss=Decimal("0"),
        created_at=at,
    )


def row_counts(url: str, client_order_id: str | None = None) -> tuple[int, int]:
    """(order rows, fill rows) in the paper broker's own tables, optionally for one ref."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            orders = sa.select(sa.func.count()).select_from(ORDERS)
            fills = sa.select(sa.func.count()).select_from(FILLS)
            if client_order_id is not None:
                orders = orders.where(ORDERS.c.client_order_id == client_order_id)
                fills = fills.where(FILLS.c.client_order_id == client_order_id)
            return int(conn.execute(orders).scalar_one()), int(conn.execute(fills).scalar_one())
    finally:
        engine.dispose()


def net_legs(spread: Spread, qty: int) -> dict[OptionContract, int]:
    return {leg.contract: leg.side.sign * leg.ratio * qty for leg in spread.legs}


# ---- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def market() -> SimulatedMarket:
    return SimulatedMarket(SEED)


@pytest.fixture(scope="module")
def snap(market: SimulatedMarket) -> ChainSnapshot:
    return market.chain("SPY", DAY, AT)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(AT)


@pytest.fixture
def paper_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'paper' / 'paper.db'}"


@pytest.fixture
def broker(market: SimulatedMarket, clock: SimClock, paper_url: str) -> Iterator[PaperBroker]:
    b = PaperBroker(market, clock, paper_url)
    try:
        yield b
    finally:
        b.dispose()


# ---- 1. atomic combo fills ----------------------------------------------------------------------


@pytest.mark.parametrize(("structure", "qty"), [("call_debit", 10), ("iron_condor", 3)])
def test_submit_combo_when_below_threshold_or_marketable_then_fills_whole_or_not_at_all(
    broker: PaperBroker,
    market: SimulatedMarket,
    paper_url: str,
    snap: ChainSnapshot,
    structure: str,
    qty: int,
) -> None:
    spread = call_debit(snap) if structure == "call_debit" else condor(snap)
    q = live_quote(market, spread, AT)
    assert q.mid < buy_threshold(q) <= q.ask

    working = broker.submit(make_intent(spread, q.mid, qty=qty, signal_id="below"))
    assert working.status is OrderStatus.WORKING
    assert working.filled_quantity == 0
    assert working.avg_fill_price is None
    assert broker.executions(AT - timedelta(days=1)) == []
    assert broker.positions() == []

    filled = broker.submit(make_intent(spread, q.ask, qty=qty, signal_id="natural"))
    assert filled.status is OrderStatus.FILLED
    assert filled.filled_quantity == filled.quantity == qty
    fills = broker.executions(AT - timedelta(days=1))
    assert len(fills) == 1  # one fill for the whole combo, all legs at once
    assert fills[0].client_order_id == filled.client_order_id
    assert fills[0].quantity == qty
    assert fills[0].price == filled.avg_fill_price
    held = {p.contract: p.quantity for p in broker.positions()}
    assert held == net_legs(spread, qty)  # every leg, full size: never a partial leg
    assert all(p.order_refs == (filled.client_order_id,) for p in broker.positions())

    still = broker.find(working.client_order_id)
    assert still is not None
    assert still.status is OrderStatus.WORKING
    assert still.filled_quantity == 0
    assert row_counts(paper_url, working.client_order_id) == (1, 0)


# ---- 2. walking limit ---------------------------------------------------------------------------


@pytest.mark.parametrize("structure", ["call_debit", "iron_condor"])
def test_modify_buy_when_walking_toward_natural_then_fills_at_first_limit_past_threshold(
    broker: PaperBroker,
    market: SimulatedMarket,
    clock: SimClock,
    snap: ChainSnapshot,
    structure: str,
) -> None:
    spread = call_debit(snap) if structure == "call_debit" else condor(snap)
    q = live_quote(market, spread, AT)
    prices = walk_prices(q.mid, q.ask, 4)
    assert prices[0] < buy_threshold(q), "the walk must start below the fill threshold"

    order = broker.submit(make_intent(spread, prices[0], qty=2))
    assert order.status is OrderStatus.WORKING
    cid = order.client_order_id
    inside_steps = 0
    for step, price in enumerate(prices[1:], start=1):
        clock.sleep_until(clock.now() + timedelta(seconds=10))  # 10:30:10 .. 10:30:40
        now_q = live_quote(market, spread, clock.now())  # the quote at this very step
        order = broker.modify(cid, price)
        assert order.limit_price == price
        if price < buy_threshold(now_q):
            assert order.status is OrderStatus.WORKING, f"filled early at step {step} ({price})"
            inside_steps += 1
            continue
        assert order.status is OrderStatus.FILLED, f"step {step} ({price}) should fill: {now_q}"
        expected = price if price < now_q.ask else min(price, now_q.ask + SLIPPAGE)
        assert order.avg_fill_price == expected
        assert exact_mid(now_q) <= order.avg_fill_price <= price
        break
    else:
        pytest.fail("the walk never filled")
    assert inside_steps >= 1  # at least one modify stayed working before the fill
    assert order.avg_fill_price < q.ask  # filled inside the spread, before the natural
    assert [f.price for f in broker.executions(AT)] == [order.avg_fill_price]
    # once filled, a further modify changes nothing
    after = broker.modify(cid, prices[-1])
    assert after.status is OrderStatus.FILLED
    assert after.avg_fill_price == order.avg_fill_price
    assert after.limit_price == order.limit_price


@pytest.mark.parametrize(
    ("side", "beyond", "expected_offset"),
    [
        (Side.BUY, "0.00", "0.00"),  # at the natural: fills at the natural
        (Side.BUY, "0.05", "0.01"),  # past it: natural + slippage, not the limit
        (Side.SELL, "0.00", "0.00"),
        (Side.SELL, "0.05", "-0.01"),
    ],
)
def test_submit_when_limit_marketable_then_fills_at_min_of_limit_and_natural_plus_slippage(
    broker: PaperBroker,
    market: SimulatedMarket,
    snap: ChainSnapshot,
    side: Side,
    beyond: str,
    expected_offset: str,
) -> None:
    spread = call_debit(snap)
    q = live_quote(market, spread, AT)
    natural = q.ask if side is Side.BUY else q.bid
    limit = natural + side.sign * Decimal(beyond)
    order = broker.submit(make_intent(spread, limit, side=side))
    assert order.status is OrderStatus.FILLED
    assert order.avg_fill_price == natural + Decimal(expected_offset)
    if side is Side.BUY:
        assert exact_mid(q) < order.avg_fill_price <= limit
    else:
        assert limit <= order.avg_fill_price < exact_mid(q)


# ---- 3. never better than the quote allows --------------------------------------------------


def test_fills_when_random_limits_and_times_then_never_better_than_live_quote(
    market: SimulatedMarket, paper_url: str
) -> None:
    rng = np.random.default_rng(20261127)
    base_spy = market.chain("SPY", DAY, AT)
    base_qqq = market.chain("QQQ", DAY, AT)
    structures = [
        call_debit(base_spy),
        put_debit(base_spy, 1),
        condor(base_spy),
        bull_put_credit(listed(base_spy, -2, Right.PUT), listed(base_spy, -4, Right.PUT)),
        bear_call_credit(listed(base_qqq, 1, Right.CALL), listed(base_qqq, 3, Right.CALL)),
        call_debit(base_qqq, -2),
    ]
    n = 160
    start = ny(DAY, 9, 45)
    span = int((ny(DAY, 12, 55) - start).total_seconds())
    times = sorted(start + timedelta(seconds=int(s)) for s in rng.integers(0, span, n))
    clock = SimClock(start)
    broker = PaperBroker(market, clock, paper_url)
    limits: dict[str, tuple[Side, Decimal, Spread]] = {}
    try:
        for k, at in enumerate(times):
            clock.sleep_until(at)
            spread = structures[int(rng.integers(len(structures)))]
            side = Side.BUY if rng.random() < 0.5 else Side.SELL
            q = live_quote(market, spread, at)
            lo, hi = q.bid - Decimal("0.05"), q.ask + Decimal("0.05")
            cents = int(rng.integers(int(lo * 100), int(hi * 100) + 1))
            bound = width(spread)
            limit = max(-bound, min(bound, Decimal(cents) / 100))
            order = broker.submit(make_intent(spread, limit, side=side, signal_id=f"r{k}", at=at))
            limits[order.client_order_id] = (side, limit, spread)
            if k % 3 == 0:
                broker.open_orders()  # re-evaluates every working order at this instant
        fills = broker.executions(start)
        working = broker.open_orders()
    finally:
        broker.dispose()

    by_side = {Side.BUY: 0, Side.SELL: 0}
    for fill in fills:
        side, limit, spread = limits[fill.client_order_id]
        q = live_quote(market, spread, fill.at)
        mid = exact_mid(q)
        by_side[side] += 1
        where = f"{fill.client_order_id} {spread.describe()} at {fill.at:%H:%M:%S} quote {q}"
        if side is Side.BUY:
            assert mid <= fill.price <= limit, f"buy @ {fill.price} limit {limit}: {where}"
        else:
            assert limit <= fill.price <= mid, f"sell @ {fill.price} limit {limit}: {where}"
    # the loop exercised both sides and both outcomes
    assert by_side[Side.BUY] >= 10
    assert by_side[Side.SELL] >= 10
    assert len(working) >= 10
    assert len(fills) + len(working) == n


# ---- 4. commissions -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("structure", "qty", "per_contract", "expected"),
    [
        ("call_debit", 10, None, "13.00"),
        ("iron_condor", 3, None, "7.80"),
        ("call_debit", 10, "1.00", "20.00"),
        ("iron_condor", 3, "0.50", "6.00"),
    ],
)
def test_fill_when_quantity_and_legs_then_commission_per_contract_per_leg(
    market: SimulatedMarket,
    clock: SimClock,
    paper_url: str,
    snap: ChainSnapshot,
    structure: str,
    qty: int,
    per_contract: str | None,
    expected: str,
) -> None:
    config = (
        PaperConfig()
        if per_contract is None
        else PaperConfig(commission_per_contract=Decimal(per_contract))
    )
    broker = PaperBroker(market, clock, paper_url, config)
    try:
        spread = call_debit(snap) if structure == "call_debit" else condor(snap)
        q = live_quote(market, spread, AT)
        order = broker.submit(make_intent(spread, q.ask, qty=qty))
        assert order.status is OrderStatus.FILLED
        (fill,) = broker.executions(AT)
        assert fill.commission == Decimal(expected)
        equity = broker.account().equity
        assert equity == config.starting_equity - fill.price * qty * 100 - Decimal(expected)
    finally:
        broker.dispose()


# ---- 5. rejects with reasons --------------------------------------------------------------------


@pytest.mark.parametrize(
    "when", [ny(DAY, 8, 0), ny(DAY, 13, 0), ny(HOLIDAY, 10, 30), ny(date(2026, 11, 28), 10, 30)]
)
def test_submit_when_market_closed_then_rejected_market_closed(
    market: SimulatedMarket, paper_url: str, snap: ChainSnapshot, when: datetime
) -> None:
    broker = PaperBroker(market, SimClock(when), paper_url)
    try:
        intent = make_intent(call_debit(snap), "0.40", at=when)
        with pytest.raises(BrokerError) as err:
            broker.submit(intent)
        assert err.value.reason.startswith("market closed"), err.value.reason
        assert broker.find(intent.client_order_id) is None
        assert row_counts(paper_url) == (0, 0)
    finally:
        broker.dispose()


def test_submit_when_leg_not_listed_then_rejected_unknown_contract(
    broker: PaperBroker, paper_url: str, snap: ChainSnapshot
) -> None:
    listed_call = listed(snap, 0, Right.CALL)
    off_grid = OptionContract("SPY", DAY, listed_call.strike + Decimal("0.5"), Right.CALL)
    far_away = OptionContract("SPY", DAY, listed_call.strike + Decimal("500"), Right.CALL)
    no_expiry = OptionContract("SPY", date(2026, 11, 28), listed_call.strike, Right.CALL)
    no_expiry_short = OptionContract("SPY", date(2026, 11, 28), listed_call.strike + 1, Right.CALL)
    for spread in (
        bull_call_debit(listed_call, off_grid),
        bull_call_debit(listed_call, far_away),
        bull_call_debit(no_expiry, no_expiry_short),
    ):
        with pytest.raises(BrokerError) as err:
            broker.submit(make_intent(spread, "0.10", signal_id=spread.leg_key()))
        assert err.value.reason.startswith("unknown contract"), err.value.reason
    assert row_counts(paper_url) == (0, 0)


@pytest.mark.parametrize(
    ("structure", "limit"),
    [
        ("call_debit", "0.405"),  # half a tick
        ("call_debit", "0.4001"),
        ("call_debit", "1.01"),  # |limit| above the $1 width
        ("call_debit", "-1.01"),
        ("iron_condor", "-3.01"),  # above the widest wing ($3)
    ],
)
def test_submit_when_limit_off_tick_or_beyond_width_then_rejected_bad_price(
    broker: PaperBroker, paper_url: str, snap: ChainSnapshot, structure: str, limit: str
) -> None:
    spread = call_debit(snap) if structure == "call_debit" else condor(snap)
    assert width(spread) in (Decimal(1), Decimal(3))
    with pytest.raises(BrokerError) as err:
        broker.submit(make_intent(spread, limit))
    assert err.value.reason.startswith("bad price"), err.value.reason
    assert row_counts(paper_url) == (0, 0)


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "0.005", "1.50"])
def test_modify_when_limit_not_a_valid_price_then_rejected_bad_price_and_order_unchanged(
    broker: PaperBroker, market: SimulatedMarket, snap: ChainSnapshot, bad: str
) -> None:
    spread = call_debit(snap)
    q = live_quote(market, spread, AT)
    order = broker.submit(make_intent(spread, q.bid))
    assert order.status is OrderStatus.WORKING
    with pytest.raises(BrokerError) as err:
        broker.modify(order.client_order_id, Decimal(bad))
    assert err.value.reason.startswith("bad price"), err.value.reason
    after = broker.find(order.client_order_id)
    assert after is not None
    assert after.status is OrderStatus.WORKING
    assert after.limit_price == q.bid


def test_submit_when_limit_is_nan_then_rejected_bad_price(
    broker: PaperBroker, paper_url: str, snap: ChainSnapshot
) -> None:
    # OrderIntent cannot even be built with a NaN limit (its ordering check raises), so an intent
    # from elsewhere (deserialised, hand-built) is simulated by bypassing __post_init__.
    intent = make_intent(call_debit(snap), "0.40")
    object.__setattr__(intent, "limit_price", Decimal("NaN"))
    with pytest.raises(BrokerError) as err:
        broker.submit(intent)
    assert err.value.reason.startswith("bad price"), err.value.reason
    assert row_counts(paper_url) == (0, 0)


def test_order_intent_when_quantity_zero_then_value_error(snap: ChainSnapshot) -> None:
    with pytest.raises(ValueError, match="quantity"):
        make_intent(call_debit(snap), "0.40", qty=0)


def test_modify_or_cancel_when_ref_unknown_then_broker_error(broker: PaperBroker) -> None:
    with pytest.raises(BrokerError, match="no order"):
        broker.modify("nope", Decimal("0.10"))
    with pytest.raises(BrokerError, match="no order"):
        broker.cancel("nope")
    assert broker.find("nope") is None


# ---- 6. idempotent submit -----------------------------------------------------------------------


@pytest.mark.parametrize("marketable", [True, False])
def test_submit_when_same_intent_twice_then_same_order_and_one_row(
    broker: PaperBroker,
    market: SimulatedMarket,
    clock: SimClock,
    paper_url: str,
    snap: ChainSnapshot,
    marketable: bool,
) -> None:
    spread = condor(snap)
    q = live_quote(market, spread, AT)
    intent = make_intent(spread, q.ask if marketable else q.mid, qty=3)
    first = broker.submit(intent)
    clock.sleep_until(AT + timedelta(seconds=5))
    second = broker.submit(intent)
    assert second.broker_order_id == first.broker_order_id
    assert second.status is first.status
    assert second.limit_price == first.limit_price
    expected_fills = 1 if marketable else 0
    assert row_counts(paper_url) == (1, expected_fills)
    # a restarted broker on the same database still finds it rather than placing a second
    again = PaperBroker(market, clock, paper_url)
    try:
        third = again.submit(intent)
    finally:
        again.dispose()
    assert third.broker_order_id == first.broker_order_id
    assert row_counts(paper_url) == (1, expected_fills)


# ---- 7. state survives a restart ----------------------------------------------------------------


def test_new_broker_instance_when_same_db_then_orders_and_net_positions_survive(
    market: SimulatedMarket, paper_url: str, snap: ChainSnapshot
) -> None:
    debit, ic, resting = call_debit(snap), condor(snap), put_debit(snap)
    first = PaperBroker(market, SimClock(AT), paper_url)
    try:
        d = first.submit(make_intent(debit, live_quote(market, debit, AT).ask, qty=10))
        c = first.submit(make_intent(ic, live_quote(market, ic, AT).ask, qty=3))
        w = first.submit(make_intent(resting, live_quote(market, resting, AT).bid, qty=1))
    finally:
        first.dispose()
    assert (d.status, c.status, w.status) == (
        OrderStatus.FILLED,
        OrderStatus.FILLED,
        OrderStatus.WORKING,
    )

    later = AT + timedelta(seconds=30)
    restarted = PaperBroker(market, SimClock(later), paper_url)
    try:
        for before in (d, c):
            found = restarted.find(before.client_order_id)
            assert found == before
        resumed = restarted.find(w.client_order_id)
        assert resumed is not None
        assert resumed.broker_order_id == w.broker_order_id
        assert resumed.status is OrderStatus.WORKING
        assert [o.client_order_id for o in restarted.open_orders()] == [w.client_order_id]
        held = {p.contract: p.quantity for p in restarted.positions()}
        expected = net_legs(debit, 10)
        for contract, qty in net_legs(ic, 3).items():
            expected[contract] = expected.get(contract, 0) + qty
        expected = {k: v for k, v in expected.items() if v != 0}
        assert held == expected
        long_call, short_call = debit.legs[0].contract, debit.legs[1].contract
        assert held[long_call] == 10
        assert held[short_call] == -10
        # the next order gets a fresh id, not a reused one
        nxt = restarted.submit(
            make_intent(
                debit,
                live_quote(market, debit, later).bid,
                qty=1,
                signal_id="after-restart",
                at=later,
            )
        )
        assert nxt.broker_order_id not in {d.broker_order_id, c.broker_order_id, w.broker_order_id}
    finally:
        restarted.dispose()


# ---- 8. cancel ----------------------------------------------------------------------------------


def test_cancel_when_working_then_cancelled_and_never_fills_later(
    broker: PaperBroker, market: SimulatedMarket, clock: SimClock, snap: ChainSnapshot
) -> None:
    spread = call_debit(snap)
    q = live_quote(market, spread, AT)
    order = broker.submit(make_intent(spread, q.mid, qty=2))
    assert order.status is OrderStatus.WORKING
    cancelled = broker.cancel(order.client_order_id)
    assert cancelled.status is OrderStatus.CANCELLED
    assert cancelled.broker_order_id == order.broker_order_id
    assert cancelled.filled_quantity == 0
    assert cancelled.reason
    # a cancelled order is not revived by a marketable modify nor by a later sweep
    clock.sleep_until(AT + timedelta(minutes=5))
    modified = broker.modify(order.client_order_id, q.ask + Decimal("0.05"))
    assert modified.status is OrderStatus.CANCELLED
    assert broker.open_orders() == []
    assert broker.executions(AT) == []
    assert broker.positions() == []


def test_cancel_when_already_filled_then_returns_filled_unchanged(
    broker: PaperBroker, market: SimulatedMarket, paper_url: str, snap: ChainSnapshot
) -> None:
    spread = condor(snap)
    q = live_quote(market, spread, AT)
    filled = broker.submit(make_intent(spread, q.ask, qty=3))
    assert filled.status is OrderStatus.FILLED
    after = broker.cancel(filled.client_order_id)
    assert after == filled
    assert row_counts(paper_url) == (1, 1)
    assert {p.contract: p.quantity for p in broker.positions()} == net_legs(spread, 3)


# ---- quote freshness (bug: quotes cached per minute) --------------------------------------------


@dataclass(frozen=True)
class StaleCase:
    spread: Spread
    first: datetime  # the broker is first asked about the chain at this instant
    later: datetime  # ... and the order arrives at this instant in the same minute
    side: Side
    limit: Decimal


def find_stale_case(market: SimulatedMarket) -> StaleCase:
    """A limit inside the fill band of the quote at ``first`` but outside it at ``later``."""
    for minute in range(15 * 60 + 30, 15 * 60 + 59):
        first = ny(REGULAR_DAY, minute // 60, minute % 60)
        later = first + timedelta(seconds=59)
        for und in ("SPY", "QQQ"):
            s0 = market.chain(und, REGULAR_DAY, first)
            for offset in range(-4, 5):
                for spread in (call_debit(s0, offset), put_debit(s0, offset)):
                    q0, q1 = live_quote(market, spread, first), live_quote(market, spread, later)
                    # inside the stale fill band, and better than the live *mid* at ``later``
                    buy = to_ceil_cent(buy_threshold(q0))
                    if buy < q0.ask and buy < exact_mid(q1):
                        return StaleCase(spread, first, later, Side.BUY, buy)
                    sell = to_floor_cent(sell_threshold(q0))
                    if q0.bid < sell and sell > exact_mid(q1):
                        return StaleCase(spread, first, later, Side.SELL, sell)
    pytest.fail("no quote in the last half hour moves within a minute: the scenario needs one")


def to_ceil_cent(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_CEILING)


def to_floor_cent(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_FLOOR)


def test_submit_when_quote_fresh_then_fill_decision_follows_live_quote(
    market: SimulatedMarket, tmp_path: Path
) -> None:
    """Baseline for the xfail below: a broker with no history decides on the live quote."""
    case = find_stale_case(market)
    fresh = PaperBroker(market, SimClock(case.later), f"sqlite:///{tmp_path / 'fresh.db'}")
    try:
        order = fresh.submit(make_intent(case.spread, case.limit, side=case.side, at=case.later))
    finally:
        fresh.dispose()
    assert order.status is OrderStatus.WORKING  # outside the live fill band: keeps working


def test_submit_when_quote_moved_within_the_minute_then_fills_against_live_quote(
    market: SimulatedMarket, tmp_path: Path
) -> None:
    case = find_stale_case(market)
    clock = SimClock(case.first)
    broker = PaperBroker(market, clock, f"sqlite:///{tmp_path / 'stale.db'}")
    try:
        # something asks the broker about this chain at the start of the minute
        early = live_quote(market, case.spread, case.first)
        resting = broker.submit(
            make_intent(case.spread, early.bid, signal_id="early", at=case.first)
        )
        assert resting.status is OrderStatus.WORKING
        clock.sleep_until(case.later)
        order = broker.submit(make_intent(case.spread, case.limit, side=case.side, at=case.later))
    finally:
        broker.dispose()
    live = live_quote(market, case.spread, case.later)
    if order.avg_fill_price is not None:  # what the bug looks like: better than the live mid
        better = (order.avg_fill_price - exact_mid(live)) * case.side.sign
        assert better >= 0, f"filled {-better} better than the live mid {exact_mid(live)}"
    assert order.status is OrderStatus.WORKING, (
        f"{case.side.value} {case.spread.describe()} @ {case.limit} filled at "
        f"{case.later:%H:%M:%S} against a stale quote; live quote {live}"
    )
