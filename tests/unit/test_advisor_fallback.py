"""Advisor fallback texts, the secret guard, the contexts - pure, no HTTP (see
tests/integration/test_advisor_openai.py for the real client against a local server)."""

from __future__ import annotations

import subprocess
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from adapters.advisor import (
    Advisor,
    BriefContext,
    DaySummary,
    EntryContext,
    EntryReview,
    FallbackReason,
    PositionSummary,
    ReviewDecision,
    Source,
    TradeSummary,
    UnderlyingSnapshot,
    fallback_brief,
    fallback_narrative,
    find_sensitive,
    redact,
)
from adapters.advisor.render import brief_messages, review_messages
from core.calendar import NY
from core.models import Direction, Signal, SignalKind, SystemName
from core.spreads import bull_call_debit
from tests.builders import DAY, T0, c, intent, position

ROOT = Path(__file__).resolve().parents[2]


def brief_context(**overrides: Any) -> BriefContext:
    fields: dict[str, Any] = {
        "day": date(2025, 3, 14),
        "underlyings": (
            UnderlyingSnapshot("SPY", 560.12, 0.42, 0.85),
            UnderlyingSnapshot("QQQ", 480.50, -1.25, 1.10),
            UnderlyingSnapshot("IWM", 205.30, 0.10, None),
        ),
        "vix": 18.4,
        "prior_vix": 17.1,
        "calendar_notes": ("early close 13:00",),
        "open_positions": (
            PositionSummary(
                "mag7",
                "NVDA",
                "bull_put_credit",
                date(2025, 3, 21),
                2,
                Decimal("640"),
                Decimal("35.5"),
            ),
        ),
    }
    fields.update(overrides)
    return BriefContext(**fields)


def day_summary(**overrides: Any) -> DaySummary:
    fields: dict[str, Any] = {
        "day": date(2025, 3, 14),
        "realized_pnl": Decimal("170"),
        "unrealized_pnl": Decimal("-15"),
        "pnl_by_system": (("smart0dte", Decimal("170")), ("mag7", Decimal("-15"))),
        "trades": (
            TradeSummary(
                "smart0dte", "SPY", "bull_call_debit", "CLOSE", 2, Decimal("2.10"), Decimal("170")
            ),
        ),
        "risk_events": ("daily loss at 75% of limit: alert",),
        "state_changes": ("ACTIVE -> REDUCING at 14:02",),
    }
    fields.update(overrides)
    return DaySummary(**fields)


def entry_context(**overrides: Any) -> EntryContext:
    fields: dict[str, Any] = {
        "day": date(2025, 3, 14),
        "system": "smart0dte",
        "underlying": "SPY",
        "structure": "bull_call_debit",
        "direction": "bullish",
        "legs": (),
        "quantity": 1,
        "limit_price": Decimal("1.25"),
        "max_loss": Decimal("125"),
        "confidence": 0.7,
    }
    fields.update(overrides)
    return EntryContext(**fields)


# ---- determinism -----------------------------------------------------------------------------


def test_fallback_brief_when_same_input_twice_then_identical_text():
    assert fallback_brief(brief_context()) == fallback_brief(brief_context())


def test_fallback_narrative_when_same_input_twice_then_identical_text():
    assert fallback_narrative(day_summary()) == fallback_narrative(day_summary())


def test_fallback_brief_when_a_number_changes_then_text_changes():
    assert fallback_brief(brief_context()) != fallback_brief(brief_context(vix=22.0))


def test_advisor_when_no_key_then_fallback_text_same_across_instances_and_reasons():
    first = Advisor(api_key=None).premarket_brief(brief_context())
    second = Advisor(api_key="  ").premarket_brief(brief_context())

    assert first.source is second.source is Source.FALLBACK
    assert first.fallback_reason is FallbackReason.NO_API_KEY
    assert first.text == second.text == fallback_brief(brief_context())
    assert first.tokens == 0 and not first.cached


def test_review_entry_when_no_key_then_accept_unchanged():
    review = Advisor().review_entry(entry_context(confidence=0.66))

    assert (review.decision, review.confidence, review.original_confidence) == (
        ReviewDecision.ACCEPT,
        0.66,
        0.66,
    )
    assert not review.veto
    assert review.fallback_reason is FallbackReason.NO_API_KEY


# ---- fallback contents -----------------------------------------------------------------------


def test_fallback_brief_when_built_then_lists_prior_closes_vix_implied_moves_and_calendar():
    text = fallback_brief(brief_context())

    assert "VIX 18.40, prior close 17.10 (+1.30, +7.60 %): normal volatility, rising." in text
    assert "| SPY | 560.12 | +0.42 % | ±0.85 % | 555.36 – 564.88 |" in text
    assert "| IWM | 205.30 | +0.10 % | n/a | n/a |" in text
    assert "- early close 13:00" in text
    assert "NVDA bull_put_credit exp 2025-03-21 x2, max loss $640.00, unrealised +$35.50" in text
    assert "Largest overnight move: QQQ -1.25 %." in text
    assert "QQQ has already moved -1.25 % overnight, at or beyond its implied move" in text


def test_fallback_narrative_when_built_then_numbers_as_sentences():
    text = fallback_narrative(day_summary())

    assert "Realised P&L +$170.00, unrealised -$15.00, total +$155.00." in text
    assert "By system: smart0dte +$170.00; mag7 -$15.00." in text
    assert "1 trade." in text
    assert "- CLOSE smart0dte SPY bull_call_debit x2 @ 2.10 (realised +$170.00)" in text
    assert "- daily loss at 75% of limit: alert" in text
    assert "- ACTIVE -> REDUCING at 14:02" in text


def test_fallback_narrative_when_quiet_day_then_says_so():
    text = fallback_narrative(
        day_summary(
            realized_pnl=Decimal("0"),
            unrealized_pnl=Decimal("0"),
            pnl_by_system=(),
            trades=(),
            risk_events=(),
            state_changes=(),
        )
    )

    assert "Realised P&L $0.00, unrealised $0.00, total $0.00." in text
    assert "No trades." in text
    assert "Risk events:\n- none" in text


def test_fallback_when_free_text_carries_account_id_or_key_then_redacted():
    brief = fallback_brief(brief_context(calendar_notes=("ask IB about DU1234567",)))
    narrative = fallback_narrative(day_summary(risk_events=("key sk-abcdefghijklmnop leaked",)))

    assert "DU1234567" not in brief and "ask IB about [redacted]" in brief
    assert "sk-abcdefghijklmnop" not in narrative and "[redacted]" in narrative


# ---- the guard -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("account DU1234567", "account id"),
        ("U1234567 statement", "account id"),
        ("advisor master F12345", "account id"),
        ("DF9876543", "account id"),
        ("key sk-proj-abcDEF123_456-xyz", "api key"),
        ("Authorization: Bearer abcdefghijkl", "bearer token"),
    ],
)
def test_find_sensitive_when_pattern_present_then_named_and_redacted(text, kind):
    assert find_sensitive([text]) == [kind]
    assert "[redacted]" in redact(text)


@pytest.mark.parametrize(
    "text", ["SPY 560.12 +0.42 %", "DU1234", "UX12345", "ticker U up 3%", "sk-short", "F-150"]
)
def test_find_sensitive_when_ordinary_text_then_nothing_found(text):
    assert find_sensitive([text]) == []
    assert redact(text) == text


def test_find_sensitive_when_configured_secret_present_then_found_without_pattern():
    assert find_sensitive(["token plain-secret-value"], ["plain-secret-value"]) == [
        "configured secret"
    ]


def test_prompts_when_built_from_contexts_then_no_sensitive_data():
    messages = [*brief_messages(brief_context()), *review_messages(entry_context())]

    assert find_sensitive(m["content"] for m in messages) == []


# ---- contexts and results --------------------------------------------------------------------


def test_entry_context_when_from_intent_then_structure_kept_and_ids_left_out():
    spread = bull_call_debit(c(590), c(595))
    order = intent(spread, qty=2, limit="1.40", worst="1.50", max_loss="300")
    signal = Signal(
        "sig-42", SystemName.SMART0DTE, SignalKind.MOMENTUM, "SPY", Direction.BULLISH, 0.8, T0, "up"
    )

    ctx = EntryContext.from_intent(order, signal, underlying_price=591.0)
    prompt = "\n".join(m["content"] for m in review_messages(ctx))

    assert (ctx.day, ctx.structure, ctx.quantity, ctx.confidence) == (
        DAY,
        "bull_call_debit",
        2,
        0.8,
    )
    assert [(leg.side, leg.strike) for leg in ctx.legs] == [
        ("BUY", Decimal("590")),
        ("SELL", Decimal("595")),
    ]
    assert order.client_order_id not in prompt
    assert "sig-42" not in prompt


def test_position_summary_when_from_position_then_no_position_id():
    pos = position(bull_call_debit(c(590), c(595)), "1.20", qty=3, pid="pos-secret-7")

    summary = PositionSummary.from_position(pos, Decimal("12"))

    assert (summary.underlying, summary.quantity, summary.unrealized_pnl) == (
        "SPY",
        3,
        Decimal("12"),
    )
    assert "pos-secret-7" not in repr(summary)


def test_entry_context_when_confidence_out_of_range_then_error():
    with pytest.raises(ValueError, match="confidence"):
        entry_context(confidence=1.2)


def test_brief_context_when_day_is_datetime_then_error():
    with pytest.raises(TypeError, match="date"):
        brief_context(day=datetime(2025, 3, 14, 9, tzinfo=NY))


def test_entry_review_when_confidence_above_original_then_error():
    with pytest.raises(ValueError, match="raise"):
        EntryReview(ReviewDecision.LOWER, 0.5, 0.6, "x", Source.MODEL)


def test_advisor_when_clock_naive_then_error_not_silent_day():
    advisor = Advisor(api_key="sk-test-abcdefghijkl", now=lambda: datetime(2025, 3, 14, 9))  # noqa: DTZ001

    with pytest.raises(ValueError, match="timezone"):
        advisor.today()


def test_import_when_module_loaded_and_advisor_built_then_openai_not_imported():
    code = (
        "import sys\n"
        "from adapters.advisor import Advisor\n"
        "Advisor(api_key='sk-test-abcdefghijkl', base_url='http://127.0.0.1:9/v1')\n"
        "assert 'openai' not in sys.modules, 'openai imported at import or construction'\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )

    assert done.returncode == 0, done.stderr
