"""The entry review's answer: JSON schema sent to the model, and the validation of what comes back.

The model may only ``accept`` (no change), ``veto`` (with a reason) or ``lower`` the confidence
(to a value <= the original, with a reason). Everything else - a higher confidence, an accept
that changes the confidence, extra fields (strikes, quantity, ...), a decision outside the three,
invalid JSON - is rejected with a problem text that is safe to log (it names fields and
numbers, never repeats the model's text).

We send ``response_format={"type": "json_schema", "json_schema": {..., "strict": True}}`` with
``chat.completions.create`` rather than ``chat.completions.parse``: in openai 3.x ``parse``
validates inside the client and raises on an invalid answer, which would hide the usage (tokens
must still be counted against the budget) and the reason we want to log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.advisor.models import ReviewDecision

REASON_MAX = 1000

REVIEW_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": [d.value for d in ReviewDecision]},
        "confidence": {
            "type": ["number", "null"],
            "description": "the new confidence for 'lower' (<= the original); null otherwise",
        },
        "reason": {"type": "string", "description": "why; required for veto and lower"},
    },
    "required": ["decision", "confidence", "reason"],
    "additionalProperties": False,
}

REVIEW_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "entry_review", "strict": True, "schema": REVIEW_SCHEMA},
}


class ReviewAnswer(BaseModel):
    """The model's answer, as the schema allows it (pydantic: the boundary)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    decision: ReviewDecision
    confidence: Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)] | None
    reason: Annotated[str, Field(max_length=REASON_MAX)]


class AnswerRejected(ValueError):
    """The answer is not one the model may give; ``str(error)`` is safe to log."""


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: ReviewDecision
    confidence: float
    reason: str


def _schema_problem(error: ValidationError) -> str:
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "answer"
        parts.append(f"{where}: {item['type']}")
    return "does not match the schema (" + "; ".join(parts[:5]) + ")"


def judge(raw: str, original_confidence: float) -> Verdict:
    """The verdict in ``raw`` (the model's JSON), or AnswerRejected saying why not."""
    if not math.isfinite(original_confidence):
        raise ValueError("original confidence must be finite")
    try:
        answer = ReviewAnswer.model_validate_json(raw)
    except ValidationError as error:
        if any(item["type"] == "json_invalid" for item in error.errors()):
            raise AnswerRejected("not valid JSON") from None
        raise AnswerRejected(_schema_problem(error)) from None
    reason = answer.reason.strip()
    given = answer.confidence
    if given is not None and given > original_confidence:
        raise AnswerRejected(
            f"{answer.decision.value} with confidence {given:.4f} above the original "
            f"{original_confidence:.4f}"
        )
    if answer.decision is ReviewDecision.ACCEPT:
        if given is not None and given != original_confidence:
            raise AnswerRejected(f"accept must not change the confidence (got {given:.4f})")
        return Verdict(ReviewDecision.ACCEPT, original_confidence, reason)
    if not reason:
        raise AnswerRejected(f"{answer.decision.value} without a reason")
    if answer.decision is ReviewDecision.VETO:
        return Verdict(ReviewDecision.VETO, original_confidence, reason)
    if given is None:
        raise AnswerRejected("lower without a confidence")
    return Verdict(ReviewDecision.LOWER, given, reason)
