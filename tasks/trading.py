"""One step each: observe the market, manage exits, update risk, enter, close out, kill.

These are plain functions taking a ``Runtime``; ``tasks.steps`` wraps them as Prefect tasks. The
strategy decisions are pure (``systems.smart0dte.strategy``); this module does the I/O around them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

from adapters.advisor import EntryContext, EntryReview
from adapters.ports import MarketDataError
from core.approvals import TierAssessment, classify
from core.calendar import NY
from core.chains import ChainError, analyze_chain, combo_quote
from core.exits import ExitReason
from core.marketdata import ChainSnapshot
from core.models import (
    IntentAction,
    IntentStatus,
    OrderIntent,
    Position,
    PositionStatus,
    RiskDecision,
    SignalKind,
    SystemName,
    TradingState,
)
from core.orders import WalkRules, close_intent, open_intent
from core.pnl import DayPnl, base_id, day_pnl, is_carried
from core.risk import RiskSnapshot, StateChange, check_intent, evaluate_state, exposures, loss_level
from core.sizing import confidence_factor
from systems.smart0dte.signals import UnderlyingView
from systems.smart0dte.strategy import (
    BookEntry,
    EntryPlan,
    IterationPlan,
    plan_entries,
    plan_exits,
)
from tasks.execution import ERROR_KINDS, ExecutionResult, claim, execute_intent, run_owner
from tasks.runtime import Runtime

log = logging.getLogger("dte.trading")
SMART = SystemName.SMART0DTE


@dataclass
class Observation:
    now: datetime
    views: dict[str, UnderlyingView]
    vix_last: float
    vix_prior_close: float
    snapshots: dict[tuple[str, date], ChainSnapshot]
    # net mids already taken on these snapshots (position_id -> value): the minute's exits and
    # risk mark the same positions on the same chains
    marked: dict[str, Decimal] = field(default_factory=dict)

    @property
    def skipped_count(self) -> int:
        """Quotes skipped this minute (bad quote or no implied vol), all chains."""
        return sum(v.analysis.skipped_count for v in self.views.values() if v.analysis)

    @property
    def skipped_quotes(self) -> list[tuple[str, str]]:
        """(contract, reason) of every skipped quote, formatted on access (logs, tests)."""
        return [s for v in self.views.values() if v.analysis for s in v.analysis.skipped()]


@dataclass(frozen=True, slots=True)
class DayReference:
    """What cannot change during a session, read once per run instead of every minute."""

    prior_close: dict[str, float]
    same_day: dict[str, str]  # underlying -> "" when it lists a same-day expiry, else why not


def day_reference(rt: Runtime) -> DayReference:
    if rt.reference is None:
        day = rt.session.day
        symbols = [*rt.smart.underlyings, rt.smart.vix_symbol]
        same_day: dict[str, str] = {}
        for und in rt.smart.underlyings:
            try:
                listed = day in rt.market.expiries(und, day)
                same_day[und] = "" if listed else f"{und} lists no expiry on {day.isoformat()}"
            except MarketDataError as exc:
                same_day[und] = f"{type(exc).__name__}: {exc}"
        rt.reference = DayReference(
            prior_close={s: rt.market.prior_close(s, day) for s in symbols},
            same_day=same_day,
        )
    reference: DayReference = rt.reference
    return reference


def observe(rt: Runtime, now: datetime) -> Observation:
    """Bars, same-day chains and VIX. A missing chain makes that underlying unavailable, no more."""
    day = rt.session.day
    cfg = rt.smart
    ref = day_reference(rt)
    views: dict[str, UnderlyingView] = {}
    snapshots: dict[tuple[str, date], ChainSnapshot] = {}
    for und in cfg.underlyings:
        bars = rt.market.bars(und, rt.session.open, now)
        if len(bars) == 0:
            continue
        unavailable = ref.same_day[und]
        analysis = None
        if not unavailable:  # listed today: a failure now is worth a warning
            try:
                snap = rt.market.chain(und, day, now)
                snapshots[(und, day)] = snap
                analysis = analyze_chain(snap, rt.session.close, cfg.liquidity)
            except (MarketDataError, ChainError, ValueError) as exc:
                unavailable = f"{type(exc).__name__}: {exc}"
                log.warning("%s chain unusable at %s: %s", und, now.strftime("%H:%M"), unavailable)
        views[und] = UnderlyingView(und, bars, ref.prior_close[und], analysis, unavailable)
    vix_last = rt.market.last_price(cfg.vix_symbol, now)
    return Observation(now, views, vix_last, ref.prior_close[cfg.vix_symbol], snapshots)


def marks(
    rt: Runtime, positions: Iterable[Position], obs: Observation | None, at: datetime | None = None
) -> dict[str, Decimal]:
    """Net mid of every position that can be quoted at ``at`` (default now): position_id -> value."""
    now = rt.clock.now() if at is None else at
    snaps = dict(obs.snapshots) if obs is not None else {}
    # the minute's own marks (on its chains) are kept on the observation, others not
    kept = obs.marked if obs is not None else {}
    out: dict[str, Decimal] = {}
    for pos in positions:
        pid = pos.position_id
        key = (pos.spread.underlying, pos.spread.expiry)
        if pid in kept:
            out[pid] = kept[pid]
            continue
        try:
            if key not in snaps:
                snaps[key] = rt.market.chain(key[0], key[1], now)
            out[pid] = combo_quote(snaps, pos.spread).mid
        except (MarketDataError, ChainError) as exc:
            log.warning("no mark for %s: %s", pid, exc)
            continue
        if obs is not None and key in obs.snapshots:
            kept[pid] = out[pid]
    return out


_UNBASED: set[tuple[date, str]] = set()  # carried rows already reported without a baseline


def day_pnl_by_system(
    rt: Runtime,
    open_rows: Iterable[Position],
    open_marks: Mapping[str, Decimal],
    until: datetime | None = None,
) -> dict[SystemName, DayPnl]:
    """Today's P&L per system (``core.pnl``): the rows closed today (by ``until``) plus
    ``open_rows`` at ``open_marks``; a position carried from an earlier session counts from its
    prior close mark (``record_close_marks``), not from its entry."""
    day = rt.session.day
    closed = [
        p
        for p in rt.store.positions_closed_on(day)
        if until is None or (p.closed_at is not None and p.closed_at <= until)
    ]
    rows = closed + list(open_rows)
    carried = {base_id(p.position_id) for p in rows if is_carried(p, day)}
    baselines = rt.store.baseline_marks(carried, day) if carried else {}
    out: dict[SystemName, DayPnl] = {}
    for system in SystemName:
        pnl = day_pnl([r for r in rows if r.system is system], day, open_marks, baselines, until)
        for pid in pnl.without_baseline:
            if (day, pid) not in _UNBASED:
                _UNBASED.add((day, pid))
                log.warning(
                    "%s was carried into %s without a close mark: its P&L today counts from entry",
                    pid,
                    day,
                )
        out[system] = pnl
    return out


def daily_pnl(rt: Runtime, open_marks: Mapping[str, Decimal]) -> tuple[Decimal, Decimal]:
    """(realised today after commissions, unrealised of open positions) of the account, both
    systems; carried positions from their prior close mark (``day_pnl_by_system``)."""
    by_system = day_pnl_by_system(rt, rt.store.open_positions(), open_marks)
    return (
        sum((p.realized for p in by_system.values()), Decimal("0")),
        sum((p.unrealized for p in by_system.values()), Decimal("0")),
    )


def last_minute(rt: Runtime) -> datetime:
    """The session's last minute once it is over (now, before that): the instant end-of-day
    marks and IVs are taken at."""
    return min(rt.clock.now(), rt.session.close - timedelta(minutes=1))


def record_close_marks(rt: Runtime) -> int:
    """Store each open position's net mid at the session's last minute (after the close, or
    with a live feed: its latest quotes) as the next session's daily-P&L baseline."""
    at = last_minute(rt)
    positions = rt.store.open_positions()
    if not positions:
        return 0
    values = marks(rt, positions, None, at=at)
    return rt.store.record_position_marks(rt.session.day, at, values)


def current_state(rt: Runtime) -> TradingState:
    row = rt.store.trading_state()
    return TradingState.ACTIVE if row is None else row.state


def close_position(
    rt: Runtime,
    pos: Position,
    quantity: int,
    reason: str,
    marketable: bool,
    walk: WalkRules,
    tiers_after: int | None = None,
) -> ExecutionResult | None:
    """Close ``quantity`` of ``pos`` through the order path; None if there is nothing to send.

    Every close of a position is one attempt with its own client order id, counted over every
    day (a Mag7 tier taken Monday and a close on Tuesday are two orders). Another run may close
    the same position at the same time (the loop flattening on HALT, a Mag7 check): a close
    already on its way is resumed (or left to the run that works it, see ``execute_intent``)
    instead of sending a second one, and a position no longer open is not closed again. The
    intents are read *before* the position, so a close that finished in between shows as a
    closed position; two runs that both see none derive the same id and one order.
    """
    attempts = rt.store.position_intents(pos.position_id)
    kind = pos.signal_kind
    for stored in attempts:
        if stored.intent.action is IntentAction.CLOSE and not stored.status.is_terminal:
            if stored.status is IntentStatus.AWAITING_APPROVAL:  # closes never wait; defensive
                continue
            log.info("%s: a close is already on its way (%s)", pos.position_id, stored.status)
            return execute_intent(stored.intent, rt.broker, rt.store, rt.clock, walk, kind)
    latest = rt.store.position(pos.position_id)
    if latest is None or latest.status is not PositionStatus.OPEN:
        log.info("%s: no longer open; nothing to close", pos.position_id)
        return None
    quantity = min(quantity, latest.quantity)
    now = rt.clock.now()
    key = (latest.spread.underlying, latest.spread.expiry)
    quote = combo_quote({key: rt.market.chain(key[0], key[1], now)}, latest.spread)
    intent = close_intent(
        latest.system,
        latest.position_id,
        latest.spread,
        quantity,
        quote,
        now,
        reason,
        marketable,
        walk,
        attempt=len(attempts),
    )
    return execute_intent(
        intent, rt.broker, rt.store, rt.clock, walk, kind, tiers_after=tiers_after
    )


def manage_exits(rt: Runtime, obs: Observation) -> list[ExecutionResult]:
    positions = rt.store.open_positions(SMART)
    if not positions:
        return []
    current = marks(rt, positions, obs)
    results = []
    for pos, decision in plan_exits(positions, current, obs.now, rt.session, rt.smart):
        marketable = decision.reason is ExitReason.CLOSEOUT
        try:
            result = close_position(
                rt,
                pos,
                decision.quantity,
                f"{decision.reason.value}: {decision.detail}",
                marketable,
                rt.smart.walk,
            )
        except (MarketDataError, ChainError) as exc:
            rt.store.record_risk_event(
                "order_error",
                "warning",
                f"cannot quote exit of {pos.position_id}: {exc}",
                obs.now,
                SMART,
            )
            continue
        if result is not None:
            results.append(result)
    return results


def update_risk(rt: Runtime, obs: Observation | None) -> StateChange:
    """Mark to market, record the P&L point, escalate the trading state; flatten on HALT."""
    now = rt.clock.now()
    day = rt.session.day
    open_positions = rt.store.open_positions()
    current_marks = marks(rt, open_positions, obs)
    by_system = day_pnl_by_system(rt, open_positions, current_marks)
    realized = sum((p.realized for p in by_system.values()), Decimal("0"))
    unrealized = sum((p.unrealized for p in by_system.values()), Decimal("0"))
    total = realized + unrealized
    # the loop's mark is the account's (both systems): the report's account line and risk chart;
    # Mag7 records its own share at its checks
    rt.store.record_pnl_mark(SMART, now, realized, unrealized)
    errors = len(rt.store.risk_events(day=day, kinds=ERROR_KINDS))
    change = escalate(rt, current_state(rt), total, errors, now)
    if change.flatten:
        flatten(rt, "risk: daily loss at halt level")
    return change


def escalate(
    rt: Runtime, before: TradingState, total: Decimal, errors: int, now: datetime
) -> StateChange:
    """The account's state machine on today's P&L ``total`` (both systems) as of ``now``:
    record a state change (risk event, log) and the day's first loss alert. Both systems' risk
    marks go through it; the caller flattens when ``change.flatten``."""
    change = evaluate_state(before, total, errors, rt.limits)
    if change.changed_from(before):
        reason = "; ".join(change.reasons)
        rt.store.set_trading_state(change.state, reason, now, manual=False)
        rt.store.record_risk_event(
            f"state_{change.state.value.lower()}",
            "critical",
            f"{before.value} -> {change.state.value}: {reason}",
            now,
        )
        log.warning("trading state %s -> %s: %s", before.value, change.state.value, reason)
    if change.alert:
        alerts = rt.store.risk_events(day=rt.session.day, kinds=("daily_loss_alert",))
        if not [e for e in alerts if e.at <= now]:
            rt.store.record_risk_event(
                "daily_loss_alert",
                "warning",
                f"daily P&L {total:.2f} reached {loss_level(total, rt.limits).value} level "
                f"(max daily loss {rt.limits.max_daily_loss})",
                now,
            )
    return change


def flatten(
    rt: Runtime, reason: str, systems: Iterable[SystemName] | None = None
) -> list[ExecutionResult]:
    """Close every open position (of ``systems``) with marketable limits."""
    wanted = set(systems) if systems is not None else None
    results = []
    for pos in rt.store.open_positions():
        if wanted is not None and pos.system not in wanted:
            continue
        walk = rt.mag7.walk if pos.system is SystemName.MAG7 else rt.smart.walk
        try:
            result = close_position(rt, pos, pos.quantity, reason, True, walk)
        except (MarketDataError, ChainError) as exc:
            rt.store.record_risk_event(
                "order_error",
                "critical",
                f"cannot flatten {pos.position_id}: {exc}",
                rt.clock.now(),
                pos.system,
            )
            continue
        if result is not None:
            results.append(result)
    return results


def _book(rt: Runtime) -> list[BookEntry]:
    day = rt.session.day
    kinds = {s.signal_id: s.kind for s in rt.store.signals(day=day, system=SMART)}
    book = [
        BookEntry(p.underlying, p.signal_kind, p.opened_at, is_open=True)
        for p in rt.store.open_positions(SMART)
    ]
    for stored in rt.store.intents(day=day, system=SMART):
        intent = stored.intent
        if intent.action is IntentAction.OPEN and intent.signal_id in kinds:
            book.append(
                BookEntry(
                    intent.spread.underlying, kinds[intent.signal_id], intent.created_at, False
                )
            )
    return book


def risk_snapshot(rt: Runtime, total_pnl: Decimal, exclude: str | None = None) -> RiskSnapshot:
    pending = [
        s.intent
        for s in rt.store.intents(
            day=rt.session.day,
            statuses=(
                IntentStatus.PENDING,
                IntentStatus.SUBMITTED,
                IntentStatus.AWAITING_APPROVAL,
            ),
        )
        if s.intent.client_order_id != exclude
    ]
    return RiskSnapshot(
        state=current_state(rt),
        daily_pnl=total_pnl,
        exposures=exposures(rt.store.open_positions(), pending),
        errors_today=len(rt.store.risk_events(day=rt.session.day, kinds=ERROR_KINDS)),
    )


def enter(
    rt: Runtime, obs: Observation, daily_pnl: Decimal
) -> tuple[IterationPlan, list[ExecutionResult]]:
    """Plan entries, check each against every account-wide control, execute the approved ones.

    ``daily_pnl`` is the mark ``update_risk`` just took (``StateChange.daily_pnl``): nothing fills
    between the two, so the positions are not marked a second time.
    """
    plan = plan_entries(
        obs.now,
        rt.session,
        obs.views,
        obs.vix_last,
        obs.vix_prior_close,
        _book(rt),
        rt.limits.max_position_size,
        rt.smart,
    )
    for skip in plan.skips:
        log.info("skip %s: %s", skip.underlying, skip.reason)
    results: list[ExecutionResult] = []
    if not plan.entries:
        return plan, results
    for entry in plan.entries:
        rt.store.record_signal(entry.signal)
        intent = open_intent(
            SMART,
            entry.signal.signal_id,
            entry.spread,
            entry.quantity,
            entry.quote,
            obs.now,
            entry.signal.reason,
        )
        if rt.store.intent_by_client_id(intent.client_order_id) is not None:
            # a rerun re-derived an intent this day already has: the order path decides
            results.append(
                execute_intent(
                    intent, rt.broker, rt.store, rt.clock, rt.smart.walk, entry.signal.kind
                )
            )
            continue
        decision = check_intent(intent, risk_snapshot(rt, daily_pnl), rt.limits)
        if not decision.approved:
            deny(rt, intent, decision.reasons)
            continue
        reviewed = review_entry(rt, intent, entry, obs)
        if reviewed is None:
            continue
        intent, confidence = reviewed
        if rt.approvals_enabled:
            assessment = classify(
                intent.max_loss,
                rt.limits.max_position_size,
                confidence,
                obs.vix_last,
                rt.tier_rules,
            )
            if assessment.tier.needs_approval:
                request_approval(rt, intent, entry, assessment)
                continue
        results.append(
            execute_intent(intent, rt.broker, rt.store, rt.clock, rt.smart.walk, entry.signal.kind)
        )
    return plan, results


def review_entry(
    rt: Runtime, intent: OrderIntent, entry: EntryPlan, obs: Observation
) -> tuple[OrderIntent, float] | None:
    """The advisor's review of an entry the risk gate approved (advisory: veto or lower only).

    A veto denies the intent with the advisor's reason. A lowered confidence below the system's
    threshold denies it too; otherwise the size shrinks by the ratio of the sizing factors
    (never grows) and the lowered confidence decides the approval tier. Without a key, with the
    budget spent or on any advisor failure the review is "accept unchanged" (no call, no change).
    Returns the (possibly smaller) intent and the confidence to use, or None if denied.
    """
    original = entry.signal.confidence
    if rt.advisor is None:
        return intent, original
    view = obs.views.get(intent.spread.underlying)
    review = rt.advisor.review_entry(
        EntryContext.from_intent(
            intent,
            entry.signal,
            day=rt.session.day,
            underlying_price=view.last if view is not None else None,
            vix=obs.vix_last,
        )
    )
    steps = rt.smart.confidence_steps

    def resize(quantity: int, before: float, after: float) -> int:
        return int(quantity * (confidence_factor(after, steps) / confidence_factor(before, steps)))

    return apply_review(
        rt,
        intent,
        entry.quantity,
        original,
        review,
        (rt.smart.confidence_threshold, "threshold"),
        resize,
        obs.now,
    )


def apply_review(
    rt: Runtime,
    intent: OrderIntent,
    planned_quantity: int,
    original: float,
    review: EntryReview,
    floor: tuple[float, str],
    resize: Callable[[int, float, float], int],
    at: datetime,
) -> tuple[OrderIntent, float] | None:
    """Apply an advisor review to an intent (both systems): a veto denies it; a lowered
    confidence below ``floor`` (value, what it is called) denies it; otherwise the size becomes
    ``resize(quantity, original, lowered)`` (never more), recorded as an ``advisor_review``
    event. Returns the (possibly smaller) intent and the confidence to use, or None if denied.
    """
    if review.veto:
        deny(rt, intent, (f"advisor veto: {review.reason}",))
        return None
    confidence = min(original, float(review.confidence))
    if confidence >= original:
        return intent, original
    threshold, label = floor
    lowered = f"advisor lowered confidence {original:.2f} -> {confidence:.2f}: {review.reason}"
    if confidence < threshold:
        deny(rt, intent, (f"{lowered}; below the {threshold:.2f} {label}",))
        return None
    quantity = min(intent.quantity, resize(intent.quantity, original, confidence))
    if quantity < 1:
        deny(rt, intent, (f"{lowered}; size rounds to zero contracts",))
        return None
    if quantity < intent.quantity:
        intent = replace(
            intent, quantity=quantity, max_loss=intent.max_loss / intent.quantity * quantity
        )
    rt.store.record_risk_event(
        "advisor_review",
        "info",
        f"{intent.spread.describe()}: {lowered}; size {quantity}/{planned_quantity}",
        at,
        intent.system,
    )
    return intent, confidence


def request_approval(
    rt: Runtime, intent: OrderIntent, entry: EntryPlan, assessment: TierAssessment
) -> int:
    """A Smart-0DTE entry to a human (``ask_approval`` with its summary)."""
    return ask_approval(rt, intent, assessment, approval_summary(intent, entry, assessment))


def ask_approval(rt: Runtime, intent: OrderIntent, assessment: TierAssessment, summary: str) -> int:
    """Persist the intent as AWAITING_APPROVAL and a pending approval; ask for a decision
    (``summary``: what the approver sees). Both systems.

    Never blocks: the decision arrives later (``settle_approvals``).
    """
    now = rt.clock.now()
    rt.store.save_intent(intent)
    rt.store.set_intent_status(
        intent.client_order_id,
        IntentStatus.AWAITING_APPROVAL,
        f"{assessment.tier.value}: {'; '.join(assessment.reasons)}",
        at=now,
    )
    approval_id = rt.store.record_approval(
        intent.client_order_id,
        intent.system,
        assessment.tier.value,
        now,
        "; ".join(assessment.reasons),
    )
    if rt.approval_requester is not None:
        rt.approval_requester(intent, approval_id, assessment.tier, summary)
    log.info("%s awaits %s approval", intent.client_order_id, assessment.tier.value)
    return approval_id


def approval_summary(intent: OrderIntent, entry: EntryPlan, assessment: TierAssessment) -> str:
    """What the approver sees in the Prefect UI: signal, structure, size, max loss, reasons."""
    sig = entry.signal
    lines = [
        f"## {assessment.tier.value} approval: {intent.system.value} {sig.kind.value} "
        f"{sig.direction.value} on {sig.underlying}",
        "",
        f"- structure: **{intent.spread.describe()}** x {intent.quantity}",
        f"- limit {intent.limit_price} (mid), worst {intent.worst_price} (natural)",
        f"- max loss: **${intent.max_loss:,.2f}**",
        f"- confidence {sig.confidence:.2f}; signal: {sig.reason}",
        f"- why approval: {'; '.join(assessment.reasons)}",
        f"- client order id `{intent.client_order_id}`",
    ]
    if assessment.tier.needs_reason:
        lines.append("- **T3: approving requires a reason**")
    return "\n".join(lines)


def deny(rt: Runtime, intent: OrderIntent, reasons: tuple[str, ...]) -> None:
    if rt.store.save_intent(intent):
        text = "; ".join(reasons)
        rt.store.set_intent_status(
            intent.client_order_id, IntentStatus.DENIED, text, at=intent.created_at
        )
        rt.store.record_risk_event(
            "intent_denied",
            "info",
            f"{intent.spread.describe()}: {text}",
            intent.created_at,
            intent.system,
        )
        log.info("denied %s: %s", intent.client_order_id, text)


def signal_kind_of(rt: Runtime, intent: OrderIntent) -> SignalKind:
    if intent.position_id is not None:
        pos = rt.store.position(intent.position_id)
        if pos is not None:
            return pos.signal_kind
    for sig in rt.store.signals(system=intent.system):
        if sig.signal_id == intent.signal_id:
            return sig.kind
    return SignalKind.MOMENTUM if intent.system is SMART else SignalKind.ENSEMBLE


def recover(
    rt: Runtime,
    system: SystemName = SMART,
    cutoff: datetime | None = None,
    walk: WalkRules | None = None,
) -> list[ExecutionResult]:
    """Resume ``system``'s non-terminal intents: adopt what the broker has, submit what it never
    got. Each system recovers its own (the other may be walking its orders at this moment).

    An intent persisted but never submitted (crash between persist and submit) is submitted now,
    once, if the market is still open for it (entries: before ``cutoff``, default Smart-0DTE's);
    otherwise it is cancelled with a reason.
    """
    results = []
    now = rt.clock.now()
    cutoff = cutoff if cutoff is not None else rt.smart.cutoff(rt.session)
    walk = walk if walk is not None else rt.smart.walk
    me = run_owner()
    for stored in rt.store.intents(
        system=system, statuses=(IntentStatus.PENDING, IntentStatus.SUBMITTED)
    ):
        intent = stored.intent
        # another live run may be working it right now (between persist and submit, or walking):
        # neither resume nor drop it; its claim is released or taken over once that run is gone
        if (holder := claim(rt.store, intent.client_order_id, me)) is not None:
            log.info(
                "%s: worked by another run (%s); not recovered", intent.client_order_id, holder
            )
            continue
        at_broker = rt.broker.find(intent.client_order_id)
        stale = intent.created_at.astimezone(NY).date() != rt.session.day or (
            intent.action is IntentAction.OPEN and now >= cutoff
        )
        if at_broker is None and stale:
            rt.store.set_intent_status(
                intent.client_order_id,
                IntentStatus.CANCELLED,
                "never reached the broker; stale after restart",
                at=now,
            )
            rt.store.release_intent(intent.client_order_id, me)
            rt.store.record_risk_event(
                "recovery",
                "warning",
                f"{intent.client_order_id} dropped: stale after restart",
                now,
                system,
            )
            continue
        rt.store.record_risk_event(
            "recovery",
            "warning",
            f"resuming {intent.client_order_id} ({stored.status.value}, "
            f"{'at broker' if at_broker else 'not at broker'})",
            now,
            system,
        )
        results.append(
            execute_intent(intent, rt.broker, rt.store, rt.clock, walk, signal_kind_of(rt, intent))
        )
    return results


def owner(rt: Runtime, underlying: str) -> SystemName:
    """The system whose universe ``underlying`` is in: Mag7's names, else Smart-0DTE (which
    therefore also answers for anything at the broker that neither system trades)."""
    return SystemName.MAG7 if underlying in rt.mag7.underlyings else SMART


def reconcile(rt: Runtime, system: SystemName = SMART) -> list[str]:
    """Compare the broker's positions with ``system``'s ledger positions, contract by contract,
    over that system's universe (``owner``); mismatches are risk events. One system's order
    filling at this moment is never a mismatch of the other's."""
    expected: dict[str, int] = {}
    for pos in rt.store.open_positions(system):
        for leg in pos.spread.legs:
            sym = leg.contract.symbol
            expected[sym] = expected.get(sym, 0) + leg.side.sign * leg.ratio * pos.quantity
    actual = {
        bp.contract.symbol: bp.quantity
        for bp in rt.broker.positions()
        if owner(rt, bp.contract.underlying) is system
    }
    problems = []
    for sym in sorted(set(expected) | set(actual)):
        want, have = expected.get(sym, 0), actual.get(sym, 0)
        if want != have:
            problems.append(f"{sym}: ledger {want:+d}, broker {have:+d}")
    now = rt.clock.now()
    for text in problems:
        rt.store.record_risk_event("reconciliation_mismatch", "critical", text, now, system)
    return problems


def start_session(rt: Runtime) -> TradingState:
    """Reset REDUCING/HALTED at the session start unless set manually."""
    row = rt.store.trading_state()
    now = rt.clock.now()
    if row is None:
        rt.store.set_trading_state(TradingState.ACTIVE, "first session", now, manual=False)
        return TradingState.ACTIVE
    if row.state is not TradingState.ACTIVE and not row.manual and row.at < rt.session.open:
        rt.store.set_trading_state(
            TradingState.ACTIVE,
            f"session {rt.session.day} start: reset {row.state.value}",
            now,
            manual=False,
        )
        return TradingState.ACTIVE
    return row.state


def _decide(rt: Runtime, approval_id: int, decision: str, who: str, reason: str) -> str:
    """Record a decision unless one was taken meanwhile; return the decision that stands."""
    try:
        return rt.store.update_approval(
            approval_id, decision, who, rt.clock.now().astimezone(NY), reason
        ).decision
    except ValueError:  # decided in the meantime (the approver answered first)
        rows = [a for a in rt.store.approvals() if a.id == approval_id]
        return rows[0].decision if rows else decision


def process_approvals(rt: Runtime, closing: bool = False) -> list[ExecutionResult]:
    """Smart-0DTE's decided approvals (see ``settle_approvals``); its timeout (5 min), its entry
    cut-off, its walk. Mag7 waits for its own approvals in its own run (``tasks.mag7``)."""

    def recheck(intent: OrderIntent) -> RiskDecision:
        realized, unrealized = daily_pnl(rt, marks(rt, rt.store.open_positions(), None))
        snap = risk_snapshot(rt, realized + unrealized, exclude=intent.client_order_id)
        return check_intent(intent, snap, rt.limits)

    return settle_approvals(
        rt,
        SMART,
        timeout=rt.approval_timeout,
        cutoff=rt.smart.cutoff(rt.session),
        walk=rt.smart.walk,
        recheck=recheck,
        kind_of=lambda intent: signal_kind_of(rt, intent),
        closing=closing,
        ended="loop ended",
    )


def settle_approvals(
    rt: Runtime,
    system: SystemName,
    *,
    timeout: timedelta,
    cutoff: datetime,
    walk: WalkRules,
    recheck: Callable[[OrderIntent], RiskDecision],
    kind_of: Callable[[OrderIntent], SignalKind],
    closing: bool,
    ended: str,
) -> list[ExecutionResult]:
    """Act on ``system``'s decided approvals: approve -> every limit checked again -> execute once;
    reject/expired -> recorded. A pending approval past ``timeout``, at or after ``cutoff``, or
    when the caller is ``closing`` (``ended`` says why) expires here; the approval flow records its
    own timeout the same way.
    """
    now = rt.clock.now()
    results: list[ExecutionResult] = []
    awaiting = rt.store.intents(
        day=rt.session.day, system=system, statuses=(IntentStatus.AWAITING_APPROVAL,)
    )
    for stored in awaiting:
        intent = stored.intent
        cid = intent.client_order_id
        rows = rt.store.approvals(client_order_id=cid)
        if not rows:
            rt.store.set_intent_status(
                cid, IntentStatus.DENIED, "no approval request found", at=now
            )
            continue
        row = rows[-1]
        decision = row.decision
        if decision == "pending":
            late = now - row.requested_at > timeout
            if closing or late or now >= cutoff:
                why = ended if closing else ("timed out" if late else "entry cut-off")
                decision = _decide(rt, row.id, "expired", "dte-trader", why)
        if decision == "pending":
            continue
        if decision == "expired":
            rt.store.set_intent_status(
                cid, IntentStatus.EXPIRED, f"approval {row.tier} expired", at=now
            )
            rt.store.record_risk_event(
                "approval_expired", "warning", f"{cid}: no decision in time", now, system
            )
            continue
        if decision == "reject":
            text = f"approval rejected by {row.decided_by or 'approver'}: {row.reason}"
            rt.store.set_intent_status(cid, IntentStatus.DENIED, text, at=now)
            rt.store.record_risk_event("approval_rejected", "info", f"{cid}: {text}", now, system)
            continue
        # approved: the world may have changed since the request, so check every limit again
        check = recheck(intent)
        if not check.approved or now >= cutoff:
            reasons = check.reasons or ("approved after the entry cut-off",)
            rt.store.set_intent_status(
                cid, IntentStatus.DENIED, "approved, then " + "; ".join(reasons), at=now
            )
            rt.store.record_risk_event(
                "intent_denied",
                "info",
                f"{intent.spread.describe()}: {'; '.join(reasons)}",
                now,
                system,
            )
            continue
        rt.store.set_intent_status(
            cid, IntentStatus.PENDING, f"approved by {row.decided_by}", at=now
        )
        results.append(execute_intent(intent, rt.broker, rt.store, rt.clock, walk, kind_of(intent)))
    return results


LEVEL_NUMBER = {TradingState.ACTIVE: 0, TradingState.REDUCING: 1, TradingState.HALTED: 2}


def record_iteration(
    rt: Runtime,
    at: datetime,
    change: StateChange,
    elapsed_ms: float,
    orders: int,
    skipped_quotes: int,
) -> None:
    """Loop telemetry: one metrics point and the state in the cache (both best effort).

    Neither is the source of truth (the ledger is): the metrics adapter never raises into the
    loop, and the cached state is a convenience for dashboards and health checks.
    """
    system = SMART.value
    open_positions = len(rt.store.open_positions(SMART))
    rt.metrics.write(
        "dte_loop",
        {"system": system, "mode": rt.mode.value},
        {
            "latency_ms": elapsed_ms,
            "daily_pnl": float(change.daily_pnl),
            "open_positions": float(open_positions),
            "state_level": float(LEVEL_NUMBER[change.state]),
            "orders": float(orders),
            "skipped_quotes": float(skipped_quotes),
        },
        at,
    )
    state = {
        "state": change.state.value,
        "daily_pnl": str(change.daily_pnl),
        "open_positions": open_positions,
        "at": at.isoformat(),
    }
    rt.cache.set(f"{system}:state", json.dumps(state).encode(), 24 * 3600)
