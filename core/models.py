"""Domain values of dte-trader: frozen, slotted, no I/O.

Conventions used everywhere:

* Money is ``Decimal`` (dollars). Pricing math (greeks, IV) is float64 numpy in ``core.pricing``.
* Datetimes are timezone-aware; a naive datetime passed to a constructor here raises ``ValueError``.
* A combo's **net price** is quoted per unit of the structure *as opened* (legs as listed on the
  ``Spread``), per share (not times the multiplier): positive = debit (we pay to open), negative =
  credit (we receive). This is the IB BAG convention. Closing sells the same combo: the close price is
  the combo's value in the same sign convention, so P&L per unit = (close value - entry price).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

CENT = Decimal("0.01")


def require_aware(value: datetime, name: str) -> None:
    """Raise if ``value`` is a naive datetime (the prototype's bug: naive local/UTC market times)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got naive {value!r}")


def to_cents(value: Decimal | float | str) -> Decimal:
    """Round a price to whole cents (the options tick used by the paper broker and limits)."""
    return Decimal(str(value)).quantize(CENT)


class Right(StrEnum):
    CALL = "C"
    PUT = "P"


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"

    @property
    def sign(self) -> int:
        return 1 if self is Side.BUY else -1

    def flipped(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class SystemName(StrEnum):
    SMART0DTE = "smart0dte"
    MAG7 = "mag7"


class TradingMode(StrEnum):
    DEVELOPMENT = "development"
    TESTING = "testing"
    LIVE = "live"


class TradingState(StrEnum):
    """ACTIVE -> REDUCING (exits only) -> HALTED (nothing new, flatten)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"

    @property
    def allows_entries(self) -> bool:
        return self is TradingState.ACTIVE


class Direction(StrEnum):
    BULLISH = "bullish"
    BEARISH = "bearish"
    NEUTRAL = "neutral"


class StructureKind(StrEnum):
    BULL_CALL_DEBIT = "bull_call_debit"
    BEAR_PUT_DEBIT = "bear_put_debit"
    BULL_PUT_CREDIT = "bull_put_credit"
    BEAR_CALL_CREDIT = "bear_call_credit"
    IRON_CONDOR = "iron_condor"
    LONG_STRADDLE = "long_straddle"
    LONG_STRANGLE = "long_strangle"
    LONG_CALL = "long_call"
    LONG_PUT = "long_put"

    @property
    def is_credit(self) -> bool:
        return self in _CREDIT_KINDS


_CREDIT_KINDS = frozenset(
    {StructureKind.BULL_PUT_CREDIT, StructureKind.BEAR_CALL_CREDIT, StructureKind.IRON_CONDOR}
)


class SignalKind(StrEnum):
    MOMENTUM = "momentum"
    DIVERGENCE = "divergence"
    VOL_CONTRACTION = "vol_contraction"
    VOL_EXPANSION = "vol_expansion"
    ENSEMBLE = "ensemble"


class IntentAction(StrEnum):
    OPEN = "OPEN"
    CLOSE = "CLOSE"


class IntentStatus(StrEnum):
    PENDING = "PENDING"  # persisted, not yet acknowledged by the broker
    AWAITING_APPROVAL = "AWAITING_APPROVAL"  # T2/T3 entry waiting for a human decision
    SUBMITTED = "SUBMITTED"  # the broker holds a working order for it
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"  # walked to the worst price unfilled, then cancelled
    REJECTED = "REJECTED"  # the broker refused it (reason recorded)
    DENIED = "DENIED"  # risk checks refused it before any broker contact
    EXPIRED = "EXPIRED"  # an approval did not arrive in time

    @property
    def is_terminal(self) -> bool:
        return self not in (
            IntentStatus.PENDING,
            IntentStatus.SUBMITTED,
            IntentStatus.AWAITING_APPROVAL,
        )


class OrderStatus(StrEnum):
    WORKING = "WORKING"
    FILLED = "FILLED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


class PositionStatus(StrEnum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"


@dataclass(frozen=True, slots=True)
class OptionContract:
    underlying: str
    expiry: date
    strike: Decimal
    right: Right
    multiplier: int = 100

    def __post_init__(self) -> None:
        if self.strike <= 0:
            raise ValueError(f"strike must be positive, got {self.strike}")
        if not self.underlying or not self.underlying.isupper():
            raise ValueError(f"underlying must be an upper-case symbol, got {self.underlying!r}")

    @property
    def symbol(self) -> str:
        """OCC-style symbol, e.g. ``SPY261127C00590000``."""
        thousandths = int((self.strike * 1000).to_integral_value())
        return f"{self.underlying}{self.expiry:%y%m%d}{self.right.value}{thousandths:08d}"


@dataclass(frozen=True, slots=True)
class Leg:
    contract: OptionContract
    side: Side
    ratio: int = 1

    def __post_init__(self) -> None:
        if self.ratio < 1:
            raise ValueError(f"leg ratio must be >= 1, got {self.ratio}")


@dataclass(frozen=True, slots=True)
class Spread:
    """A validated option structure. Build it with the factories in ``core.spreads``."""

    kind: StructureKind
    legs: tuple[Leg, ...]

    @property
    def underlying(self) -> str:
        return self.legs[0].contract.underlying

    @property
    def expiry(self) -> date:
        return self.legs[0].contract.expiry

    @property
    def multiplier(self) -> int:
        return self.legs[0].contract.multiplier

    @property
    def is_credit(self) -> bool:
        return self.kind.is_credit

    def leg_key(self) -> str:
        """A stable text naming the leg set, used in client order ids."""
        return "|".join(f"{leg.side.value}{leg.ratio}:{leg.contract.symbol}" for leg in self.legs)

    def describe(self) -> str:
        parts = [
            f"{'+' if leg.side is Side.BUY else '-'}{leg.contract.strike:f}{leg.contract.right.value}"
            for leg in self.legs
        ]
        return f"{self.kind.value} {self.underlying} {self.expiry.isoformat()} {' '.join(parts)}"


@dataclass(frozen=True, slots=True)
class Signal:
    signal_id: str
    system: SystemName
    kind: SignalKind
    underlying: str
    direction: Direction
    confidence: float
    at: datetime
    reason: str

    def __post_init__(self) -> None:
        require_aware(self.at, "Signal.at")
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")


def client_order_id(
    system: SystemName, signal_id: str, spread: Spread, action: IntentAction
) -> str:
    """Deterministic id for an intent: same (system, signal, legs, action) -> same id.

    It is carried to the broker (IB ``orderRef``) so a retry or rerun finds the first order.
    """
    digest = hashlib.sha256(
        f"{system.value}/{signal_id}/{spread.leg_key()}/{action.value}".encode()
    ).hexdigest()[:20]
    return f"{system.value[:4]}-{action.value[0]}-{digest}"


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What we mean to trade, persisted (with its unique client_order_id) before any submit.

    ``limit_price`` is the starting limit (combo mid) and ``worst_price`` the hard bound of the
    walk, both in the net-price convention of this module. For OPEN we buy the combo (we never pay
    more than ``worst_price``); for CLOSE we sell it (we never take less than ``worst_price``).
    """

    client_order_id: str
    system: SystemName
    signal_id: str
    spread: Spread
    action: IntentAction
    quantity: int
    limit_price: Decimal
    worst_price: Decimal
    max_loss: Decimal
    created_at: datetime
    position_id: str | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        require_aware(self.created_at, "OrderIntent.created_at")
        if self.quantity < 1:
            raise ValueError(f"quantity must be >= 1, got {self.quantity}")
        if not (self.limit_price.is_finite() and self.worst_price.is_finite()):
            raise ValueError(
                f"limit {self.limit_price} and worst {self.worst_price} must be numbers"
            )
        buying = self.action is IntentAction.OPEN
        if buying and self.worst_price < self.limit_price:
            raise ValueError("a buy's worst price must be >= its starting limit")
        if not buying and self.worst_price > self.limit_price:
            raise ValueError("a sell's worst price must be <= its starting limit")

    @property
    def combo_side(self) -> Side:
        return Side.BUY if self.action is IntentAction.OPEN else Side.SELL


@dataclass(frozen=True, slots=True)
class Fill:
    client_order_id: str
    broker_order_id: str
    exec_id: str
    quantity: int
    price: Decimal  # net combo price per unit, module convention
    commission: Decimal
    at: datetime

    def __post_init__(self) -> None:
        require_aware(self.at, "Fill.at")


@dataclass(frozen=True, slots=True)
class Position:
    position_id: str
    system: SystemName
    signal_kind: SignalKind
    spread: Spread
    quantity: int
    entry_price: Decimal  # net per unit: debit > 0, credit < 0
    opened_at: datetime
    max_loss: Decimal  # dollars for the whole position
    entry_commission: Decimal = Decimal("0")
    status: PositionStatus = PositionStatus.OPEN
    closed_at: datetime | None = None
    exit_price: Decimal | None = None
    exit_commission: Decimal = Decimal("0")
    closed_fraction_tiers: int = 0

    def __post_init__(self) -> None:
        require_aware(self.opened_at, "Position.opened_at")

    @property
    def underlying(self) -> str:
        return self.spread.underlying

    def unrealized(self, value: Decimal) -> Decimal:
        """P&L in dollars if closed at combo ``value`` (net convention), before exit costs."""
        return (value - self.entry_price) * self.quantity * self.spread.multiplier

    def realized(self) -> Decimal:
        if self.exit_price is None:
            return Decimal("0")
        gross = (self.exit_price - self.entry_price) * self.quantity * self.spread.multiplier
        return gross - self.entry_commission - self.exit_commission


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Account-wide controls from STRATEGIES.md (defaults; overridable per mode)."""

    max_daily_loss: Decimal = Decimal("1000")
    max_position_size: Decimal = Decimal("5000")
    max_open_positions: int = 10
    max_per_underlying_per_system: int = 2
    max_errors_per_day: int = 10
    alert_fraction: Decimal = Decimal("0.75")
    reduce_fraction: Decimal = Decimal("1.0")
    halt_fraction: Decimal = Decimal("2.0")

    def __post_init__(self) -> None:
        if self.max_daily_loss <= 0 or self.max_position_size <= 0:
            raise ValueError("loss and position limits must be positive")
        if not self.alert_fraction < self.reduce_fraction < self.halt_fraction:
            raise ValueError("alert < reduce < halt fractions required")


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: bool
    reasons: tuple[str, ...] = ()

    @staticmethod
    def ok() -> RiskDecision:
        return RiskDecision(True, ())

    @staticmethod
    def deny(*reasons: str) -> RiskDecision:
        if not reasons:
            raise ValueError("a denial must carry at least one reason")
        return RiskDecision(False, tuple(reasons))


@dataclass(frozen=True, slots=True)
class AccountInfo:
    account_id: str
    equity: Decimal
    buying_power: Decimal


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """The broker's view of one combo order."""

    broker_order_id: str
    client_order_id: str
    side: Side
    spread: Spread
    quantity: int
    limit_price: Decimal
    status: OrderStatus
    filled_quantity: int = 0
    avg_fill_price: Decimal | None = None
    reason: str = ""


@dataclass(frozen=True, slots=True)
class BrokerPosition:
    """Net quantity the broker holds in one option contract (signed: long > 0)."""

    contract: OptionContract
    quantity: int
    order_refs: tuple[str, ...] = field(default=())
