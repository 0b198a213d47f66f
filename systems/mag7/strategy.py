"""Mag7-7DTE decisions (pure): the weekly entry scan and the position management check.

``plan_entries`` runs on the entry day (Friday, or the trading day before it when Friday is a
holiday) from 10:00: for each underlying it chooses the listed expiry closest to 7 calendar days
within [5, 10], computes the votes and the ensemble, and turns an emitted signal into a sized
structure, or a ``Skip`` that says why not. ``plan_exits`` runs at every management time. Both
mirror ``systems.smart0dte.strategy`` so the orchestration calls them the same way; quotes, risk
state, approvals, persistence and the broker live in ``tasks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal

import numpy as np

from core.calendar import NY, Session, is_trading_day, previous_trading_day
from core.calendar import session as calendar_session
from core.chains import ChainAnalysis, ChainError, ComboQuote, analyze_chain, combo_quote
from core.indicators import return_correlation
from core.marketdata import Bars, ChainSnapshot, FloatArray
from core.models import (
    Direction,
    Position,
    PositionStatus,
    RiskLimits,
    Signal,
    SignalKind,
    Spread,
    SystemName,
    require_aware,
)
from core.pricing import ExpiredContractError
from core.spreads import SpreadError, max_loss_per_unit
from systems.mag7.config import Mag7Config
from systems.mag7.exits import Mag7ExitDecision, check_mag7_exit
from systems.mag7.signals import (
    EarningsHistory,
    EnsembleResult,
    IVAssessment,
    all_votes,
    assess_iv,
    ensemble,
)
from systems.mag7.sizing import SizingDecision, size_position
from systems.mag7.structure import build_structure, choose_structure

SYSTEM = SystemName.MAG7


# --------------------------------------------------------------------------- calendar


def entry_day_for_week(day: date, weekday: int) -> date:
    """The entry day of ``day``'s week: ``weekday`` (Mon=0), or the last trading day before it
    when it is a holiday (Good Friday 2027-03-26 -> Thursday 2027-03-25)."""
    target = day - timedelta(days=day.weekday()) + timedelta(days=weekday)
    return target if is_trading_day(target) else previous_trading_day(target)


def is_entry_day(day: date, cfg: Mag7Config) -> bool:
    return entry_day_for_week(day, cfg.entry_weekday) == day


@dataclass(frozen=True, slots=True)
class ExpiryChoice:
    expiry: date | None
    dte: int | None
    reason: str


def choose_expiry(entry_day: date, listed: Sequence[date], cfg: Mag7Config) -> ExpiryChoice:
    """The listed expiry with calendar DTE closest to ``target_dte`` within [min_dte, max_dte];
    ties go to the earlier expiry; none in range -> no entry (never ``today + 7``)."""
    in_range = sorted({d for d in listed if cfg.min_dte <= (d - entry_day).days <= cfg.max_dte})
    if not in_range:
        shown = ", ".join(d.isoformat() for d in sorted(set(listed))) or "none"
        return ExpiryChoice(
            None,
            None,
            f"no listed expiry {cfg.min_dte}..{cfg.max_dte} days after {entry_day} "
            f"(listed: {shown})",
        )
    best = min(in_range, key=lambda d: (abs((d - entry_day).days - cfg.target_dte), d))
    dte = (best - entry_day).days
    return ExpiryChoice(best, dte, f"expiry {best} ({dte} DTE, target {cfg.target_dte})")


def earnings_in_life(start: date, expiry: date, earnings_dates: Sequence[date]) -> date | None:
    """The first earnings date in [start, expiry] (both ends included), or None."""
    inside = sorted(d for d in earnings_dates if start <= d <= expiry)
    return inside[0] if inside else None


def management_times(session: Session, cfg: Mag7Config) -> tuple[datetime, ...]:
    """The day's management checks: the configured times, each moved to the session's close-out
    time if later (an early-close day checks at 10:00, 12:00 and 12:45)."""
    times = {
        min(datetime.combine(session.day, t, tzinfo=NY), session.closeout)
        for t in cfg.management_times
    }
    return tuple(sorted(times))


def entry_block_reason(now: datetime, session: Session, cfg: Mag7Config) -> str:
    """Why no entry may be made at ``now`` ("" when the entry window is open): only on the entry
    day, from ``entry_time`` until the cut-off (15:00, or close - 60 min on an early close)."""
    if not is_entry_day(session.day, cfg):
        entry = entry_day_for_week(session.day, cfg.entry_weekday)
        return f"{session.day} is not the entry day (this week's is {entry})"
    start = datetime.combine(session.day, cfg.entry_time, tzinfo=NY)
    cutoff = session.entry_cutoff(cfg.entry_cutoff, cfg.entry_cutoff_before_close_minutes)
    if not start <= now < cutoff:
        return f"entries run {start:%H:%M}..{cutoff:%H:%M}, now {now.astimezone(NY):%H:%M}"
    return ""


# --------------------------------------------------------------------------- inputs and plans


@dataclass(frozen=True, slots=True, eq=False)
class SymbolInputs:
    """What the scan sees of one underlying.

    ``bars``: completed daily bars, oldest first (about a year). ``iv_history``: stored daily
    30-day ATM IV, oldest first, today's value last (or pass ``current_iv``). ``chains``: option
    chains by expiry, at least the one ``choose_expiry`` picks from ``listed_expiries``.
    ``earnings_dates``: known upcoming/recent earnings dates; ``earnings_history`` feeds the drift
    vote (used only when ``EarningsConfig.calendar_configured``).
    """

    symbol: str
    bars: Bars
    iv_history: FloatArray
    listed_expiries: tuple[date, ...]
    chains: Mapping[date, ChainSnapshot] = field(default_factory=dict)
    earnings_dates: tuple[date, ...] = ()
    earnings_history: EarningsHistory | None = None
    current_iv: float | None = None


@dataclass(frozen=True, slots=True, eq=False)
class SymbolEvaluation:
    symbol: str
    expiry: ExpiryChoice
    analysis: ChainAnalysis | None
    iv: IVAssessment
    result: EnsembleResult
    signal: Signal | None
    chain_problem: str = ""  # why ``analysis`` is None, when it is


@dataclass(frozen=True, slots=True)
class EntryPlan:
    signal: Signal
    spread: Spread
    quantity: int
    quote: ComboQuote
    max_loss_per_contract: Decimal
    sizing: SizingDecision
    reasons: tuple[str, ...]

    @property
    def max_loss(self) -> Decimal:
        return self.max_loss_per_contract * self.quantity


@dataclass(frozen=True, slots=True)
class Skip:
    underlying: str
    reason: str


@dataclass(frozen=True, slots=True)
class Mag7Plan:
    entry_day: date
    evaluations: tuple[SymbolEvaluation, ...]
    signals: tuple[Signal, ...]
    entries: tuple[EntryPlan, ...]
    skips: tuple[Skip, ...]


def signal_id(entry_day: date, symbol: str, direction: Direction) -> str:
    """One id per (week, underlying, bias): a rerun of the scan finds the same intent."""
    return f"{SYSTEM.value}:{entry_day.isoformat()}:{symbol}:{direction.value}"


def evaluate_symbol(
    now: datetime, entry_day: date, inputs: SymbolInputs, cfg: Mag7Config
) -> SymbolEvaluation:
    """Expiry, chain analysis, IV level, votes and ensemble for one underlying."""
    choice = choose_expiry(entry_day, inputs.listed_expiries, cfg)
    analysis: ChainAnalysis | None = None
    problem = ""
    if choice.expiry is None:
        problem = choice.reason
    elif choice.expiry not in inputs.chains:
        problem = f"no chain supplied for {choice.expiry}"
    else:
        try:
            analysis = analyze_chain(
                inputs.chains[choice.expiry],
                calendar_session(choice.expiry).close,
                cfg.liquidity,
                cfg.rate,
                cfg.dividend_yield,
            )
        except (ChainError, ExpiredContractError, ValueError) as exc:
            problem = f"chain for {choice.expiry} unusable: {exc}"
    iv = assess_iv(inputs.iv_history, inputs.bars.close, cfg.iv, inputs.current_iv)
    votes = all_votes(inputs.bars, iv, analysis, inputs.earnings_history, entry_day, cfg)
    result = ensemble(votes, iv, cfg.ensemble)
    signal = None
    if result.direction is not None:
        signal = Signal(
            signal_id(entry_day, inputs.symbol, result.direction),
            SYSTEM,
            SignalKind.ENSEMBLE,
            inputs.symbol,
            result.direction,
            result.confidence,
            now,
            result.reason,
        )
    return SymbolEvaluation(inputs.symbol, choice, analysis, iv, result, signal, problem)


def _closes_by_day(bars: Bars) -> dict[date, float]:
    return {t.astimezone(NY).date(): float(c) for t, c in zip(bars.times, bars.close, strict=True)}


def _correlation(a: Bars, b: Bars, window: int) -> float:
    """Correlation of daily returns on the days both series have, last ``window`` returns."""
    ca, cb = _closes_by_day(a), _closes_by_day(b)
    common = sorted(set(ca) & set(cb))
    if len(common) < window + 1:
        return float("nan")
    keep = common[-(window + 1) :]
    xa = np.array([ca[d] for d in keep], dtype=np.float64)
    xb = np.array([cb[d] for d in keep], dtype=np.float64)
    return return_correlation(xa, xb, window)


def _open_positions(book: Sequence[Position]) -> list[Position]:
    return [p for p in book if p.status is PositionStatus.OPEN]


def plan_entries(
    now: datetime,
    session: Session,
    inputs: Mapping[str, SymbolInputs],
    book: Sequence[Position],
    equity: Decimal,
    limits: RiskLimits,
    cfg: Mag7Config,
) -> Mag7Plan:
    """The weekly scan at ``now``; ``book`` holds the open positions of both systems.

    Candidates are taken in descending confidence; each planned entry counts against the caps of
    the next ones (positions, stock, sector, correlation).
    """
    require_aware(now, "now")
    if now.astimezone(NY).date() != session.day:
        raise ValueError(f"now {now} is not on session day {session.day}")
    entry_day = session.day
    closed = entry_block_reason(now, session, cfg)
    if closed:
        return Mag7Plan(entry_day, (), (), (), (Skip("*", closed),))
    skips: list[Skip] = []
    evaluations: list[SymbolEvaluation] = []
    for symbol in cfg.underlyings:
        if symbol not in inputs:
            skips.append(Skip(symbol, "no market inputs"))
            continue
        ev = evaluate_symbol(now, entry_day, inputs[symbol], cfg)
        evaluations.append(ev)
        if ev.expiry.expiry is None:
            skips.append(Skip(symbol, ev.expiry.reason))
        elif ev.signal is None:
            skips.append(Skip(symbol, f"no signal: {ev.result.reason}"))
    signals = tuple(ev.signal for ev in evaluations if ev.signal is not None)
    candidates = sorted(
        (ev for ev in evaluations if ev.signal is not None and ev.expiry.expiry is not None),
        key=lambda ev: (-ev.result.confidence, ev.symbol),
    )
    running = _open_positions(book)
    entries: list[EntryPlan] = []
    for ev in candidates:
        planned = _plan_one(now, entry_day, ev, inputs, running, equity, limits, cfg)
        if isinstance(planned, Skip):
            skips.append(planned)
            continue
        entries.append(planned)
        running.append(
            Position(
                position_id=f"planned:{planned.signal.signal_id}",
                system=SYSTEM,
                signal_kind=SignalKind.ENSEMBLE,
                spread=planned.spread,
                quantity=planned.quantity,
                entry_price=planned.quote.ask,
                opened_at=now,
                max_loss=planned.max_loss,
            )
        )
    return Mag7Plan(entry_day, tuple(evaluations), signals, tuple(entries), tuple(skips))


def _plan_one(
    now: datetime,
    entry_day: date,
    ev: SymbolEvaluation,
    inputs: Mapping[str, SymbolInputs],
    running: Sequence[Position],
    equity: Decimal,
    limits: RiskLimits,
    cfg: Mag7Config,
) -> EntryPlan | Skip:
    symbol = ev.symbol
    signal = ev.signal
    expiry = ev.expiry.expiry
    if signal is None or expiry is None:
        return Skip(symbol, "no signal or no expiry")
    earnings = earnings_in_life(entry_day, expiry, inputs[symbol].earnings_dates)
    if earnings is not None:
        return Skip(symbol, f"life {entry_day}..{expiry} spans earnings on {earnings}: no entry")
    mine = [p for p in running if p.system is SYSTEM]
    same = [p for p in mine if p.underlying == symbol]
    if len(same) >= limits.max_per_underlying_per_system:
        return Skip(
            symbol,
            f"{len(same)} Mag7 positions on {symbol} (max {limits.max_per_underlying_per_system})",
        )
    if len(running) >= limits.max_open_positions:
        return Skip(
            symbol,
            f"{len(running)} positions open (max_open_positions {limits.max_open_positions})",
        )
    if len(mine) >= cfg.sizing.max_open_positions:
        return Skip(
            symbol, f"{len(mine)} Mag7 positions open (max {cfg.sizing.max_open_positions})"
        )
    choice = choose_structure(signal.direction, ev.iv.level, cfg.structure)
    if choice.kind is None:
        return Skip(symbol, f"no structure: {choice.reason}")
    if ev.analysis is None:
        return Skip(symbol, f"no usable chain for {expiry}: {ev.chain_problem}")
    try:
        spread = build_structure(choice.kind, ev.analysis, cfg.structure)
        quote = combo_quote({(spread.underlying, spread.expiry): ev.analysis.snapshot}, spread)
        per_contract = max_loss_per_unit(spread, quote.ask) * spread.multiplier
    except (ChainError, SpreadError) as exc:
        return Skip(symbol, f"{choice.kind.value}: {exc}")
    held = sorted({p.underlying for p in mine})
    correlations = {
        h: (
            _correlation(inputs[symbol].bars, inputs[h].bars, cfg.sizing.corr_window)
            if h in inputs
            else float("nan")
        )
        for h in held
    }
    sizing = size_position(
        symbol,
        signal.confidence,
        per_contract,
        equity,
        running,
        correlations,
        limits.max_position_size,
        cfg.sectors,
        cfg.sizing,
    )
    if not sizing.ok:
        return Skip(symbol, f"{choice.kind.value}: {sizing.reason}")
    reasons = (
        signal.reason,
        f"IV method {ev.iv.method.value}: {ev.iv.reason}",
        ev.expiry.reason,
        f"structure {choice.kind.value}: {choice.reason}",
        *sizing.reasons,
    )
    return EntryPlan(signal, spread, sizing.quantity, quote, per_contract, sizing, reasons)


def plan_exits(
    positions: Sequence[Position],
    marks: Mapping[str, Decimal],
    now: datetime,
    session: Session,
    cfg: Mag7Config,
    peaks: Mapping[str, Decimal] | None = None,
    earnings: Mapping[str, Sequence[date]] | None = None,
) -> list[tuple[Position, Mag7ExitDecision]]:
    """Exit decisions for open Mag7 positions at a management time.

    ``marks``: position_id -> net mid; ``peaks``: position_id -> highest P&L fraction so far;
    ``earnings``: underlying -> earnings dates. Calendar closes (1-DTE, pre-earnings) fire without
    a mark; the P&L rules need one.
    """
    require_aware(now, "now")
    if now.astimezone(NY).date() != session.day:
        raise ValueError(f"now {now} is not on session day {session.day}")
    peaks = peaks or {}
    earnings = earnings or {}
    out: list[tuple[Position, Mag7ExitDecision]] = []
    for pos in positions:
        if pos.system is not SYSTEM or pos.status is not PositionStatus.OPEN:
            continue
        decision = check_mag7_exit(
            pos,
            marks.get(pos.position_id),
            now,
            cfg.exits,
            peaks.get(pos.position_id),
            tuple(earnings.get(pos.underlying, ())),
        )
        if decision is not None:
            out.append((pos, decision))
    return out
