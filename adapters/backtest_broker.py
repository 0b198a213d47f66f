"""The backtest broker: the ``Broker`` port filled from quotes, never better than the paper broker.

It plays the exchange for a backtest, in memory (a backtest does not need a broker that survives a
crash, and it is the hot path: every limit of every walk is evaluated here). It has no Prefect
import and could live in ``adapters/``; it sits here because the backtest owns it.

Fill model (every rule is a field of ``BacktestFillConfig``; documented so a fill can be checked
by hand). For a combo with net quote bid B, ask A and exact mid M = (B + A) / 2 at the instant of
evaluation (``core.chains.combo_quote`` on the chain at the clock's now), with ``f`` the fill
fraction and ``s`` = ``slippage_per_leg`` x the number of contracts per unit (legs x ratio):

* BUY at limit L fills only when L >= M + f * (A - M), at min(L, A) + s (rounded up to the cent);
* SELL at limit L fills only when L <= M - f * (M - B), at max(L, B) - s (rounded down).

So a fill is never better than the mid (f >= 0) and, since ``f`` is at least the paper broker's
``inside_fill_fraction`` and the slippage applies to every fill (the paper broker charges it only
on marketable orders, and caps it at the limit), never better than the paper broker's fill of the
same order at the same instant. With slippage a fill can be up to ``s`` beyond its limit: the
backtest charges the cost of getting filled that a limit order pays in practice (queue position,
legging risk) instead of assuming the limit is always honoured to the cent.

Partial and missed fills: each time an order is evaluated at a new (instant, limit) and its limit
is fillable, a deterministic draw u in [0, 1) (``seed``, client order id, instant, limit) decides:
u >= ``partial_fill_probability`` fills everything left; otherwise only 1..left-1 contracts fill
(none when one is left) and the rest keeps working. Walks evaluate at each step, so a walk can end
partly filled or unfilled; the order path then cancels the rest, as it does with a real broker.
The draw depends only on its inputs, never on call order: a rerun fills the same way.

Commission: ``commission_per_contract`` per contract per leg (0.65 by default, as paper).
Rejections (market closed, unknown contract, bad price or quantity) mirror the paper broker.
``settle`` records the cash settlement of an expired structure (no commission).
"""

from __future__ import annotations

import bisect
import hashlib
import random
import threading
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from adapters.paper import (
    PaperConfig,
    QuoteBook,
    check_price,
    check_submission,
    contracts_per_unit,
)
from adapters.ports import BrokerError, Clock, MarketData, MarketDataError
from core.calendar import is_market_open
from core.chains import ChainError, ComboQuote
from core.models import (
    CENT,
    AccountInfo,
    BrokerOrder,
    BrokerPosition,
    Fill,
    OptionContract,
    OrderIntent,
    OrderStatus,
    Side,
    Spread,
)

PAPER = PaperConfig()


@dataclass(frozen=True, slots=True)
class BacktestFillConfig:
    """How the backtest broker fills (see the module docstring)."""

    fill_fraction: Decimal = PAPER.inside_fill_fraction  # of the half-spread, from mid to natural
    slippage_per_leg: Decimal = Decimal("0.01")  # per contract of the combo, against us
    commission_per_contract: Decimal = PAPER.commission_per_contract  # per contract per leg
    partial_fill_probability: float = 0.1  # chance a fillable evaluation fills only part
    seed: int = 0
    starting_equity: Decimal = PAPER.starting_equity
    account_id: str = "BACKTEST"

    def __post_init__(self) -> None:
        if not PAPER.inside_fill_fraction <= self.fill_fraction <= 1:
            raise ValueError(
                f"fill_fraction must be in [{PAPER.inside_fill_fraction}, 1] (at least as strict "
                f"as the paper broker's inside_fill_fraction), got {self.fill_fraction}"
            )
        if self.slippage_per_leg < 0:
            raise ValueError(f"slippage_per_leg must be >= 0, got {self.slippage_per_leg}")
        if self.commission_per_contract < PAPER.commission_per_contract:
            raise ValueError(
                f"commission_per_contract must be >= the paper broker's "
                f"{PAPER.commission_per_contract}, got {self.commission_per_contract}"
            )
        if not 0.0 <= self.partial_fill_probability <= 1.0:
            raise ValueError(
                f"partial_fill_probability must be in [0, 1], got {self.partial_fill_probability}"
            )
        if self.starting_equity <= 0:
            raise ValueError("starting_equity must be positive")


@dataclass(slots=True)
class _Order:
    broker_order_id: str
    client_order_id: str
    side: Side
    spread: Spread
    quantity: int
    limit_price: Decimal
    status: OrderStatus = OrderStatus.WORKING
    filled_quantity: int = 0
    filled_value: Decimal = Decimal("0")
    reason: str = ""
    fills: int = 0
    last_evaluated: tuple[datetime, Decimal] | None = None

    def view(self) -> BrokerOrder:
        avg = None
        if self.filled_quantity:
            avg = (self.filled_value / self.filled_quantity).quantize(Decimal("0.0001"))
        return BrokerOrder(
            broker_order_id=self.broker_order_id,
            client_order_id=self.client_order_id,
            side=self.side,
            spread=self.spread,
            quantity=self.quantity,
            limit_price=self.limit_price,
            status=self.status,
            filled_quantity=self.filled_quantity,
            avg_fill_price=avg,
            reason=self.reason,
        )


@dataclass(frozen=True, slots=True)
class _Execution:
    fill: Fill
    side: Side
    spread: Spread


def draw(seed: int, client_order_id: str, at: datetime, limit: Decimal) -> random.Random:
    """A generator seeded by (seed, order, instant, limit) only: the same inputs draw the same."""
    key = f"{seed}|{client_order_id}|{at.isoformat()}|{limit}".encode()
    return random.Random(int.from_bytes(hashlib.sha256(key).digest()[:8], "big"))


def fill_price(
    side: Side, limit: Decimal, quote: ComboQuote, spread: Spread, cfg: BacktestFillConfig
) -> Decimal | None:
    """The price a combo order at ``limit`` fills at against ``quote``, or None (keeps working)."""
    mid = (quote.bid + quote.ask) / 2  # exact, not the cent-rounded ComboQuote.mid
    slip = cfg.slippage_per_leg * contracts_per_unit(spread)
    if side is Side.BUY:
        if limit < mid + cfg.fill_fraction * (quote.ask - mid):
            return None
        return (min(limit, quote.ask) + slip).quantize(CENT, rounding=ROUND_CEILING)
    if limit > mid - cfg.fill_fraction * (mid - quote.bid):
        return None
    return (max(limit, quote.bid) - slip).quantize(CENT, rounding=ROUND_FLOOR)


@dataclass
class BacktestBroker:
    """In-memory ``Broker`` for backtests (see the module docstring)."""

    market: MarketData
    clock: Clock
    config: BacktestFillConfig = field(default_factory=BacktestFillConfig)
    _orders: dict[str, _Order] = field(default_factory=dict)
    _executions: list[_Execution] = field(default_factory=list)
    # kept as executions and orders come, so a query costs what is open, not the whole run:
    _working: dict[str, _Order] = field(default_factory=dict)  # WORKING orders, as submitted
    _exec_at: list[datetime] = field(default_factory=list)  # each execution's time
    _in_time_order: bool = True  # _exec_at never went back (the clock only moves forward)
    _cash: Decimal = Decimal("0")  # every fill's cash flow
    _net: dict[OptionContract, int] = field(default_factory=dict)  # by first execution
    _refs: dict[OptionContract, list[str]] = field(default_factory=dict)
    _rank: dict[OptionContract, int] = field(default_factory=dict)  # order of first execution
    _nonzero: set[OptionContract] = field(default_factory=set)  # net quantity not 0
    _next_id: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _quotes: QuoteBook | None = None

    # ---- quotes -------------------------------------------------------------------------------
    def combo_quote(self, spread: Spread, now: datetime) -> ComboQuote:
        if self._quotes is None:
            self._quotes = QuoteBook(self.market)
        return self._quotes.combo_quote(spread, now)

    # ---- fill model ---------------------------------------------------------------------------
    def _evaluate(self, order: _Order, now: datetime) -> None:
        if order.status is not OrderStatus.WORKING or not is_market_open(now):
            return
        mark = (now, order.limit_price)
        if order.last_evaluated == mark:  # one chance per (instant, limit)
            return
        order.last_evaluated = mark
        try:
            quote = self.combo_quote(order.spread, now)
        except (ChainError, MarketDataError):
            return
        price = fill_price(order.side, order.limit_price, quote, order.spread, self.config)
        if price is None:
            return
        left = order.quantity - order.filled_quantity
        rng = draw(self.config.seed, order.client_order_id, now, order.limit_price)
        quantity = left
        if rng.random() < self.config.partial_fill_probability:
            quantity = 0 if left == 1 else 1 + int(rng.random() * (left - 1))
        if quantity == 0:
            return
        order.fills += 1
        commission = self.config.commission_per_contract * contracts_per_unit(order.spread)
        self._record(
            _Execution(
                Fill(
                    client_order_id=order.client_order_id,
                    broker_order_id=order.broker_order_id,
                    exec_id=f"{order.broker_order_id}-x{order.fills}",
                    quantity=quantity,
                    price=price,
                    commission=commission * quantity,
                    at=now,
                ),
                order.side,
                order.spread,
            )
        )
        order.filled_quantity += quantity
        order.filled_value += price * quantity
        if order.filled_quantity == order.quantity:
            order.status = OrderStatus.FILLED

    def _record(self, ex: _Execution) -> None:
        """Append an execution and fold it into the cash, the net positions and the time index."""
        at = ex.fill.at
        if self._exec_at and at < self._exec_at[-1]:
            self._in_time_order = False
        self._executions.append(ex)
        self._exec_at.append(at)
        combo_sign = 1 if ex.side is Side.BUY else -1  # a buy pays, a sell receives
        value = ex.fill.price * ex.fill.quantity * ex.spread.multiplier
        self._cash += -combo_sign * value - ex.fill.commission
        for leg in ex.spread.legs:
            contract = leg.contract
            if contract not in self._net:  # ranked by its first execution
                self._rank[contract] = len(self._net)
                self._net[contract] = 0
                self._refs[contract] = []
            qty = self._net[contract] + combo_sign * leg.side.sign * leg.ratio * ex.fill.quantity
            self._net[contract] = qty
            self._refs[contract].append(ex.fill.client_order_id)
            if qty:
                self._nonzero.add(contract)
            else:
                self._nonzero.discard(contract)

    def _sweep(self) -> None:
        """Evaluate every working order at now (in submission order); drop the finished."""
        now = self.clock.now()
        for cid, order in list(self._working.items()):
            self._evaluate(order, now)
            if order.status is not OrderStatus.WORKING:
                del self._working[cid]

    def _order(self, client_order_id: str) -> _Order:
        order = self._orders.get(client_order_id)
        if order is None:
            raise BrokerError(f"no order with ref {client_order_id}")
        return order

    # ---- the Broker port ----------------------------------------------------------------------
    def account(self) -> AccountInfo:
        """Cash equity: starting equity plus every fill's cash flow (open positions at cost)."""
        with self._lock:
            equity = self.config.starting_equity + self._cash
            return AccountInfo(self.config.account_id, equity=equity, buying_power=equity)

    def submit(self, intent: OrderIntent) -> BrokerOrder:
        with self._lock:
            now = self.clock.now()
            existing = self._orders.get(intent.client_order_id)
            if existing is not None:
                self._evaluate(existing, now)
                return existing.view()
            if self._quotes is None:
                self._quotes = QuoteBook(self.market)
            check_submission(intent, now, self._quotes)
            self._next_id += 1
            order = _Order(
                broker_order_id=f"BT-{self._next_id:06d}",
                client_order_id=intent.client_order_id,
                side=intent.combo_side,
                spread=intent.spread,
                quantity=intent.quantity,
                limit_price=intent.limit_price,
            )
            self._orders[intent.client_order_id] = order
            self._working[intent.client_order_id] = order
            self._evaluate(order, now)
            return order.view()

    def find(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            self._sweep()
            order = self._orders.get(client_order_id)
            return None if order is None else order.view()

    def modify(self, client_order_id: str, limit_price: Decimal) -> BrokerOrder:
        with self._lock:
            order = self._order(client_order_id)
            if order.status is not OrderStatus.WORKING:
                return order.view()
            check_price(order.spread, limit_price)
            order.limit_price = limit_price
            self._evaluate(order, self.clock.now())
            return order.view()

    def cancel(self, client_order_id: str) -> BrokerOrder:
        with self._lock:
            order = self._order(client_order_id)
            self._evaluate(order, self.clock.now())
            if order.status is OrderStatus.WORKING:
                order.status = OrderStatus.CANCELLED
                order.reason = (
                    f"cancelled by client after {order.filled_quantity}/{order.quantity} filled"
                    if order.filled_quantity
                    else "cancelled by client"
                )
            return order.view()

    def open_orders(self) -> list[BrokerOrder]:
        with self._lock:
            self._sweep()
            return [o.view() for o in self._working.values()]

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            self._sweep()
            return [
                BrokerPosition(
                    contract=c,
                    quantity=self._net[c],
                    order_refs=tuple(dict.fromkeys(self._refs[c])),
                )
                for c in sorted(self._nonzero, key=self._rank.__getitem__)
            ]

    def executions(self, since: datetime) -> list[Fill]:
        with self._lock:
            self._sweep()
            if not self._in_time_order:
                return [ex.fill for ex in self._executions if ex.fill.at >= since]
            start = bisect.bisect_left(self._exec_at, since)
            return [ex.fill for ex in self._executions[start:]]

    # ---- backtest extras ----------------------------------------------------------------------
    def settle(self, intent: OrderIntent, at: datetime) -> Fill:
        """Cash-settle an expired structure: a SELL of ``intent.quantity`` at ``intent.limit_price``
        (its intrinsic value at the underlying's close), no commission, recorded as an order
        FILLED at ``at`` so ``find`` and ``executions`` show it like any other."""
        with self._lock:
            if intent.client_order_id in self._orders:
                raise BrokerError(f"{intent.client_order_id} already exists")
            self._next_id += 1
            order = _Order(
                broker_order_id=f"BT-{self._next_id:06d}",
                client_order_id=intent.client_order_id,
                side=Side.SELL,
                spread=intent.spread,
                quantity=intent.quantity,
                limit_price=intent.limit_price,
                status=OrderStatus.FILLED,
                filled_quantity=intent.quantity,
                filled_value=intent.limit_price * intent.quantity,
                reason="cash settlement at expiry",
                fills=1,
            )
            self._orders[intent.client_order_id] = order
            fill = Fill(
                client_order_id=intent.client_order_id,
                broker_order_id=order.broker_order_id,
                exec_id=f"{order.broker_order_id}-settle",
                quantity=intent.quantity,
                price=intent.limit_price,
                commission=Decimal("0"),
                at=at,
            )
            self._record(_Execution(fill, Side.SELL, intent.spread))
            return fill

    def dispose(self) -> None:
        self._quotes = None
