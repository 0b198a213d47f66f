"""Paper broker behind the Broker port: combo orders filled whole or not at all against live quotes.

Fill model (deterministic, documented so results can be checked by hand). For a combo with net
quote bid B, ask A, mid M (``core.chains.combo_quote``):

* BUY at limit L: if L >= A the order is marketable and fills at min(L, A + slippage); else if
  L >= M + ``inside_fill_fraction`` * (A - M) a market maker takes it at L; else it keeps working.
* SELL mirrors it: if L <= B it fills at max(L, B - slippage); else if L <= M - fraction * (M - B)
  it fills at L.

So a buy never fills below the mid nor above its limit, a sell never above the mid nor below its
limit, and never better than the quote allows. Commission is charged per contract per leg.

Rejections carry a reason: market closed, unknown contract (a leg not listed now), bad price (not
finite, not on the cent tick, or beyond what the structure can be worth), bad quantity.

State (orders, fills) lives in its own database (``paper_*`` tables, default a separate SQLite
file): it plays the broker's side of the wire, so it survives a crash of the trading process
exactly as a real broker would. Orders are re-evaluated whenever the broker is asked anything.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from adapters.ports import BrokerError, Clock, MarketData, MarketDataError
from adapters.store import spread_from_json, spread_to_json
from core.calendar import NY, is_market_open
from core.chains import ChainError, ComboQuote, combo_quote
from core.marketdata import ChainSnapshot
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
    to_cents,
)
from core.spreads import width

_META = sa.MetaData()
STORED_QUANTUM = Decimal("0.0001")  # Numeric(18, 4)

ORDERS = sa.Table(
    "paper_orders",
    _META,
    sa.Column("broker_order_id", sa.String(40), primary_key=True),
    sa.Column("client_order_id", sa.String(80), nullable=False, unique=True),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("spread", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("limit_price", sa.Numeric(18, 4), nullable=False),
    sa.Column("status", sa.String(12), nullable=False),
    sa.Column("filled_quantity", sa.Integer, nullable=False, default=0),
    sa.Column("avg_fill_price", sa.Numeric(18, 4), nullable=True),
    sa.Column("reason", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.String(40), nullable=False),
)

FILLS = sa.Table(
    "paper_fills",
    _META,
    sa.Column("exec_id", sa.String(60), primary_key=True),
    sa.Column("broker_order_id", sa.String(40), nullable=False),
    sa.Column("client_order_id", sa.String(80), nullable=False),
    sa.Column("side", sa.String(4), nullable=False),
    sa.Column("spread", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("price", sa.Numeric(18, 4), nullable=False),
    sa.Column("commission", sa.Numeric(18, 4), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
)


@dataclass(frozen=True, slots=True)
class PaperConfig:
    account_id: str = "PAPER-0001"
    starting_equity: Decimal = Decimal("100000")
    commission_per_contract: Decimal = Decimal("0.65")
    slippage: Decimal = Decimal("0.01")  # adverse move past the natural for a marketable order
    inside_fill_fraction: Decimal = Decimal("0.5")  # how far from mid toward natural fills inside


def paper_url_for(ledger_url: str) -> str:
    """Default paper-broker database next to a SQLite ledger (``x.db`` -> ``x-paper.db``)."""
    if ledger_url.startswith("sqlite:///") and ledger_url.endswith(".db"):
        return ledger_url[: -len(".db")] + "-paper.db"
    return ledger_url


def contracts_per_unit(spread: Spread) -> int:
    """Contracts in one unit of the structure (legs x ratio): what commission and slippage count."""
    return sum(leg.ratio for leg in spread.legs)


def check_price(spread: Spread, limit: Decimal) -> None:
    """A limit the broker accepts: finite, on the cent tick, within the structure's width."""
    if not limit.is_finite():
        raise BrokerError(f"bad price: limit {limit} is not a number")
    if limit != limit.quantize(CENT):
        raise BrokerError(f"bad price: limit {limit} is not on the 0.01 tick")
    bound = width(spread)
    if bound > 0 and abs(limit) > bound:
        raise BrokerError(f"bad price: |limit| {abs(limit)} exceeds the structure width {bound}")


def check_submission(intent: OrderIntent, now: datetime, quotes: QuoteBook) -> None:
    """The checks a new order passes before it works (else ``BrokerError`` with the reason):
    market open, quantity, price, and every leg listed with a tradable quote now."""
    if not is_market_open(now):
        raise BrokerError(f"market closed at {now.astimezone(NY):%Y-%m-%d %H:%M:%S %Z}")
    if intent.quantity < 1:
        raise BrokerError(f"bad quantity {intent.quantity}")
    check_price(intent.spread, intent.limit_price)
    try:
        quotes.combo_quote(intent.spread, now)
    except (ChainError, MarketDataError) as exc:
        unknown = isinstance(exc, MarketDataError) or "not listed" in str(exc)
        label = "unknown contract" if unknown else "no tradable quote"
        raise BrokerError(f"{label}: {exc}") from exc


class QuoteBook:
    """Combo quotes from the market's chains, each chain fetched once per exact instant (quotes
    can move within a minute); a small cache, cleared when it grows past 64 chains."""

    def __init__(self, market: MarketData) -> None:
        self._market = market
        self._cache: dict[tuple[str, date, datetime], ChainSnapshot] = {}

    def snapshot(self, underlying: str, expiry: date, now: datetime) -> ChainSnapshot:
        key = (underlying, expiry, now)
        snap = self._cache.get(key)
        if snap is None:
            if len(self._cache) > 64:
                self._cache.clear()
            snap = self._market.chain(underlying, expiry, now)
            self._cache[key] = snap
        return snap

    def combo_quote(self, spread: Spread, now: datetime) -> ComboQuote:
        snaps = {
            (leg.contract.underlying, leg.contract.expiry): self.snapshot(
                leg.contract.underlying, leg.contract.expiry, now
            )
            for leg in spread.legs
        }
        return combo_quote(snaps, spread)


def _as_stored(price: Decimal) -> Decimal:
    """A price as the broker's Numeric(18, 4) columns give it back (the views the broker returns
    without re-reading the row it has just written)."""
    return price.quantize(STORED_QUANTUM)


class PaperBroker:
    def __init__(
        self,
        market: MarketData,
        clock: Clock,
        url: str = "sqlite:///var/paper.db",
        config: PaperConfig | None = None,
    ) -> None:
        self._market = market
        self._clock = clock
        self._cfg = config or PaperConfig()
        if url.startswith("sqlite:///"):
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        sqlite = url.startswith("sqlite")
        self._engine = sa.create_engine(url, connect_args={"timeout": 30} if sqlite else {})
        _META.create_all(self._engine)
        self._lock = threading.RLock()
        self._quotes = QuoteBook(market)

    # ---- quotes -------------------------------------------------------------------------------
    def combo_quote(self, spread: Spread, now: datetime) -> ComboQuote:
        return self._quotes.combo_quote(spread, now)

    # ---- fill model -----------------------------------------------------------------------------
    def _fill_price(self, side: Side, limit: Decimal, quote: ComboQuote) -> Decimal | None:
        mid = (quote.bid + quote.ask) / 2
        frac = self._cfg.inside_fill_fraction
        if side is Side.BUY:
            if limit >= quote.ask:
                return to_cents(min(limit, quote.ask + self._cfg.slippage))
            if limit >= mid + frac * (quote.ask - mid):
                return limit
            return None
        if limit <= quote.bid:
            return to_cents(max(limit, quote.bid - self._cfg.slippage))
        if limit <= mid - frac * (mid - quote.bid):
            return limit
        return None

    def _commission(self, spread: Spread, quantity: int) -> Decimal:
        return self._cfg.commission_per_contract * contracts_per_unit(spread) * quantity

    def _evaluate(self, conn: sa.Connection, order: BrokerOrder, now: datetime) -> BrokerOrder:
        """Fill ``order`` now if its limit is fillable against the quote; its view afterwards."""
        if order.status is not OrderStatus.WORKING or not is_market_open(now):
            return order
        try:
            quote = self.combo_quote(order.spread, now)
        except (ChainError, MarketDataError):
            return order
        price = self._fill_price(order.side, order.limit_price, quote)
        if price is None:
            return order
        commission = self._commission(order.spread, order.quantity)
        conn.execute(
            FILLS.insert().values(
                exec_id=f"{order.broker_order_id}-x1",
                broker_order_id=order.broker_order_id,
                client_order_id=order.client_order_id,
                side=order.side.value,
                spread=spread_to_json(order.spread),
                quantity=order.quantity,
                price=price,
                commission=commission,
                at=now.isoformat(),
            )
        )
        conn.execute(
            ORDERS.update()
            .where(ORDERS.c.broker_order_id == order.broker_order_id)
            .values(
                status=OrderStatus.FILLED.value,
                filled_quantity=order.quantity,
                avg_fill_price=price,
                updated_at=now.isoformat(),
            )
        )
        return replace(
            order,
            status=OrderStatus.FILLED,
            filled_quantity=order.quantity,
            avg_fill_price=_as_stored(price),
        )

    def _sweep(self) -> dict[str, BrokerOrder]:
        """Evaluate every working order now; their views afterwards by client order id."""
        now = self._clock.now()
        with self._engine.begin() as conn:
            rows = conn.execute(
                ORDERS.select().where(ORDERS.c.status == OrderStatus.WORKING.value)
            ).all()
            return {
                str(row.client_order_id): self._evaluate(conn, self._to_order(row), now)
                for row in rows
            }

    @staticmethod
    def _to_order(row: sa.Row[tuple[object, ...]]) -> BrokerOrder:
        return BrokerOrder(
            broker_order_id=str(row.broker_order_id),
            client_order_id=str(row.client_order_id),
            side=Side(row.side),
            spread=spread_from_json(str(row.spread)),
            quantity=int(str(row.quantity)),
            limit_price=Decimal(str(row.limit_price)),
            status=OrderStatus(row.status),
            filled_quantity=int(str(row.filled_quantity)),
            avg_fill_price=None if row.avg_fill_price is None else Decimal(str(row.avg_fill_price)),
            reason=str(row.reason or ""),
        )

    def _row(self, conn: sa.Connection, client_order_id: str) -> sa.Row[tuple[object, ...]] | None:
        return conn.execute(
            ORDERS.select().where(ORDERS.c.client_order_id == client_order_id)
        ).first()

    # ---- the Broker port ------------------------------------------------------------------------
    def account(self) -> AccountInfo:
        with self._engine.connect() as conn:
            fills = conn.execute(sa.select(FILLS)).all()
        cash_flow = Decimal("0")
        for f in fills:
            sign = -1 if f.side == Side.BUY.value else 1
            multiplier = spread_from_json(f.spread).multiplier
            cash_flow += sign * Decimal(f.price) * f.quantity * multiplier - Decimal(f.commission)
        equity = self._cfg.starting_equity + cash_flow
        return AccountInfo(self._cfg.account_id, equity=equity, buying_power=equity)

    def submit(self, intent: OrderIntent) -> BrokerOrder:
        with self._lock:
            now = self._clock.now()
            with self._engine.begin() as conn:
                existing = self._row(conn, intent.client_order_id)
                if existing is not None:
                    return self._evaluate(conn, self._to_order(existing), now)
            check_submission(intent, now, self._quotes)
            with self._engine.begin() as conn:
                broker_order_id = f"P-{uuid.uuid4().hex[:16]}"
                conn.execute(
                    ORDERS.insert().values(
                        broker_order_id=broker_order_id,
                        client_order_id=intent.client_order_id,
                        side=intent.combo_side.value,
                        spread=spread_to_json(intent.spread),
                        quantity=intent.quantity,
                        limit_price=intent.limit_price,
                        status=OrderStatus.WORKING.value,
                        filled_quantity=0,
                        reason="",
                        created_at=now.isoformat(),
                        updated_at=now.isoformat(),
                    )
                )
                order = BrokerOrder(
                    broker_order_id=broker_order_id,
                    client_order_id=intent.client_order_id,
                    side=intent.combo_side,
                    spread=intent.spread,
                    quantity=intent.quantity,
                    limit_price=_as_stored(intent.limit_price),
                    status=OrderStatus.WORKING,
                    filled_quantity=0,
                    avg_fill_price=None,
                    reason="",
                )
                return self._evaluate(conn, order, now)

    def find(self, client_order_id: str) -> BrokerOrder | None:
        with self._lock:
            swept = self._sweep()
            if client_order_id in swept:
                return swept[client_order_id]
            with self._engine.connect() as conn:
                row = self._row(conn, client_order_id)
            return None if row is None else self._to_order(row)

    def modify(self, client_order_id: str, limit_price: Decimal) -> BrokerOrder:
        with self._lock:
            now = self._clock.now()
            with self._engine.begin() as conn:
                row = self._row(conn, client_order_id)
                if row is None:
                    raise BrokerError(f"no order with ref {client_order_id}")
                if row.status != OrderStatus.WORKING.value:
                    return self._to_order(row)
                order = self._to_order(row)
                check_price(order.spread, limit_price)
                conn.execute(
                    ORDERS.update()
                    .where(ORDERS.c.client_order_id == client_order_id)
                    .values(limit_price=limit_price, updated_at=now.isoformat())
                )
                return self._evaluate(
                    conn, replace(order, limit_price=_as_stored(limit_price)), now
                )

    def cancel(self, client_order_id: str) -> BrokerOrder:
        with self._lock:
            now = self._clock.now()
            with self._engine.begin() as conn:
                row = self._row(conn, client_order_id)
                if row is None:
                    raise BrokerError(f"no order with ref {client_order_id}")
                order = self._evaluate(conn, self._to_order(row), now)
                if order.status is OrderStatus.WORKING:
                    conn.execute(
                        ORDERS.update()
                        .where(ORDERS.c.client_order_id == client_order_id)
                        .values(
                            status=OrderStatus.CANCELLED.value,
                            reason="cancelled by client",
                            updated_at=now.isoformat(),
                        )
                    )
                    order = replace(
                        order, status=OrderStatus.CANCELLED, reason="cancelled by client"
                    )
                return order

    def open_orders(self) -> list[BrokerOrder]:
        with self._lock:
            self._sweep()
            with self._engine.connect() as conn:
                rows = conn.execute(
                    ORDERS.select().where(ORDERS.c.status == OrderStatus.WORKING.value)
                ).all()
            return [self._to_order(r) for r in rows]

    def positions(self) -> list[BrokerPosition]:
        with self._lock:
            self._sweep()
            with self._engine.connect() as conn:
                fills = conn.execute(sa.select(FILLS).order_by(FILLS.c.at)).all()
        net: dict[OptionContract, int] = {}
        refs: dict[OptionContract, list[str]] = {}
        for f in fills:
            spread = spread_from_json(f.spread)
            combo_sign = 1 if f.side == Side.BUY.value else -1
            for leg in spread.legs:
                qty = combo_sign * leg.side.sign * leg.ratio * f.quantity
                net[leg.contract] = net.get(leg.contract, 0) + qty
                refs.setdefault(leg.contract, []).append(f.client_order_id)
        return [
            BrokerPosition(contract=c, quantity=q, order_refs=tuple(dict.fromkeys(refs[c])))
            for c, q in net.items()
            if q != 0
        ]

    def executions(self, since: datetime) -> list[Fill]:
        with self._lock:
            self._sweep()
            with self._engine.connect() as conn:
                fills = conn.execute(sa.select(FILLS).order_by(FILLS.c.at)).all()
        out = []
        for f in fills:
            at = datetime.fromisoformat(f.at)
            if at >= since:
                out.append(
                    Fill(
                        client_order_id=f.client_order_id,
                        broker_order_id=f.broker_order_id,
                        exec_id=f.exec_id,
                        quantity=f.quantity,
                        price=Decimal(str(f.price)),
                        commission=Decimal(str(f.commission)),
                        at=at,
                    )
                )
        return out

    def dispose(self) -> None:
        self._engine.dispose()
