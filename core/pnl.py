"""Today's P&L of ledger rows, measured from the prior close for positions carried overnight.

The daily-loss limit (STRATEGIES.md) is about *today's* loss. A Smart-0DTE position opens and
closes in one session, so its P&L since entry is today's. A Mag7-7DTE position lives about a
week: counting its P&L since entry as today's would charge Tuesday with Monday's loss (an early
HALT) or credit Tuesday with Monday's gain (a late one). A carried row is therefore measured from
its *baseline*, the net mid recorded at the prior session's close, and its entry commission
belongs to the day it was paid.

A carried row without a baseline (no close mark was recorded: the after-close run did not
happen) falls back to its entry price and entry commission, and is listed in
``DayPnl.without_baseline`` so the caller can say so; that is the pre-baseline rule, never a
silent guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal

from core.calendar import NY
from core.models import Position, PositionStatus

ZERO = Decimal("0")


def base_id(position_id: str) -> str:
    """The opened position a ledger row belongs to (a partial close ``P-p1`` belongs to ``P``)."""
    return position_id.split("-p", maxsplit=1)[0]


def is_carried(pos: Position, day: date) -> bool:
    """True if ``pos`` was opened before the New York session ``day``."""
    return pos.opened_at.astimezone(NY).date() < day


@dataclass(frozen=True, slots=True)
class DayPnl:
    realized: Decimal  # rows closed on ``day`` (up to the cut-off), after their commissions
    unrealized: Decimal  # rows open at the cut-off, at their marks
    without_baseline: tuple[str, ...] = ()  # carried rows measured from entry instead

    @property
    def total(self) -> Decimal:
        return self.realized + self.unrealized


def row_day_pnl(
    pos: Position, day: date, value: Decimal | None, baseline: Decimal | None
) -> tuple[Decimal, Decimal]:
    """(realised today, unrealised today) of one ledger row.

    ``value`` is the row's net mid now (ignored for a closed row; None: no mark, unrealised 0).
    ``baseline`` is its net mid at the prior close (used only if the row is carried).
    """
    carried = is_carried(pos, day)
    if carried and baseline is not None:
        reference, entry_cost = baseline, ZERO
    else:
        reference, entry_cost = pos.entry_price, pos.entry_commission
    units = pos.quantity * pos.spread.multiplier
    if pos.status is PositionStatus.CLOSED:
        if pos.exit_price is None or pos.closed_at is None:
            return ZERO, ZERO
        if pos.closed_at.astimezone(NY).date() != day:
            return ZERO, ZERO
        return (pos.exit_price - reference) * units - entry_cost - pos.exit_commission, ZERO
    if value is None:
        return ZERO, ZERO
    return ZERO, (value - reference) * units - entry_cost


def day_pnl(
    rows: Iterable[Position],
    day: date,
    marks: Mapping[str, Decimal],
    baselines: Mapping[str, Decimal],
    until: datetime | None = None,
) -> DayPnl:
    """Today's P&L of ``rows`` (open rows and rows closed today; others contribute nothing).

    ``marks``: row id -> net mid now. ``baselines``: *opened position* id (``base_id``) -> net
    mid at the prior close. ``until``: rows closed after it count as open (an as-of view).
    """
    realized = ZERO
    unrealized = ZERO
    missing: list[str] = []
    for pos in rows:
        closed_by_then = pos.status is PositionStatus.CLOSED and (
            until is None or (pos.closed_at is not None and pos.closed_at <= until)
        )
        row = pos if closed_by_then or pos.status is PositionStatus.OPEN else _as_open(pos)
        baseline = baselines.get(base_id(pos.position_id))
        if is_carried(pos, day) and baseline is None and _counts_today(row, day):
            missing.append(pos.position_id)
        r, u = row_day_pnl(row, day, marks.get(pos.position_id), baseline)
        realized += r
        unrealized += u
    return DayPnl(realized, unrealized, tuple(missing))


def _as_open(pos: Position) -> Position:
    return replace(
        pos, status=PositionStatus.OPEN, closed_at=None, exit_price=None, exit_commission=ZERO
    )


def _counts_today(pos: Position, day: date) -> bool:
    if pos.status is PositionStatus.OPEN:
        return True
    return pos.closed_at is not None and pos.closed_at.astimezone(NY).date() == day
