"""Ports: what the orchestration layer needs from the outside world.

Every adapter implements one of these Protocols; tasks depend on the Protocol, never on a concrete
adapter. Optional methods raise ``NotImplementedError`` naming the adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Protocol, runtime_checkable

from core.marketdata import Bars, ChainSnapshot
from core.models import (
    AccountInfo,
    BrokerOrder,
    BrokerPosition,
    Fill,
    OptionContract,
    OrderIntent,
)


class MarketDataError(RuntimeError):
    """A feed could not give what was asked (missing chain, unknown symbol, closed market)."""


class BrokerError(RuntimeError):
    """The broker refused or failed an operation; ``reason`` is safe to log and persist."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached right now (disconnected, order held). Whatever raised it did
    not reach the broker, so the order path keeps the intent open and retries later; it is never
    a rejection."""


@runtime_checkable
class Clock(Protocol):
    def now(self) -> datetime:
        """Current time, timezone-aware (America/New_York)."""
        ...

    def sleep_until(self, t: datetime) -> None:
        """Block until ``t`` (a simulated clock just advances)."""
        ...


@runtime_checkable
class MarketData(Protocol):
    def expiries(self, underlying: str, on: date) -> list[date]:
        """Expiries listed for ``underlying`` as seen on ``on`` (ascending, on or after ``on``)."""
        ...

    def chain(self, underlying: str, expiry: date, at: datetime) -> ChainSnapshot:
        """The chain of one expiry at ``at``. Raises MarketDataError if there is none."""
        ...

    def bars(self, symbol: str, start: datetime, end: datetime, freq: str = "1min") -> Bars:
        """Bars whose start is in [start, end) and which have completed by ``end``."""
        ...

    def prior_close(self, symbol: str, on: date) -> float:
        """The close of the session before ``on``."""
        ...

    def last_price(self, symbol: str, at: datetime) -> float:
        """The last traded price of an underlying or index at ``at``."""
        ...


@runtime_checkable
class Broker(Protocol):
    def account(self) -> AccountInfo: ...

    def submit(self, intent: OrderIntent) -> BrokerOrder:
        """Place ``intent`` as ONE combo order carrying ``intent.client_order_id``.

        Idempotent: if an order with that client_order_id exists, return it and place nothing.
        Raises BrokerError with a reason when the broker rejects it.
        """
        ...

    def find(self, client_order_id: str) -> BrokerOrder | None: ...

    def modify(self, client_order_id: str, limit_price: Decimal) -> BrokerOrder: ...

    def cancel(self, client_order_id: str) -> BrokerOrder: ...

    def open_orders(self) -> list[BrokerOrder]: ...

    def positions(self) -> list[BrokerPosition]: ...

    def executions(self, since: datetime) -> list[Fill]: ...


@runtime_checkable
class Cache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def set(self, key: str, value: bytes, ttl_seconds: int) -> None: ...


@runtime_checkable
class Metrics(Protocol):
    def write(
        self,
        measurement: str,
        tags: dict[str, str],
        fields: dict[str, float],
        ts: datetime,
    ) -> None: ...


def contracts_of(orders: Sequence[BrokerOrder]) -> set[OptionContract]:
    return {leg.contract for order in orders for leg in order.spread.legs}
