"""The advisor's texts: the pre-market brief (09:00) and the end-of-day narrative.

The context is built from the market data port and the ledger only: prior closes, the move
since (pre-market last vs prior close), VIX, the calendar (early close, the next holiday) and the
open positions without any id. The advisor writes the brief with OpenAI where a key is set and
falls back to a deterministic text otherwise; either way the result is stored under
``reports/<date>/brief.md`` and published as a markdown artifact by the flow.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

from adapters.advisor import (
    Advisor,
    Brief,
    BriefContext,
    DaySummary,
    Narrative,
    PositionSummary,
    TradeSummary,
    UnderlyingSnapshot,
)
from adapters.ports import MarketDataError
from core.calendar import NY, NotATradingDay, session
from core.models import SystemName
from tasks.report import summarize
from tasks.runtime import Runtime

log = logging.getLogger("dte.brief")

HOLIDAY_LOOKAHEAD_DAYS = 7


def calendar_notes(rt: Runtime) -> tuple[str, ...]:
    """Early close today, the close-out time, sessions missing in the next week (holidays)."""
    sess = rt.session
    notes = [
        f"session {sess.open:%H:%M}-{sess.close:%H:%M} New York"
        + (" (early close)" if sess.early_close else ""),
        f"0DTE close-out at {sess.closeout:%H:%M}, new entries until {rt.smart.cutoff(sess):%H:%M}",
    ]
    for offset in range(1, HOLIDAY_LOOKAHEAD_DAYS + 1):
        day = sess.day + timedelta(days=offset)
        if day.weekday() >= 5:
            continue
        try:
            other = session(day)
        except NotATradingDay:
            notes.append(f"market closed {day:%a %Y-%m-%d}")
            continue
        if other.early_close:
            notes.append(f"early close {day:%a %Y-%m-%d} at {other.close:%H:%M}")
    return tuple(notes)


def brief_context(rt: Runtime, at: datetime) -> BriefContext:
    day = rt.session.day
    snaps = []
    for sym in rt.smart.underlyings:
        prior = rt.market.prior_close(sym, day)
        try:
            last = rt.market.last_price(sym, at)
        except MarketDataError as exc:  # no pre-market print: say "flat", log why
            log.warning("%s: no pre-market price (%s): move taken as 0", sym, exc)
            last = prior
        snaps.append(UnderlyingSnapshot(sym, prior, 100.0 * (last / prior - 1.0)))
    vix_prior = rt.market.prior_close(rt.smart.vix_symbol, day)
    try:
        vix = rt.market.last_price(rt.smart.vix_symbol, at)
    except MarketDataError:
        vix = vix_prior
    positions = tuple(PositionSummary.from_position(p) for p in rt.store.open_positions())
    return BriefContext(
        day=day,
        underlyings=tuple(snaps),
        vix=vix,
        prior_vix=vix_prior,
        calendar_notes=calendar_notes(rt),
        open_positions=positions,
    )


def write_brief(rt: Runtime, out_dir: Path) -> tuple[Path, Brief]:
    at = rt.clock.now()
    advisor: Advisor = rt.advisor if rt.advisor is not None else Advisor(now=rt.clock.now)
    brief = advisor.premarket_brief(brief_context(rt, at))
    origin = (
        f"written by the model ({brief.tokens} tokens{', cached' if brief.cached else ''})"
        if brief.fallback_reason is None
        else f"fallback text: {brief.fallback_reason.value}"
    )
    text = (
        f"# Pre-market brief {rt.session.day.isoformat()}\n\n"
        f"_{at.astimezone(NY):%H:%M} New York, {rt.mode.value} mode; {origin}._\n\n"
        f"{brief.text.strip()}\n"
    )
    folder = out_dir / rt.session.day.isoformat()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "brief.md"
    path.write_text(text, encoding="utf-8")
    return path, brief


MAX_EVENTS_IN_NARRATIVE = 20


def day_summary(rt: Runtime) -> DaySummary:
    """What the narrative is told: P&L per system, the day's trades, risk events; no ids."""
    day = rt.session.day
    per_system: list[tuple[str, Decimal]] = []
    realized = unrealized = Decimal("0")
    for system in SystemName:
        s = summarize(rt.store, day, system)
        realized += s.realized
        unrealized += s.unrealized
        if s.fills:
            per_system.append((system.value, s.realized + s.unrealized))
    trades: list[TradeSummary] = []
    for p in rt.store.positions(day=day):
        common = (p.system.value, p.underlying, p.spread.kind.value)
        if p.opened_at.astimezone(NY).date() == day:
            trades.append(TradeSummary(*common, "OPEN", p.quantity, p.entry_price))
        closed = p.closed_at is not None and p.closed_at.astimezone(NY).date() == day
        if closed and p.exit_price is not None:
            trades.append(TradeSummary(*common, "CLOSE", p.quantity, p.exit_price, p.realized()))
    events = tuple(
        f"{e.at.astimezone(NY):%H:%M} {e.kind} ({e.severity})"
        for e in rt.store.risk_events(day=day)
    )[:MAX_EVENTS_IN_NARRATIVE]
    return DaySummary(
        day=day,
        realized_pnl=realized,
        unrealized_pnl=unrealized,
        pnl_by_system=tuple(per_system),
        trades=tuple(trades),
        risk_events=events,
        open_positions=tuple(PositionSummary.from_position(p) for p in rt.store.open_positions()),
    )


def narrative_markdown(rt: Runtime) -> tuple[str, Narrative]:
    """The EOD narrative section of the report (model or deterministic fallback)."""
    advisor: Advisor = rt.advisor if rt.advisor is not None else Advisor(now=rt.clock.now)
    story = advisor.eod_narrative(day_summary(rt))
    origin = (
        "written by the model"
        if story.fallback_reason is None
        else f"fallback text: {story.fallback_reason.value}"
    )
    return f"## Narrative\n\n_{origin}._\n\n{story.text.strip()}\n", story
