"""The entry review's answer validation (``adapters.advisor.review.judge``): the model may only
accept, veto (with a reason) or lower the confidence (to <= the original, with a reason)."""

from __future__ import annotations

import json

import pytest

from adapters.advisor.models import ReviewDecision
from adapters.advisor.review import REVIEW_RESPONSE_FORMAT, AnswerRejected, judge

ORIGINAL = 0.72


def answer(decision: str, confidence: float | None = None, reason: str = "r", **extra) -> str:
    return json.dumps({"decision": decision, "confidence": confidence, "reason": reason, **extra})


def test_judge_when_veto_with_reason_then_veto_and_confidence_unchanged():
    verdict = judge(answer("veto", reason="FOMC at 14:00"), ORIGINAL)

    assert (verdict.decision, verdict.confidence, verdict.reason) == (
        ReviewDecision.VETO,
        ORIGINAL,
        "FOMC at 14:00",
    )


@pytest.mark.parametrize("lowered", [0.0, 0.5, ORIGINAL])
def test_judge_when_lower_at_or_below_original_then_lowered(lowered):
    verdict = judge(answer("lower", lowered, "wide quotes"), ORIGINAL)

    assert (verdict.decision, verdict.confidence) == (ReviewDecision.LOWER, lowered)


@pytest.mark.parametrize("confidence", [None, ORIGINAL])
def test_judge_when_accept_then_unchanged(confidence):
    verdict = judge(answer("accept", confidence, ""), ORIGINAL)

    assert (verdict.decision, verdict.confidence) == (ReviewDecision.ACCEPT, ORIGINAL)


REJECTED = {
    "raise via lower": (answer("lower", 0.9), "above the original"),
    "raise via accept": (answer("accept", 0.95), "above the original"),
    "raise via veto": (answer("veto", 0.8), "above the original"),
    "accept lowering silently": (answer("accept", 0.5), "accept must not change"),
    "lower without confidence": (answer("lower", None), "lower without a confidence"),
    "veto without reason": (answer("veto", None, "  "), "veto without a reason"),
    "extra quantity": (answer("accept", quantity=3), "quantity: extra_forbidden"),
    "extra strikes": (answer("lower", 0.5, strikes=[1, 2]), "strikes: extra_forbidden"),
    "unknown decision": (answer("raise", 0.9), "decision: enum"),
    "confidence above one": (answer("lower", 1.5), "confidence: less_than_equal"),
    "negative confidence": (answer("lower", -0.1), "confidence: greater_than_equal"),
    "confidence as text": (
        json.dumps({"decision": "lower", "confidence": "0.5", "reason": "r"}),
        "confidence: float_type",
    ),
    "missing field": (json.dumps({"decision": "veto", "reason": "r"}), "confidence: missing"),
    "invalid json": ('{"decision": "veto"', "not valid JSON"),
    "prose": ("I would veto this trade.", "not valid JSON"),
    "a list": ("[]", "does not match the schema"),
}


@pytest.mark.parametrize(("raw", "problem"), REJECTED.values(), ids=REJECTED.keys())
def test_judge_when_answer_not_allowed_then_rejected_with_safe_problem(raw, problem):
    with pytest.raises(AnswerRejected, match=problem) as caught:
        judge(raw, ORIGINAL)

    assert "I would veto" not in str(caught.value)  # the model's text is never repeated


def test_response_format_when_built_then_strict_schema_matching_the_validator():
    spec = REVIEW_RESPONSE_FORMAT["json_schema"]
    schema = spec["schema"]

    assert REVIEW_RESPONSE_FORMAT["type"] == "json_schema"
    assert spec["strict"] is True
    assert schema["additionalProperties"] is False
    assert sorted(schema["required"]) == sorted(schema["properties"])
    assert schema["properties"]["decision"]["enum"] == [d.value for d in ReviewDecision]
