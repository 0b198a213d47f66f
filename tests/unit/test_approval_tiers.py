from decimal import Decimal

import pytest

from core.approvals import ApprovalTier, TierRules, classify

MAX = Decimal("5000")
RULES = TierRules()


@pytest.mark.parametrize(
    ("max_loss", "confidence", "vix", "tier"),
    [
        ("2500", 0.80, 18.0, ApprovalTier.T1),  # exactly 50% and exactly 0.80: automatic
        ("2500.01", 0.90, 18.0, ApprovalTier.T2),  # just over half the max size
        ("1000", 0.79, 18.0, ApprovalTier.T2),  # low confidence
        ("4000", 0.95, 18.0, ApprovalTier.T2),  # exactly 80%: still T2
        ("4000.01", 0.95, 18.0, ApprovalTier.T3),  # over 80%
        ("1000", 0.95, 25.0, ApprovalTier.T1),  # VIX at 25 is not above 25
        ("1000", 0.95, 25.01, ApprovalTier.T3),  # VIX above 25
        ("4500", 0.50, 30.0, ApprovalTier.T3),  # T3 wins over T2
    ],
)
def test_classify_when_size_confidence_vix_then_tier(max_loss, confidence, vix, tier):
    got = classify(Decimal(max_loss), MAX, confidence, vix, RULES)
    assert got.tier is tier
    assert got.reasons


def test_classify_when_t3_then_needs_reason_and_lists_every_cause():
    got = classify(Decimal("4900"), MAX, 0.9, 31.0, RULES)
    assert got.tier.needs_reason
    assert len(got.reasons) == 2
    assert not ApprovalTier.T1.needs_approval
    assert ApprovalTier.T2.needs_approval
