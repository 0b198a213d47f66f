"""What the advisor is given (context dataclasses) and what it gives back (typed results).

Contexts carry market numbers, structures and free-text notes only: there is deliberately no
field for an account id, a key or any credential, so a prompt built from them cannot carry one
(the guard in ``guard.py`` still scans every outgoing message in case free text smuggles one in).

Percentages are in percent (``0.42`` means 0.42 %), prices are floats as the market data gives
them, money (P&L, max loss, limit prices) is ``Decimal``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum

from core.models import OrderIntent, Position, Signal


def _check_day(value: object, name: str) -> None:
    if isinstance(value, datetime) or not isinstance(value, date):
        raise TypeError(f"{name} must be a date (not a datetime), got {type(value).__name__}")


def _check_finite(value: float | None, name: str, *, minimum: float | None = None) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


# ---- inputs ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class UnderlyingSnapshot:
    """One underlying before the open."""

    symbol: str
    prior_close: float
    overnight_move_pct: float  # pre-market last vs prior close, in percent
    implied_move_pct: float | None = None  # expected move to expiry (ATM straddle), in percent

    def __post_init__(self) -> None:
        if not self.symbol:
            raise ValueError("symbol must not be empty")
        _check_finite(self.prior_close, "prior_close", minimum=0.0)
        _check_finite(self.overnight_move_pct, "overnight_move_pct")
        _check_finite(self.implied_move_pct, "implied_move_pct", minimum=0.0)


@dataclass(frozen=True, slots=True)
class PositionSummary:
    """An open position as the advisor may see it (no account, no order or position ids)."""

    system: str
    underlying: str
    structure: str  # StructureKind value, e.g. "bull_call_debit"
    expiry: date
    quantity: int
    max_loss: Decimal
    unrealized_pnl: Decimal | None = None

    def __post_init__(self) -> None:
        _check_day(self.expiry, "expiry")

    @classmethod
    def from_position(
        cls, position: Position, unrealized_pnl: Decimal | None = None
    ) -> PositionSummary:
        return cls(
            system=position.system.value,
            underlying=position.underlying,
            structure=position.spread.kind.value,
            expiry=position.spread.expiry,
            quantity=position.quantity,
            max_loss=position.max_loss,
            unrealized_pnl=unrealized_pnl,
        )


@dataclass(frozen=True, slots=True)
class BriefContext:
    """Input of the pre-market brief."""

    day: date
    underlyings: tuple[UnderlyingSnapshot, ...]
    vix: float
    prior_vix: float
    calendar_notes: tuple[str, ...] = ()  # e.g. "early close 13:00", "CPI 08:30"
    open_positions: tuple[PositionSummary, ...] = ()

    def __post_init__(self) -> None:
        _check_day(self.day, "day")
        _check_finite(self.vix, "vix", minimum=0.0)
        _check_finite(self.prior_vix, "prior_vix", minimum=0.0)


@dataclass(frozen=True, slots=True)
class LegSummary:
    side: str  # "BUY" / "SELL"
    right: str  # "C" / "P"
    strike: Decimal
    expiry: date
    ratio: int = 1


@dataclass(frozen=True, slots=True)
class EntryContext:
    """Input of the entry review: one proposed entry, the signal behind it, a little market."""

    day: date
    system: str
    underlying: str
    structure: str
    direction: str
    legs: tuple[LegSummary, ...]
    quantity: int
    limit_price: Decimal
    max_loss: Decimal
    confidence: float  # the strategy's confidence in [0, 1]; the model may only lower it
    signal_reason: str = ""
    underlying_price: float | None = None
    vix: float | None = None
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_day(self.day, "day")
        _check_finite(self.confidence, "confidence", minimum=0.0)
        if self.confidence > 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")
        if self.quantity < 1:
            raise ValueError(f"quantity must be >= 1, got {self.quantity}")
        _check_finite(self.underlying_price, "underlying_price", minimum=0.0)
        _check_finite(self.vix, "vix", minimum=0.0)

    @classmethod
    def from_intent(
        cls,
        intent: OrderIntent,
        signal: Signal,
        *,
        day: date | None = None,
        underlying_price: float | None = None,
        vix: float | None = None,
        notes: tuple[str, ...] = (),
    ) -> EntryContext:
        """The review context of an entry intent. Ids (client order id, signal id) stay out."""
        return cls(
            day=day if day is not None else signal.at.date(),
            system=intent.system.value,
            underlying=intent.spread.underlying,
            structure=intent.spread.kind.value,
            direction=signal.direction.value,
            legs=tuple(
                LegSummary(
                    side=leg.side.value,
                    right=leg.contract.right.value,
                    strike=leg.contract.strike,
                    expiry=leg.contract.expiry,
                    ratio=leg.ratio,
                )
                for leg in intent.spread.legs
            ),
            quantity=intent.quantity,
            limit_price=intent.limit_price,
            max_loss=intent.max_loss,
            confidence=signal.confidence,
            signal_reason=signal.reason,
            underlying_price=underlying_price,
            vix=vix,
            notes=notes,
        )


@dataclass(frozen=True, slots=True)
class TradeSummary:
    system: str
    underlying: str
    structure: str
    action: str  # "OPEN" / "CLOSE"
    quantity: int
    price: Decimal  # net combo price per unit
    realized_pnl: Decimal | None = None  # closes only


@dataclass(frozen=True, slots=True)
class DaySummary:
    """Input of the end-of-day narrative."""

    day: date
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    pnl_by_system: tuple[tuple[str, Decimal], ...] = ()  # (system, realised + unrealised)
    trades: tuple[TradeSummary, ...] = ()
    risk_events: tuple[str, ...] = ()
    state_changes: tuple[str, ...] = ()  # e.g. "ACTIVE -> REDUCING at 14:02 (daily loss 100%)"
    open_positions: tuple[PositionSummary, ...] = ()

    def __post_init__(self) -> None:
        _check_day(self.day, "day")


# ---- outputs ---------------------------------------------------------------------------------


class Source(StrEnum):
    MODEL = "model"  # the model answered (now or from the cache)
    FALLBACK = "fallback"  # the deterministic text / "accept unchanged"


class FallbackReason(StrEnum):
    NO_API_KEY = "no api key"
    TOKEN_BUDGET = "token budget spent"
    SENSITIVE_PROMPT = "prompt refused: sensitive data"
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate limited"
    SERVER_ERROR = "server error"
    AUTHENTICATION = "authentication failed"
    REQUEST_REJECTED = "request rejected"
    CONNECTION = "connection failed"
    INVALID_ANSWER = "invalid answer"
    UNEXPECTED = "unexpected error"


class ReviewDecision(StrEnum):
    ACCEPT = "accept"
    VETO = "veto"
    LOWER = "lower"


@dataclass(frozen=True, slots=True)
class Brief:
    text: str  # markdown
    source: Source
    fallback_reason: FallbackReason | None = None
    detail: str = ""  # safe to log: never the key, an account id or a server message
    cached: bool = False
    tokens: int = 0  # tokens this call spent (0 on a cache hit or a fallback without a call)

    @property
    def from_model(self) -> bool:
        return self.source is Source.MODEL


@dataclass(frozen=True, slots=True)
class Narrative:
    text: str  # markdown
    source: Source
    fallback_reason: FallbackReason | None = None
    detail: str = ""
    cached: bool = False
    tokens: int = 0

    @property
    def from_model(self) -> bool:
        return self.source is Source.MODEL


@dataclass(frozen=True, slots=True)
class EntryReview:
    """The advisory verdict on one entry. ``confidence <= original_confidence`` always."""

    decision: ReviewDecision
    original_confidence: float
    confidence: float
    reason: str
    source: Source
    fallback_reason: FallbackReason | None = None
    detail: str = ""
    cached: bool = False
    tokens: int = 0

    def __post_init__(self) -> None:
        if self.confidence > self.original_confidence:
            raise ValueError("a review can never raise the confidence")

    @property
    def veto(self) -> bool:
        return self.decision is ReviewDecision.VETO

    @property
    def from_model(self) -> bool:
        return self.source is Source.MODEL

    @classmethod
    def accept_unchanged(
        cls,
        original_confidence: float,
        *,
        fallback_reason: FallbackReason,
        detail: str = "",
        tokens: int = 0,
    ) -> EntryReview:
        return cls(
            decision=ReviewDecision.ACCEPT,
            original_confidence=original_confidence,
            confidence=original_confidence,
            reason="accepted unchanged (advisor not used)",
            source=Source.FALLBACK,
            fallback_reason=fallback_reason,
            detail=detail,
            tokens=tokens,
        )
