"""Position sizing: a dollar risk budget divided by the worst-case loss of one structure."""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal


def contracts_for_budget(
    budget: Decimal, max_loss_per_contract: Decimal, max_position_size: Decimal
) -> int:
    """floor(min(budget, max_position_size) / max loss of one contract); 0 means no trade.

    ``max_loss_per_contract`` is in dollars (per-share loss times the multiplier).
    """
    if max_loss_per_contract <= 0:
        raise ValueError(f"max loss per contract must be positive, got {max_loss_per_contract}")
    capped = min(budget, max_position_size)
    if capped <= 0:
        return 0
    return int((capped / max_loss_per_contract).to_integral_value(rounding=ROUND_FLOOR))


def confidence_factor(confidence: float, steps: tuple[tuple[float, Decimal], ...]) -> Decimal:
    """The factor of the first step whose threshold ``confidence`` reaches; steps descend.

    The last step's threshold should be 0.0 so every confidence maps to a factor.
    """
    for threshold, factor in steps:
        if confidence >= threshold:
            return factor
    raise ValueError(f"no sizing step for confidence {confidence}")
