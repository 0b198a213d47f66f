"""Mag7-7DTE steps: the weekly entry scan, the management checks, IV history and the risk mark.

Plain functions taking a ``Runtime``, like ``tasks.trading`` for Smart-0DTE; ``tasks.mag7_steps``
wraps them as Prefect tasks. The decisions are pure (``systems.mag7.strategy``); this module
gathers their inputs (a year of daily bars, listed expiries, chains, the stored IV history, the
earnings calendar), and sends what they decide through the same order path (``execute_intent``)
and the same account-wide risk gate (``core.risk.check_intent`` on a snapshot of both systems'
positions and pending intents) as Smart-0DTE.

Where things come from:

* **Earnings calendar**: the market-data adapter's ``earnings_dates`` when it has one (the
  simulator), else the configured ``Mag7Config.earnings.dates``, else none. Without a calendar
  no entry is refused and no position is closed for earnings, and the scan says so; the
  earnings-drift vote stays off without one (and stays neutral without a beat history, which no
  adapter supplies yet).
* **IV history** (``iv_history`` table): in development, a year is backfilled from the
  simulator's ``atm_iv_history`` when the table lacks it; every day's value is stored at the
  day's last management check (development: the simulator's close value; otherwise the 30-day
  ATM IV interpolated from the listed chains). With Polygon only what was stored counts, so the
  IV vote uses the IV/HV(20) fallback until a year exists; ``iv_methods`` says which.
* **Today's IV** for the scan: interpolated in total variance from the listed chains around 30
  calendar days (never the day's close value: the scan runs at 10:00).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import cast

import numpy as np

from adapters.advisor import EntryContext
from adapters.ports import MarketDataError
from core.approvals import TierAssessment, classify
from core.calendar import NY, previous_trading_day, session
from core.chains import ChainError, analyze_chain
from core.exits import ExitReason, pnl_fraction
from core.marketdata import Bars, ChainSnapshot
from core.models import (
    IntentAction,
    IntentStatus,
    OrderIntent,
    Position,
    PositionStatus,
    RiskDecision,
    RiskLimits,
    SignalKind,
    SystemName,
    TradingMode,
    TradingState,
    client_order_id,
)
from core.orders import open_intent
from core.pnl import DayPnl
from core.pricing import ExpiredContractError, year_fraction
from core.risk import RiskSnapshot, StateChange, check_intent, exposures
from systems.mag7.config import DEFAULT as MAG7_DEFAULT
from systems.mag7.config import Mag7Config
from systems.mag7.exits import Mag7ExitDecision, Mag7ExitKind
from systems.mag7.strategy import (
    EntryPlan,
    Mag7Plan,
    SymbolInputs,
    choose_expiry,
    entry_block_reason,
    entry_day_for_week,
    is_entry_day,
    management_times,
    plan_entries,
    plan_exits,
)
from tasks import trading
from tasks.execution import ERROR_KINDS, ExecutionResult, execute_intent, tiers_marker
from tasks.runtime import Runtime

log = logging.getLogger("dte.mag7")
MAG7 = SystemName.MAG7

IV_SOURCE_SIMULATOR = "simulator"  # the simulator's 30-day ATM IV at the close
IV_SOURCE_CHAIN = "chain"  # interpolated from the listed chains at the last management check
IV_DAYS = 30  # calendar days of the constant-maturity ATM IV
MANAGE_TOLERANCE = timedelta(minutes=10)  # a wall-clock run may start this late
EARNINGS_LOOKBACK = timedelta(days=21)  # open positions were entered at most this long ago
UNCAPPED = 1_000_000  # a count no book reaches (planner_limits)
CLOSE_ATTEMPTS = 3  # a calendar close (1-DTE, pre-earnings) is retried with fresh quotes


# --------------------------------------------------------------------------- calendar guard


def management_times_on(day: date, cfg: Mag7Config = MAG7_DEFAULT) -> tuple[datetime, ...]:
    """The day's management checks (10:00, 12:00, 14:00, 15:30; 12:45 replaces the later ones
    on an early close). Raises ``NotATradingDay`` on a closed day."""
    return management_times(session(day), cfg)


def entry_day_reason(day: date, cfg: Mag7Config = MAG7_DEFAULT) -> str | None:
    """None on the week's entry day (Friday, or the trading day before a holiday Friday)."""
    if is_entry_day(day, cfg):
        return None
    this_week = entry_day_for_week(day, cfg.entry_weekday)
    if this_week > day:
        nxt = this_week
    else:
        nxt = entry_day_for_week(day + timedelta(days=7), cfg.entry_weekday)
    return (
        f"{day.isoformat()} ({day:%A}) is not the Mag7 entry day; "
        f"next entry scan {nxt.isoformat()} ({nxt:%A}) {cfg.entry_time:%H:%M}"
    )


def entry_window_reason(now: datetime, cfg: Mag7Config = MAG7_DEFAULT) -> str | None:
    """None when the weekly entry scan may run at wall time ``now`` (trading day checked first)."""
    day = now.astimezone(NY).date()
    if (why := entry_day_reason(day, cfg)) is not None:
        return why
    return entry_block_reason(now, session(day), cfg) or None


def manage_window_reason(now: datetime, cfg: Mag7Config = MAG7_DEFAULT) -> str | None:
    """None when ``now`` is at a management time (up to ``MANAGE_TOLERANCE`` late)."""
    day = now.astimezone(NY).date()
    times = management_times_on(day, cfg)
    if any(t <= now <= t + MANAGE_TOLERANCE for t in times):
        return None
    shown = ", ".join(f"{t:%H:%M}" for t in times)
    early = " (early close)" if session(day).early_close else ""
    return f"Mag7 management runs at {shown} today{early}, not {now.astimezone(NY):%H:%M}"


def entry_time(cfg: Mag7Config = MAG7_DEFAULT) -> time:
    """When the weekly scan runs on the entry day (10:00)."""
    return cfg.entry_time


def is_last_check(at: datetime, cfg: Mag7Config) -> bool:
    """True for the day's last management check (it stores the day's IV and P&L)."""
    return at >= management_times_on(at.astimezone(NY).date(), cfg)[-1]


# --------------------------------------------------------------------------- earnings calendar


@dataclass(frozen=True, slots=True)
class EarningsCalendar:
    dates: Mapping[str, tuple[date, ...]]
    source: str  # "market data" | "config" | "none"
    note: str = ""

    @property
    def configured(self) -> bool:
        return self.source != "none"


def earnings_calendar(rt: Runtime, start: date, end: date) -> EarningsCalendar:
    """Earnings sessions in [start, end] per Mag7 underlying: adapter, else config, else none."""
    cfg = rt.mag7
    fetch = getattr(rt.market, "earnings_dates", None)
    problem = ""
    if callable(fetch):
        try:
            dates = {s: tuple(sorted(set(fetch(s, start, end)))) for s in cfg.underlyings}
            return EarningsCalendar(dates, "market data")
        except (NotImplementedError, MarketDataError) as exc:
            problem = f"market data has no earnings calendar ({exc}); "
    if cfg.earnings.dates:
        dates = {
            s: tuple(sorted({d for d in cfg.earnings.dates.get(s, ()) if start <= d <= end}))
            for s in cfg.underlyings
        }
        return EarningsCalendar(dates, "config", problem.rstrip("; "))
    return EarningsCalendar(
        {},
        "none",
        problem + "no earnings calendar: entries are not checked against earnings dates",
    )


def _with_calendar(cfg: Mag7Config, calendar: EarningsCalendar) -> Mag7Config:
    """The drift vote may only run with a real calendar (it still needs a beat history)."""
    if calendar.configured == cfg.earnings.calendar_configured:
        return cfg
    return replace(cfg, earnings=replace(cfg.earnings, calendar_configured=calendar.configured))


# --------------------------------------------------------------------------- IV history


def thirty_day_atm_iv(
    rt: Runtime, symbol: str, now: datetime, listed: Sequence[date]
) -> float | None:
    """30-day ATM IV from the listed chains: ATM IVs of the expiries around ``now`` + 30 days,
    interpolated linearly in total variance (flat vol beyond the listed range). None if no chain
    around it can be read."""
    target = now.astimezone(NY).date() + timedelta(days=IV_DAYS)
    ahead = sorted(d for d in listed if d > now.astimezone(NY).date())
    if not ahead:
        return None
    below = [d for d in ahead if d <= target]
    above = [d for d in ahead if d > target]
    picks = ([below[-1]] if below else []) + ([above[0]] if above else [])
    points: list[tuple[float, float]] = []
    for expiry in picks:
        try:
            snap = rt.market.chain(symbol, expiry, now)
            analysis = analyze_chain(
                snap, session(expiry).close, rt.mag7.liquidity, rt.mag7.rate, rt.mag7.dividend_yield
            )
            iv = analysis.atm_iv()
        except (MarketDataError, ChainError, ExpiredContractError, ValueError) as exc:
            log.info("%s %s: no ATM IV (%s)", symbol, expiry, exc)
            continue
        if math.isfinite(iv) and iv > 0:
            points.append((analysis.t, iv))
    if not points:
        return None
    t30 = year_fraction(now, datetime.combine(target, time(16, 0), tzinfo=NY))
    if len(points) == 1:
        return points[0][1]
    (t1, v1), (t2, v2) = points
    w1, w2 = v1 * v1 * t1, v2 * v2 * t2
    w = w1 + (w2 - w1) * (t30 - t1) / (t2 - t1)
    return math.sqrt(w / t30) if w > 0 else points[-1][1]


IvHistoryFetch = Callable[[str, date, int], tuple[Sequence[date], Sequence[float]]]


def _simulator_iv(rt: Runtime) -> IvHistoryFetch | None:
    """The simulator's ``atm_iv_history`` in development, else None (Polygon: stored only)."""
    if rt.mode is not TradingMode.DEVELOPMENT:
        return None
    fetch = getattr(rt.market, "atm_iv_history", None)
    return cast(IvHistoryFetch, fetch) if callable(fetch) else None


def backfill_iv(rt: Runtime, before: date) -> dict[str, int]:
    """Development: store a year of the simulator's daily 30-day ATM IV (sessions before
    ``before``) for every name whose stored history is shorter than the IV rank needs."""
    fetch = _simulator_iv(rt)
    if fetch is None:
        return {}
    cfg = rt.mag7
    need = cfg.iv.min_history_sessions
    end = previous_trading_day(before)
    added: dict[str, int] = {}
    counts = rt.store.iv_sessions(cfg.underlyings, before)
    for symbol in cfg.underlyings:
        if counts[symbol] >= need:
            continue
        try:
            days, ivs = fetch(symbol, end, max(need, cfg.iv.window))
        except (MarketDataError, ValueError) as exc:
            log.warning("no simulator IV history for %s: %s", symbol, exc)
            continue
        added[symbol] = rt.store.backfill_iv(
            symbol,
            [(d, float(v)) for d, v in zip(days, ivs, strict=True) if math.isfinite(float(v))],
            IV_SOURCE_SIMULATOR,
            rt.clock.now(),
        )
    return added


def record_daily_iv(rt: Runtime, now: datetime) -> dict[str, tuple[float, str]]:
    """Store each name's 30-day ATM IV of today (symbol -> (iv, source)).

    Development: the simulator's value at today's close (what its chains quote there);
    otherwise the chains' 30-day ATM IV at ``now`` (the day's last management check).
    """
    day = rt.session.day
    fetch = _simulator_iv(rt)
    out: dict[str, tuple[float, str]] = {}
    for symbol in rt.mag7.underlyings:
        value: float | None = None
        source = IV_SOURCE_CHAIN
        if fetch is not None:
            try:
                days, ivs = fetch(symbol, day, 1)
                if list(days) and days[-1] == day:
                    value, source = float(ivs[-1]), IV_SOURCE_SIMULATOR
            except (MarketDataError, ValueError) as exc:
                log.warning("no simulator IV for %s on %s: %s", symbol, day, exc)
        if value is None:
            try:
                listed = rt.market.expiries(symbol, day)
            except MarketDataError as exc:
                log.warning("no expiries for %s: %s", symbol, exc)
                continue
            value = thirty_day_atm_iv(rt, symbol, now, listed)
        if value is None or not math.isfinite(value) or value <= 0:
            continue
        rt.store.record_iv(symbol, day, value, source, now)
        out[symbol] = (value, source)
    return out


def iv_methods(rt: Runtime, day: date) -> dict[str, str]:
    """Which IV measure the scan on ``day`` can use per name, from the stored history."""
    cfg = rt.mag7.iv
    counts = rt.store.iv_sessions(rt.mag7.underlyings, day)
    out: dict[str, str] = {}
    for symbol, n in counts.items():
        if n + 1 >= cfg.min_history_sessions:
            out[symbol] = f"{cfg.measure.value} ({n} stored sessions + today)"
        else:
            out[symbol] = (
                f"IV/HV({cfg.hv_period}) fallback: {n} stored sessions, "
                f"{cfg.min_history_sessions} needed"
            )
    return out


# --------------------------------------------------------------------------- scan inputs


def _daily_bars(rt: Runtime, symbol: str, now: datetime) -> Bars:
    """About ``history_sessions`` completed daily bars up to ``now`` (today's is not complete)."""
    span = timedelta(days=math.ceil(rt.mag7.history_sessions * 365 / 252) + 14)
    return rt.market.bars(symbol, now - span, now, "1d")


def symbol_inputs(
    rt: Runtime, now: datetime, calendar: EarningsCalendar
) -> tuple[dict[str, SymbolInputs], dict[str, str]]:
    """What the scan sees of every Mag7 name, and why a name has no inputs."""
    cfg = rt.mag7
    day = rt.session.day
    inputs: dict[str, SymbolInputs] = {}
    problems: dict[str, str] = {}
    for symbol in cfg.underlyings:
        try:
            listed = tuple(rt.market.expiries(symbol, day))
            bars = _daily_bars(rt, symbol, now)
        except MarketDataError as exc:
            problems[symbol] = f"{type(exc).__name__}: {exc}"
            continue
        if len(bars) == 0:
            problems[symbol] = "no daily bars"
            continue
        chains: dict[date, ChainSnapshot] = {}
        choice = choose_expiry(day, listed, cfg)
        if choice.expiry is not None:
            try:
                chains[choice.expiry] = rt.market.chain(symbol, choice.expiry, now)
            except MarketDataError as exc:
                log.warning("%s chain %s unavailable: %s", symbol, choice.expiry, exc)
        stored = rt.store.iv_history(symbol, before=day, limit=max(cfg.iv.window, 1))
        history = np.array([r.atm_iv for r in stored], dtype=np.float64)
        inputs[symbol] = SymbolInputs(
            symbol=symbol,
            bars=bars,
            iv_history=history,
            listed_expiries=listed,
            chains=chains,
            earnings_dates=calendar.dates.get(symbol, ()),
            earnings_history=None,
            current_iv=thirty_day_atm_iv(rt, symbol, now, listed),
        )
    return inputs, problems


def _pending_opens(rt: Runtime, now: datetime) -> list[Position]:
    """Mag7 entries on their way (pending, submitted, awaiting approval) as planned positions,
    so the caps of the scan count them like the risk gate does."""
    out: list[Position] = []
    for stored in rt.store.intents(
        day=rt.session.day,
        system=MAG7,
        statuses=(IntentStatus.PENDING, IntentStatus.SUBMITTED, IntentStatus.AWAITING_APPROVAL),
    ):
        i = stored.intent
        if i.action is not IntentAction.OPEN or i.created_at > now:
            continue
        out.append(
            Position(
                position_id=f"pending:{i.client_order_id}",
                system=MAG7,
                signal_kind=SignalKind.ENSEMBLE,
                spread=i.spread,
                quantity=i.quantity,
                entry_price=i.limit_price,
                opened_at=i.created_at,
                max_loss=i.max_loss,
            )
        )
    return out


# --------------------------------------------------------------------------- entries


@dataclass
class ScanOutcome:
    plan: Mag7Plan | None
    results: list[ExecutionResult] = field(default_factory=list)
    calendar: EarningsCalendar | None = None
    problems: dict[str, str] = field(default_factory=dict)
    iv_methods: dict[str, str] = field(default_factory=dict)
    denied: list[tuple[str, str]] = field(default_factory=list)  # (client order id, reasons)
    awaiting: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (underlying, why) at entry

    def rows(self) -> list[dict[str, object]]:
        """One row per name for the ``mag7-scan`` table artifact."""
        if self.plan is None:
            return []
        by_symbol = {ev.symbol: ev for ev in self.plan.evaluations}
        skips: dict[str, list[str]] = {}
        for s in self.plan.skips:
            skips.setdefault(s.underlying, []).append(s.reason)
        for underlying, why in self.skipped:
            skips.setdefault(underlying, []).append(why)
        denied = dict(self.denied)
        placed = {r.client_order_id: r for r in self.results}
        entered = {e.signal.underlying: e for e in self.plan.entries}
        rows: list[dict[str, object]] = []
        for symbol in sorted(set(by_symbol) | set(self.problems) | set(skips)):
            ev = by_symbol.get(symbol)
            entry = entered.get(symbol)
            earnings = (
                ", ".join(d.isoformat() for d in self.calendar.dates.get(symbol, ()))
                if self.calendar
                else ""
            )
            row: dict[str, object] = {
                "underlying": symbol,
                "expiry": ev.expiry.expiry.isoformat() if ev and ev.expiry.expiry else "",
                "iv_method": ev.iv.method.value if ev else "",
                "iv_level": round(ev.iv.level, 1) if ev and math.isfinite(ev.iv.level) else "",
                "bias": ev.result.direction.value if ev and ev.result.direction else "none",
                "confidence": round(ev.result.confidence, 3) if ev else "",
                "earnings": earnings,
                "decision": (
                    self._outcome(entry, placed, denied, skips.get(symbol, []))
                    if entry
                    else "; ".join(skips.get(symbol, [])) or self.problems.get(symbol, "")
                ),
            }
            rows.append(row)
        return rows

    def _outcome(
        self,
        entry: EntryPlan,
        placed: Mapping[str, ExecutionResult],
        denied: Mapping[str, str],
        skips: Sequence[str],
    ) -> str:
        cid = client_order_id(MAG7, entry.signal.signal_id, entry.spread, IntentAction.OPEN)
        what = f"{entry.spread.describe()} x {entry.quantity}"
        if cid in placed:
            r = placed[cid]
            return f"{what}: {r.status.value} {r.filled_quantity} @ {r.fill_price}"
        if cid in denied:
            return f"{what}: DENIED {denied[cid]}"
        if cid in self.awaiting:
            return f"{what}: awaiting approval"
        return f"{what}: {'; '.join(skips) or 'not sent'}"


def planner_limits(rt: Runtime) -> RiskLimits:
    """The limits the pure planner sees: the account's, minus the account-wide position counts.

    ``plan_entries`` would skip a candidate at max_open_positions or the per-underlying count
    before it has an intent; the risk gate (``core.risk.check_intent``, on both systems'
    positions *and pending intents*) is where those limits are enforced for both systems, and
    it records every denial with its reason (``intent_denied``, a DENIED intent). The planner
    still sizes with max_position_size and keeps Mag7's own cap of 3 open positions.
    """
    return replace(rt.limits, max_open_positions=UNCAPPED, max_per_underlying_per_system=UNCAPPED)


def enter(rt: Runtime, now: datetime, daily_pnl: Decimal) -> ScanOutcome:
    """The weekly scan at ``now``: plan, then each entry through the risk gate (both systems'
    positions and pending intents), the advisor review, approvals, and the order path."""
    cfg = rt.mag7
    day = rt.session.day
    calendar = earnings_calendar(rt, day - EARNINGS_LOOKBACK, day + timedelta(days=cfg.max_dte + 7))
    backfill_iv(rt, day)
    inputs, problems = symbol_inputs(rt, now, calendar)
    view = account_view(rt, now)
    book = [*view.positions(), *_pending_opens(rt, now)]
    equity = rt.broker.account().equity
    plan = plan_entries(
        now, rt.session, inputs, book, equity, planner_limits(rt), _with_calendar(cfg, calendar)
    )
    out = ScanOutcome(plan, calendar=calendar, problems=problems, iv_methods=iv_methods(rt, day))
    if calendar.note:
        log.info("earnings calendar: %s", calendar.note)
    for sig in plan.signals:
        rt.store.record_signal(sig)
    for skip in plan.skips:
        log.info("mag7 skip %s: %s", skip.underlying, skip.reason)
    for entry in plan.entries:
        result = _enter_one(rt, entry, view, daily_pnl, out)
        if result is not None:
            out.results.append(result)
    return out


def _enter_one(
    rt: Runtime, entry: EntryPlan, view: AccountView, daily_pnl: Decimal, out: ScanOutcome
) -> ExecutionResult | None:
    cfg = rt.mag7
    now = view.at
    intent = open_intent(
        MAG7,
        entry.signal.signal_id,
        entry.spread,
        entry.quantity,
        entry.quote,
        now,
        "; ".join(entry.reasons),
    )
    if rt.store.intent_by_client_id(intent.client_order_id) is not None:
        # a rerun of the scan re-derived an intent this week already has: the order path decides
        return execute_intent(intent, rt.broker, rt.store, rt.clock, cfg.walk, SignalKind.ENSEMBLE)
    acted = _acted_on(rt, entry.signal.signal_id)
    if acted:
        # a rerun at another time re-derives other legs for the same weekly signal: one entry
        out.skipped.append((entry.signal.underlying, acted))
        log.info("mag7 skip %s: %s", entry.signal.underlying, acted)
        return None
    decision = check_intent(intent, risk_snapshot(rt, view, daily_pnl), rt.limits)
    if not decision.approved:
        trading.deny(rt, intent, decision.reasons)
        out.denied.append((intent.client_order_id, "; ".join(decision.reasons)))
        return None
    reviewed = review_entry(rt, intent, entry, now)
    if reviewed is None:
        stored = rt.store.intent_by_client_id(intent.client_order_id)
        out.denied.append((intent.client_order_id, stored.status_reason if stored else "advisor"))
        return None
    intent, confidence = reviewed
    if rt.approvals_enabled:
        vix = _vix(rt, now)
        assessment = classify(
            intent.max_loss, rt.limits.max_position_size, confidence, vix, rt.tier_rules
        )
        if assessment.tier.needs_approval:
            request_approval(rt, intent, entry, assessment)
            out.awaiting.append(intent.client_order_id)
            return None
    return execute_intent(intent, rt.broker, rt.store, rt.clock, cfg.walk, SignalKind.ENSEMBLE)


_LIVE_OR_DONE = (
    IntentStatus.PENDING,
    IntentStatus.SUBMITTED,
    IntentStatus.AWAITING_APPROVAL,
    IntentStatus.FILLED,
)


def _acted_on(rt: Runtime, signal_id: str) -> str:
    """Why a weekly signal may not enter again ("" if it may): an entry of it is filled, on
    its way or awaiting approval. One that was denied, expired or went unfilled may be retried."""
    for stored in rt.store.intents(system=MAG7, statuses=_LIVE_OR_DONE):
        if stored.intent.signal_id == signal_id and stored.intent.action is IntentAction.OPEN:
            return (
                f"signal {signal_id} already has entry {stored.intent.client_order_id} "
                f"({stored.status.value})"
            )
    return ""


def _vix(rt: Runtime, now: datetime) -> float:
    try:
        return float(rt.market.last_price(rt.smart.vix_symbol, now))
    except MarketDataError:
        return math.nan  # unknown: does not raise the tier on its own


def review_entry(
    rt: Runtime, intent: OrderIntent, entry: EntryPlan, now: datetime
) -> tuple[OrderIntent, float] | None:
    """The advisor's review (advisory: veto or lower only), as for Smart-0DTE.

    A lowered confidence below the ensemble's 0.60 denies the entry; otherwise the size shrinks
    with the Mag7 sizing factor ``offset + confidence`` (never grows).
    """
    original = entry.signal.confidence
    if rt.advisor is None:
        return intent, original
    try:
        spot = float(rt.market.last_price(intent.spread.underlying, now))
    except MarketDataError:
        spot = None
    vix = _vix(rt, now)
    review = rt.advisor.review_entry(
        EntryContext.from_intent(
            intent,
            entry.signal,
            day=rt.session.day,
            underlying_price=spot,
            vix=vix if math.isfinite(vix) else None,
            notes=tuple(entry.reasons[1:4]),
        )
    )
    offset = float(rt.mag7.sizing.confidence_offset)

    def resize(quantity: int, before: float, after: float) -> int:
        return int(quantity * (offset + after) / (offset + before))

    floor = (rt.mag7.ensemble.min_confidence, "ensemble threshold")
    return trading.apply_review(rt, intent, entry.quantity, original, review, floor, resize, now)


# --------------------------------------------------------------------------- approvals


def request_approval(
    rt: Runtime, intent: OrderIntent, entry: EntryPlan, assessment: TierAssessment
) -> int:
    """A Mag7 entry to a human (``trading.ask_approval`` with its summary)."""
    return trading.ask_approval(rt, intent, assessment, approval_summary(intent, entry, assessment))


def approval_summary(intent: OrderIntent, entry: EntryPlan, assessment: TierAssessment) -> str:
    """What the approver sees: signal, structure, expiry, size, max loss, the plan's reasons."""
    sig = entry.signal
    lines = [
        f"## {assessment.tier.value} approval: mag7 {sig.direction.value} on {sig.underlying}",
        "",
        f"- structure: **{intent.spread.describe()}** x {intent.quantity} "
        f"(expiry {intent.spread.expiry.isoformat()})",
        f"- limit {intent.limit_price} (mid), worst {intent.worst_price} (natural)",
        f"- max loss: **${intent.max_loss:,.2f}**",
        f"- confidence {sig.confidence:.2f}; ensemble: {sig.reason}",
        *[f"- {r}" for r in entry.reasons[1:]],
        f"- why approval: {'; '.join(assessment.reasons)}",
        f"- client order id `{intent.client_order_id}`",
    ]
    if assessment.tier.needs_reason:
        lines.append("- **T3: approving requires a reason**")
    return "\n".join(lines)


def entry_cutoff(rt: Runtime) -> datetime:
    return rt.session.entry_cutoff(rt.mag7.entry_cutoff, rt.mag7.entry_cutoff_before_close_minutes)


def pending_approvals(rt: Runtime) -> list[str]:
    return [
        s.intent.client_order_id
        for s in rt.store.intents(
            day=rt.session.day, system=MAG7, statuses=(IntentStatus.AWAITING_APPROVAL,)
        )
    ]


def process_approvals(rt: Runtime, closing: bool = False) -> list[ExecutionResult]:
    """Mag7's decided approvals (``trading.settle_approvals``) with the Mag7 timeout (30 min),
    the Mag7 entry cut-off and the risk re-check as of the run's time."""

    def recheck(intent: OrderIntent) -> RiskDecision:
        now = rt.clock.now()
        snap = risk_snapshot(rt, account_view(rt, now), exclude=intent.client_order_id)
        return check_intent(intent, snap, rt.limits)

    return trading.settle_approvals(
        rt,
        MAG7,
        timeout=rt.mag7_approval_timeout,
        cutoff=entry_cutoff(rt),
        walk=rt.mag7.walk,
        recheck=recheck,
        kind_of=lambda _intent: SignalKind.ENSEMBLE,
        closing=closing,
        ended="scan ended",
    )


def await_approvals(rt: Runtime, poll: timedelta = timedelta(seconds=15)) -> list[ExecutionResult]:
    """Wait (on the run's clock) until every Mag7 approval of the day is decided or expired,
    executing the approved ones; the entry run is one-shot, so it waits instead of a loop."""
    results: list[ExecutionResult] = []
    deadline = min(rt.clock.now() + rt.mag7_approval_timeout, entry_cutoff(rt))
    while pending_approvals(rt):
        results += process_approvals(rt)
        if not pending_approvals(rt):
            break
        if rt.clock.now() >= deadline:
            results += process_approvals(rt, closing=True)
            break
        rt.clock.sleep_until(min(rt.clock.now() + poll, deadline))
    return results


# --------------------------------------------------------------------------- recovery


def recover(rt: Runtime) -> list[ExecutionResult]:
    """``trading.recover`` of Mag7's own intents, with its entry cut-off and walk."""
    return trading.recover(rt, MAG7, entry_cutoff(rt), rt.mag7.walk)


def reconcile(rt: Runtime) -> list[str]:
    """``trading.reconcile`` over the Mag7 universe."""
    return trading.reconcile(rt, MAG7)


# --------------------------------------------------------------------------- management


@dataclass
class ManageOutcome:
    at: datetime
    marks: dict[str, Decimal]
    peaks: dict[str, Decimal]
    decisions: list[tuple[str, Mag7ExitKind, int, str]]  # (position, rule, quantity, detail)
    results: list[ExecutionResult]
    failed: list[tuple[str, str]] = field(default_factory=list)  # (position, why)


def _close_reason(decision: Mag7ExitDecision) -> str:
    text = f"{decision.kind.value}: {decision.detail}"
    if decision.kind is Mag7ExitKind.TIER:
        text += f" [{tiers_marker(decision.tiers_after)}]"
    return text


def update_peaks(
    rt: Runtime, positions: Iterable[Position], marks: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    """Record each marked position's P&L fraction as its peak if higher; the stored peaks."""
    ids: list[str] = []
    for pos in positions:
        ids.append(pos.position_id)
        value = marks.get(pos.position_id)
        if value is None:
            continue
        try:
            rt.store.record_peak(pos.position_id, pnl_fraction(pos, value))
        except ValueError as exc:  # zero premium: no fraction
            log.warning("no P&L fraction for %s: %s", pos.position_id, exc)
    return rt.store.peaks(ids)


def _exit(
    rt: Runtime, pos: Position, decision: Mag7ExitDecision, now: datetime, out: ManageOutcome
) -> None:
    """Close what ``decision`` says; a calendar close is retried with fresh quotes until filled."""
    marketable = decision.reason is ExitReason.CLOSEOUT
    tiers = decision.tiers_after if decision.kind is Mag7ExitKind.TIER else None
    tries = CLOSE_ATTEMPTS if marketable else 1
    current = pos
    for _ in range(tries):
        quantity = min(decision.quantity, current.quantity)
        try:
            result = trading.close_position(
                rt, current, quantity, _close_reason(decision), marketable, rt.mag7.walk, tiers
            )
        except (MarketDataError, ChainError) as exc:
            rt.store.record_risk_event(
                "order_error",
                "critical" if marketable else "warning",
                f"cannot quote exit of {pos.position_id}: {exc}",
                now,
                MAG7,
            )
            out.failed.append((pos.position_id, str(exc)))
            return
        if result is None:  # closed meanwhile by another run (the loop's flatten)
            return
        out.results.append(result)
        if result.elsewhere:  # another run is closing it right now: its outcome, not a failure
            return
        if result.status is IntentStatus.FILLED:
            return
        latest = rt.store.position(pos.position_id)
        if latest is None or latest.status is not PositionStatus.OPEN:
            return
        current = latest
    if marketable:
        rt.store.record_risk_event(
            "mag7_close_failed",
            "critical",
            f"{pos.position_id}: {decision.kind.value} close unfilled after {tries} tries",
            rt.clock.now(),
            MAG7,
        )
    out.failed.append((pos.position_id, "unfilled"))


def manage(rt: Runtime, now: datetime) -> ManageOutcome:
    """One management check: marks from each position's expiry chain, peaks persisted, then
    ``plan_exits`` (1-DTE, pre-earnings, stop, trail, tiers) through ``close_intent`` and the
    order path. A calendar close that does not fill is retried with fresh quotes."""
    cfg = rt.mag7
    day = rt.session.day
    positions = rt.store.open_positions(MAG7)
    if not positions:
        return ManageOutcome(now, {}, {}, [], [])
    current = trading.marks(rt, positions, None)
    # the latest check's marks are the next session's P&L baseline if no close mark follows
    rt.store.record_position_marks(day, now, current)
    peaks = update_peaks(rt, positions, current)
    calendar = earnings_calendar(rt, day - EARNINGS_LOOKBACK, day + timedelta(days=cfg.max_dte + 7))
    out = ManageOutcome(now, current, peaks, [], [])
    for pos, decision in plan_exits(
        positions, current, now, rt.session, cfg, peaks, calendar.dates
    ):
        out.decisions.append((pos.position_id, decision.kind, decision.quantity, decision.detail))
        _exit(rt, pos, decision, now, out)
    return out


# --------------------------------------------------------------------------- risk and P&L


@dataclass(frozen=True, slots=True)
class AccountView:
    """The account as the ledger shows it at one instant, both systems: what Mag7 decides on.

    Read *as of* the run's clock, not "the latest rows": live, the two are the same; in a
    replay that runs the Smart-0DTE loop's whole day first (the demo), a Mag7 run at 10:00 must
    not see the positions, losses or trading state the loop recorded after 10:00.
    """

    at: datetime
    rows: tuple[Position, ...]  # open at ``at`` (a partly closed position: parent + partials)
    marks: Mapping[str, Decimal]  # position_id -> net mid at ``at``
    by_system: Mapping[SystemName, DayPnl]  # today's P&L up to ``at`` (carried: from prior close)
    state: TradingState
    errors: int

    @property
    def realized(self) -> Decimal:
        return sum((p.realized for p in self.by_system.values()), Decimal("0"))

    @property
    def unrealized(self) -> Decimal:
        return sum((p.unrealized for p in self.by_system.values()), Decimal("0"))

    @property
    def daily_pnl(self) -> Decimal:
        return self.realized + self.unrealized

    def positions(self, system: SystemName | None = None) -> list[Position]:
        """One position per opened position (partial-close rows folded into their parent)."""
        groups: dict[str, list[Position]] = {}
        for row in self.rows:
            if system is None or row.system is system:
                groups.setdefault(row.position_id.split("-p")[0], []).append(row)
        out = []
        for base, rows in groups.items():
            head = next((r for r in rows if r.position_id == base), rows[0])
            out.append(
                replace(
                    head,
                    position_id=base,
                    quantity=sum(r.quantity for r in rows),
                    max_loss=sum((r.max_loss for r in rows), Decimal("0")),
                    entry_commission=sum((r.entry_commission for r in rows), Decimal("0")),
                    status=PositionStatus.OPEN,
                    closed_at=None,
                    exit_price=None,
                )
            )
        return out

    def system_pnl(self, system: SystemName) -> tuple[Decimal, Decimal]:
        """(realised today up to ``at``, unrealised at ``at``) of one system."""
        pnl = self.by_system[system]
        return pnl.realized, pnl.unrealized


def account_view(rt: Runtime, at: datetime | None = None) -> AccountView:
    """Mark the account as of ``at`` (default: the run's clock)."""
    at = at or rt.clock.now()
    rows = tuple(rt.store.positions_open_at(at))
    marks = trading.marks(rt, rows, None)
    by_system = trading.day_pnl_by_system(rt, rows, marks, until=at)
    row = rt.store.trading_state(at)
    errors = [e for e in rt.store.risk_events(day=rt.session.day, kinds=ERROR_KINDS) if e.at <= at]
    return AccountView(
        at=at,
        rows=rows,
        marks=marks,
        by_system=by_system,
        state=TradingState.ACTIVE if row is None else row.state,
        errors=len(errors),
    )


def account_pnl(rt: Runtime) -> Decimal:
    """Realised + unrealised P&L of both systems today, as of the run's clock."""
    return account_view(rt).daily_pnl


def risk_snapshot(
    rt: Runtime, view: AccountView, daily_pnl: Decimal | None = None, exclude: str | None = None
) -> RiskSnapshot:
    """``trading.risk_snapshot`` as of ``view.at``: positions open then, plus intents of the day
    created by then and not settled (both systems)."""
    pending = [
        s.intent
        for s in rt.store.intents(
            day=rt.session.day,
            statuses=(
                IntentStatus.PENDING,
                IntentStatus.SUBMITTED,
                IntentStatus.AWAITING_APPROVAL,
                IntentStatus.FILLED,
            ),
        )
        if s.intent.client_order_id != exclude
        and s.intent.created_at <= view.at
        and (s.status is not IntentStatus.FILLED or _filled_after(rt, s.intent, view.at))
    ]
    return RiskSnapshot(
        state=view.state,
        daily_pnl=view.daily_pnl if daily_pnl is None else daily_pnl,
        exposures=exposures(view.positions(), pending),
        errors_today=view.errors,
    )


def _filled_after(rt: Runtime, intent: OrderIntent, at: datetime) -> bool:
    """An entry sent by ``at`` whose position opened after it: still on its way at ``at``."""
    if intent.action is not IntentAction.OPEN:
        return False
    pos = rt.store.position(intent.client_order_id)
    return pos is not None and pos.opened_at > at


def update_risk(rt: Runtime) -> StateChange:
    """Mark the account (both systems) as of now, record Mag7's P&L point, and escalate the
    account's trading state on the account's daily P&L (``trading.update_risk`` does the same
    every minute of the Smart-0DTE loop, recording its point under smart0dte)."""
    now = rt.clock.now()
    view = account_view(rt, now)
    total = view.daily_pnl
    m_real, m_unreal = view.system_pnl(MAG7)
    rt.store.record_pnl_mark(MAG7, now, m_real, m_unreal)
    change = trading.escalate(rt, view.state, total, view.errors, now)
    if change.flatten:
        # both books, as the loop does: two runs closing one position send one order
        # (trading.close_position, the intent claim)
        trading.flatten(rt, "risk: daily loss at halt level")
    return change


def record_day(rt: Runtime) -> dict[str, object]:
    """Mag7's daily P&L row (``daily_pnl`` table) from its last mark and today's fills."""
    day = rt.session.day
    marks = rt.store.pnl_marks(day, MAG7)
    realized = marks[-1].realized if marks else Decimal("0")
    unrealized = marks[-1].unrealized if marks else Decimal("0")
    fills = rt.store.fills(day=day, system=MAG7)
    commissions = sum((f.commission for f in fills), Decimal("0"))
    rt.store.upsert_daily_pnl(day, MAG7, realized, unrealized, commissions, len(fills))
    return {
        "realized": str(realized),
        "unrealized": str(unrealized),
        "commissions": str(commissions),
        "fills": len(fills),
    }
