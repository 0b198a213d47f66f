"""The Mag7 additions to the trade store (migration 0003) on SQLite and PostgreSQL: the peak P&L
fraction per position, the daily IV history, positions open at an instant, the trading state as
of an instant, and per-system fills/orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from adapters.store import TradeStore
from core.models import (
    Leg,
    OptionContract,
    Position,
    Right,
    Side,
    SignalKind,
    Spread,
    StructureKind,
    SystemName,
    TradingState,
)
from tests.integration.test_store import ny

MAG7 = SystemName.MAG7
DAY = date(2026, 11, 27)
EXPIRY = date(2026, 12, 4)


def put_debit(underlying: str = "AAPL") -> Spread:
    def leg(strike: str, side: Side) -> Leg:
        return Leg(OptionContract(underlying, EXPIRY, Decimal(strike), Right.PUT), side)

    return Spread(
        kind=StructureKind.BEAR_PUT_DEBIT, legs=(leg("350", Side.BUY), leg("345", Side.SELL))
    )


def mag7_position(pid: str = "mag7-O-1", opened: datetime | None = None) -> Position:
    return Position(
        position_id=pid,
        system=MAG7,
        signal_kind=SignalKind.ENSEMBLE,
        spread=put_debit(),
        quantity=8,
        entry_price=Decimal("1.50"),
        opened_at=opened or ny(10, 0),
        max_loss=Decimal("1200"),
        entry_commission=Decimal("10.40"),
    )


def test_record_peak_when_lower_value_then_peak_kept(store: TradeStore) -> None:
    store.open_position(mag7_position(), "mag7-O-1")
    assert store.peaks() == {}
    assert store.record_peak("mag7-O-1", Decimal("0.2125")) == Decimal("0.2125")
    assert store.record_peak("mag7-O-1", Decimal("0.1")) == Decimal("0.2125")
    assert store.record_peak("mag7-O-1", Decimal("0.3512")) == Decimal("0.3512")
    assert store.peaks(["mag7-O-1", "other"]) == {"mag7-O-1": Decimal("0.3512")}
    with pytest.raises(KeyError):
        store.record_peak("missing", Decimal("0.1"))


def test_reduce_position_when_peak_recorded_then_parent_keeps_it(store: TradeStore) -> None:
    store.open_position(mag7_position(), "mag7-O-1")
    store.record_peak("mag7-O-1", Decimal("0.25"))
    child = store.reduce_position(
        "mag7-O-1", 2, Decimal("1.85"), Decimal("2.60"), ny(12, 0), "mag7-C-1", 1
    )
    assert child.position_id == "mag7-O-1-p1"
    assert store.peaks() == {"mag7-O-1": Decimal("0.25")}


def test_iv_history_when_backfilled_and_recorded_then_ordered_and_replaced(
    store: TradeStore,
) -> None:
    at = datetime(2026, 11, 27, 21, 0, tzinfo=UTC)
    days = [DAY - timedelta(days=d) for d in (3, 2, 1)]
    assert (
        store.backfill_iv("AAPL", zip(days, (0.21, 0.22, 0.23), strict=True), "simulator", at) == 3
    )
    assert store.backfill_iv("AAPL", [(days[0], 0.99)], "simulator", at) == 0  # kept
    store.record_iv("AAPL", DAY, 0.25, "chain", at)
    store.record_iv("AAPL", DAY, 0.26, "simulator", at)  # replaced
    rows = store.iv_history("AAPL")
    assert [(r.day, r.atm_iv, r.source) for r in rows] == [
        (days[0], 0.21, "simulator"),
        (days[1], 0.22, "simulator"),
        (days[2], 0.23, "simulator"),
        (DAY, 0.26, "simulator"),
    ]
    assert [r.day for r in store.iv_history("AAPL", before=DAY, limit=2)] == days[1:]
    assert store.iv_sessions(["AAPL", "MSFT"], before=DAY) == {"AAPL": 3, "MSFT": 0}
    with pytest.raises(ValueError, match="positive fraction"):
        store.record_iv("AAPL", DAY, float("nan"), "chain", at)


def test_positions_open_at_when_partly_closed_later_then_parent_and_partial_rows(
    store: TradeStore,
) -> None:
    store.open_position(mag7_position(), "mag7-O-1")
    store.reduce_position("mag7-O-1", 2, Decimal("1.85"), Decimal("2.6"), ny(12, 0), "mag7-C-1", 1)
    store.close_position("mag7-O-1", Decimal("1.10"), Decimal("7.8"), ny(14, 0), "mag7-C-2")
    assert store.positions_open_at(ny(9, 59)) == []
    at_11 = store.positions_open_at(ny(11, 0), MAG7)
    assert sorted(p.position_id for p in at_11) == ["mag7-O-1", "mag7-O-1-p1"]
    assert sum(p.quantity for p in at_11) == 8  # the quantity open at 11:00
    assert [p.position_id for p in store.positions_open_at(ny(13, 0))] == ["mag7-O-1"]
    assert store.positions_open_at(ny(14, 0)) == []
    assert store.positions_open_at(ny(11, 0), SystemName.SMART0DTE) == []


def test_trading_state_when_asked_as_of_an_instant_then_the_state_set_by_then(
    store: TradeStore,
) -> None:
    store.set_trading_state(TradingState.ACTIVE, "start", ny(9, 30), manual=False)
    store.set_trading_state(TradingState.HALTED, "loss", ny(14, 0), manual=False)
    assert store.trading_state(ny(9, 0)) is None
    row = store.trading_state(ny(10, 0))
    assert row is not None
    assert row.state is TradingState.ACTIVE
    latest = store.trading_state()
    assert latest is not None
    assert latest.state is TradingState.HALTED


def test_baseline_marks_when_several_days_then_latest_before_the_day(store: TradeStore) -> None:
    """Migration 0004: close marks per (position, day); the baseline of a session is the latest
    mark of an earlier day, a later mark of one day replaces an earlier one, never the reverse."""
    store.open_position(mag7_position(), "mag7-O-1")
    monday = date(2026, 11, 30)
    assert store.baseline_marks(["mag7-O-1"], monday) == {}
    friday_1230 = ny(12, 30)
    friday_1245 = ny(12, 45)
    assert store.record_position_marks(DAY, friday_1245, {"mag7-O-1": Decimal("1.35")}) == 1
    # a stale mark of the same day (taken earlier) does not replace the later one
    store.record_position_marks(DAY, friday_1230, {"mag7-O-1": Decimal("1.10")})
    assert store.baseline_marks(["mag7-O-1", "unknown"], monday) == {"mag7-O-1": Decimal("1.35")}
    assert store.baseline_marks(["mag7-O-1"], DAY) == {}  # today's own mark is no baseline
    store.record_position_marks(monday, ny(15, 30, monday), {"mag7-O-1": Decimal("1.62")})
    assert store.baseline_marks(["mag7-O-1"], monday) == {"mag7-O-1": Decimal("1.35")}
    tuesday = date(2026, 12, 1)
    assert store.baseline_marks(["mag7-O-1"], tuesday) == {"mag7-O-1": Decimal("1.62")}


def test_summarize_when_carried_position_closed_then_day_pnl_from_prior_close(
    store: TradeStore,
) -> None:
    """The report's daily-loss-basis row: a Mag7 spread opened Friday at 1.50 (8 units), marked
    1.80 at Friday's close, closed Monday at 1.20: realised since entry -240 - costs, but today's
    loss is from 1.80."""
    from tasks.report import summarize

    monday = date(2026, 11, 30)
    pos = mag7_position()
    store.open_position(pos, "mag7-O-1")
    store.record_position_marks(DAY, ny(12, 59), {"mag7-O-1": Decimal("1.80")})
    store.close_position(
        "mag7-O-1", Decimal("1.20"), Decimal("10.40"), ny(11, 0, monday), "mag7-C-1"
    )

    summary = summarize(store, monday, MAG7)

    assert summary.realized == Decimal("-240.00") - Decimal("10.40") - Decimal("10.40")
    assert summary.day_pnl == Decimal("-480.00") - Decimal("10.40")
    assert ("P&L today from the prior close (daily-loss basis)", "-490.40") in summary.as_rows()


def test_positions_closed_on_when_partial_then_full_close_then_each_on_its_day(
    store: TradeStore,
) -> None:
    monday = date(2026, 11, 30)
    store.open_position(mag7_position(), "mag7-O-1")
    store.reduce_position("mag7-O-1", 2, Decimal("1.70"), Decimal("2.60"), ny(12, 0), "c-1", 1)
    assert [p.position_id for p in store.positions_closed_on(DAY)] == ["mag7-O-1-p1"]
    assert store.positions_closed_on(monday) == []
    store.close_position("mag7-O-1", Decimal("1.20"), Decimal("7.80"), ny(11, 0, monday), "c-2")
    assert [p.position_id for p in store.positions_closed_on(monday, MAG7)] == ["mag7-O-1"]
    assert store.positions_closed_on(monday, SystemName.SMART0DTE) == []
