"""Account-wide risk controls (STRATEGIES.md): pure checks that return reasons, and the state machine.

Daily loss counts realised + unrealised P&L of both systems, and only a *loss* counts: a profit never
moves the state (the prototype halted on |P&L|). Closing orders are always allowed; they are how
risk comes down.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from core.models import (
    IntentAction,
    OrderIntent,
    Position,
    RiskDecision,
    RiskLimits,
    SystemName,
    TradingState,
)


class LossLevel(StrEnum):
    OK = "ok"
    ALERT = "alert"  # >= 75% of max daily loss
    REDUCE = "reduce"  # >= 100%: exits only
    HALT = "halt"  # >= 200%: flatten everything


@dataclass(frozen=True, slots=True)
class Exposure:
    """What is open or on its way to open, attributed to a system and an underlying."""

    system: SystemName
    underlying: str
    max_loss: Decimal


def exposures(
    positions: Iterable[Position], pending: Iterable[OrderIntent] = ()
) -> tuple[Exposure, ...]:
    """Open positions plus open intents that are not terminal yet (they may still fill)."""
    out = [Exposure(p.system, p.underlying, p.max_loss) for p in positions]
    out += [
        Exposure(i.system, i.spread.underlying, i.max_loss)
        for i in pending
        if i.action is IntentAction.OPEN
    ]
    return tuple(out)


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    state: TradingState
    daily_pnl: Decimal  # realised + unrealised, both systems, after commissions
    exposures: tuple[Exposure, ...]
    errors_today: int


def loss_level(daily_pnl: Decimal, limits: RiskLimits) -> LossLevel:
    loss = -daily_pnl if daily_pnl < 0 else Decimal("0")
    if loss >= limits.max_daily_loss * limits.halt_fraction:
        return LossLevel.HALT
    if loss >= limits.max_daily_loss * limits.reduce_fraction:
        return LossLevel.REDUCE
    if loss >= limits.max_daily_loss * limits.alert_fraction:
        return LossLevel.ALERT
    return LossLevel.OK


def check_intent(intent: OrderIntent, snap: RiskSnapshot, limits: RiskLimits) -> RiskDecision:
    """Every account-wide control for one intent; a denial lists every reason that applies."""
    if intent.action is IntentAction.CLOSE:
        return RiskDecision.ok()
    reasons: list[str] = []
    if not snap.state.allows_entries:
        reasons.append(f"trading state is {snap.state.value}: entries are not allowed")
    level = loss_level(snap.daily_pnl, limits)
    if level in (LossLevel.REDUCE, LossLevel.HALT):
        reasons.append(
            f"daily P&L {snap.daily_pnl:.2f} breaches max_daily_loss {limits.max_daily_loss}"
        )
    if snap.errors_today >= limits.max_errors_per_day:
        reasons.append(
            f"error failsafe: {snap.errors_today} errors today (limit {limits.max_errors_per_day})"
        )
    if intent.max_loss > limits.max_position_size:
        reasons.append(
            f"max loss {intent.max_loss} exceeds max_position_size {limits.max_position_size}"
        )
    if len(snap.exposures) >= limits.max_open_positions:
        reasons.append(
            f"{len(snap.exposures)} positions open or pending (max_open_positions "
            f"{limits.max_open_positions})"
        )
    same = [
        e
        for e in snap.exposures
        if e.system is intent.system and e.underlying == intent.spread.underlying
    ]
    if len(same) >= limits.max_per_underlying_per_system:
        reasons.append(
            f"{len(same)} {intent.system.value} positions on {intent.spread.underlying} "
            f"(max {limits.max_per_underlying_per_system} per underlying per system)"
        )
    return RiskDecision.deny(*reasons) if reasons else RiskDecision.ok()


@dataclass(frozen=True, slots=True)
class StateChange:
    """What the state machine decided after looking at P&L and errors."""

    state: TradingState
    level: LossLevel
    flatten: bool
    alert: bool
    reasons: tuple[str, ...]
    daily_pnl: Decimal  # the realised + unrealised P&L this decision was made on

    def changed_from(self, previous: TradingState) -> bool:
        return self.state is not previous


def evaluate_state(
    current: TradingState, daily_pnl: Decimal, errors_today: int, limits: RiskLimits
) -> StateChange:
    """Escalate only (ACTIVE -> REDUCING -> HALTED) within a session; resets happen at session start.

    Returns flatten=True when the HALT threshold is crossed (flatten everything).
    """
    level = loss_level(daily_pnl, limits)
    reasons: list[str] = []
    target = current
    flatten = False
    if level is LossLevel.HALT:
        target = TradingState.HALTED
        flatten = True
        reasons.append(
            f"daily loss {-daily_pnl:.2f} >= {limits.halt_fraction:.0%} of {limits.max_daily_loss}: "
            "flatten everything"
        )
    elif level is LossLevel.REDUCE and current is TradingState.ACTIVE:
        target = TradingState.REDUCING
        reasons.append(f"daily loss {-daily_pnl:.2f} >= max_daily_loss {limits.max_daily_loss}")
    if errors_today >= limits.max_errors_per_day and target is not TradingState.HALTED:
        target = TradingState.HALTED
        reasons.append(f"{errors_today} failed orders/errors today: error failsafe")
    if _rank(target) < _rank(current):
        target = current
    return StateChange(
        state=target,
        level=level,
        flatten=flatten,
        alert=level is not LossLevel.OK,
        reasons=tuple(reasons),
        daily_pnl=daily_pnl,
    )


def state_at_session_start(previous: TradingState, manual: bool) -> TradingState:
    """HALTED and REDUCING reset at the next session start unless set manually (kill switch)."""
    if manual:
        return previous
    return TradingState.ACTIVE


def _rank(state: TradingState) -> int:
    return {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}[state]
