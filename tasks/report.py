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
from core.calendar import NY, Session, next_trading_day
from core.models import IntentAction, IntentStatus, PositionStatus, RiskLimits, SystemName


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

    def as_rows(self) -> list[tuple[str, str]]:
        return [
            ("signals", str(self.signals)),
            ("intents", str(self.intents)),
            ("orders placed", str(self.orders_placed)),
            ("fills", str(self.fills)),
            ("denied / rejected / unfilled", f"{self.denied} / {self.rejected} / {self.cancelled}"),
            ("positions opened", str(self.positions_opened)),
            ("open 0DTE positions now", str(self.positions_open_now)),
            ("realised P&L (after commissions)", f"{self.realized:,.2f}"),
            ("unrealised P&L", f"{self.unrealized:,.2f}"),
            ("commissions", f"{self.commissions:,.2f}"),
            ("risk events", str(self.risk_events)),
            ("trading state", self.final_state),
        ]


def summarize(
    store: TradeStore, day: date, system: SystemName = SystemName.SMART0DTE
) -> DaySummary:
    intents = store.intents(day=day, system=system)
    fills = store.fills(day=day)
    positions = store.positions(day=day, system=system)
    opened = [p for p in positions if p.opened_at.astimezone(NY).date() == day]
    closed = [p for p in positions if p.status is PositionStatus.CLOSED]
    events = store.risk_events(day=day)
    state = store.trading_state()
    commissions = sum((f.commission for f in fills), Decimal("0"))
    still_open = store.open_positions(system)
    marks = store.pnl_marks(day, system)
    # the latest intraday mark's unrealised P&L, while anything is still open
    unrealized = marks[-1].unrealized if (still_open and marks) else Decimal("0")
    return DaySummary(
        day=day,
        signals=len(store.signals(day=day, system=system)),
        intents=len(intents),
        orders_placed=len(store.orders(day=day)),
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
    )


def _num(t: datetime) -> float:
    """Matplotlib date number of ``t`` as New York wall time."""
    return float(mdates.date2num(t.astimezone(NY).replace(tzinfo=None)))  # type: ignore[no-untyped-call]


def pnl_chart(store: TradeStore, sess: Session, path: Path) -> Path:
    marks = store.pnl_marks(sess.day)
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=110)
    if marks:
        times = [_num(m.at) for m in marks]
        total = [float(m.realized + m.unrealized) for m in marks]
        realized = [float(m.realized) for m in marks]
        ax.plot(times, total, label="total (realised + unrealised)", color="#1f77b4", linewidth=1.6)
        ax.plot(times, realized, label="realised", color="#2ca02c", linewidth=1.0, linestyle="--")
        ax.fill_between(times, total, 0, where=[v >= 0 for v in total], color="#2ca02c", alpha=0.12)
        ax.fill_between(times, total, 0, where=[v < 0 for v in total], color="#d62728", alpha=0.12)
    else:
        ax.text(0.5, 0.5, "no P&L marks recorded", ha="center", va="center", transform=ax.transAxes)
    ax.axhline(0, color="black", linewidth=0.6)
    closeout = _num(sess.closeout)
    ax.axvline(closeout, color="#ff7f0e", linewidth=1.0, linestyle=":", label="close-out")
    ax.xaxis.set_major_locator(mdates.MinuteLocator(byminute=[0, 30]))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M"))  # type: ignore[no-untyped-call]
    ax.set_title(f"Smart-0DTE intraday P&L, {sess.day.isoformat()} (USD, after commissions)")
    ax.set_xlabel("America/New_York")
    ax.set_ylabel("P&L ($)")
    ax.grid(alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def risk_chart(store: TradeStore, sess: Session, limits: RiskLimits, path: Path) -> Path:
    """Risk usage through the day: daily loss as % of max_daily_loss (with the 75/100/200% levels)
    and open positions against max_open_positions, both read back from the ledger."""
    marks = store.pnl_marks(sess.day)
    positions = store.positions(day=sess.day)
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


def markdown(store: TradeStore, sess: Session, summary: DaySummary, chart_name: str) -> str:
    day = sess.day
    lines = [
        f"# dte-trader end-of-day report, {day.isoformat()}",
        "",
        f"Session {sess.open:%H:%M}-{sess.close:%H:%M} America/New_York"
        + (" (early close)" if sess.early_close else "")
        + f"; close-out {sess.closeout:%H:%M}; next session {next_trading_day(day).isoformat()}.",
        "",
        "## Summary",
        "",
        "| metric | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in summary.as_rows()],
        "",
        f"![intraday P&L]({chart_name})",
        "",
        "![risk usage](risk-usage.png)",
        "",
        "## Signals",
        "",
        "| time | signal | underlying | direction | confidence | reason |",
        "|---|---|---|---|---|---|",
        *[
            f"| {sig.at.astimezone(NY):%H:%M} | {sig.kind.value} | {sig.underlying} | "
            f"{sig.direction.value} | {sig.confidence:.2f} | {sig.reason.replace('|', '/')[:140]} |"
            for sig in store.signals(day=day)
        ],
        "",
        "## Execution",
        "",
        "| time | intent | action | structure | qty | status | reason |",
        "|---|---|---|---|---|---|---|",
    ]
    for stored in store.intents(day=day):
        i = stored.intent
        lines.append(
            f"| {i.created_at.astimezone(NY):%H:%M:%S} | `{i.client_order_id}` | {i.action.value} | "
            f"{i.spread.describe()} | {i.quantity} | {stored.status.value} | "
            f"{(stored.status_reason or i.reason).replace('|', '/')[:120]} |"
        )
    lines += [
        "",
        "## Positions",
        "",
        "| position | structure | qty | entry | exit | realised | status |",
        "|---|---|---|---|---|---|---|",
    ]
    for p in store.positions(day=day):
        lines.append(
            f"| `{p.position_id}` | {p.spread.describe()} | {p.quantity} | {p.entry_price} | "
            f"{p.exit_price if p.exit_price is not None else '-'} | {p.realized():,.2f} | "
            f"{p.status.value} |"
        )
    lines += ["", "## Risk events", "", "| time | kind | severity | message |", "|---|---|---|---|"]
    for e in store.risk_events(day=day):
        lines.append(
            f"| {e.at.astimezone(NY):%H:%M:%S} | {e.kind} | {e.severity} | "
            f"{e.message.replace('|', '/')[:160]} |"
        )
    opens = [s for s in store.intents(day=day) if s.intent.action is IntentAction.OPEN]
    lines += ["", "## System health", "", *_health_lines(store, day, summary)]
    lines += [
        "",
        "## Next-day outlook",
        "",
        f"Next session: {next_trading_day(day).isoformat()}. "
        f"{len(opens)} entry intents today; trading state at close {summary.final_state}.",
        "",
    ]
    return "\n".join(lines)


def write_report(
    store: TradeStore, sess: Session, out_dir: Path, limits: RiskLimits | None = None
) -> tuple[Path, Path, DaySummary]:
    summary = summarize(store, sess.day)
    folder = out_dir / sess.day.isoformat()
    chart = pnl_chart(store, sess, folder / "intraday-pnl.png")
    risk_chart(store, sess, limits or RiskLimits(), folder / "risk-usage.png")
    text = markdown(store, sess, summary, chart.name)
    md = folder / "report.md"
    md.write_text(text, encoding="utf-8")
    return md, chart, summary
