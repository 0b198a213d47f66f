"""Backtests: replay history day by day through the same strategy code, risk gate and order path.

A backtest drives the very functions the flows call, on one simulated clock:

* every trading day (``core.calendar``) of [start, end]: at 09:35 ``steps.start_session`` (the
  daily reset of REDUCING/HALTED) and ``steps.reconcile``; Smart-0DTE's loop from 09:45 to the
  close-out, each minute ``steps.iteration`` (observe -> manage_exits -> approvals -> update_risk
  -> enter, exactly the intraday flow's task); Mag7's management checks (10:00, 12:00, 14:00,
  15:30) and, on the entry day, its 10:00 scan (``tasks.mag7``, as its flows do), interleaved in
  time with the Smart-0DTE minutes; at the close-out time ``steps.closeout``; after the close
  Mag7's end-of-day step; then the cash settlement of anything still open at its expiry;
* market data from the source (the seeded simulator, or Polygon history replayed from the
  parquet cache) behind a ``LookAheadGuard``: any request beyond the clock's now fails the run;
* orders through ``tasks.execution`` (persist, submit once, walk, fills) to a
  ``BacktestBroker``: quote-based fills never better than the paper broker (fill fraction,
  slippage, commissions, seeded partial fills);
* a fresh ledger of its own (``<out>/<run id>/ledger.db`` unless ``db_url`` names another empty
  database; never the trading ledger), the account-wide ``RiskLimits`` and a fresh risk state
  every session;
* results (run, parameters, source, code version, trades, daily equity, metrics) stored in the
  backtest results database (``adapters.backtest_store``) and written as a tearsheet folder
  ``<out>/<run id>/`` (``tasks.backtest_report``).

Nothing here imports Prefect directly except through ``tasks.steps`` (whose task functions are
called as plain functions with ``.fn``); ``tasks.backtest_steps`` wraps this module for the flow.
Determinism: the simulator, the fill draws and the broker's order ids depend only on the inputs,
so two runs with the same parameters produce the same trades and metrics (the run id, creation
time and wall time differ).
"""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import metadata
from pathlib import Path
from typing import Any

from adapters.backtest_broker import BacktestBroker, BacktestFillConfig
from adapters.backtest_store import BacktestStore, EquityRow, TradeRow
from adapters.cache import InProcessCache
from adapters.clock import SimClock
from adapters.store import TradeStore, normalize_url
from core.calendar import NY, CalendarError, session, trading_days
from core.models import (
    IntentAction,
    IntentStatus,
    OrderIntent,
    Position,
    PositionStatus,
    RiskLimits,
    SystemName,
    TradingMode,
    client_order_id,
)
from core.pnl import base_id
from tasks import steps, trading
from tasks.backtest_market import (
    SOURCES,
    LookAheadError,
    LookAheadGuard,
    PolygonAccess,
    build_market,
    intrinsic_value,
)
from tasks.backtest_metrics import equity_metrics, exposure, monthly_returns, trade_stats
from tasks.runtime import Runtime, database_url

log = logging.getLogger("dte.backtest")

SYSTEM_CHOICES = ("smart0dte", "mag7", "both")
DEFAULT_OUT = Path("reports/backtests")
RESULTS_DB_NAME = "backtests.db"
SESSION_START = time(9, 35)  # the market-open scan: reset the daily state, reconcile
DEFAULT_FILL = BacktestFillConfig()
# at one instant: Mag7's check, then its entry scan (as the demo runs them), then the close-out
EVENT_ORDER = {"manage": 0, "entry": 1, "closeout": 2}


class BacktestUnavailable(RuntimeError):
    """The requested system cannot be backtested in this build."""


def mag7_available() -> bool:
    """Mag7-7DTE's orchestration (``tasks.mag7``) is part of this build."""
    return importlib.util.find_spec("tasks.mag7") is not None


def default_span(today: date, days: int = 5) -> tuple[date, date]:
    """The last ``days`` completed sessions before ``today`` (a manual run without dates)."""
    from core.calendar import previous_trading_day

    end = previous_trading_day(today)
    start = end
    for _ in range(days - 1):
        start = previous_trading_day(start)
    return start, end


def systems_of(system: str) -> tuple[SystemName, ...]:
    if system not in SYSTEM_CHOICES:
        raise ValueError(f"system must be one of {', '.join(SYSTEM_CHOICES)}, got {system!r}")
    wanted = {
        "smart0dte": (SystemName.SMART0DTE,),
        "mag7": (SystemName.MAG7,),
        "both": (SystemName.SMART0DTE, SystemName.MAG7),
    }[system]
    if SystemName.MAG7 in wanted and not mag7_available():
        raise BacktestUnavailable(
            f"--system {system}: Mag7-7DTE is not available in this build (tasks/mag7.py is "
            "missing); backtest smart0dte"
        )
    return wanted


# ------------------------------------------------------------------------------------ parameters


@dataclass(frozen=True, slots=True)
class BacktestParams:
    """Everything that decides a backtest's result (stored with the run, as JSON)."""

    system: str
    start: date
    end: date
    source: str = "sim"
    seed: int = 7
    capital: Decimal = Decimal("100000")
    fill_fraction: Decimal = DEFAULT_FILL.fill_fraction
    slippage_per_leg: Decimal = DEFAULT_FILL.slippage_per_leg
    commission_per_contract: Decimal = DEFAULT_FILL.commission_per_contract
    partial_fill_probability: float = DEFAULT_FILL.partial_fill_probability
    risk_overrides: Mapping[str, Any] = field(default_factory=dict)
    smart_overrides: Mapping[str, Any] = field(default_factory=dict)
    mag7_overrides: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        systems_of(self.system)
        if self.source not in SOURCES:
            raise ValueError(f"source must be one of {', '.join(SOURCES)}, got {self.source!r}")
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.capital <= 0:
            raise ValueError("capital must be positive")
        self.fill_config()  # validates the fill model
        self.limits()
        if self.source == "polygon":
            today = datetime.now(tz=NY).date()
            if self.end >= today:
                raise ValueError(
                    f"a polygon backtest replays completed days: end {self.end} must be before "
                    f"today ({today})"
                )
        try:
            days = trading_days(self.start, self.end)
        except CalendarError as exc:
            raise ValueError(str(exc)) from None
        if not days:
            raise ValueError(f"no trading day in {self.start}..{self.end}")

    @property
    def systems(self) -> tuple[SystemName, ...]:
        return systems_of(self.system)

    def days(self) -> list[date]:
        return trading_days(self.start, self.end)

    def fill_config(self) -> BacktestFillConfig:
        return BacktestFillConfig(
            fill_fraction=Decimal(str(self.fill_fraction)),
            slippage_per_leg=Decimal(str(self.slippage_per_leg)),
            commission_per_contract=Decimal(str(self.commission_per_contract)),
            partial_fill_probability=float(self.partial_fill_probability),
            seed=self.seed,
            starting_equity=Decimal(str(self.capital)),
        )

    def limits(self) -> RiskLimits:
        """The account-wide ``RiskLimits`` (defaults, with ``risk_overrides``)."""
        names = set(RiskLimits.__dataclass_fields__)
        unknown = sorted(set(self.risk_overrides) - names)
        if unknown:
            raise ValueError(f"unknown risk limits: {', '.join(unknown)}")
        typed: dict[str, Any] = {}
        for key, value in self.risk_overrides.items():
            default = getattr(RiskLimits(), key)
            typed[key] = Decimal(str(value)) if isinstance(default, Decimal) else int(value)
        return RiskLimits(**typed)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["start"] = self.start.isoformat()
        out["end"] = self.end.isoformat()
        for key in ("capital", "fill_fraction", "slippage_per_leg", "commission_per_contract"):
            out[key] = str(out[key])
        out["risk_limits"] = {k: str(v) for k, v in asdict(self.limits()).items()}
        out["risk_overrides"] = dict(self.risk_overrides)
        out["smart_overrides"] = dict(self.smart_overrides)
        out["mag7_overrides"] = dict(self.mag7_overrides)
        return out


# ------------------------------------------------------------------------------------ results


@dataclass(frozen=True, slots=True)
class SystemDay:
    realized: Decimal  # closed today, after commissions
    unrealized: Decimal  # open at the close, marked at the last minute, after entry commissions
    commissions: Decimal  # charged today
    trades: int  # positions (or partial closes) closed today


@dataclass(frozen=True, slots=True)
class DayResult:
    day: date
    index: int  # 1-based position in the run
    total: int
    iterations: int
    mag7_checks: int
    orders: int
    settled: int
    flat: bool | None  # Smart-0DTE's close-out verdict (None when it does not trade)
    state: str
    equity: Decimal
    pnl: Decimal  # change of equity over the day
    systems: dict[str, SystemDay]


@dataclass(frozen=True, slots=True)
class BacktestResult:
    run_id: str
    params: BacktestParams
    code_version: str
    report_dir: Path
    ledger_url: str
    results_url: str
    days: list[DayResult]
    trades: list[TradeRow]
    equity: list[EquityRow]
    metrics: dict[str, Any]
    files: dict[str, Path]
    open_at_end: int
    data_accesses: dict[str, int]


Progress = Callable[[DayResult], None]
MinuteProgress = Callable[[date, datetime], None]


def code_version() -> str:
    """``git rev-parse HEAD`` (+ ``-dirty`` with uncommitted changes to tracked files), else the
    installed package version, else ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            check=False,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
        if head.returncode == 0 and head.stdout.strip():
            dirty = subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no"],
                check=False,
                cwd=root,
                capture_output=True,
                text=True,
                timeout=30,
            )
            suffix = "-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else ""
            return head.stdout.strip() + suffix
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        return f"dte-trader {metadata.version('dte-trader')}"
    except metadata.PackageNotFoundError:
        return "unknown"


def _sqlite_path(url: str) -> Path | None:
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database).expanduser().resolve()


def _same_database(a: str, b: str) -> bool:
    pa_, pb = _sqlite_path(a), _sqlite_path(b)
    if pa_ is not None or pb is not None:
        return pa_ == pb
    return normalize_url(a).render_as_string(hide_password=False) == normalize_url(
        b
    ).render_as_string(hide_password=False)


def _safe_url(url: str) -> str:
    return normalize_url(url).render_as_string(hide_password=True)


def _catch_up(tick: datetime, now: datetime, interval: timedelta) -> datetime:
    """As ``flows.smart0dte``: skip loop minutes an order walk already ran past."""
    while tick <= now - interval:
        tick += interval
    return tick


def _rule(reason: str) -> str:
    return reason.split(":", 1)[0].strip() or "close"


# ------------------------------------------------------------------------------------ the engine


class Backtest:
    """One backtest run; ``run_day`` for each of ``days`` in order, then ``finish``.

    ``db_url``: the run's ledger (default ``<out>/<run id>/ledger.db``); it must be empty and may
    not be the trading ledger. ``results_url``: where runs are catalogued (default
    ``<out>/backtests.db``). ``polygon``: key, base URL and cache for ``source="polygon"``.
    ``record_accesses`` keeps every market-data request (for the look-ahead test).
    """

    def __init__(
        self,
        params: BacktestParams,
        *,
        out_dir: Path | str = DEFAULT_OUT,
        db_url: str | None = None,
        results_url: str | None = None,
        polygon: PolygonAccess | None = None,
        record_accesses: bool = False,
        on_minute: MinuteProgress | None = None,
    ) -> None:
        self.params = params
        self.systems = params.systems
        self.created_at = datetime.now(tz=UTC)
        self.run_id = f"{self.created_at:%Y%m%dT%H%M%S}-{params.system}-{uuid.uuid4().hex[:6]}"
        self.out_dir = Path(out_dir)
        self.report_dir = self.out_dir / self.run_id
        self.ledger_url = db_url or f"sqlite:///{self.report_dir / 'ledger.db'}"
        self.results_url = results_url or f"sqlite:///{self.out_dir / RESULTS_DB_NAME}"
        if _same_database(self.ledger_url, database_url()):
            raise ValueError(
                "a backtest never writes to the trading ledger "
                f"({_safe_url(database_url())}): give it its own --db or leave --db out"
            )
        if _same_database(self.ledger_url, self.results_url):
            raise ValueError("the backtest ledger and the results database must differ")
        self.report_dir.mkdir(parents=True, exist_ok=False)
        self.on_minute = on_minute
        self.code_version = code_version()
        self.limits = params.limits()
        from blocks.settings import smart0dte_config_from

        self.smart = smart0dte_config_from(params.smart_overrides)
        self.mag7_cfg: Any = None
        if SystemName.MAG7 in self.systems:
            from blocks.settings import mag7_config_from

            self.mag7_cfg = mag7_config_from(params.mag7_overrides)
        self.days = params.days()
        first = session(self.days[0])
        self.clock = SimClock(datetime.combine(first.day, SESSION_START, tzinfo=NY))
        self.raw_market = build_market(params.source, params.seed, polygon)
        self.market = LookAheadGuard(self.raw_market, self.clock, record=record_accesses)
        self.broker = BacktestBroker(self.market, self.clock, params.fill_config())
        self.store = TradeStore(self.ledger_url, exclusive=True)  # its own ledger, one writer
        self.results: BacktestStore | None = None
        try:
            self.store.migrate()
            if self.store.intents() or self.store.positions():
                raise ValueError(
                    f"the backtest ledger {_safe_url(self.ledger_url)} is not empty: a backtest "
                    "starts from a fresh ledger"
                )
            self.results = BacktestStore(self.results_url)
            self.results.start_run(
                self.run_id,
                system=params.system,
                source=params.source,
                seed=params.seed if params.source == "sim" else None,
                start_day=params.start,
                end_day=params.end,
                parameters=self._parameters(polygon),
                code_version=self.code_version,
                created_at=self.created_at,
                ledger_url=_safe_url(self.ledger_url),
                report_dir=str(self.report_dir),
            )
        except BaseException:
            self.close()
            raise
        self.day_results: list[DayResult] = []
        self._equity = Decimal(str(params.capital))
        self._realized = Decimal("0")  # closed rows' P&L over the run so far, after commissions

    def _parameters(self, polygon: PolygonAccess | None) -> dict[str, Any]:
        out = self.params.as_dict()
        out["days"] = len(self.days)
        out["ledger_url"] = _safe_url(self.ledger_url)
        if polygon is not None:  # never the key
            out["polygon"] = {"base_url": polygon.base_url, "cache_dir": str(polygon.cache_dir)}
        return out

    # -- one day --------------------------------------------------------------------------------
    def runtime(self, day: date) -> Runtime:
        """The same ``Runtime`` a flow builds, on the backtest's clock, market, broker, ledger."""
        rt = Runtime(
            mode=TradingMode.DEVELOPMENT,
            session=session(day),
            clock=self.clock,
            market=self.market,
            broker=self.broker,
            store=self.store,
            limits=self.limits,
            smart=self.smart,
            cache=InProcessCache(),
        )
        if self.mag7_cfg is not None:
            rt.mag7 = self.mag7_cfg
        return rt

    def run_day(self, day: date) -> DayResult:
        index = self.days.index(day) + 1
        rt = self.runtime(day)
        sess = rt.session
        self.clock.sleep_until(datetime.combine(day, SESSION_START, tzinfo=NY))
        steps.start_session.fn(rt)
        steps.reconcile.fn(rt)
        iterations = checks = 0
        flat: bool | None = None
        smart = SystemName.SMART0DTE in self.systems
        iv_at_close = callable(getattr(self.raw_market, "atm_iv_history", None))
        events = self._mag7_events(rt) if SystemName.MAG7 in self.systems else []
        end = sess.closeout
        if smart:
            events.append((end, "closeout"))
        events.sort(key=lambda e: (e[0], EVENT_ORDER[e[1]]))
        interval = timedelta(seconds=self.smart.loop_interval_seconds)
        tick = _catch_up(
            datetime.combine(day, self.smart.loop_start, tzinfo=NY), self.clock.now(), interval
        )
        while True:
            minute_due = smart and tick < end
            if events and (not minute_due or events[0][0] <= tick):
                at, kind = events.pop(0)
                if at >= sess.close:
                    continue  # a configured time after the close: nothing trades then
                self.clock.sleep_until(at)
                if kind == "closeout":
                    flat = bool(steps.closeout.fn(rt)["flat"])
                    continue
                self._mag7_event(rt, kind)
                checks += kind == "manage"
                last_check = kind == "manage" and not any(k == "manage" for _, k in events)
                if last_check and not iv_at_close:
                    self._mag7_end_of_day(rt)  # Polygon: the day's IV from the last check's chains
                continue
            if not minute_due:
                break
            self.clock.sleep_until(tick)
            steps.iteration.fn(rt, tick)
            iterations += 1
            if self.on_minute is not None:
                self.on_minute(day, tick)
            tick = _catch_up(tick + interval, self.clock.now(), interval)
        self.clock.sleep_until(sess.close)
        if SystemName.MAG7 in self.systems and iv_at_close:
            self._mag7_end_of_day(rt)
        settled = self.settle_expired(rt)
        if smart:  # the EOD report's daily P&L row (Mag7 writes its own at end of day)
            from tasks.report import summarize

            summary = summarize(self.store, day)
            self.store.upsert_daily_pnl(
                day,
                SystemName.SMART0DTE,
                summary.realized,
                summary.unrealized,
                summary.commissions,
                summary.fills,
            )
        self._check_guard()
        result = self._close_day(rt, index, iterations, checks, settled, flat)
        self.day_results.append(result)
        return result

    def _check_guard(self) -> None:
        if self.market.violations:
            raise LookAheadError("; ".join(self.market.violations))

    # -- Mag7 -----------------------------------------------------------------------------------
    def _mag7_events(self, rt: Runtime) -> list[tuple[datetime, str]]:
        from tasks import mag7

        events = [(t, "manage") for t in mag7.management_times_on(rt.session.day, rt.mag7)]
        if mag7.entry_day_reason(rt.session.day, rt.mag7) is None:
            at = datetime.combine(rt.session.day, mag7.entry_time(rt.mag7), tzinfo=NY)
            events.append((at, "entry"))
        return events

    def _mag7_event(self, rt: Runtime, kind: str) -> None:
        from tasks import mag7, mag7_steps

        if kind == "manage":
            mag7_steps.manage_check.fn(rt, self.clock.now())
            return
        # mag7_steps.entry_scan without its table artifact: mark, then scan and enter
        change = mag7.update_risk(rt)
        mag7.enter(rt, self.clock.now(), change.daily_pnl)

    def _mag7_end_of_day(self, rt: Runtime) -> None:
        from tasks import mag7_steps

        mag7_steps.end_of_day.fn(rt)

    # -- expiry ---------------------------------------------------------------------------------
    def settle_expired(self, rt: Runtime) -> int:
        """Cash-settle every open position expiring today (or earlier) at its intrinsic value at
        the underlying's close: no commission, recorded as a filled close intent, a broker fill
        and an ``expiry_settlement`` risk event."""
        day = rt.session.day
        count = 0
        for pos in self.store.open_positions():
            if pos.spread.expiry > day:
                continue
            close_at = session(pos.spread.expiry).close
            spot = self.market.last_price(pos.spread.underlying, close_at)
            value = intrinsic_value(pos.spread, spot)
            self._settle(rt, pos, value, spot, close_at)
            count += 1
        return count

    def _settle(
        self, rt: Runtime, pos: Position, value: Decimal, spot: float, at: datetime
    ) -> None:
        signal_id = f"settle:{pos.position_id}"
        intent = OrderIntent(
            client_order_id=client_order_id(pos.system, signal_id, pos.spread, IntentAction.CLOSE),
            system=pos.system,
            signal_id=signal_id,
            spread=pos.spread,
            action=IntentAction.CLOSE,
            quantity=pos.quantity,
            limit_price=value,
            worst_price=value,
            max_loss=Decimal("0"),
            created_at=at,
            position_id=pos.position_id,
            reason=f"expiry: cash settled at intrinsic {value} ({pos.spread.underlying} {spot:.2f})",
        )
        self.store.save_intent(intent)
        fill = self.broker.settle(intent, at)
        self.store.record_fill(fill, pos.system)
        self.store.close_position(pos.position_id, value, Decimal("0"), at, intent.client_order_id)
        self.store.set_intent_status(
            intent.client_order_id, IntentStatus.FILLED, intent.reason, fill.broker_order_id, at=at
        )
        self.store.record_risk_event(
            "expiry_settlement",
            "warning",
            f"{pos.position_id} {pos.spread.describe()} x{pos.quantity} left open at expiry: "
            f"{intent.reason}",
            at,
            pos.system,
        )
        log.warning("%s settled at expiry: %s", pos.position_id, intent.reason)

    # -- end of day -----------------------------------------------------------------------------
    def _close_day(
        self,
        rt: Runtime,
        index: int,
        iterations: int,
        checks: int,
        settled: int,
        flat: bool | None,
    ) -> DayResult:
        day = rt.session.day
        mark_at = trading.last_minute(rt)  # the clock is at the close
        systems: dict[str, SystemDay] = {}
        # today's rows only: the ledger grows over the run, the day's work should not
        closed = self.store.positions_closed_on(day)
        open_now = self.store.open_positions()
        close_marks = trading.marks(rt, open_now, None, at=mark_at)
        total_unrealized = Decimal("0")
        for system in self.systems:
            closed_today = [p for p in closed if p.system is system]
            unrealized = Decimal("0")
            for pos in open_now:
                if pos.system is system:
                    value = close_marks.get(pos.position_id)
                    # unquoted: at cost, only the entry commission is lost so far
                    gain = pos.unrealized(value) if value is not None else Decimal("0")
                    unrealized += gain - pos.entry_commission
            realized = sum((p.realized() for p in closed_today), Decimal("0"))
            commissions = sum(
                (f.commission for f in self.store.fills(day=day, system=system)), Decimal("0")
            )
            systems[system.value] = SystemDay(realized, unrealized, commissions, len(closed_today))
            total_unrealized += unrealized
        # the next session's daily-loss baseline of every position carried overnight
        self.store.record_position_marks(day, mark_at, close_marks)
        self._realized += sum((p.realized() for p in closed), Decimal("0"))
        equity = Decimal(str(self.params.capital)) + self._realized + total_unrealized
        pnl = equity - self._equity
        self._equity = equity
        state = trading.current_state(rt)
        orders = len(self.store.orders(day=day))  # every order sent, the close-out's included
        return DayResult(
            day=day,
            index=index,
            total=len(self.days),
            iterations=iterations,
            mag7_checks=checks,
            orders=orders,
            settled=settled,
            flat=flat,
            state=state.value,
            equity=equity,
            pnl=pnl,
            systems=systems,
        )

    # -- the whole run --------------------------------------------------------------------------
    def trades(self) -> list[TradeRow]:
        """Every closed position (partial closes as their own ``-pN`` rows), by closing time."""
        intents = self.store.intents()
        filled = {f.client_order_id for f in self.store.fills()}
        closes: dict[str, list[tuple[datetime, str]]] = {}
        for stored in intents:
            i = stored.intent
            if i.action is IntentAction.CLOSE and i.position_id and i.client_order_id in filled:
                closes.setdefault(i.position_id, []).append((i.created_at, i.reason))
        out: list[TradeRow] = []
        for p in self.store.positions():
            if p.status is not PositionStatus.CLOSED or p.closed_at is None:
                continue
            reasons = [
                r for at, r in sorted(closes.get(base_id(p.position_id), [])) if at <= p.closed_at
            ]
            out.append(
                TradeRow(
                    position_id=p.position_id,
                    system=p.system.value,
                    signal_kind=p.signal_kind.value,
                    underlying=p.underlying,
                    structure=p.spread.describe(),
                    quantity=p.quantity,
                    opened_at=p.opened_at.astimezone(NY),
                    closed_at=p.closed_at.astimezone(NY),
                    entry_price=p.entry_price,
                    exit_price=p.exit_price if p.exit_price is not None else Decimal("0"),
                    commissions=p.entry_commission + p.exit_commission,
                    pnl=p.realized(),
                    exit_reason=_rule(reasons[-1]) if reasons else "",
                )
            )
        return sorted(out, key=lambda t: (t.closed_at, t.position_id))

    def equity_rows(self) -> list[EquityRow]:
        capital = Decimal(str(self.params.capital))
        rows: list[EquityRow] = []
        cumulative = {s.value: Decimal("0") for s in self.systems}
        for d in self.day_results:
            all_real = sum((s.realized for s in d.systems.values()), Decimal("0"))
            all_unreal = sum((s.unrealized for s in d.systems.values()), Decimal("0"))
            all_comm = sum((s.commissions for s in d.systems.values()), Decimal("0"))
            all_trades = sum(s.trades for s in d.systems.values())
            rows.append(
                EquityRow(d.day, "all", d.equity, all_real, all_unreal, all_comm, all_trades)
            )
            if len(self.systems) > 1:
                for name, s in d.systems.items():
                    cumulative[name] += s.realized
                    rows.append(
                        EquityRow(
                            d.day,
                            name,
                            capital + cumulative[name] + s.unrealized,
                            s.realized,
                            s.unrealized,
                            s.commissions,
                            s.trades,
                        )
                    )
        return rows

    def metrics(self, trades: list[TradeRow], equity: list[EquityRow]) -> dict[str, Any]:
        capital = float(self.params.capital)
        sessions = [(session(d.day).open, session(d.day).close) for d in self.day_results]
        end = sessions[-1][1] if sessions else datetime.now(tz=NY)
        held: dict[str, list[tuple[datetime, datetime, str]]] = {}
        for p in self.store.positions():
            if "-p" in p.position_id:  # a partial close's child: its parent holds the interval
                continue
            closed = p.closed_at if p.closed_at is not None else end
            held.setdefault(p.system.value, []).append((p.opened_at, closed, p.signal_kind.value))

        def block(
            rows: list[TradeRow],
            curve: list[EquityRow] | None,
            spans: list[tuple[datetime, datetime]],
        ) -> dict[str, Any]:
            out: dict[str, Any] = {}
            if curve is not None:
                out.update(equity_metrics(capital, [float(r.equity) for r in curve]).as_dict())
            out.update(trade_stats(float(t.pnl) for t in rows).as_dict())
            out["exposure"] = exposure(spans, sessions)
            out["commissions"] = float(sum((t.commissions for t in rows), Decimal("0")))
            return out

        all_curve = [r for r in equity if r.system == "all"]
        every_span = [(a, b) for spans in held.values() for a, b, _ in spans]
        result: dict[str, Any] = {"overall": block(trades, all_curve, every_span)}
        # commissions charged, including those of positions still open at the end
        result["overall"]["commissions_charged"] = float(
            sum((f.commission for f in self.store.fills()), Decimal("0"))
        )
        systems: dict[str, Any] = {}
        for system in self.systems:
            name = system.value
            curve = [r for r in equity if r.system == name] if len(self.systems) > 1 else all_curve
            spans = [(a, b) for a, b, _ in held.get(name, [])]
            systems[name] = block([t for t in trades if t.system == name], curve, spans)
        result["systems"] = systems
        signals: dict[str, Any] = {}
        for kind in sorted(
            {t.signal_kind for t in trades} | {k for v in held.values() for *_, k in v}
        ):
            spans = [(a, b) for v in held.values() for a, b, k in v if k == kind]
            signals[kind] = block([t for t in trades if t.signal_kind == kind], None, spans)
        result["signals"] = signals
        monthly = monthly_returns(
            capital, [r.day for r in all_curve], [float(r.equity) for r in all_curve]
        )
        result["monthly"] = {f"{y:04d}-{m:02d}": v for (y, m), v in monthly.items()}
        return result

    def finish(self) -> BacktestResult:
        """Metrics, the tearsheet folder and the stored results (run marked completed)."""
        from tasks.backtest_report import write_tearsheet

        assert self.results is not None
        trades = self.trades()
        equity = self.equity_rows()
        metrics = self.metrics(trades, equity)
        open_at_end = len(self.store.open_positions())
        result = BacktestResult(
            run_id=self.run_id,
            params=self.params,
            code_version=self.code_version,
            report_dir=self.report_dir,
            ledger_url=_safe_url(self.ledger_url),
            results_url=_safe_url(self.results_url),
            days=list(self.day_results),
            trades=trades,
            equity=equity,
            metrics=metrics,
            files={},
            open_at_end=open_at_end,
            data_accesses=dict(self.market.counts),
        )
        files = write_tearsheet(result, self.created_at)
        result = BacktestResult(**{**_fields(result), "files": files})
        self.results.save_trades(self.run_id, trades)
        self.results.save_equity(self.run_id, equity)
        self.results.finish_run(
            self.run_id, status="completed", finished_at=datetime.now(tz=UTC), metrics=metrics
        )
        return result

    def fail(self, exc: BaseException) -> None:
        """Mark the run failed (with the error) in the results database; never raises."""
        if self.results is None:
            return
        try:
            self.results.finish_run(
                self.run_id,
                status="failed",
                finished_at=datetime.now(tz=UTC),
                message=f"{type(exc).__name__}: {exc}"[:2000],
            )
        except Exception as err:  # the original error matters more
            log.warning("could not record the failure of %s: %s", self.run_id, err)

    def close(self) -> None:
        self.store.dispose()
        self.broker.dispose()
        if self.results is not None:
            self.results.dispose()
        close = getattr(self.raw_market, "close", None)
        if callable(close):
            close()


def _fields(result: BacktestResult) -> dict[str, Any]:
    return {name: getattr(result, name) for name in BacktestResult.__dataclass_fields__}


def run_backtest(
    params: BacktestParams,
    *,
    out_dir: Path | str = DEFAULT_OUT,
    db_url: str | None = None,
    results_url: str | None = None,
    polygon: PolygonAccess | None = None,
    on_day: Progress | None = None,
    on_minute: MinuteProgress | None = None,
    record_accesses: bool = False,
    keep: Callable[[Backtest], None] | None = None,
) -> BacktestResult:
    """Run a whole backtest in this process (the CLI; the flow runs the same steps as tasks)."""
    bt = Backtest(
        params,
        out_dir=out_dir,
        db_url=db_url,
        results_url=results_url,
        polygon=polygon,
        record_accesses=record_accesses,
        on_minute=on_minute,
    )
    if keep is not None:
        keep(bt)
    try:
        for day in bt.days:
            result = bt.run_day(day)
            if on_day is not None:
                on_day(result)
        return bt.finish()
    except BaseException as exc:
        bt.fail(exc)
        raise
    finally:
        bt.close()
