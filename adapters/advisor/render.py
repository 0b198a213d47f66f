"""Prompts and deterministic fallback texts, both built from the context dataclasses alone.

Pure functions: the same context gives byte-identical prompts (so the cache key is stable) and
byte-identical fallback texts. Fallback texts redact anything that looks like an account id or a
key, in case free text in a context carries one.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from enum import Enum
from typing import Any

from adapters.advisor.guard import redact
from adapters.advisor.models import (
    BriefContext,
    DaySummary,
    EntryContext,
    PositionSummary,
    TradeSummary,
)

Message = dict[str, str]

# Descriptive VIX bands for the fallback brief only (never used by any trading rule).
VIX_BANDS: tuple[tuple[float, str], ...] = ((15.0, "low"), (20.0, "normal"), (30.0, "elevated"))
VIX_TOP_BAND = "high"

FALLBACK_NOTE = "_Deterministic summary built from the data alone (AI advisor not used)._"

ADVISORY = (
    "You are an assistant to an automated options-trading system (same-day SPY/QQQ/IWM spreads "
    "and ~7-day spreads on the Magnificent Seven). You are advisory only: you never place, size "
    "or change a trade. Use only the numbers given; do not invent prices or events."
)

BRIEF_SYSTEM = (
    f"{ADVISORY} Write a concise pre-market brief in markdown with exactly three sections: "
    "'## Regime' (volatility regime from VIX and its change, gaps), '## Levels' (prior closes and "
    "the range implied by each implied move), '## What to watch' (calendar notes, open positions, "
    "the largest overnight moves). At most 250 words."
)

REVIEW_SYSTEM = (
    f"{ADVISORY} Review one proposed entry. Answer with exactly one decision: 'accept' (leave it "
    "unchanged, confidence null), 'veto' (block it, confidence null, give the reason) or 'lower' "
    "(keep it with a lower confidence: a number from 0 up to the original confidence, give the "
    "reason). You may never raise the confidence or change the structure, strikes, quantity or "
    "prices. Reply only with JSON matching the schema."
)

NARRATIVE_SYSTEM = (
    f"{ADVISORY} Write a short end-of-day narrative in markdown for the trader: how the day went "
    "(P&L by system), the trades, any risk events and trading-state changes, and what is still "
    "open. Plain factual sentences, at most 250 words."
)


# ---- prompts ---------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return value


def context_json(context: object) -> str:
    """The context as stable, sorted JSON (the user message of every prompt)."""
    return json.dumps(_jsonable(context), sort_keys=True, indent=1, ensure_ascii=False)


def brief_messages(context: BriefContext) -> list[Message]:
    return [
        {"role": "system", "content": BRIEF_SYSTEM},
        {
            "role": "user",
            "content": f"Pre-market data for {context.day.isoformat()}:\n{context_json(context)}",
        },
    ]


def review_messages(context: EntryContext) -> list[Message]:
    return [
        {"role": "system", "content": REVIEW_SYSTEM},
        {
            "role": "user",
            "content": (
                f"Proposed entry on {context.day.isoformat()} with original confidence "
                f"{context.confidence:.4f}:\n{context_json(context)}"
            ),
        },
    ]


def narrative_messages(context: DaySummary) -> list[Message]:
    return [
        {"role": "system", "content": NARRATIVE_SYSTEM},
        {
            "role": "user",
            "content": f"Trading day {context.day.isoformat()}:\n{context_json(context)}",
        },
    ]


# ---- fallback texts --------------------------------------------------------------------------


def _money(value: Decimal) -> str:
    value = value.quantize(Decimal("0.01"))
    if value == 0:
        return "$0.00"
    sign = "+" if value > 0 else "-"
    return f"{sign}${abs(value):,.2f}"


def _amount(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,.2f}"


def _pct(value: float) -> str:
    return f"{value:+.2f} %"


def _vix_band(vix: float) -> str:
    for upper, label in VIX_BANDS:
        if vix < upper:
            return label
    return VIX_TOP_BAND


def _position_line(p: PositionSummary) -> str:
    line = (
        f"- {redact(p.system)} {redact(p.underlying)} {redact(p.structure)} "
        f"exp {p.expiry.isoformat()} x{p.quantity}, max loss {_amount(p.max_loss)}"
    )
    if p.unrealized_pnl is not None:
        line += f", unrealised {_money(p.unrealized_pnl)}"
    return line


def _bullets(items: Iterable[str], empty: str) -> list[str]:
    lines = [f"- {redact(item)}" for item in items]
    return lines or [f"- {empty}"]


def fallback_brief(context: BriefContext) -> str:
    change = context.vix - context.prior_vix
    change_pct = 100.0 * change / context.prior_vix if context.prior_vix > 0 else 0.0
    trend = "rising" if change > 0 else "falling" if change < 0 else "unchanged"
    lines = [
        f"# Pre-market brief — {context.day.isoformat()}",
        "",
        FALLBACK_NOTE,
        "",
        "## Regime",
        f"- VIX {context.vix:.2f}, prior close {context.prior_vix:.2f} "
        f"({change:+.2f}, {_pct(change_pct)}): {_vix_band(context.vix)} volatility, {trend}.",
        "",
        "## Levels",
        "| underlying | prior close | overnight | implied move | prior close ± implied move |",
        "|---|---:|---:|---:|---|",
    ]
    for u in context.underlyings:
        if u.implied_move_pct is None:
            implied, band = "n/a", "n/a"
        else:
            half = u.prior_close * u.implied_move_pct / 100.0
            implied = f"±{u.implied_move_pct:.2f} %"
            band = f"{u.prior_close - half:.2f} – {u.prior_close + half:.2f}"
        lines.append(
            f"| {redact(u.symbol)} | {u.prior_close:.2f} | {_pct(u.overnight_move_pct)} "
            f"| {implied} | {band} |"
        )
    if not context.underlyings:
        lines.append("| n/a | | | | |")
    lines += ["", "## Calendar", *_bullets(context.calendar_notes, "regular session, no notes")]
    lines += ["", "## Open positions"]
    lines += [_position_line(p) for p in context.open_positions] or ["- none"]
    lines += ["", "## What to watch"]
    watch: list[str] = []
    if context.underlyings:
        # ties broken by symbol so the text never depends on input order
        biggest = max(context.underlyings, key=lambda u: (abs(u.overnight_move_pct), u.symbol))
        watch.append(
            f"- Largest overnight move: {redact(biggest.symbol)} "
            f"{_pct(biggest.overnight_move_pct)}."
        )
        for u in sorted(context.underlyings, key=lambda u: u.symbol):
            if u.implied_move_pct is not None and abs(u.overnight_move_pct) >= u.implied_move_pct:
                watch.append(
                    f"- {redact(u.symbol)} has already moved {_pct(u.overnight_move_pct)} "
                    f"overnight, at or beyond its implied move ±{u.implied_move_pct:.2f} %."
                )
    watch.append(f"- VIX {trend} versus the prior close ({change:+.2f}).")
    watch += [f"- {redact(note)}" for note in context.calendar_notes]
    if context.open_positions:
        watch.append(f"- {len(context.open_positions)} open position(s) carried into the session.")
    lines += [*watch, ""]
    return "\n".join(lines)


def _trade_line(t: TradeSummary) -> str:
    line = (
        f"- {redact(t.action)} {redact(t.system)} {redact(t.underlying)} {redact(t.structure)} "
        f"x{t.quantity} @ {t.price:.2f}"
    )
    if t.realized_pnl is not None:
        line += f" (realised {_money(t.realized_pnl)})"
    return line


def fallback_narrative(context: DaySummary) -> str:
    total = context.realized_pnl + context.unrealized_pnl
    lines = [
        f"# End of day — {context.day.isoformat()}",
        "",
        FALLBACK_NOTE,
        "",
        f"Realised P&L {_money(context.realized_pnl)}, unrealised "
        f"{_money(context.unrealized_pnl)}, total {_money(total)}.",
        "",
    ]
    if context.pnl_by_system:
        parts = [f"{redact(system)} {_money(pnl)}" for system, pnl in context.pnl_by_system]
        lines += [f"By system: {'; '.join(parts)}.", ""]
    n = len(context.trades)
    lines.append(f"{n} trade{'s' if n != 1 else ''}." if n else "No trades.")
    lines += [_trade_line(t) for t in context.trades]
    lines += ["", "Risk events:", *_bullets(context.risk_events, "none")]
    lines += ["", "Trading-state changes:", *_bullets(context.state_changes, "none")]
    lines += ["", "Open at the close:"]
    lines += [_position_line(p) for p in context.open_positions] or ["- none"]
    lines.append("")
    return "\n".join(lines)
