"""Mag7 exits (pure), checked at every management time (10:00, 12:00, 14:00, 15:30).

In order of precedence, for one open position (``Position.quantity`` is the quantity still open,
``closed_fraction_tiers`` the profit tiers already taken):

1. **1-DTE close**: everything at 15:30 on the last trading day before expiry (the session's
   close-out time if that is earlier, e.g. 12:45 on an early-close day); holidays come from the
   XNYS calendar, so an expiry on the Monday after Good Friday closes on Thursday.
2. **Pre-earnings close**: everything at 15:30 (or close-out) on the session before an earnings
   date that falls within the position's life.
3. **Stop** (needs a mark): debit structures at P&L <= -(20% x min(1, DTE / 7)) of the debit, DTE
   in calendar days to expiry (DTE 7 -> -20%, 3 -> -8.57%, 1 -> -2.86%); credit structures when
   the loss equals the credit (P&L <= -100% of the credit).
4. **Trailing stop on the last quarter** (after all three tiers are taken): with the peak P&L
   fraction p (the larger of the recorded peak and the current P&L), lock 50% of p once p >= 30%,
   25% of p once p >= 15%; close the rest when P&L <= the locked level.
5. **Profit tiers**: at +20%, +35% and +50% of the premium take a quarter of the original quantity
   each. Tiers already taken are never repeated; when the P&L jumps past several tiers at once they
   are taken together (``tiers_after`` says how many are done afterwards: the orchestration stores
   it in ``closed_fraction_tiers``). A quarter of the original is ``ceil(open quantity x new tiers /
   parts left)``; if that is the whole open quantity the position is closed.

P&L fractions are measured on the net premium (``core.exits.pnl_fraction``), never the gross legs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum

from core.calendar import NY, previous_trading_day, session
from core.exits import ExitDecision, ExitReason, pnl_fraction
from core.models import Position, require_aware
from systems.mag7.config import Mag7ExitConfig


class Mag7ExitKind(StrEnum):
    ONE_DTE = "one_dte"
    PRE_EARNINGS = "pre_earnings"
    STOP = "stop"
    TRAILING = "trailing_stop"
    TIER = "tier"


@dataclass(frozen=True, slots=True)
class Mag7ExitDecision(ExitDecision):
    """An ``ExitDecision`` (reason, quantity, detail) plus which Mag7 rule fired and the number of
    profit tiers taken once it is filled."""

    kind: Mag7ExitKind
    tiers_after: int


def close_time_on(day: date, wanted: time) -> datetime:
    """``wanted`` on trading day ``day``, or that session's close-out time if earlier."""
    sess = session(day)
    return min(datetime.combine(day, wanted, tzinfo=NY), sess.closeout)


def one_dte_close_at(expiry: date, cfg: Mag7ExitConfig) -> datetime:
    """15:30 (or close-out) on the last trading day strictly before ``expiry``."""
    return close_time_on(previous_trading_day(expiry), cfg.one_dte_close)


def earnings_close_at(earnings_day: date, cfg: Mag7ExitConfig) -> datetime:
    """15:30 (or close-out) on the session before ``earnings_day``."""
    return close_time_on(previous_trading_day(earnings_day), cfg.earnings_close)


def days_to_expiry(expiry: date, now: datetime) -> int:
    """Calendar days from ``now``'s New York date to ``expiry`` (never negative)."""
    require_aware(now, "now")
    return max(0, (expiry - now.astimezone(NY).date()).days)


def debit_stop_fraction(dte: int, cfg: Mag7ExitConfig) -> Decimal:
    """20% x min(1, DTE / 7): the debit loss (as a fraction of the debit) that stops it out."""
    scale = min(Decimal(1), Decimal(max(dte, 0)) / Decimal(cfg.stop_full_dte))
    return cfg.debit_stop * scale


def trail_floor(peak: Decimal, cfg: Mag7ExitConfig) -> Decimal | None:
    """The locked P&L fraction for a peak, or None below the lowest trail step."""
    for reach, lock in cfg.trail_steps:
        if peak >= reach:
            return lock * peak
    return None


def _full(
    position: Position, kind: Mag7ExitKind, reason: ExitReason, detail: str
) -> Mag7ExitDecision:
    return Mag7ExitDecision(reason, position.quantity, detail, kind, position.closed_fraction_tiers)


def check_mag7_exit(
    position: Position,
    value: Decimal | None,
    now: datetime,
    cfg: Mag7ExitConfig,
    peak: Decimal | None = None,
    earnings_dates: Sequence[date] = (),
) -> Mag7ExitDecision | None:
    """The exit that applies to ``position`` at ``now`` (module doc for the order), or None.

    ``value`` is the structure's net mark (``core.models`` convention); without one only the
    calendar closes can fire. ``peak`` is the highest P&L fraction seen so far.
    """
    require_aware(now, "now")
    expiry = position.spread.expiry
    forced = one_dte_close_at(expiry, cfg)
    if now >= forced:
        return _full(
            position,
            Mag7ExitKind.ONE_DTE,
            ExitReason.CLOSEOUT,
            f"1-DTE close: last trading day before expiry {expiry} at {forced:%Y-%m-%d %H:%M}",
        )
    opened = position.opened_at.astimezone(NY).date()
    for day in sorted(earnings_dates):
        if opened <= day <= expiry:
            close_at = earnings_close_at(day, cfg)
            if now >= close_at:
                return _full(
                    position,
                    Mag7ExitKind.PRE_EARNINGS,
                    ExitReason.CLOSEOUT,
                    f"pre-earnings close: earnings {day}, closing at {close_at:%Y-%m-%d %H:%M}",
                )
    if value is None:
        return None
    frac = pnl_fraction(position, value)
    if position.spread.is_credit:
        stop = cfg.credit_stop
        stop_text = f"loss {-frac:.1%} of the credit >= {stop:.0%}"
    else:
        dte = days_to_expiry(expiry, now)
        stop = debit_stop_fraction(dte, cfg)
        stop_text = (
            f"P&L {frac:.2%} <= -{stop:.2%} ({cfg.debit_stop:.0%} x min(1, {dte}/"
            f"{cfg.stop_full_dte}))"
        )
    if frac <= -stop:
        return _full(position, Mag7ExitKind.STOP, ExitReason.STOP_LOSS, f"stop: {stop_text}")
    taken = position.closed_fraction_tiers
    targets = cfg.tier_targets
    if taken >= len(targets):
        best = frac if peak is None else max(peak, frac)
        floor = trail_floor(best, cfg)
        if floor is not None and frac <= floor:
            return _full(
                position,
                Mag7ExitKind.TRAILING,
                ExitReason.STOP_LOSS,
                f"trailing stop on the last part: P&L {frac:.2%} <= {floor:.2%} locked of peak "
                f"{best:.2%}",
            )
        return None
    reached = sum(1 for t in targets if frac >= t)
    if reached <= taken:
        return None
    new = reached - taken
    parts_left = cfg.tier_parts - taken
    qty = min(position.quantity, math.ceil(position.quantity * new / parts_left))
    levels = ", ".join(f"+{t:.0%}" for t in targets[taken:reached])
    return Mag7ExitDecision(
        ExitReason.TIER,
        qty,
        f"tier(s) {taken + 1}..{reached} at {levels}: P&L {frac:.2%}; closing {qty} of "
        f"{position.quantity}",
        Mag7ExitKind.TIER,
        reached,
    )
