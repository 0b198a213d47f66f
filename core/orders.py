"""Intent construction and the limit walk (mid -> natural, never past a hard worst price)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from core.chains import ComboQuote
from core.models import (
    IntentAction,
    OrderIntent,
    Spread,
    SystemName,
    client_order_id,
    to_cents,
)
from core.spreads import max_loss_dollars

TICK = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class WalkRules:
    """STRATEGIES.md: 4 steps 10 s apart for entries, 2 s for exits, then cancel if unfilled."""

    steps: int = 4
    step_seconds: float = 10.0
    exit_step_seconds: float = 2.0
    # the final close-out order is a marketable limit this far beyond the natural (fraction of
    # the natural's distance from mid, at least one tick)
    closeout_buffer: Decimal = Decimal("0.50")


def walk_prices(start: Decimal, worst: Decimal, steps: int) -> list[Decimal]:
    """``steps`` + 1 limits from ``start`` to ``worst`` in equal cent-rounded steps.

    Works for both directions (a buy walks up, a sell walks down) and never passes ``worst``.
    """
    if steps < 1:
        raise ValueError("a walk needs at least one step")
    prices = [to_cents(start + (worst - start) * Decimal(k) / Decimal(steps)) for k in range(steps)]
    prices.append(to_cents(worst))
    lo, hi = min(start, worst), max(start, worst)
    return [min(max(p, to_cents(lo)), to_cents(hi)) for p in prices]


def entry_prices(quote: ComboQuote) -> tuple[Decimal, Decimal]:
    """(start, worst) for buying a combo: start at mid, worst at the natural (the combo ask)."""
    return quote.mid, to_cents(quote.ask)


def exit_prices(quote: ComboQuote, marketable: bool, rules: WalkRules) -> tuple[Decimal, Decimal]:
    """(start, worst) for selling a combo: mid down to the natural (the combo bid).

    ``marketable`` (close-out): start at the natural and accept a buffer beyond it, so the order
    crosses the spread at once.
    """
    natural = to_cents(quote.bid)
    if not marketable:
        return quote.mid, natural
    buffer = max(TICK, to_cents((quote.mid - natural) * rules.closeout_buffer))
    return natural, natural - buffer


def open_intent(
    system: SystemName,
    signal_id: str,
    spread: Spread,
    quantity: int,
    quote: ComboQuote,
    now: datetime,
    reason: str,
) -> OrderIntent:
    start, worst = entry_prices(quote)
    return OrderIntent(
        client_order_id=client_order_id(system, signal_id, spread, IntentAction.OPEN),
        system=system,
        signal_id=signal_id,
        spread=spread,
        action=IntentAction.OPEN,
        quantity=quantity,
        limit_price=start,
        worst_price=worst,
        max_loss=max_loss_dollars(spread, worst, quantity),
        created_at=now,
        reason=reason,
    )


def close_intent(
    system: SystemName,
    position_id: str,
    spread: Spread,
    quantity: int,
    quote: ComboQuote,
    now: datetime,
    reason: str,
    marketable: bool,
    rules: WalkRules,
    attempt: int = 0,
) -> OrderIntent:
    """A close of ``quantity`` units; ``attempt`` distinguishes a retry after a cancelled walk."""
    start, worst = exit_prices(quote, marketable, rules)
    signal_id = f"close:{position_id}:{attempt}"
    return OrderIntent(
        client_order_id=client_order_id(system, signal_id, spread, IntentAction.CLOSE),
        system=system,
        signal_id=signal_id,
        spread=spread,
        action=IntentAction.CLOSE,
        quantity=quantity,
        limit_price=start,
        worst_price=worst,
        max_loss=Decimal("0"),
        created_at=now,
        position_id=position_id,
        reason=reason,
    )
