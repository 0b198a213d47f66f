"""Smart-0DTE decisions for one loop iteration (pure): which entries to make, which exits to take.

``plan_entries`` turns signals into sized structures; ``plan_exits`` checks every open position.
Orchestration (quotes, risk state, persistence, the broker) lives in ``tasks``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from core.calendar import NY, Session
from core.chains import ChainAnalysis, ChainError, ComboQuote, combo_quote
from core.exits import ExitDecision, check_exit
from core.models import (
    Direction,
    Position,
    Right,
    Signal,
    SignalKind,
    Spread,
    SystemName,
)
from core.sizing import confidence_factor, contracts_for_budget
from core.spreads import (
    SpreadError,
    bear_put_debit,
    bull_call_debit,
    iron_condor,
    long_straddle,
    max_loss_per_unit,
)
from systems.smart0dte.config import Smart0DTEConfig
from systems.smart0dte.signals import (
    Regime,
    SignalCandidate,
    UnderlyingView,
    classify_regime,
    divergence,
    momentum,
    regime_factor,
    volatility,
)

SYSTEM = SystemName.SMART0DTE


@dataclass(frozen=True, slots=True)
class BookEntry:
    """An open position or a recent entry intent of this system (for de-duplication)."""

    underlying: str
    kind: SignalKind
    at: datetime
    is_open: bool


@dataclass(frozen=True, slots=True)
class EntryPlan:
    signal: Signal
    spread: Spread
    quantity: int
    quote: ComboQuote
    max_loss_per_contract: Decimal


@dataclass(frozen=True, slots=True)
class Skip:
    underlying: str
    reason: str


@dataclass(frozen=True, slots=True)
class IterationPlan:
    regime: Regime
    signals: tuple[Signal, ...]
    entries: tuple[EntryPlan, ...]
    skips: tuple[Skip, ...]


def signal_id(day_key: str, cand: SignalCandidate, at: datetime) -> str:
    minute = at.astimezone(NY).strftime("%H%M")
    return f"{SYSTEM.value}:{day_key}:{cand.underlying}:{cand.kind.value}:{cand.direction.value}:{minute}"


def entries_open(now: datetime, session: Session, cfg: Smart0DTEConfig) -> bool:
    start = datetime.combine(session.day, cfg.loop_start, tzinfo=NY)
    return start <= now < cfg.cutoff(session)


def _structure(cand: SignalCandidate, analysis: ChainAnalysis, cfg: Smart0DTEConfig) -> Spread:
    """The structure STRATEGIES.md assigns to a signal, chosen by delta on liquid contracts."""
    if cand.kind in (SignalKind.MOMENTUM, SignalKind.DIVERGENCE):
        legs = cfg.momentum if cand.kind is SignalKind.MOMENTUM else cfg.divergence
        right = Right.CALL if cand.direction is Direction.BULLISH else Right.PUT
        long_i = analysis.select_by_delta(right, legs.long_delta)
        short_i = analysis.select_by_delta(right, legs.short_delta)
        if long_i is None or short_i is None:
            raise ChainError(f"no liquid {right.name.lower()}s for a debit spread")
        if right is Right.CALL:
            return bull_call_debit(analysis.contract(long_i), analysis.contract(short_i))
        return bear_put_debit(analysis.contract(long_i), analysis.contract(short_i))
    if cand.kind is SignalKind.VOL_CONTRACTION:
        vol = cfg.volatility
        wing = vol.wings.get(cand.underlying)
        if wing is None:
            raise ChainError(f"no condor wing width configured for {cand.underlying}")
        sp = analysis.select_by_delta(Right.PUT, vol.condor_short_delta)
        sc = analysis.select_by_delta(Right.CALL, vol.condor_short_delta)
        if sp is None or sc is None:
            raise ChainError("no liquid short strikes for an iron condor")
        short_put, short_call = analysis.contract(sp), analysis.contract(sc)
        lp = analysis.strike_index(Right.PUT, float(short_put.strike - wing), require_liquid=False)
        lc = analysis.strike_index(
            Right.CALL, float(short_call.strike + wing), require_liquid=False
        )
        if lp is None or lc is None:
            raise ChainError(f"condor wings ${wing} beyond the shorts are not quoted")
        return iron_condor(analysis.contract(lp), short_put, short_call, analysis.contract(lc))
    if cand.kind is SignalKind.VOL_EXPANSION:
        call_i = analysis.atm_index(Right.CALL)
        put_i = analysis.strike_index(Right.PUT, float(analysis.snapshot.strikes[call_i]))
        if put_i is None or not bool(analysis.liquid[call_i]):
            raise ChainError("ATM straddle legs are not liquid")
        return long_straddle(analysis.contract(call_i), analysis.contract(put_i))
    raise ChainError(f"Smart-0DTE has no structure for {cand.kind.value}")


def _blocked(
    cand: SignalCandidate, book: Sequence[BookEntry], now: datetime, cfg: Smart0DTEConfig
) -> str:
    same_und = [b for b in book if b.is_open and b.underlying == cand.underlying]
    if len(same_und) >= cfg.max_per_underlying:
        return f"{len(same_und)} positions open on {cand.underlying} (max {cfg.max_per_underlying})"
    same_kind = [b for b in same_und if b.kind is cand.kind]
    if len(same_kind) >= cfg.max_per_underlying_and_kind:
        return f"a {cand.kind.value} position is already open on {cand.underlying}"
    cooldown = timedelta(minutes=cfg.reentry_cooldown_minutes)
    recent = [
        b
        for b in book
        if b.underlying == cand.underlying and b.kind is cand.kind and now - b.at < cooldown
    ]
    if recent:
        return (
            f"{cand.kind.value} on {cand.underlying} entered within {cfg.reentry_cooldown_minutes}m"
        )
    return ""


def plan_entries(
    now: datetime,
    session: Session,
    views: Mapping[str, UnderlyingView],
    vix_last: float,
    vix_prior_close: float,
    book: Sequence[BookEntry],
    max_position_size: Decimal,
    cfg: Smart0DTEConfig,
) -> IterationPlan:
    """Signals at ``now`` and the entries they justify; every rejection is a ``Skip`` with a reason."""
    regime = classify_regime(vix_last, cfg.regime)
    skips: list[Skip] = [
        Skip(sym, f"no same-day chain: {view.unavailable}")
        for sym, view in views.items()
        if view.analysis is None
    ]
    candidates: list[SignalCandidate] = []
    for view in views.values():
        for cand in (
            momentum(view, cfg.momentum),
            volatility(view, vix_last, vix_prior_close, regime, cfg.volatility),
        ):
            if cand is not None:
                candidates.append(cand)
    candidates += divergence(views, cfg.divergence)
    day_key = session.day.isoformat()
    signals = tuple(
        Signal(
            signal_id(day_key, c, now),
            SYSTEM,
            c.kind,
            c.underlying,
            c.direction,
            c.confidence,
            now,
            c.reason,
        )
        for c in candidates
    )
    if not entries_open(now, session, cfg):
        return IterationPlan(regime, signals, (), tuple(skips))
    if regime is Regime.NO_ENTRY:
        skips.append(Skip("*", f"VIX {vix_last:.2f} >= {cfg.regime.no_entry_from}: no new entries"))
        return IterationPlan(regime, signals, (), tuple(skips))
    entries: list[EntryPlan] = []
    taken = list(book)
    for cand, sig in sorted(
        zip(candidates, signals, strict=True), key=lambda cs: -cs[0].confidence
    ):
        if cand.confidence < cfg.confidence_threshold:
            continue
        reason = _blocked(cand, taken, now, cfg)
        if reason:
            skips.append(Skip(cand.underlying, reason))
            continue
        analysis = views[cand.underlying].analysis
        if analysis is None:
            continue
        try:
            spread = _structure(cand, analysis, cfg)
            quote = combo_quote({(spread.underlying, spread.expiry): analysis.snapshot}, spread)
            per_contract = max_loss_per_unit(spread, quote.ask) * spread.multiplier
        except (ChainError, SpreadError) as exc:
            skips.append(Skip(cand.underlying, f"{cand.kind.value}: {exc}"))
            continue
        budget = (
            max_position_size
            * regime_factor(regime, cfg.regime)
            * confidence_factor(cand.confidence, cfg.confidence_steps)
        )
        qty = contracts_for_budget(budget, per_contract, max_position_size)
        if qty == 0:
            skips.append(
                Skip(
                    cand.underlying, f"budget {budget} below one contract's max loss {per_contract}"
                )
            )
            continue
        entries.append(EntryPlan(sig, spread, qty, quote, per_contract))
        taken.append(BookEntry(cand.underlying, cand.kind, now, is_open=True))
    return IterationPlan(regime, signals, tuple(entries), tuple(skips))


def plan_exits(
    positions: Sequence[Position],
    marks: Mapping[str, Decimal],
    now: datetime,
    session: Session,
    cfg: Smart0DTEConfig,
) -> list[tuple[Position, ExitDecision]]:
    """Exit decisions for positions with a mark (position_id -> net mid); close-out closes all."""
    out: list[tuple[Position, ExitDecision]] = []
    for pos in positions:
        if now >= session.closeout:
            decision = check_exit(pos, pos.entry_price, now, session.closeout, cfg.exits)
        elif pos.position_id in marks:
            decision = check_exit(pos, marks[pos.position_id], now, session.closeout, cfg.exits)
        else:
            continue
        if decision is not None:
            out.append((pos, decision))
    return out
