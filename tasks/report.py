"""End-of-day report: markdown summary and the intraday P&L chart (PNG), written to reports/<date>/."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from adapters.store import TradeStore
from core.calendar import NY, Session, next_trading_day, previous_trading_day
from core.models import IntentAction, IntentStatus, PositionStatus, RiskLimits, SystemName
from core.pnl import base_id, day_pnl, is_carried
from systems.mag7.config import DEFAULT as MAG7_DEFAULT
from systems.mag7.config import IVConfig

MAG7_CHART_SESSIONS = 10  # two weeks: a whole weekly cycle and the one before


@dataclass(frozen=True, slots=True)
class DaySummary:
    day: date
    signals: int
    intents: int
    orders_placed: int
    fills: int
    denied: int
    rejected: int
    cancelled: int
    positions_opened: int
    positions_open_now: int
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    risk_events: int
    risk_event_kinds: dict[str, int]
    final_state: str
    system: SystemName = SystemName.SMART0DTE
    # today's P&L as the daily-loss limit counts it: carried positions from the prior close
    day_pnl: Decimal | None = None

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("signals", str(self.signals)),
            ("intents", str(self.intents)),
            ("orders placed", str(self.orders_placed)),
            ("fills", str(self.fills)),
            ("denied / rejected / unfilled", f"{self.denied} / {self.rejected} / {self.cancelled}"),
            ("positions opened", str(self.positions_opened)),
            (
                "open 0DTE positions now"
                if self.system is SystemName.SMART0DTE
                else "open Mag7 positions now",
                str(self.positions_open_now),
            ),
            ("realised P&L (after commissions)", f"{self.realized:,.2f}"),
            ("unrealised P&L", f"{self.unrealized:,.2f}"),
            *(
                [("P&L today from the prior close (daily-loss basis)", f"{self.day_pnl:,.2f}")]
                if self.day_pnl is not None
                else []
            ),
            ("commissions", f"{self.commissions:,.2f}"),
            ("risk events", str(self.risk_events)),
            ("trading state", self.final_state),
        ]


def _money(value: Decimal | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _sum(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


def summarize(
    store: TradeStore, day: date, system: SystemName = SystemName.SMART0DTE
) -> DaySummary:
    """One system's day: its signals, intents, orders, fills, positions and P&L.

    Realised P&L counts the system's positions (and partial closes) closed on ``day``, each with
    its whole P&L since entry (a Mag7 position held over days lands on its closing day).
    Unrealised: Mag7's last mark of the day (its management checks mark its positions only);
    Smart-0DTE's loop marks are account-wide, so they are used only while a 0DTE position is
    still open (after the close-out it is 0). Marks count carried positions from the prior
    close, as does ``day_pnl``: today's realised P&L on that basis plus the unrealised.
    """
    intents = store.intents(day=day, system=system)
    fills = store.fills(day=day, system=system)
    positions = store.positions(day=day, system=system)
    opened = [p for p in positions if p.opened_at.astimezone(NY).date() == day]
    closed = [
        p
        for p in positions
        if p.status is PositionStatus.CLOSED
        and p.closed_at is not None
        and p.closed_at.astimezone(NY).date() == day
    ]
    events = [e for e in store.risk_events(day=day) if e.system in (system, None)]
    state = store.trading_state()
    commissions = sum((f.commission for f in fills), Decimal("0"))
    still_open = store.open_positions(system)
    last = store.last_pnl_mark(day, system)
    if system is SystemName.SMART0DTE:
        # the latest intraday mark's unrealised P&L, while anything is still open
        unrealized = last.unrealized if (still_open and last) else Decimal("0")
    else:
        unrealized = last.unrealized if last else Decimal("0")
    carried = {base_id(p.position_id) for p in closed if is_carried(p, day)}
    baselines = store.baseline_marks(carried, day) if carried else {}
    today = day_pnl(closed, day, {}, baselines)
    return DaySummary(
        day=day,
        signals=len(store.signals(day=day, system=system)),
        intents=len(intents),
        orders_placed=len(store.orders(day=day, system=system)),
        fills=len(fills),
        denied=sum(1 for i in intents if i.status is IntentStatus.DENIED),
        rejected=sum(1 for i in intents if i.status is IntentStatus.REJECTED),
        cancelled=sum(1 for i in intents if i.status is IntentStatus.CANCELLED),
        positions_opened=len({p.position_id.split("-p")[0] for p in opened}),
        positions_open_now=len(still_open),
        realized=sum((p.realized() for p in closed), Decimal("0")),
        unrealized=unrealized,
        commissions=commissions,
        risk_events=len(events),
        risk_event_kinds=dict(Counter(e.kind for e in events)),
        final_state=state.state.value if state else "ACTIVE",
        system=system,
        day_pnl=today.realized + unrealized,
    )


def _num(t: datetime) -> float:
    """Matplotlib date number of ``t`` as New York wall time."""
    return float(mdates.date2num(t.astimezone(NY).replace(tzinfo=None)))  # type: ignore[no-untyped-call]


def _realized_steps(
    store: TradeStore, day: date, system: SystemName
) -> list[tuple[datetime, Decimal]]:
    """Cumulative realised P&L of ``system``'s closes on ``day``, one point per close."""
    closes = sorted(
        (p.closed_at, p.realized())
        for p in store.positions(day=day, system=system)
        if p.status is PositionStatus.CLOSED
        and p.closed_at is not None
        and p.closed_at.astimezone(NY).date() == day
    )
    out: list[tuple[datetime, Decimal]] = []
    total = Decimal("0")
    for at, pnl in closes:
        total += pnl
        out.append((at, total))
    return out


def pnl_chart(store: TradeStore, sess: Session, path: Path) -> Path:
    """The day's intraday chart: the account's P&L as the Smart-0DTE loop marks it every minute
    (both systems' realised + unrealised: what the daily-loss limit sees), Smart-0DTE's realised
    P&L (from its closes) and Mag7's P&L at its management checks."""
    marks = store.pnl_marks(sess.day, SystemName.SMART0DTE)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    if marks:
        times = [_num(m.at) for m in marks]
        total = [float(m.realized + m.unrealized) for m in marks]
        ax.plot(
            times, total, label="account (both systems, loop marks)", color="#1f77b4", linewidth=1.6
        )
        ax.fill_between(times, total, 0, where=[v >= 0 for v in total], color="#2ca02c", alpha=0.12)
        ax.fill_between(times, total, 0, where=[v < 0 for v in total], color="#d62728", alpha=0.12)
    steps = _realized_steps(store, sess.day, SystemName.SMART0DTE)
    if steps:
        xs = [_num(sess.open), *[_num(t) for t, _ in steps]]
        ys = [0.0, *[float(v) for _, v in steps]]
        ax.step(
            xs, ys, where="post", label="Smart-0DTE realised", color="#2ca02c", linewidth=1.0,
            linestyle="--",
        )  # fmt: skip
    mag7 = store.pnl_marks(sess.day, SystemName.MAG7)
    if mag7:
        ax.plot(
            [_num(m.at) for m in mag7],
            [float(m.realized + m.unrealized) for m in mag7],
            "o-",
            color="#9467bd",
            markersize=4,
            linewidth=0.8,
            label="Mag7-7DTE (management checks)",
        )
    if not (marks or steps or mag7):
        ax.text(0.5, 0.5, "no P&L marks recorded", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", linewidth=0.6)
    closeout = _num(sess.closeout)
    ax.axvline(closeout, color="#ff7f0e", linewidth=1.0, linestyle=":", label="close-out")
    ax.xaxis.set_major_locator(mdates.MinuteLocator(byminute=[0, 30]))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.set_title(
        f"Intraday P&L {sess.day.isoformat()}: account and Smart-0DTE (USD, after commissions)"
    )
    ax.set_xlabel("America/New_York")
    ax.set_ylabel("P&L ($)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def mag7_sessions(day: date, count: int = MAG7_CHART_SESSIONS) -> list[date]:
    """The ``count`` sessions ending at ``day`` (a Mag7 position lives about a week)."""
    days = [day]
    while len(days) < count:
        days.insert(0, previous_trading_day(days[0]))
    return days


def mag7_chart(store: TradeStore, sess: Session, path: Path) -> Path:
    """Mag7-7DTE P&L at its management checks over the last two weeks of sessions: realised
    (cumulative over the window) and realised + unrealised of the open positions."""
    points: list[tuple[str, float, float]] = []  # (label, realised cumulative, total)
    carried = Decimal("0")
    for d in mag7_sessions(sess.day):
        marks = store.pnl_marks(d, SystemName.MAG7)
        for i, m in enumerate(marks):
            label = f"{m.at.astimezone(NY):%a %m-%d}" if i == 0 else ""
            points.append(
                (label, float(carried + m.realized), float(carried + m.realized + m.unrealized))
            )
        if marks:
            carried += marks[-1].realized
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    if points:
        xs = list(range(len(points)))
        total = [t for _, _, t in points]
        ax.plot(xs, total, "o-", color="#9467bd", markersize=3, linewidth=1.4,
                label="realised + unrealised")  # fmt: skip
        ax.step(xs, [r for _, r, _ in points], where="post", color="#2ca02c", linewidth=1.0,
                linestyle="--", label="realised (cumulative)")  # fmt: skip
        ax.fill_between(xs, total, 0, where=[v >= 0 for v in total], color="#2ca02c", alpha=0.10)
        ax.fill_between(xs, total, 0, where=[v < 0 for v in total], color="#d62728", alpha=0.10)
        ticks = [(x, lab) for x, (lab, _, _) in enumerate(points) if lab]
        ax.set_xticks([x for x, _ in ticks], [lab for _, lab in ticks], rotation=30, fontsize=8)
        for x, _ in ticks:
            ax.axvline(x - 0.5, color="grey", linewidth=0.4, alpha=0.5)
    else:
        ax.text(0.5, 0.5, "no Mag7 management checks recorded", ha="center", va="center",
                transform=ax.transAxes)  # fmt: skip
    ax.axhline(0, color="black", linewidth=0.6)
    first = mag7_sessions(sess.day)[0]
    ax.set_title(
        f"Mag7-7DTE P&L at management checks, {first.isoformat()}..{sess.day.isoformat()} "
        "(USD, after commissions)"
    )
    ax.set_ylabel("P&L ($)")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def risk_chart(store: TradeStore, sess: Session, limits: RiskLimits, path: Path) -> Path:
    """Risk usage through the day: daily loss as % of max_daily_loss (with the 75/100/200% levels)
    and open positions (both systems) against max_open_positions, read back from the ledger. The
    loss is the account's, as the Smart-0DTE loop marks it every minute (both systems)."""
    marks = store.pnl_marks(sess.day, SystemName.SMART0DTE)
    positions = [  # both systems, Mag7 ones opened on earlier days included
        p
        for p in store.positions()
        if p.opened_at <= sess.close and (p.closed_at is None or p.closed_at >= sess.open)
    ]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), dpi=110, sharex=True)
    if marks:
        times = [_num(m.at) for m in marks]
        usage = [
            max(0.0, float(-(m.realized + m.unrealized) / limits.max_daily_loss * 100))
            for m in marks
        ]
        top.plot(times, usage, color="#d62728", linewidth=1.4, label="daily loss used")
        opened = [
            sum(
                1
                for p in positions
                if p.opened_at <= m.at and (p.closed_at is None or p.closed_at > m.at)
            )
            for m in marks
        ]
        bottom.step(times, opened, where="post", color="#1f77b4", label="open positions")
    for level, style in ((limits.alert_fraction, ":"), (limits.reduce_fraction, "--")):
        top.axhline(float(level * 100), color="grey", linestyle=style, linewidth=0.9)
    top.axhline(float(limits.halt_fraction * 100), color="black", linestyle="-", linewidth=0.9)
    top.set_ylabel("% of max daily loss")
    top.set_title(
        f"Risk usage {sess.day.isoformat()}: alert {limits.alert_fraction:.0%}, REDUCING "
        f"{limits.reduce_fraction:.0%}, HALTED {limits.halt_fraction:.0%} of "
        f"${limits.max_daily_loss:,.0f}"
    )
    bottom.axhline(limits.max_open_positions, color="black", linewidth=0.9)
    bottom.set_ylabel(f"open (max {limits.max_open_positions})")
    bottom.set_xlabel("America/New_York")
    bottom.xaxis.set_major_locator(mdates.MinuteLocator(byminute=[0, 30]))  # type: ignore[no-untyped-call]
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _health_lines(store: TradeStore, day: date, summary: DaySummary) -> list[str]:
    events = store.risk_events(day=day)
    by_severity = Counter(e.severity for e in events)
    errors = sum(1 for e in events if e.kind in ("order_rejected", "order_error"))
    mismatches = sum(1 for e in events if e.kind == "reconciliation_mismatch")
    approvals = Counter(a.decision for a in store.approvals(day=day))
    backups = store.backups(limit=1)
    last_backup = (
        f"{backups[0].status} at {backups[0].at.astimezone(NY):%Y-%m-%d %H:%M}"
        + (" (restore-verified)" if backups[0].verified else "")
        if backups
        else "none recorded yet"
    )
    flat = [e for e in events if e.kind in ("eod_flat", "eod_not_flat")]
    return [
        f"- trading state at the end of the day: **{summary.final_state}**",
        f"- risk events: {by_severity.get('critical', 0)} critical, "
        f"{by_severity.get('warning', 0)} warning, {by_severity.get('info', 0)} info",
        f"- order errors/rejections: {errors} (failsafe at 10)",
        f"- reconciliation mismatches: {mismatches}",
        "- close-out: " + (flat[-1].message if flat else "not run"),
        "- approvals: "
        + (", ".join(f"{n} {d}" for d, n in sorted(approvals.items())) if approvals else "none"),
        f"- last backup: {last_backup}",
    ]


def _summary_table(summary: DaySummary) -> list[str]:
    return ["| metric | value |", "|---|---|", *[f"| {k} | {v} |" for k, v in summary.as_rows()]]


def iv_method_lines(store: TradeStore, day: date, cfg: IVConfig = MAG7_DEFAULT.iv) -> list[str]:
    """Which IV measure the Mag7 scan uses per name on ``day`` (from the stored history): the
    rank/percentile once a year exists, the IV/HV(20) fallback before; and where values came from."""
    names = MAG7_DEFAULT.underlyings
    counts = store.iv_sessions(names, day)
    lines = [
        "| underlying | stored IV sessions | method | last value (source) |",
        "|---|---|---|---|",
    ]
    for name in names:
        n = counts[name]
        method = (
            f"IV {cfg.measure.value} over {cfg.window} sessions"
            if n + 1 >= cfg.min_history_sessions
            else f"IV/HV({cfg.hv_period}) fallback ({n} of {cfg.min_history_sessions} sessions)"
        )
        last = store.iv_history(name, before=next_trading_day(day), limit=1)
        shown = f"{last[0].atm_iv:.1%} on {last[0].day} ({last[0].source})" if last else "-"
        lines.append(f"| {name} | {n} | {method} | {shown} |")
    return lines


def mag7_position_lines(store: TradeStore, day: date) -> list[str]:
    """Open Mag7 positions: expiry, days left, profit tiers taken and the trailing peak."""
    open_now = store.open_positions(SystemName.MAG7)
    if not open_now:
        return ["No Mag7 position open."]
    peaks = store.peaks([p.position_id for p in open_now])
    lines = [
        "| position | structure | qty | entry | max loss | opened | DTE | tiers taken | peak P&L |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in open_now:
        peak = peaks.get(p.position_id)
        lines.append(
            f"| `{p.position_id}` | {p.spread.describe()} | {p.quantity} | {p.entry_price} | "
            f"{p.max_loss:,.2f} | {p.opened_at.astimezone(NY):%Y-%m-%d %H:%M} | "
            f"{(p.spread.expiry - day).days} | {p.closed_fraction_tiers} | "
            f"{f'{peak:.1%}' if peak is not None else '-'} |"
        )
    return lines


def markdown(
    store: TradeStore,
    sess: Session,
    summary: DaySummary,
    chart_name: str,
    mag7: DaySummary | None = None,
) -> str:
    """The report: the account, then a section per system, then the day's ledger tables."""
    day = sess.day
    mag7 = mag7 or summarize(store, day, SystemName.MAG7)
    lines = [
        f"# dte-trader end-of-day report, {day.isoformat()}",
        "",
        f"Session {sess.open:%H:%M}-{sess.close:%H:%M} America/New_York"
        + (" (early close)" if sess.early_close else "")
        + f"; close-out {sess.closeout:%H:%M}; next session {next_trading_day(day).isoformat()}.",
        "",
        "## Account (both systems)",
        "",
        "| metric | Smart-0DTE | Mag7-7DTE | account |",
        "|---|---|---|---|",
        f"| realised P&L (after commissions) | {summary.realized:,.2f} | {mag7.realized:,.2f} | "
        f"{summary.realized + mag7.realized:,.2f} |",
        f"| unrealised P&L | {summary.unrealized:,.2f} | {mag7.unrealized:,.2f} | "
        f"{summary.unrealized + mag7.unrealized:,.2f} |",
        f"| P&L today from the prior close (daily-loss basis) | {_money(summary.day_pnl)} | "
        f"{_money(mag7.day_pnl)} | {_money(_sum(summary.day_pnl, mag7.day_pnl))} |",
        f"| orders placed | {summary.orders_placed} | {mag7.orders_placed} | "
        f"{summary.orders_placed + mag7.orders_placed} |",
        f"| open positions now | {summary.positions_open_now} | {mag7.positions_open_now} | "
        f"{summary.positions_open_now + mag7.positions_open_now} |",
        f"| trading state | | | {summary.final_state} |",
        "",
        f"![intraday P&L]({chart_name})",
        "",
        "![risk usage](risk-usage.png)",
        "",
        "## Smart-0DTE",
        "",
        *_summary_table(summary),
        "",
        "## Mag7-7DTE",
        "",
        *_summary_table(mag7),
        "",
        "![Mag7 P&L](mag7-pnl.png)",
        "",
        "### Open Mag7 positions",
        "",
        *mag7_position_lines(store, day),
        "",
        "### IV measure for the next scan",
        "",
        *iv_method_lines(store, next_trading_day(day)),
        "",
        "## Signals",
        "",
        "| time | system | signal | underlying | direction | confidence | reason |",
        "|---|---|---|---|---|---|---|",
        *[
            f"| {sig.at.astimezone(NY):%H:%M} | {sig.system.value} | {sig.kind.value} | "
            f"{sig.underlying} | {sig.direction.value} | {sig.confidence:.2f} | "
            f"{sig.reason.replace('|', '/')[:140]} |"
            for sig in store.signals(day=day)
        ],
        "",
        "## Execution",
        "",
        "| time | system | intent | action | structure | qty | status | reason |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for stored in store.intents(day=day):
        i = stored.intent
        lines.append(
            f"| {i.created_at.astimezone(NY):%H:%M:%S} | {i.system.value} | "
            f"`{i.client_order_id}` | {i.action.value} | {i.spread.describe()} | {i.quantity} | "
            f"{stored.status.value} | {(stored.status_reason or i.reason).replace('|', '/')[:120]} |"
        )
    lines += [
        "",
        "## Positions",
        "",
        "| position | system | structure | qty | entry | exit | realised | status |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in store.positions(day=day):
        lines.append(
            f"| `{p.position_id}` | {p.system.value} | {p.spread.describe()} | {p.quantity} | "
            f"{p.entry_price} | {p.exit_price if p.exit_price is not None else '-'} | "
            f"{p.realized():,.2f} | {p.status.value} |"
        )
    lines += [
        "",
        "## Risk events",
        "",
        "| time | system | kind | severity | message |",
        "|---|---|---|---|---|",
    ]
    for e in store.risk_events(day=day):
        lines.append(
            f"| {e.at.astimezone(NY):%H:%M:%S} | {e.system.value if e.system else 'account'} | "
            f"{e.kind} | {e.severity} | {e.message.replace('|', '/')[:160]} |"
        )
    opens = [s for s in store.intents(day=day) if s.intent.action is IntentAction.OPEN]
    lines += ["", "## System health", "", *_health_lines(store, day, summary)]
    lines += [
        "",
        "## Next-day outlook",
        "",
        f"Next session: {next_trading_day(day).isoformat()}. "
        f"{len(opens)} entry intents today; {mag7.positions_open_now} Mag7 positions carried; "
        f"trading state at close {summary.final_state}.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    store: TradeStore, sess: Session, out_dir: Path, limits: RiskLimits | None = None
) -> tuple[Path, Path, DaySummary]:
    """reports/<day>/: report.md, intraday-pnl.png (account and Smart-0DTE), risk-usage.png and
    mag7-pnl.png. Returns the markdown, the intraday chart and the Smart-0DTE summary."""
    summary = summarize(store, sess.day)
    mag7 = summarize(store, sess.day, SystemName.MAG7)
    folder = out_dir / sess.day.isoformat()
    chart = pnl_chart(store, sess, folder / "intraday-pnl.png")
    risk_chart(store, sess, limits or RiskLimits(), folder / "risk-usage.png")
    mag7_chart(store, sess, folder / "mag7-pnl.png")
    text = markdown(store, sess, summary, chart.name, mag7)
    md = folder / "report.md"
    md.write_text(text, encoding="utf-8")
    return md, chart, summary
