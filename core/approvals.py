"""Approval tiers for entries where approvals are on (STRATEGIES.md; default on in live mode).

T1 auto: size <= 50% of max_position_size and confidence >= 0.80.
T2 approval: size > 50% of max, or confidence < 0.80.
T3 approval with a reason: size > 80% of max, or VIX > 25.
"Size" is the intent's worst-case loss in dollars. T3 wins over T2 when both apply.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class ApprovalTier(StrEnum):
    T1 = "T1"
    T2 = "T2"
    T3 = "T3"

    @property
    def needs_approval(self) -> bool:
        return self is not ApprovalTier.T1

    @property
    def needs_reason(self) -> bool:
        return self is ApprovalTier.T3


class ApprovalDecision(StrEnum):
    PENDING = "pending"
    APPROVE = "approve"
    REJECT = "reject"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class TierRules:
    t1_max_size_fraction: Decimal = Decimal("0.5")
    t1_min_confidence: float = 0.80
    t3_size_fraction: Decimal = Decimal("0.8")
    t3_vix: float = 25.0


@dataclass(frozen=True, slots=True)
class TierAssessment:
    tier: ApprovalTier
    reasons: tuple[str, ...]


def classify(
    max_loss: Decimal,
    max_position_size: Decimal,
    confidence: float,
    vix: float,
    rules: TierRules,
) -> TierAssessment:
    """The tier of one entry and every reason that put it there."""
    if max_position_size <= 0:
        raise ValueError("max_position_size must be positive")
    fraction = max_loss / max_position_size
    t3: list[str] = []
    if fraction > rules.t3_size_fraction:
        t3.append(f"size {fraction:.0%} of max position > {rules.t3_size_fraction:.0%}")
    if vix > rules.t3_vix:
        t3.append(f"VIX {vix:.2f} > {rules.t3_vix}")
    if t3:
        return TierAssessment(ApprovalTier.T3, tuple(t3))
    t2: list[str] = []
    if fraction > rules.t1_max_size_fraction:
        t2.append(f"size {fraction:.0%} of max position > {rules.t1_max_size_fraction:.0%}")
    if confidence < rules.t1_min_confidence:
        t2.append(f"confidence {confidence:.2f} < {rules.t1_min_confidence}")
    if t2:
        return TierAssessment(ApprovalTier.T2, tuple(t2))
    return TierAssessment(
        ApprovalTier.T1,
        (f"size {fraction:.0%} of max position and confidence {confidence:.2f}: automatic",),
    )
