"""The AI advisor: OpenAI Chat Completions with a deterministic fallback. Advisory only.

The model never places or sizes a trade. It writes the pre-market brief and the end-of-day
narrative (markdown), and reviews each proposed entry: it may only veto it or lower its
confidence (structured output, validated; anything else is discarded). See ``openai_advisor``
for the call path (guard, cache, budget, retries, fallback).

    from adapters.advisor import Advisor, BriefContext, UnderlyingSnapshot
    advisor = Advisor(api_key=key_or_none, model="gpt-4o-mini", cache=runtime.cache,
                      now=runtime.clock.now)
    brief = advisor.premarket_brief(BriefContext(day=..., underlyings=(...), vix=..., prior_vix=...))
    brief.text, brief.source, brief.fallback_reason
"""

from adapters.advisor.guard import find_sensitive, redact
from adapters.advisor.models import (
    Brief,
    BriefContext,
    DaySummary,
    EntryContext,
    EntryReview,
    FallbackReason,
    LegSummary,
    Narrative,
    PositionSummary,
    ReviewDecision,
    Source,
    TradeSummary,
    UnderlyingSnapshot,
)
from adapters.advisor.openai_advisor import Advisor
from adapters.advisor.render import fallback_brief, fallback_narrative

__all__ = [
    "Advisor",
    "Brief",
    "BriefContext",
    "DaySummary",
    "EntryContext",
    "EntryReview",
    "FallbackReason",
    "LegSummary",
    "Narrative",
    "PositionSummary",
    "ReviewDecision",
    "Source",
    "TradeSummary",
    "UnderlyingSnapshot",
    "fallback_brief",
    "fallback_narrative",
    "find_sensitive",
    "redact",
]
