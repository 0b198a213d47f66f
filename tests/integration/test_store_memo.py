"""An exclusive TradeStore (a backtest's own ledger) serves the hot reads from memory until one
of their tables is written, on SQLite and PostgreSQL: every write path (ORM unit of work, plain
statements, raw SQL on the engine) is seen, other tables' writes keep the reads, and a caller
cannot change what the next caller gets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy import text

from adapters.store import TradeStore
from core.models import PositionStatus, SystemName, TradingState
from tests.integration.test_store import DAY, ny, position


@pytest.fixture
def exclusive(trade_db_url: str) -> Iterator[TradeStore]:
    store = TradeStore(trade_db_url, exclusive=True)
    store.migrate()
    try:
        yield store
    finally:
        store.dispose()


def _memo_counts(store: TradeStore) -> tuple[int, int]:
    memo = store._memo
    assert memo is not None
    return memo.hits, memo.misses


def test_read_when_repeated_without_writes_then_second_served_from_memory(
    exclusive: TradeStore,
) -> None:
    exclusive.open_position(position(), "open-coid")
    first = exclusive.open_positions()
    hits, misses = _memo_counts(exclusive)

    second = exclusive.open_positions()

    assert second == first and len(second) == 1
    assert _memo_counts(exclusive) == (hits + 1, misses)


def test_read_when_its_table_written_then_next_read_sees_the_write(
    exclusive: TradeStore,
) -> None:
    exclusive.open_position(position(quantity=3), "open-coid")
    assert [p.quantity for p in exclusive.open_positions()] == [3]
    assert exclusive.positions_closed_on(DAY) == []

    # ORM unit of work (reduce), then a plain single statement (close)
    exclusive.reduce_position(
        "pos-1", 1, Decimal("-0.65"), Decimal("2.60"), ny(11, 30), "tier1-coid", tiers_done=1
    )
    assert [p.quantity for p in exclusive.open_positions()] == [2]
    assert [p.position_id for p in exclusive.positions_closed_on(DAY)] == ["pos-1-p1"]
    exclusive.close_position("pos-1", Decimal("-0.50"), Decimal("5.20"), ny(12), "close-coid")

    assert exclusive.open_positions() == []
    latest = exclusive.position("pos-1")
    assert latest is not None and latest.status is PositionStatus.CLOSED
    assert {p.position_id for p in exclusive.positions_closed_on(DAY)} == {"pos-1", "pos-1-p1"}


def test_read_when_another_table_written_then_kept(exclusive: TradeStore) -> None:
    exclusive.open_position(position(), "open-coid")
    exclusive.open_positions()
    exclusive.trading_state()

    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10), Decimal("0"), Decimal("-12.5"))
    exclusive.record_risk_event("note", "info", "a risk event", ny(10))
    hits, misses = _memo_counts(exclusive)

    assert len(exclusive.open_positions()) == 1
    assert exclusive.trading_state() is None
    assert _memo_counts(exclusive) == (hits + 2, misses)
    # the written tables' reads are fresh
    assert [e.message for e in exclusive.risk_events(day=DAY)] == ["a risk event"]
    exclusive.set_trading_state(TradingState.REDUCING, "loss", ny(10, 5), manual=False)
    state = exclusive.trading_state()
    assert state is not None and state.state is TradingState.REDUCING


def test_read_when_raw_sql_writes_through_the_engine_then_memo_dropped(
    exclusive: TradeStore,
) -> None:
    exclusive.open_position(position(), "open-coid")
    assert len(exclusive.open_positions()) == 1

    with exclusive.engine.begin() as conn:
        conn.execute(text("UPDATE positions SET quantity = 9 WHERE position_id = 'pos-1'"))

    assert [p.quantity for p in exclusive.open_positions()] == [9]


def test_read_when_schema_statement_runs_then_every_read_dropped(exclusive: TradeStore) -> None:
    exclusive.open_position(position(), "open-coid")
    exclusive.open_positions()
    hits, misses = _memo_counts(exclusive)

    with exclusive.engine.begin() as conn:
        conn.execute(text("CREATE TABLE scratch_note (id integer)"))

    exclusive.open_positions()
    assert _memo_counts(exclusive) == (hits, misses + 1)


def test_read_when_caller_mutates_the_list_then_next_caller_unaffected(
    exclusive: TradeStore,
) -> None:
    exclusive.open_position(position(), "open-coid")
    mine = exclusive.open_positions()
    mine.clear()

    assert len(exclusive.open_positions()) == 1


def test_read_when_arguments_differ_then_kept_apart(exclusive: TradeStore) -> None:
    exclusive.open_position(position(), "open-coid")
    exclusive.open_position(position("pos-2", system=SystemName.MAG7), "open-coid-2")

    assert len(exclusive.open_positions()) == 2
    assert [p.position_id for p in exclusive.open_positions(SystemName.MAG7)] == ["pos-2"]
    assert [p.position_id for p in exclusive.open_positions(SystemName.SMART0DTE)] == ["pos-1"]
    exclusive.record_risk_event("order_error", "warning", "x", ny(10))
    exclusive.record_risk_event("note", "info", "y", ny(10))
    assert len(exclusive.risk_events(day=DAY, kinds=("order_error",))) == 1
    assert len(exclusive.risk_events(day=DAY, kinds=["order_error", "note"])) == 2


def test_store_when_not_exclusive_then_another_writers_rows_are_read(trade_db_url: str) -> None:
    reader, writer = TradeStore(trade_db_url), TradeStore(trade_db_url)
    try:
        reader.migrate()
        assert reader.open_positions() == []

        writer.open_position(position(), "open-coid")

        assert len(reader.open_positions()) == 1
        assert reader._memo is None
    finally:
        reader.dispose()
        writer.dispose()


def test_read_when_ids_given_as_a_generator_then_read_and_memo_see_all_of_them(
    exclusive: TradeStore,
) -> None:
    exclusive.open_position(position(), "open-coid")
    exclusive.record_position_marks(DAY, ny(15, 59), {"pos-1": Decimal("-1.10")})
    later = date(2026, 12, 1)

    first = exclusive.baseline_marks((pid for pid in ["pos-1"]), later)
    again = exclusive.baseline_marks((pid for pid in ["pos-1"]), later)

    assert first == again == {"pos-1": Decimal("-1.1000")}


def test_pnl_marks_when_held_back_by_exclusive_store_then_every_reader_sees_them_in_order(
    exclusive: TradeStore, trade_db_url: str
) -> None:
    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10, 1), Decimal("0"), Decimal("-1"))
    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10, 2), Decimal("0"), Decimal("-2"))

    # a read of the store, then the engine a caller may use directly, see the held marks
    assert [m.unrealized for m in exclusive.pnl_marks(DAY)] == [Decimal("-1"), Decimal("-2")]
    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10, 3), Decimal("0"), Decimal("-3"))
    with exclusive.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM pnl_marks")).scalar_one() == 3

    # another write goes after them; the last ones reach the database when the store closes
    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10, 4), Decimal("0"), Decimal("-4"))
    exclusive.record_risk_event("note", "info", "after the fourth mark", ny(10, 5))
    exclusive.record_pnl_mark(SystemName.SMART0DTE, ny(10, 6), Decimal("5"), Decimal("-6"))
    exclusive.dispose()
    other = TradeStore(trade_db_url)
    try:
        marks = other.pnl_marks(DAY)
        assert [m.unrealized for m in marks] == [Decimal(f"-{i}") for i in (1, 2, 3, 4, 6)]
        assert other.last_pnl_mark(DAY, SystemName.SMART0DTE) == marks[-1]
    finally:
        other.dispose()
