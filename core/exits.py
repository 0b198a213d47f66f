"""Exit rules measured on the *net* premium of the structure (never on the gross leg sum).

``value`` is the structure's current net mark in the convention of ``core.models`` (what closing it
would bring, per share; debit structures are worth > 0, credit structures < 0). P&L per share is
``value - entry_price`` for both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, time
from decimal import Decimal
from enum import StrEnum

from core.calendar import NY
from core.models import Position, require_aware


class ExitReason(StrEnum):
    TAKE_PROFIT = "take_profit"
    STOP_LOSS = "stop_loss"
    CLOSEOUT = "closeout"
    TIER = "tier"
    KILL = "kill"
    RISK = "risk"


class ExitProfile(StrEnum):
    STANDARD = "standard"
    TIERED = "tiered"


@dataclass(frozen=True, slots=True)
class ExitRules:
    debit_take_profit: Decimal = Decimal("0.50")  # +50% of the debit
    debit_stop_loss: Decimal = Decimal("0.50")  # -50% of the debit
    credit_take_profit: Decimal = Decimal("0.50")  # 50% of the credit kept
    credit_stop_loss: Decimal = Decimal("1.00")  # loss equal to the credit
    profile: ExitProfile = ExitProfile.STANDARD
    # tiered profile: (until, targets) windows; after the last window the final target applies
    tiers: tuple[tuple[time, tuple[Decimal, ...]], ...] = (
        (time(11, 0), (Decimal("0.05"), Decimal("0.10"), Decimal("0.15"))),
        (time(14, 0), (Decimal("0.03"), Decimal("0.07"), Decimal("0.12"))),
    )
    final_tier_target: Decimal = Decimal("0.05")
    tier_parts: int = 3


@dataclass(frozen=True, slots=True)
class ExitDecision:
    reason: ExitReason
    quantity: int
    detail: str


def premium(position: Position) -> Decimal:
    """The premium the targets are measured on: the debit paid or the credit received."""
    return abs(position.entry_price)


def pnl_fraction(position: Position, value: Decimal) -> Decimal:
    """P&L per share as a fraction of the premium."""
    base = premium(position)
    if base == 0:
        raise ValueError(f"position {position.position_id} has a zero entry premium")
    return (value - position.entry_price) / base


def check_exit(
    position: Position,
    value: Decimal,
    now: datetime,
    closeout_at: datetime,
    rules: ExitRules,
) -> ExitDecision | None:
    """The exit that applies now, or None. Close-out time closes everything regardless of P&L."""
    require_aware(now, "now")
    if now >= closeout_at:
        return ExitDecision(ExitReason.CLOSEOUT, position.quantity, f"close-out at {closeout_at}")
    frac = pnl_fraction(position, value)
    credit = position.spread.is_credit
    take = rules.credit_take_profit if credit else rules.debit_take_profit
    stop = rules.credit_stop_loss if credit else rules.debit_stop_loss
    if frac <= -stop:
        return ExitDecision(
            ExitReason.STOP_LOSS, position.quantity, f"P&L {frac:.1%} of premium <= -{stop:.0%}"
        )
    if rules.profile is ExitProfile.TIERED:
        return _tiered(position, frac, now, rules)
    if frac >= take:
        return ExitDecision(
            ExitReason.TAKE_PROFIT, position.quantity, f"P&L {frac:.1%} of premium >= {take:.0%}"
        )
    return None


def _tiered(
    position: Position, frac: Decimal, now: datetime, rules: ExitRules
) -> ExitDecision | None:
    """Tiered profile: close a third at each target of the current time window.

    After the last window a single target applies and closes everything left.
    """
    local = now.astimezone(NY).time()
    for until, targets in rules.tiers:
        if local < until:
            done = position.closed_fraction_tiers
            if done >= len(targets) or frac < targets[done]:
                return None
            parts_left = rules.tier_parts - done
            qty = (
                position.quantity if parts_left <= 1 else math.ceil(position.quantity / parts_left)
            )
            return ExitDecision(
                ExitReason.TIER, qty, f"tier {done + 1}: P&L {frac:.1%} >= {targets[done]:.0%}"
            )
    if frac >= rules.final_tier_target:
        return ExitDecision(
            ExitReason.TIER,
            position.quantity,
            f"late tier: P&L {frac:.1%} >= {rules.final_tier_target:.0%}",
        )
    return None
