"""TradeStore against SQLite and PostgreSQL (the ``store`` / ``trade_db_url`` fixtures)."""

from __future__ import annotations

import sqlite3
import threading
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session

from adapters.store import (
    Base,
    RiskEventRecord,
    TradeStore,
    TradingStateRow,
    UtcDateTime,
    spread_from_json,
    spread_to_json,
)
from core.models import (
    BrokerOrder,
    Direction,
    Fill,
    IntentAction,
    IntentStatus,
    Leg,
    OptionContract,
    OrderIntent,
    OrderStatus,
    Position,
    PositionStatus,
    Right,
    Side,
    Signal,
    SignalKind,
    Spread,
    StructureKind,
    SystemName,
    TradingState,
    client_order_id,
)

NY = ZoneInfo("America/New_York")
DAY = date(2026, 11, 27)  # the Friday after Thanksgiving
EXPIRY = date(2026, 11, 27)
OPEN_AT = datetime(2026, 11, 27, 10, 15, tzinfo=NY)


def ny(hour: int, minute: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY)


def leg(strike: str, right: Right, side: Side, underlying: str = "SPY") -> Leg:
    return Leg(OptionContract(underlying, EXPIRY, Decimal(strike), right), side)


def iron_condor(underlying: str = "SPY") -> Spread:
    return Spread(
        kind=StructureKind.IRON_CONDOR,
        legs=(
            leg("582.5", Right.PUT, Side.BUY, underlying),
            leg("587.5", Right.PUT, Side.SELL, underlying),
            leg("592.5", Right.CALL, Side.SELL, underlying),
            leg("597.50", Right.CALL, Side.BUY, underlying),
        ),
    )


def call_debit() -> Spread:
    return Spread(
        kind=StructureKind.BULL_CALL_DEBIT,
        legs=(leg("590", Right.CALL, Side.BUY), leg("595", Right.CALL, Side.SELL)),
    )


def signal(
    signal_id: str = "sig-1", at: datetime = OPEN_AT, system: SystemName = SystemName.SMART0DTE
) -> Signal:
    return Signal(
        signal_id=signal_id,
        system=system,
        kind=SignalKind.VOL_CONTRACTION,
        underlying="SPY",
        direction=Direction.NEUTRAL,
        confidence=0.73,
        at=at,
        reason="iv rank high, range bound",
    )


def intent(
    signal_id: str = "sig-1",
    spread: Spread | None = None,
    action: IntentAction = IntentAction.OPEN,
    system: SystemName = SystemName.SMART0DTE,
    created_at: datetime = OPEN_AT,
    quantity: int = 2,
) -> OrderIntent:
    spread = spread or iron_condor()
    opening = action is IntentAction.OPEN
    return OrderIntent(
        client_order_id=client_order_id(system, signal_id, spread, action),
        system=system,
        signal_id=signal_id,
        spread=spread,
        action=action,
        quantity=quantity,
        limit_price=Decimal("-1.35") if opening else Decimal("-0.40"),
        worst_price=Decimal("-1.20") if opening else Decimal("-0.55"),
        max_loss=Decimal("730.00"),
        created_at=created_at,
        position_id=None if opening else "pos-1",
        reason="entry" if opening else "profit target",
    )


def position(
    position_id: str = "pos-1",
    quantity: int = 4,
    opened_at: datetime = OPEN_AT,
    system: SystemName = SystemName.SMART0DTE,
) -> Position:
    return Position(
        position_id=position_id,
        system=system,
        signal_kind=SignalKind.VOL_CONTRACTION,
        spread=iron_condor(),
        quantity=quantity,
        entry_price=Decimal("-1.30"),
        opened_at=opened_at,
        max_loss=Decimal("1480.00"),
        entry_commission=Decimal("10.40"),
    )


def broker_order(
    it: OrderIntent,
    status: OrderStatus = OrderStatus.WORKING,
    limit: str = "-1.35",
    filled: int = 0,
    avg: Decimal | None = None,
) -> BrokerOrder:
    return BrokerOrder(
        broker_order_id="ib-1001",
        client_order_id=it.client_order_id,
        side=it.combo_side,
        spread=it.spread,
        quantity=it.quantity,
        limit_price=Decimal(limit),
        status=status,
        filled_quantity=filled,
        avg_fill_price=avg,
    )


def fill(
    exec_id: str = "exec-1",
    at: datetime = OPEN_AT,
    coid: str = "coid-1",
    price: str = "-1.33",
) -> Fill:
    return Fill(
        client_order_id=coid,
        broker_order_id="ib-1001",
        exec_id=exec_id,
        quantity=1,
        price=Decimal(price),
        commission=Decimal("2.6000"),
        at=at,
    )


# -- schema -------------------------------------------------------------------------------------


def test_migrate_when_run_twice_then_second_run_is_noop(trade_db_url: str) -> None:
    store = TradeStore(trade_db_url)
    try:
        assert store.schema_revision() is None
        store.migrate()
        head = ScriptDirectory.from_config(store.alembic_config()).get_current_head()
        assert store.schema_revision() == head
        store.record_signal(signal())

        started = time.perf_counter()
        store.migrate()
        elapsed = time.perf_counter() - started

        assert store.schema_revision() == head
        assert store.table_row_counts()["signals"] == 1
        assert elapsed < 1.0
    finally:
        store.dispose()


def test_migrate_when_done_then_schema_matches_orm_metadata(store: TradeStore) -> None:
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, Base.metadata)
    assert diff == []


def test_migrate_when_done_then_every_orm_table_exists(store: TradeStore) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert set(Base.metadata.tables) <= tables
    assert "alembic_version" in tables


def test_trade_store_when_sqlite_file_then_parent_created_and_wal_with_foreign_keys(
    tmp_path: Path,
) -> None:
    db = tmp_path / "nested" / "var" / "dte.db"
    store = TradeStore(f"sqlite:///{db}")
    try:
        store.migrate()
        assert db.exists()
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
    finally:
        store.dispose()
    with sqlite3.connect(db) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_trade_store_when_sqlite_in_memory_then_usable_across_threads() -> None:
    store = TradeStore("sqlite://")
    try:
        store.migrate()
        worker = threading.Thread(target=store.record_signal, args=(signal(),))
        worker.start()
        worker.join()
        assert store.signals() == [signal()]
    finally:
        store.dispose()


def test_trade_store_when_postgresql_url_then_psycopg_driver_without_connecting() -> None:
    store = TradeStore("postgresql://nobody@203.0.113.1:5432/nowhere")
    assert store.url.drivername == "postgresql+psycopg"
    assert store.dialect_name == "postgresql"
    store.dispose()


# -- spread JSON -----------------------------------------------------------------------------


def test_spread_json_when_iron_condor_with_half_strikes_then_round_trips_exactly() -> None:
    spread = iron_condor()

    rebuilt = spread_from_json(spread_to_json(spread))

    assert rebuilt == spread
    assert [leg.contract.strike for leg in rebuilt.legs] == [
        Decimal("582.5"),
        Decimal("587.5"),
        Decimal("592.5"),
        Decimal("597.5"),
    ]
    assert str(rebuilt.legs[3].contract.strike) == "597.50"
    assert rebuilt.leg_key() == spread.leg_key()
    assert all(isinstance(leg.contract.strike, Decimal) for leg in rebuilt.legs)


# -- signals ----------------------------------------------------------------------------------


def test_record_signal_when_duplicate_id_then_false_and_one_row(store: TradeStore) -> None:
    assert store.record_signal(signal()) is True
    assert store.record_signal(signal()) is False

    stored = store.signals()
    assert stored == [signal()]
    assert stored[0].at.tzinfo is not None


def test_signals_when_filtered_by_day_and_system_then_matching_only(store: TradeStore) -> None:
    store.record_signal(signal("a", ny(9, 45)))
    store.record_signal(signal("b", ny(20, 30), SystemName.MAG7))
    store.record_signal(signal("c", ny(9, 45, date(2026, 11, 30))))

    assert [s.signal_id for s in store.signals(day=DAY)] == ["a", "b"]
    assert [s.signal_id for s in store.signals(day=DAY, system=SystemName.MAG7)] == ["b"]
    assert [s.signal_id for s in store.signals()] == ["a", "b", "c"]


# -- intents ----------------------------------------------------------------------------------


def test_save_intent_when_new_then_pending_and_round_trips(store: TradeStore) -> None:
    it = intent()

    assert store.save_intent(it) is True

    stored = store.intent_by_client_id(it.client_order_id)
    assert stored is not None
    assert stored.intent == it
    assert stored.status is IntentStatus.PENDING
    assert stored.status_reason == ""
    assert stored.broker_order_id is None
    assert stored.intent.created_at.utcoffset() == timedelta(0)


def test_save_intent_when_client_order_id_exists_then_false_and_status_unchanged(
    store: TradeStore,
) -> None:
    it = intent()
    store.save_intent(it)
    store.set_intent_status(it.client_order_id, IntentStatus.SUBMITTED, "", "ib-1001")

    assert store.save_intent(it) is False

    stored = store.intent_by_client_id(it.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.SUBMITTED
    assert stored.broker_order_id == "ib-1001"
    assert store.table_row_counts()["intents"] == 1


def test_set_intent_status_when_transitions_then_latest_kept_with_broker_id(
    store: TradeStore,
) -> None:
    it = intent()
    store.save_intent(it)

    store.set_intent_status(it.client_order_id, IntentStatus.SUBMITTED, broker_order_id="ib-7")
    store.set_intent_status(it.client_order_id, IntentStatus.CANCELLED, "walked to worst price")

    stored = store.intent_by_client_id(it.client_order_id)
    assert stored is not None
    assert stored.status is IntentStatus.CANCELLED
    assert stored.status_reason == "walked to worst price"
    assert stored.broker_order_id == "ib-7"


def test_set_intent_status_when_unknown_id_then_key_error(store: TradeStore) -> None:
    with pytest.raises(KeyError, match="nope"):
        store.set_intent_status("nope", IntentStatus.FILLED)


def test_intent_by_client_id_when_unknown_then_none(store: TradeStore) -> None:
    assert store.intent_by_client_id("nope") is None


def test_intents_when_filtered_by_day_system_and_status_then_matching_only(
    store: TradeStore,
) -> None:
    a = intent("a", created_at=ny(10))
    b = intent("b", created_at=ny(23, 30), system=SystemName.MAG7)
    c = intent("c", created_at=ny(0, 30, date(2026, 11, 28)))
    for it in (a, b, c):
        store.save_intent(it)
    store.set_intent_status(a.client_order_id, IntentStatus.FILLED)

    def ids(items: list) -> list[str]:  # type: ignore[type-arg]
        return [s.intent.signal_id for s in items]

    assert ids(store.intents(day=DAY)) == ["a", "b"]
    assert ids(store.intents(day=DAY, system=SystemName.SMART0DTE)) == ["a"]
    assert ids(store.intents(statuses=[IntentStatus.PENDING, IntentStatus.SUBMITTED])) == [
        "b",
        "c",
    ]
    assert ids(store.intents(statuses=[])) == []
    assert ids(store.intents(day=date(2026, 11, 28))) == ["c"]


# -- orders -----------------------------------------------------------------------------------


def test_record_order_when_modified_and_filled_then_latest_state_and_event_history(
    store: TradeStore,
) -> None:
    it = intent()
    store.save_intent(it)

    store.record_order(broker_order(it), it.system, ny(10, 15), "submit")
    store.record_order(broker_order(it, limit="-1.30"), it.system, ny(10, 16), "modify")
    filled = broker_order(it, OrderStatus.FILLED, "-1.30", 2, Decimal("-1.3050"))
    store.record_order(filled, it.system, ny(10, 17), "fill")

    assert store.orders() == [filled]
    assert store.orders(day=DAY) == [filled]
    assert store.orders(day=date(2026, 11, 26)) == []
    events = store.order_events("ib-1001")
    assert [(e.note, e.status, e.limit_price) for e in events] == [
        ("submit", OrderStatus.WORKING, Decimal("-1.35")),
        ("modify", OrderStatus.WORKING, Decimal("-1.30")),
        ("fill", OrderStatus.FILLED, Decimal("-1.30")),
    ]
    assert store.table_row_counts()["orders"] == 1


def test_record_order_when_intent_unknown_then_key_error(store: TradeStore) -> None:
    it = intent()

    with pytest.raises(KeyError, match="unknown intent"):
        store.record_order(broker_order(it), it.system, ny(10))

    assert store.table_row_counts()["order_events"] == 0


# -- fills ------------------------------------------------------------------------------------


def test_record_fill_when_duplicate_exec_id_then_ignored(store: TradeStore) -> None:
    first = fill("exec-1", price="-1.33")
    assert store.record_fill(first, SystemName.SMART0DTE) is True

    again = fill("exec-1", price="-9.99")
    assert store.record_fill(again, SystemName.SMART0DTE) is False

    assert store.fills() == [first]


def test_fills_when_late_evening_in_new_york_then_belong_to_that_new_york_day(
    store: TradeStore,
) -> None:
    late = fill("late", at=datetime(2026, 11, 27, 23, 30, tzinfo=NY))  # 2026-11-28 04:30 UTC
    early = fill("early", at=datetime(2026, 11, 27, 0, 10, tzinfo=NY))  # 2026-11-27 05:10 UTC
    before = fill("before", at=datetime(2026, 11, 27, 4, 59, tzinfo=UTC))  # 11-26 23:59 NY
    for f in (late, early, before):
        store.record_fill(f, SystemName.MAG7)

    assert [f.exec_id for f in store.fills(day=date(2026, 11, 27))] == ["early", "late"]
    assert [f.exec_id for f in store.fills(day=date(2026, 11, 28))] == []
    assert [f.exec_id for f in store.fills(day=date(2026, 11, 26))] == ["before"]
    stored_late = store.fills(day=date(2026, 11, 27))[1]
    assert stored_late.at == late.at
    assert stored_late.at.tzinfo is UTC
    assert stored_late.at.date() == date(2026, 11, 28)


def test_fills_when_filtered_by_client_order_id_then_that_order_only(store: TradeStore) -> None:
    store.record_fill(fill("x1", coid="A"), SystemName.SMART0DTE)
    store.record_fill(fill("x2", coid="B"), SystemName.SMART0DTE)

    assert [f.exec_id for f in store.fills(client_order_id="B")] == ["x2"]


def test_pnl_marks_when_day_crosses_dst_change_then_new_york_day_used(store: TradeStore) -> None:
    # 2026-11-01 is the DST end: the New York day is 25 hours long.
    dst_day = date(2026, 11, 1)
    store.record_pnl_mark(SystemName.MAG7, ny(0, 30, dst_day), Decimal("0"), Decimal("1"))
    store.record_pnl_mark(SystemName.MAG7, ny(23, 30, dst_day), Decimal("0"), Decimal("2"))
    store.record_pnl_mark(SystemName.MAG7, ny(0, 0, date(2026, 11, 2)), Decimal("0"), Decimal("3"))

    assert [m.unrealized for m in store.pnl_marks(dst_day)] == [Decimal("1"), Decimal("2")]


# -- money and datetimes ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["0.0001", "-0.0001", "592.5", "1234567.8912", "-1.35", "0", "99999999999.9999", "0.1"],
)
def test_money_when_at_most_four_decimals_then_round_trips_exactly(
    store: TradeStore, value: str
) -> None:
    amount = Decimal(value)

    store.upsert_daily_pnl(DAY, SystemName.SMART0DTE, amount, -amount, amount, 1)

    (row,) = store.daily_pnl(DAY)
    assert (row.realized, row.unrealized, row.commissions) == (amount, -amount, amount)
    assert isinstance(row.realized, Decimal)
    assert row.realized.as_tuple().exponent == -4


def test_record_risk_event_when_naive_datetime_then_value_error(store: TradeStore) -> None:
    naive = datetime(2026, 11, 27, 10, 0)  # noqa: DTZ001 - the point of the test

    with pytest.raises(ValueError, match="timezone-aware"):
        store.record_risk_event("loss_limit", "warning", "75% of daily loss", naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        store.set_trading_state(TradingState.HALTED, "manual", naive, manual=True)

    assert store.risk_events() == []


def test_utc_datetime_column_when_naive_value_flushed_then_refused(store: TradeStore) -> None:
    naive = datetime(2026, 11, 27, 10, 0)  # noqa: DTZ001 - the point of the test
    row = RiskEventRecord(system=None, at=naive, kind="x", severity="info", message="m")

    with Session(store.engine) as session:
        session.add(row)
        with pytest.raises(StatementError) as caught:
            session.flush()
    assert isinstance(caught.value.orig, ValueError)
    with pytest.raises(ValueError, match="timezone-aware"):
        UtcDateTime().process_bind_param(naive, store.engine.dialect)


# -- positions --------------------------------------------------------------------------------


def test_close_position_when_open_then_closed_with_realized_pnl(store: TradeStore) -> None:
    store.open_position(position(), "open-coid")
    assert [p.position_id for p in store.open_positions()] == ["pos-1"]

    closed = store.close_position(
        "pos-1", Decimal("-0.40"), Decimal("10.40"), ny(14, 5), "close-coid"
    )

    # credit 1.30 taken in, 0.40 paid back: 0.90 * 4 * 100 = 360, minus 20.80 commissions
    assert closed.status is PositionStatus.CLOSED
    assert closed.realized() == Decimal("339.20")
    assert store.position("pos-1") == closed
    assert store.open_positions() == []
    assert closed.closed_at == ny(14, 5)


def test_open_position_when_stored_then_round_trips(store: TradeStore) -> None:
    original = position()

    store.open_position(original, "open-coid")
    store.open_position(original, "open-coid")  # a retry changes nothing

    assert store.position("pos-1") == original
    assert store.position("missing") is None
    with pytest.raises(ValueError, match="already opened"):
        store.open_position(original, "another-coid")


def test_close_position_when_repeated_then_idempotent_for_same_order_only(
    store: TradeStore,
) -> None:
    store.open_position(position(), "open-coid")
    first = store.close_position("pos-1", Decimal("-0.40"), Decimal("1"), ny(14), "close-coid")

    again = store.close_position("pos-1", Decimal("-0.10"), Decimal("9"), ny(15), "close-coid")

    assert again == first
    with pytest.raises(ValueError, match="already closed"):
        store.close_position("pos-1", Decimal("-0.10"), Decimal("9"), ny(15), "other-coid")
    with pytest.raises(KeyError):
        store.close_position("missing", Decimal("0"), Decimal("0"), ny(15), "other-coid")


def test_reduce_position_when_partial_then_closed_child_and_parent_keeps_rest(
    store: TradeStore,
) -> None:
    store.open_position(position(quantity=3), "open-coid")

    child = store.reduce_position(
        "pos-1", 1, Decimal("-0.65"), Decimal("2.60"), ny(11, 30), "tier1-coid", tiers_done=1
    )

    parent = store.position("pos-1")
    assert parent is not None
    assert child.position_id == "pos-1-p1"
    assert child.status is PositionStatus.CLOSED
    assert child.quantity == 1
    assert child.entry_commission == Decimal("3.4667")
    assert parent.entry_commission == Decimal("6.9333")
    assert child.entry_commission + parent.entry_commission == Decimal("10.40")
    assert child.max_loss + parent.max_loss == Decimal("1480.00")
    # (-0.65 - -1.30) * 1 * 100 = 65, minus 3.4667 + 2.60
    assert child.realized() == Decimal("58.9333")
    assert store.position("pos-1-p1") == child
    assert parent.status is PositionStatus.OPEN
    assert parent.quantity == 2
    assert parent.closed_fraction_tiers == 1
    assert [p.position_id for p in store.open_positions()] == ["pos-1"]

    rest = store.close_position("pos-1", Decimal("-0.30"), Decimal("5.20"), ny(13), "close-coid")
    total = child.realized() + rest.realized()
    # gross (1.30-0.65)*100 + (1.30-0.30)*200 = 65 + 200; commissions 10.40 + 2.60 + 5.20
    assert total == Decimal("246.80")


def test_reduce_position_when_repeated_with_same_order_then_same_child(store: TradeStore) -> None:
    store.open_position(position(quantity=3), "open-coid")
    args = ("pos-1", 1, Decimal("-0.65"), Decimal("2.60"), ny(11, 30), "tier1-coid")

    first = store.reduce_position(*args, tiers_done=1)
    second = store.reduce_position(*args, tiers_done=1)

    assert second == first
    parent = store.position("pos-1")
    assert parent is not None
    assert parent.quantity == 2


@pytest.mark.parametrize("quantity_closed", [0, 3, 4])
def test_reduce_position_when_quantity_not_below_open_then_value_error(
    store: TradeStore, quantity_closed: int
) -> None:
    store.open_position(position(quantity=3), "open-coid")

    with pytest.raises(ValueError, match="quantity_closed"):
        store.reduce_position(
            "pos-1", quantity_closed, Decimal("-0.6"), Decimal("1"), ny(11), "c", tiers_done=1
        )

    parent = store.position("pos-1")
    assert parent is not None
    assert parent.quantity == 3


def test_positions_when_day_given_then_opened_or_closed_that_new_york_day(
    store: TradeStore,
) -> None:
    prev_day = date(2026, 11, 25)
    store.open_position(position("old-open", opened_at=ny(10, 0, prev_day)), "o1")
    store.open_position(position("old-closed", opened_at=ny(10, 0, prev_day)), "o2")
    store.close_position("old-closed", Decimal("-0.2"), Decimal("0"), ny(23, 30), "c2")
    store.open_position(position("today", opened_at=ny(9, 45), system=SystemName.MAG7), "o3")

    assert [p.position_id for p in store.positions(day=DAY)] == ["old-closed", "today"]
    assert [p.position_id for p in store.positions(day=prev_day)] == ["old-closed", "old-open"]
    assert [p.position_id for p in store.positions(DAY, SystemName.MAG7)] == ["today"]
    assert [p.position_id for p in store.open_positions(SystemName.SMART0DTE)] == ["old-open"]


# -- risk events, trading state, P&L --------------------------------------------------------------


def test_risk_events_when_filtered_then_day_and_kinds_match(store: TradeStore) -> None:
    store.record_risk_event("loss_limit", "warning", "75%", ny(11), SystemName.SMART0DTE)
    store.record_risk_event("broker_error", "critical", "disconnected", ny(23, 59))
    store.record_risk_event("loss_limit", "info", "reset", ny(9, 0, date(2026, 11, 30)))

    today = store.risk_events(day=DAY)
    assert [(e.kind, e.severity, e.system) for e in today] == [
        ("loss_limit", "warning", SystemName.SMART0DTE),
        ("broker_error", "critical", None),
    ]
    assert [e.message for e in store.risk_events(kinds=["loss_limit"])] == ["75%", "reset"]
    with pytest.raises(ValueError, match="severity"):
        store.record_risk_event("x", "fatal", "m", ny(12))


def test_trading_state_when_several_rows_then_latest_wins(store: TradeStore) -> None:
    assert store.trading_state() is None

    store.set_trading_state(TradingState.ACTIVE, "start of day", ny(9, 0), manual=False)
    store.set_trading_state(TradingState.REDUCING, "loss limit", ny(12, 0), manual=False)
    store.set_trading_state(TradingState.HALTED, "operator", ny(12, 30), manual=True)

    assert store.trading_state() == TradingStateRow(
        TradingState.HALTED, True, "operator", ny(12, 30)
    )
    assert store.table_row_counts()["trading_state"] == 3


def test_record_pnl_mark_when_recorded_then_series_per_day_and_system(store: TradeStore) -> None:
    store.record_pnl_mark(SystemName.SMART0DTE, ny(10, 1), Decimal("0"), Decimal("-12.5"))
    store.record_pnl_mark(SystemName.MAG7, ny(10, 1), Decimal("3"), Decimal("4"))
    store.record_pnl_mark(SystemName.SMART0DTE, ny(10, 2), Decimal("40"), Decimal("-2.25"))

    marks = store.pnl_marks(DAY, SystemName.SMART0DTE)

    assert [(m.at, m.realized, m.unrealized) for m in marks] == [
        (ny(10, 1), Decimal("0"), Decimal("-12.5")),
        (ny(10, 2), Decimal("40"), Decimal("-2.25")),
    ]
    assert len(store.pnl_marks(DAY)) == 3
    assert store.pnl_marks(date(2026, 11, 28)) == []


def test_last_pnl_mark_when_marks_recorded_then_latest_of_day_and_system(
    store: TradeStore,
) -> None:
    assert store.last_pnl_mark(DAY, SystemName.SMART0DTE) is None
    store.record_pnl_mark(SystemName.SMART0DTE, ny(10, 2), Decimal("40"), Decimal("-2.25"))
    store.record_pnl_mark(SystemName.SMART0DTE, ny(10, 1), Decimal("0"), Decimal("-12.5"))
    store.record_pnl_mark(SystemName.MAG7, ny(10, 3), Decimal("3"), Decimal("4"))

    last = store.last_pnl_mark(DAY, SystemName.SMART0DTE)

    assert last is not None and (last.at, last.unrealized) == (ny(10, 2), Decimal("-2.25"))
    assert last == store.pnl_marks(DAY, SystemName.SMART0DTE)[-1]
    assert store.last_pnl_mark(date(2026, 11, 28), SystemName.SMART0DTE) is None


def test_upsert_daily_pnl_when_repeated_then_row_replaced(store: TradeStore) -> None:
    store.upsert_daily_pnl(DAY, SystemName.MAG7, Decimal("10"), Decimal("5"), Decimal("2.6"), 1)
    store.upsert_daily_pnl(DAY, SystemName.MAG7, Decimal("-40.5"), Decimal("0"), Decimal("7.8"), 3)
    store.upsert_daily_pnl(DAY, SystemName.SMART0DTE, Decimal("1"), Decimal("0"), Decimal("0"), 1)

    rows = store.daily_pnl(DAY)

    assert [(r.system, r.realized, r.commissions, r.trades) for r in rows] == [
        (SystemName.MAG7, Decimal("-40.5"), Decimal("7.8"), 3),
        (SystemName.SMART0DTE, Decimal("1"), Decimal("0"), 1),
    ]
    assert store.daily_pnl(date(2026, 11, 28)) == []


# -- whole store ------------------------------------------------------------------------------


def test_table_row_counts_when_rows_written_then_every_table_counted(store: TradeStore) -> None:
    it = intent()
    store.record_signal(signal())
    store.save_intent(it)
    store.record_order(broker_order(it), it.system, ny(10, 15), "submit")
    store.record_order(broker_order(it, limit="-1.30"), it.system, ny(10, 16), "modify")
    store.record_fill(fill(coid=it.client_order_id), it.system)
    store.open_position(position(), it.client_order_id)
    store.upsert_daily_pnl(DAY, it.system, Decimal("0"), Decimal("0"), Decimal("0"), 0)
    store.record_pnl_mark(it.system, ny(10, 20), Decimal("0"), Decimal("1"))
    store.record_risk_event("k", "info", "m", ny(10, 21))
    store.set_trading_state(TradingState.ACTIVE, "start", ny(9), manual=False)

    counts = store.table_row_counts()

    assert set(counts) == set(Base.metadata.tables)
    assert counts == {
        "approvals": 0,
        "backups": 0,
        "daily_pnl": 1,
        "fills": 1,
        "intents": 1,
        "iv_history": 0,
        "mode_changes": 0,
        "order_events": 2,
        "orders": 1,
        "pnl_marks": 1,
        "position_marks": 0,
        "positions": 1,
        "risk_events": 1,
        "signals": 1,
        "trading_state": 1,
    }


def test_record_fill_when_many_threads_write_then_all_rows_stored(store: TradeStore) -> None:
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(20):
                store.record_fill(fill(f"t{n}-{i}"), SystemName.SMART0DTE)
                store.record_fill(fill(f"t{n}-{i}"), SystemName.SMART0DTE)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert errors == []
    assert store.table_row_counts()["fills"] == 120
