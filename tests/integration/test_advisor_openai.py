"""``adapters.advisor.Advisor`` with the real ``openai.OpenAI`` client against the local
OpenAI-compatible server in ``tests.fixtures.openai_server`` (real HTTP on 127.0.0.1).

Every request any test of this file sends is scanned (per test, and once more at the end of the
file) for the API key, key-like strings and IB account ids.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest

from adapters.advisor import (
    Advisor,
    BriefContext,
    DaySummary,
    EntryContext,
    FallbackReason,
    LegSummary,
    PositionSummary,
    ReviewDecision,
    Source,
    TradeSummary,
    UnderlyingSnapshot,
    fallback_brief,
    fallback_narrative,
)
from adapters.cache import InProcessCache
from core.calendar import NY
from tests.fixtures.openai_server import (
    OpenAIServer,
    RecordedRequest,
    error,
    json_reply,
    refusal,
    slow,
    text,
)

KEY = "sk-test-advisor-KEY-0123456789abcdef"
WRONG_KEY = "sk-test-wrong-KEY-9876543210fedcba"
DAY = date(2025, 3, 14)
ACCOUNT_ID = re.compile(r"\b(DU|DF|U|F)\d{5,}\b")
KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{8,}")

_ALL_REQUESTS: list[RecordedRequest] = []  # every request of every test in this file


def _leaks(request: RecordedRequest) -> list[str]:
    """What a request must never carry, found in its body or its non-auth headers."""
    blob = request.raw.decode("utf-8", "replace") + "\n" + repr(request.headers)
    found = [k for k in (KEY, WRONG_KEY) if k in blob]
    found += KEY_LIKE.findall(blob) + [m.group(0) for m in ACCOUNT_ID.finditer(blob)]
    return found


# ---- builders ---------------------------------------------------------------------------------


def brief_context(**overrides: Any) -> BriefContext:
    fields: dict[str, Any] = {
        "day": DAY,
        "underlyings": (
            UnderlyingSnapshot("SPY", 560.12, 0.42, 0.85),
            UnderlyingSnapshot("QQQ", 480.50, -0.95, 1.10),
            UnderlyingSnapshot("IWM", 205.30, 0.10, None),
        ),
        "vix": 18.4,
        "prior_vix": 17.1,
        "calendar_notes": ("CPI 08:30",),
        "open_positions": (
            PositionSummary(
                "mag7", "NVDA", "bull_put_credit", date(2025, 3, 21), 2, Decimal("640")
            ),
        ),
    }
    fields.update(overrides)
    return BriefContext(**fields)


def entry_context(**overrides: Any) -> EntryContext:
    fields: dict[str, Any] = {
        "day": DAY,
        "system": "smart0dte",
        "underlying": "SPY",
        "structure": "bull_call_debit",
        "direction": "bullish",
        "legs": (
            LegSummary("BUY", "C", Decimal("561"), DAY),
            LegSummary("SELL", "C", Decimal("564"), DAY),
        ),
        "quantity": 2,
        "limit_price": Decimal("1.25"),
        "max_loss": Decimal("250"),
        "confidence": 0.72,
        "signal_reason": "momentum: 3 of 4 indicators agree",
        "underlying_price": 561.4,
        "vix": 18.4,
    }
    fields.update(overrides)
    return EntryContext(**fields)


def day_summary(**overrides: Any) -> DaySummary:
    fields: dict[str, Any] = {
        "day": DAY,
        "realized_pnl": Decimal("170"),
        "unrealized_pnl": Decimal("-15"),
        "pnl_by_system": (("smart0dte", Decimal("170")), ("mag7", Decimal("-15"))),
        "trades": (
            TradeSummary("smart0dte", "SPY", "bull_call_debit", "OPEN", 2, Decimal("1.25")),
            TradeSummary(
                "smart0dte", "SPY", "bull_call_debit", "CLOSE", 2, Decimal("2.10"), Decimal("170")
            ),
        ),
        "risk_events": ("daily loss at 40% of limit",),
        "state_changes": (),
    }
    fields.update(overrides)
    return DaySummary(**fields)


# ---- fixtures ---------------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key=KEY) as srv:
        yield srv
    requests = srv.requests
    _ALL_REQUESTS.extend(requests)
    leaks = [leak for r in requests for leak in _leaks(r)]
    assert not leaks, f"a request carried sensitive data: {len(leaks)} match(es)"


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@pytest.fixture
def make_advisor(server: OpenAIServer) -> Iterator[Callable[..., Advisor]]:
    made: list[Advisor] = []

    def make(**overrides: Any) -> Advisor:
        kwargs: dict[str, Any] = {
            "api_key": KEY,
            "model": "gpt-test-mini",
            "base_url": server.base_url,
            "timeout_seconds": 5.0,
            "max_retries": 2,
            "daily_token_budget": 10_000,
            "cache": InProcessCache(),
            "now": Clock(datetime(2025, 3, 14, 9, 0, tzinfo=NY)),
        }
        kwargs.update(overrides)
        advisor = Advisor(**kwargs)
        made.append(advisor)
        return advisor

    yield make
    for advisor in made:
        advisor.close()


# ---- brief and narrative from the model ------------------------------------------------------


def test_premarket_brief_when_model_answers_then_text_from_model_through_real_client(
    server, make_advisor
):
    server.push(text("## Regime\nCalm, VIX 18.", prompt_tokens=300, completion_tokens=120))
    advisor = make_advisor()

    brief = advisor.premarket_brief(brief_context())

    assert brief.source is Source.MODEL
    assert brief.text == "## Regime\nCalm, VIX 18."
    assert brief.fallback_reason is None
    assert (brief.tokens, brief.cached) == (420, False)
    assert advisor.tokens_spent() == 420
    [request] = server.completions
    assert request.body["model"] == "gpt-test-mini"
    assert [m["role"] for m in request.messages] == ["system", "user"]
    assert "560.12" in request.prompt_text
    assert "CPI 08:30" in request.prompt_text
    assert "response_format" not in request.body
    assert request.body["max_completion_tokens"] == advisor.max_completion_tokens


def test_eod_narrative_when_model_answers_then_text_from_model(server, make_advisor):
    server.push(text("A green day: +$155 overall."))
    advisor = make_advisor()

    narrative = advisor.eod_narrative(day_summary())

    assert narrative.source is Source.MODEL
    assert narrative.text == "A green day: +$155 overall."
    assert narrative.tokens == 60
    [request] = server.completions
    assert "daily loss at 40% of limit" in request.prompt_text


def test_constructor_when_key_and_url_given_then_nothing_connects(server, make_advisor):
    make_advisor()

    assert server.requests == []


# ---- no key, budget --------------------------------------------------------------------------


def test_premarket_brief_when_no_key_then_fallback_without_http_call(
    server, make_advisor, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the environment is not a key source
    server.set_default(text("must not be used"))
    advisor = make_advisor(api_key=None)

    brief = advisor.premarket_brief(brief_context())
    review = advisor.review_entry(entry_context())
    narrative = advisor.eod_narrative(day_summary())

    assert brief.source is Source.FALLBACK
    assert brief.fallback_reason is FallbackReason.NO_API_KEY
    assert brief.text == fallback_brief(brief_context())
    assert narrative.text == fallback_narrative(day_summary())
    assert (review.decision, review.confidence) == (ReviewDecision.ACCEPT, 0.72)
    assert review.fallback_reason is FallbackReason.NO_API_KEY
    assert server.requests == []


def test_review_entry_when_budget_spent_then_fallback_and_no_call(server, make_advisor):
    server.set_default(json_reply({"decision": "veto", "confidence": None, "reason": "no"}))
    advisor = make_advisor(daily_token_budget=100)
    first = advisor.review_entry(entry_context())  # 60 tokens: still under 100
    second = advisor.review_entry(entry_context(quantity=1))  # 120: the budget is spent

    third = advisor.review_entry(entry_context(quantity=3))
    brief = advisor.premarket_brief(brief_context())

    assert (first.source, second.source) == (Source.MODEL, Source.MODEL)
    assert advisor.tokens_spent() == 120
    assert third.fallback_reason is FallbackReason.TOKEN_BUDGET
    assert (third.decision, third.confidence) == (ReviewDecision.ACCEPT, 0.72)  # not vetoed
    assert brief.fallback_reason is FallbackReason.TOKEN_BUDGET
    assert brief.text == fallback_brief(brief_context())
    assert "120/100" in brief.detail
    assert len(server.completions) == 2


def test_premarket_brief_when_budget_spent_by_another_run_then_fallback_no_call(
    server, make_advisor
):
    shared = InProcessCache()
    server.push(text("first run's brief", prompt_tokens=900, completion_tokens=200))
    first_run = make_advisor(daily_token_budget=1_000, cache=shared)
    first_run.premarket_brief(brief_context())
    second_run = make_advisor(daily_token_budget=1_000, cache=shared)

    brief = second_run.premarket_brief(brief_context(vix=19.0))

    assert second_run.tokens_spent() == 1_100
    assert brief.fallback_reason is FallbackReason.TOKEN_BUDGET
    assert len(server.completions) == 1


def test_premarket_brief_when_next_day_then_budget_starts_again(server, make_advisor):
    clock = Clock(datetime(2025, 3, 14, 9, 0, tzinfo=NY))
    advisor = make_advisor(daily_token_budget=50, now=clock)
    server.push(text("day one"), text("day two"))
    advisor.premarket_brief(brief_context())
    spent = advisor.premarket_brief(brief_context(day=DAY, vix=20.0))
    clock.at = datetime(2025, 3, 17, 9, 0, tzinfo=NY)

    next_day = advisor.premarket_brief(brief_context(day=date(2025, 3, 17)))

    assert spent.fallback_reason is FallbackReason.TOKEN_BUDGET
    assert next_day.source is Source.MODEL
    assert next_day.text == "day two"
    assert advisor.tokens_spent(DAY) == 60
    assert advisor.tokens_spent() == 60


def test_premarket_brief_when_budget_spent_but_answer_cached_then_cached_answer(
    server, make_advisor
):
    server.push(text("the brief", prompt_tokens=100, completion_tokens=50))
    advisor = make_advisor(daily_token_budget=100)
    advisor.premarket_brief(brief_context())

    again = advisor.premarket_brief(brief_context())

    assert (again.source, again.cached, again.text) == (Source.MODEL, True, "the brief")
    assert len(server.completions) == 1


# ---- timeouts, retries, errors ---------------------------------------------------------------


def test_eod_narrative_when_server_too_slow_then_fallback_after_retries(server, make_advisor):
    server.set_default(slow(3.0))
    advisor = make_advisor(timeout_seconds=0.25, max_retries=1)

    narrative = advisor.eod_narrative(day_summary())

    assert narrative.source is Source.FALLBACK
    assert narrative.fallback_reason is FallbackReason.TIMEOUT
    assert narrative.text == fallback_narrative(day_summary())
    assert len(server.completions) == 2  # the first try and one retry
    assert advisor.tokens_spent() == 0


def test_premarket_brief_when_server_unreachable_then_fallback_connection(make_advisor):
    with OpenAIServer(api_key=KEY) as gone:
        url = gone.base_url  # a port that was free a moment ago and is closed now
    advisor = make_advisor(base_url=url, max_retries=0)

    brief = advisor.premarket_brief(brief_context())

    assert brief.fallback_reason is FallbackReason.CONNECTION
    assert brief.text == fallback_brief(brief_context())


@pytest.mark.parametrize("status", [500, 503, 429])
def test_premarket_brief_when_transient_error_then_retried_and_model_answers(
    server, make_advisor, status
):
    server.push(error(status, retry_after_ms=5), text("after the retry"))
    advisor = make_advisor(max_retries=2)

    brief = advisor.premarket_brief(brief_context())

    assert brief.source is Source.MODEL
    assert brief.text == "after the retry"
    assert len(server.completions) == 2


def test_premarket_brief_when_500_without_retry_header_then_client_backoff_and_answer(
    server, make_advisor
):
    server.push(error(500), text("after the backoff"))

    brief = make_advisor(max_retries=1).premarket_brief(brief_context())

    assert brief.text == "after the backoff"
    assert len(server.completions) == 2


def test_premarket_brief_when_500_persists_then_fallback_after_retries(server, make_advisor):
    server.set_default(error(500, retry_after_ms=5))
    advisor = make_advisor(max_retries=2)

    brief = advisor.premarket_brief(brief_context())

    assert brief.fallback_reason is FallbackReason.SERVER_ERROR
    assert brief.detail == "HTTP 500 after 2 retries"
    assert brief.text == fallback_brief(brief_context())
    assert len(server.completions) == 3


def test_review_entry_when_rate_limited_throughout_then_accept_unchanged(server, make_advisor):
    server.set_default(error(429, retry_after_ms=5))

    review = make_advisor(max_retries=1).review_entry(entry_context())

    assert review.fallback_reason is FallbackReason.RATE_LIMITED
    assert (review.decision, review.confidence) == (ReviewDecision.ACCEPT, 0.72)
    assert review.detail == "HTTP 429 rate_limit_exceeded after 1 retries"


def test_premarket_brief_when_key_rejected_then_fallback_with_clear_reason_and_no_key_logged(
    server, make_advisor, caplog
):
    caplog.set_level(logging.DEBUG)
    server.set_default(text("must not be used"))
    advisor = make_advisor(api_key=WRONG_KEY)

    brief = advisor.premarket_brief(brief_context())

    assert brief.source is Source.FALLBACK
    assert brief.fallback_reason is FallbackReason.AUTHENTICATION
    assert brief.detail == "HTTP 401 invalid_api_key"
    assert len(server.requests) == 1  # 401 is not retried
    assert not server.requests[0].bearer_ok
    warnings = [r for r in caplog.records if r.name.startswith("adapters.advisor")]
    assert any("authentication failed" in r.getMessage() for r in warnings)
    logged = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in (WRONG_KEY, KEY, "9876543210fedcba", "0123456789abcdef"):
        assert secret not in logged
        assert secret not in repr(brief)
        assert secret not in repr(advisor)


# ---- the entry review ------------------------------------------------------------------------


def test_review_entry_when_model_vetoes_then_veto_with_reason(server, make_advisor):
    server.push(json_reply({"decision": "veto", "confidence": None, "reason": "CPI at 08:30"}))

    review = make_advisor().review_entry(entry_context())

    assert review.source is Source.MODEL
    assert review.veto
    assert review.decision is ReviewDecision.VETO
    assert review.reason == "CPI at 08:30"
    assert review.confidence == review.original_confidence == 0.72


def test_review_entry_when_model_lowers_confidence_then_lowered(server, make_advisor):
    server.push(json_reply({"decision": "lower", "confidence": 0.55, "reason": "wide spreads"}))

    review = make_advisor().review_entry(entry_context())

    assert review.source is Source.MODEL
    assert review.decision is ReviewDecision.LOWER
    assert (review.original_confidence, review.confidence) == (0.72, 0.55)
    assert review.reason == "wide spreads"
    assert not review.veto


def test_review_entry_when_model_accepts_then_unchanged_from_model(server, make_advisor):
    server.push(json_reply({"decision": "accept", "confidence": None, "reason": ""}))

    review = make_advisor().review_entry(entry_context())

    assert review.source is Source.MODEL
    assert (review.decision, review.confidence) == (ReviewDecision.ACCEPT, 0.72)


def test_review_entry_when_called_then_strict_json_schema_sent(server, make_advisor):
    server.push(json_reply({"decision": "accept", "confidence": None, "reason": ""}))

    make_advisor().review_entry(entry_context())

    [request] = server.completions
    fmt = request.body["response_format"]
    assert fmt["type"] == "json_schema"
    assert fmt["json_schema"]["strict"] is True
    schema = fmt["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert (
        set(schema["required"])
        == set(schema["properties"])
        == {
            "decision",
            "confidence",
            "reason",
        }
    )
    assert "0.7200" in request.prompt_text  # the original confidence is stated


DISCARDED = {
    "raised confidence": json_reply({"decision": "lower", "confidence": 0.9, "reason": "strong"}),
    "accept raising confidence": json_reply(
        {"decision": "accept", "confidence": 0.95, "reason": "great"}
    ),
    "extra field quantity": json_reply(
        {"decision": "accept", "confidence": None, "reason": "ok", "quantity": 5}
    ),
    "changed strikes": json_reply(
        {"decision": "lower", "confidence": 0.5, "reason": "x", "strikes": [565, 570]}
    ),
    "invalid json": text('{"decision": "veto", "reason": '),
    "unknown decision": json_reply({"decision": "increase", "confidence": 0.9, "reason": "x"}),
    "veto without reason": json_reply({"decision": "veto", "confidence": None, "reason": " "}),
    "model refusal": refusal(),
}


@pytest.mark.parametrize("answer", DISCARDED.values(), ids=DISCARDED.keys())
def test_review_entry_when_answer_not_allowed_then_discarded_logged_and_accept_unchanged(
    server, make_advisor, caplog, answer
):
    caplog.set_level(logging.WARNING, logger="adapters.advisor")
    server.push(answer)
    advisor = make_advisor()

    review = advisor.review_entry(entry_context())

    assert review.decision is ReviewDecision.ACCEPT
    assert review.confidence == review.original_confidence == 0.72
    assert review.source is Source.FALLBACK
    assert review.fallback_reason is FallbackReason.INVALID_ANSWER
    assert review.tokens == 60 and advisor.tokens_spent() == 60  # spent tokens still count
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("review" in m and ("discarded" in m or "invalid answer" in m) for m in warnings)


def test_review_entry_when_answer_discarded_then_not_cached(server, make_advisor):
    bad = json_reply({"decision": "lower", "confidence": 0.99, "reason": "x"})
    server.push(bad, bad)
    advisor = make_advisor()

    advisor.review_entry(entry_context())
    advisor.review_entry(entry_context())

    assert len(server.completions) == 2


# ---- cache -----------------------------------------------------------------------------------


def test_premarket_brief_when_same_prompt_again_then_cache_hit_and_no_second_request(
    server, make_advisor
):
    server.push(text("cached brief"))
    shared = InProcessCache()
    advisor = make_advisor(cache=shared)
    first = advisor.premarket_brief(brief_context())

    again = advisor.premarket_brief(brief_context())
    other_run = make_advisor(cache=shared).premarket_brief(brief_context())

    assert (first.cached, again.cached, other_run.cached) == (False, True, True)
    assert again.text == other_run.text == "cached brief"
    assert again.source is Source.MODEL and again.tokens == 0
    assert len(server.completions) == 1
    assert advisor.tokens_spent() == 60


def test_review_entry_when_cached_then_same_verdict_without_request(server, make_advisor):
    server.push(json_reply({"decision": "lower", "confidence": 0.6, "reason": "late day"}))
    advisor = make_advisor()
    advisor.review_entry(entry_context())

    review = advisor.review_entry(entry_context())

    assert (review.decision, review.confidence, review.cached) == (ReviewDecision.LOWER, 0.6, True)
    assert len(server.completions) == 1


def test_premarket_brief_when_prompt_or_model_differs_then_cache_miss(server, make_advisor):
    server.set_default(text("fresh"))
    shared = InProcessCache()
    make_advisor(cache=shared).premarket_brief(brief_context())

    make_advisor(cache=shared).premarket_brief(brief_context(vix=25.0))
    make_advisor(cache=shared, model="gpt-other").premarket_brief(brief_context())

    assert len(server.completions) == 3


# ---- secrets and account ids -----------------------------------------------------------------

SMUGGLED = {
    "account id in a calendar note": lambda a: a.premarket_brief(
        brief_context(calendar_notes=("call IB about DU1234567",))
    ),
    "account id in a signal reason": lambda a: a.review_entry(
        entry_context(signal_reason="seen on U7654321 statement")
    ),
    "key in a risk event": lambda a: a.eod_narrative(
        day_summary(risk_events=("auth sk-live-abcdefghijklmnop1234 expired",))
    ),
    "configured key in a note": lambda a: a.premarket_brief(brief_context(calendar_notes=(KEY,))),
}


@pytest.mark.parametrize("call", SMUGGLED.values(), ids=SMUGGLED.keys())
def test_advisor_when_context_smuggles_secret_then_refused_and_nothing_sent(
    server, make_advisor, caplog, call
):
    caplog.set_level(logging.DEBUG)
    server.set_default(text("must not be used"))

    result = call(make_advisor())

    assert result.source is Source.FALLBACK
    assert result.fallback_reason is FallbackReason.SENSITIVE_PROMPT
    assert server.requests == []
    shown = caplog.text + repr(result)
    for secret in ("DU1234567", "U7654321", "sk-live-abcdefghijklmnop1234", KEY):
        assert secret not in shown
    assert "sensitive" in caplog.text


def test_prompts_when_every_test_ran_then_no_key_or_account_id_in_any_request(server, make_advisor):
    server.set_default(json_reply({"decision": "accept", "confidence": None, "reason": ""}))
    advisor = make_advisor()
    advisor.premarket_brief(brief_context())
    advisor.review_entry(entry_context())
    advisor.eod_narrative(day_summary())
    requests = [*_ALL_REQUESTS, *server.requests]

    leaks = [leak for r in requests for leak in _leaks(r)]

    assert len(server.requests) == 3
    assert len(requests) >= 3
    assert leaks == []
