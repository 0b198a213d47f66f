"""The trade store: SQLAlchemy 2 ORM tables and the repository the order path and flows use.

One ``TradeStore(url)`` per process. SQLite (default ``sqlite:///var/dte.db``) or PostgreSQL via
psycopg 3. The schema comes from the Alembic migrations in ``adapters/migrations``
(``TradeStore.migrate()``); the ORM classes below must match them (a test compares both).

Storage conventions:

* Datetimes are stored in UTC (``timestamptz`` on PostgreSQL, UTC text on SQLite) and always come
  back timezone-aware in UTC; writing a naive datetime raises ``ValueError``.
* Money is ``Numeric(18, 4)`` and comes back as ``Decimal`` quantized to 4 dp on both backends
  (values are rounded half-up to 4 dp on write; round trips are exact for |value| < 1e11).
* Enums are stored as their string values; a structure is stored as JSON (``spread_to_json``).
* "day" filters mean the trading day in America/New_York of the row's timestamp.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, ParamSpec, TypeVar, cast
from zoneinfo import ZoneInfo

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Engine,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, CursorResult, Dialect, Row, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.types import TypeDecorator, TypeEngine

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
    TradingMode,
    TradingState,
    require_aware,
)

if TYPE_CHECKING:
    from alembic.config import Config

NEW_YORK: Final = ZoneInfo("America/New_York")
MIGRATIONS_DIR: Final = Path(__file__).resolve().parent / "migrations"
SEVERITIES: Final = ("info", "warning", "critical")
BACKUP_KINDS: Final = ("sqlite", "postgresql")
BACKUP_STATUSES: Final = ("ok", "failed")
APPROVAL_DECISIONS: Final = ("pending", "approve", "reject", "expired")

_Q4 = Decimal("0.0001")
_SQLITE_BUSY_TIMEOUT_MS = 30_000
_BEGIN_OPTION = "dte_sqlite_begin"  # execution option naming the BEGIN flavour on SQLite
_BEGIN_SQL = {"": "BEGIN", "IMMEDIATE": "BEGIN IMMEDIATE"}
_PG_MIGRATION_LOCK = 0x647465  # pg_advisory_xact_lock key serialising concurrent migrate() calls


# --------------------------------------------------------------------------------------------
# Spread JSON
# --------------------------------------------------------------------------------------------


def spread_to_json(spread: Spread) -> str:
    """Serialise a structure (strikes as exact decimal strings, expiry as ISO date)."""
    payload = {
        "kind": spread.kind.value,
        "legs": [
            {
                "underlying": leg.contract.underlying,
                "expiry": leg.contract.expiry.isoformat(),
                "strike": str(leg.contract.strike),
                "right": leg.contract.right.value,
                "side": leg.side.value,
                "ratio": leg.ratio,
                "multiplier": leg.contract.multiplier,
            }
            for leg in spread.legs
        ],
    }
    return json.dumps(payload, separators=(",", ":"))


@functools.lru_cache(maxsize=4096)
def spread_from_json(text: str) -> Spread:
    """Rebuild the ``Spread`` written by ``spread_to_json`` (equal, Decimal strikes included).

    Cached by text: a ``Spread`` is immutable, and the loop reads the same open positions every
    minute. Raises on malformed text (nothing is cached then)."""
    payload = json.loads(text)
    legs = tuple(
        Leg(
            contract=OptionContract(
                underlying=str(raw["underlying"]),
                expiry=date.fromisoformat(raw["expiry"]),
                strike=Decimal(str(raw["strike"])),
                right=Right(raw["right"]),
                multiplier=int(raw["multiplier"]),
            ),
            side=Side(raw["side"]),
            ratio=int(raw["ratio"]),
        )
        for raw in payload["legs"]
    )
    return Spread(kind=StructureKind(payload["kind"]), legs=legs)


# --------------------------------------------------------------------------------------------
# Column types
# --------------------------------------------------------------------------------------------


class UtcDateTime(TypeDecorator[datetime]):
    """``DateTime(timezone=True)`` that refuses naive datetimes and always returns aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"expected a datetime, got {type(value).__name__}")
        require_aware(value, "stored datetime")
        utc = value.astimezone(UTC)
        # SQLite has no time zone type: store naive UTC text, re-attach UTC on read.
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        stamp = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
        if stamp.tzinfo is None:
            return stamp.replace(tzinfo=UTC)
        return stamp.astimezone(UTC)


def _money(value: Decimal | int | float | str) -> Decimal:
    return Decimal(str(value)).quantize(_Q4, rounding=ROUND_HALF_UP)


def _fraction(value: float) -> Decimal:
    """A stored float fraction back as the ``Decimal`` of its shortest repr."""
    return Decimal(repr(float(value)))


def _check_iv(value: float) -> None:
    if not (value > 0 and value < 100):  # also refuses NaN
        raise ValueError(f"an implied vol must be a positive fraction, got {value!r}")


class Money(TypeDecorator[Decimal]):
    """``Numeric(18, 4)`` returning ``Decimal`` exactly on both backends.

    SQLite has no decimal type (values go through a double), so there the driver value is read as
    a float and rebuilt from its shortest repr, which is exact for <= 15 significant digits.
    """

    impl = Numeric(18, 4)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(Numeric(18, 4, asdecimal=False))
        return dialect.type_descriptor(Numeric(18, 4))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Decimal | float | None:
        if value is None:
            return None
        quantized = _money(value)
        return float(quantized) if dialect.name == "sqlite" else quantized

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if isinstance(value, float):
            return _money(repr(value))
        return _money(value)


E = TypeVar("E", bound=StrEnum)


class EnumText(TypeDecorator[E], Generic[E]):
    """A ``StrEnum`` stored as its string value in a ``VARCHAR``."""

    impl = String
    cache_ok = True

    def __init__(self, enum_cls: type[E], length: int = 32) -> None:
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return self.enum_cls(value).value

    def process_result_value(self, value: Any, dialect: Dialect) -> E | None:
        if value is None:
            return None
        return self.enum_cls(value)


# --------------------------------------------------------------------------------------------
# ORM tables (keep in step with adapters/migrations/versions)
# --------------------------------------------------------------------------------------------

NAMING_CONVENTION: Final = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _system() -> Mapped[SystemName]:
    return mapped_column(EnumText(SystemName, 16), nullable=False)


class SignalRecord(Base):
    __tablename__ = "signals"

    signal_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    system: Mapped[SystemName] = _system()
    kind: Mapped[SignalKind] = mapped_column(EnumText(SignalKind, 32))
    underlying: Mapped[str] = mapped_column(String(16))
    direction: Mapped[Direction] = mapped_column(EnumText(Direction, 16))
    confidence: Mapped[float] = mapped_column(Float)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    reason: Mapped[str] = mapped_column(Text)


class IntentRecord(Base):
    __tablename__ = "intents"

    client_order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    system: Mapped[SystemName] = _system()
    signal_id: Mapped[str] = mapped_column(String(128), index=True)
    action: Mapped[IntentAction] = mapped_column(EnumText(IntentAction, 8))
    structure_kind: Mapped[StructureKind] = mapped_column(EnumText(StructureKind, 32))
    spread: Mapped[str] = mapped_column(Text)
    quantity: Mapped[int] = mapped_column(Integer)
    limit_price: Mapped[Decimal] = mapped_column(Money)
    worst_price: Mapped[Decimal] = mapped_column(Money)
    max_loss: Mapped[Decimal] = mapped_column(Money)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    position_id: Mapped[str | None] = mapped_column(String(128), index=True)  # index: 0004
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[IntentStatus] = mapped_column(EnumText(IntentStatus, 16), index=True)
    status_reason: Mapped[str] = mapped_column(Text)
    broker_order_id: Mapped[str | None] = mapped_column(String(64))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # the run executing the intent and until when (wall clock): one run works an order at a time
    # (migration 0004; see ``claim_intent``)
    claimed_by: Mapped[str | None] = mapped_column(String(160))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OrderRecord(Base):
    __tablename__ = "orders"

    broker_order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("intents.client_order_id"), index=True
    )
    system: Mapped[SystemName] = _system()
    side: Mapped[Side] = mapped_column(EnumText(Side, 8))
    quantity: Mapped[int] = mapped_column(Integer)
    limit_price: Mapped[Decimal] = mapped_column(Money)
    status: Mapped[OrderStatus] = mapped_column(EnumText(OrderStatus, 16))
    filled_quantity: Mapped[int] = mapped_column(Integer)
    avg_fill_price: Mapped[Decimal | None] = mapped_column(Money)
    reason: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class OrderEventRecord(Base):
    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    broker_order_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("orders.broker_order_id"), index=True
    )
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    status: Mapped[OrderStatus] = mapped_column(EnumText(OrderStatus, 16))
    limit_price: Mapped[Decimal] = mapped_column(Money)
    filled_quantity: Mapped[int] = mapped_column(Integer)
    note: Mapped[str] = mapped_column(Text)


class FillRecord(Base):
    __tablename__ = "fills"

    exec_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(String(64), index=True)
    broker_order_id: Mapped[str] = mapped_column(String(64))
    system: Mapped[SystemName] = _system()
    quantity: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(Money)
    commission: Mapped[Decimal] = mapped_column(Money)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class PositionRecord(Base):
    __tablename__ = "positions"

    position_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    system: Mapped[SystemName] = _system()
    signal_kind: Mapped[SignalKind] = mapped_column(EnumText(SignalKind, 32))
    structure_kind: Mapped[StructureKind] = mapped_column(EnumText(StructureKind, 32))
    spread: Mapped[str] = mapped_column(Text)
    underlying: Mapped[str] = mapped_column(String(16))
    expiry: Mapped[date] = mapped_column(Date)
    quantity: Mapped[int] = mapped_column(Integer)
    entry_price: Mapped[Decimal] = mapped_column(Money)
    entry_commission: Mapped[Decimal] = mapped_column(Money)
    max_loss: Mapped[Decimal] = mapped_column(Money)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    status: Mapped[PositionStatus] = mapped_column(EnumText(PositionStatus, 8), index=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    exit_price: Mapped[Decimal | None] = mapped_column(Money)
    exit_commission: Mapped[Decimal] = mapped_column(Money)
    closed_fraction_tiers: Mapped[int] = mapped_column(Integer)
    open_client_order_id: Mapped[str] = mapped_column(String(64))
    close_client_order_id: Mapped[str | None] = mapped_column(String(64))
    # highest P&L fraction of the premium seen at a Mag7 management check (trailing stop); 0003
    peak_pnl_fraction: Mapped[float | None] = mapped_column(Float, nullable=True)


class DailyPnlRecord(Base):
    __tablename__ = "daily_pnl"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    system: Mapped[SystemName] = mapped_column(EnumText(SystemName, 16), primary_key=True)
    realized: Mapped[Decimal] = mapped_column(Money)
    unrealized: Mapped[Decimal] = mapped_column(Money)
    commissions: Mapped[Decimal] = mapped_column(Money)
    trades: Mapped[int] = mapped_column(Integer)


class PnlMarkRecord(Base):
    __tablename__ = "pnl_marks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system: Mapped[SystemName] = _system()
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    realized: Mapped[Decimal] = mapped_column(Money)
    unrealized: Mapped[Decimal] = mapped_column(Money)


class RiskEventRecord(Base):
    __tablename__ = "risk_events"
    __table_args__ = (
        CheckConstraint("severity IN ('info', 'warning', 'critical')", name="severity"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    system: Mapped[SystemName | None] = mapped_column(EnumText(SystemName, 16))
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)


class TradingStateRecord(Base):
    __tablename__ = "trading_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    state: Mapped[TradingState] = mapped_column(EnumText(TradingState, 16))
    manual: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str] = mapped_column(Text)


class BackupRecord(Base):
    """One backup attempt (``adapters.backup``): ok = restore-verified, failed = rejected."""

    __tablename__ = "backups"
    __table_args__ = (
        CheckConstraint("url_kind IN ('sqlite', 'postgresql')", name="url_kind"),
        CheckConstraint("status IN ('ok', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    url_kind: Mapped[str] = mapped_column(String(16))
    path: Mapped[str] = mapped_column(Text)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    verified: Mapped[bool] = mapped_column(Boolean)
    row_counts: Mapped[str] = mapped_column(Text)  # JSON object {table: rows}
    status: Mapped[str] = mapped_column(String(16), index=True)
    message: Mapped[str] = mapped_column(Text)


class ApprovalRecord(Base):
    """A human approval asked for an order intent (tiers T2/T3 in live mode)."""

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint("decision IN ('pending', 'approve', 'reject', 'expired')", name="decision"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(64), index=True)
    system: Mapped[SystemName] = _system()
    tier: Mapped[str] = mapped_column(String(8))
    requested_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decision: Mapped[str] = mapped_column(String(16), index=True)
    decided_by: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str] = mapped_column(Text)


class IvHistoryRecord(Base):
    """One session's 30-day ATM implied vol of an underlying (Mag7 IV rank); migration 0003.

    ``source`` says where the value came from: ``simulator`` (development backfill and daily
    values), or ``chain`` (interpolated from the listed chains at the day's last management
    check, with Polygon data). One row per (symbol, day): a later write replaces it.
    """

    __tablename__ = "iv_history"

    symbol: Mapped[str] = mapped_column(String(16), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    atm_iv: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(32))
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PositionMarkRecord(Base):
    """An opened position's net mid at a session's close (migration 0004): the baseline from
    which the next session's P&L of a carried (Mag7-7DTE) position is measured. One row per
    (position, day); a later mark of the same day replaces an earlier one."""

    __tablename__ = "position_marks"

    position_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    value: Mapped[Decimal] = mapped_column(Money)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class ModeChangeRecord(Base):
    """A requested or applied switch between trading modes (development/testing/live)."""

    __tablename__ = "mode_changes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    from_mode: Mapped[TradingMode] = mapped_column(EnumText(TradingMode, 16))
    to_mode: Mapped[TradingMode] = mapped_column(EnumText(TradingMode, 16))
    who: Mapped[str] = mapped_column(String(128))
    why: Mapped[str] = mapped_column(Text)
    approved: Mapped[bool] = mapped_column(Boolean)
    status: Mapped[str] = mapped_column(String(16))


# --------------------------------------------------------------------------------------------
# Values returned by the repository
# --------------------------------------------------------------------------------------------


class StoredIntent(NamedTuple):
    intent: OrderIntent
    status: IntentStatus
    status_reason: str
    broker_order_id: str | None


@dataclass(frozen=True, slots=True)
class OrderEvent:
    broker_order_id: str
    at: datetime
    status: OrderStatus
    limit_price: Decimal
    filled_quantity: int
    note: str


@dataclass(frozen=True, slots=True)
class RiskEventRow:
    at: datetime
    system: SystemName | None
    kind: str
    severity: str
    message: str


@dataclass(frozen=True, slots=True)
class TradingStateRow:
    state: TradingState
    manual: bool
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PnlMark:
    system: SystemName
    at: datetime
    realized: Decimal
    unrealized: Decimal


@dataclass(frozen=True, slots=True)
class DailyPnlRow:
    day: date
    system: SystemName
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    trades: int


@dataclass(frozen=True, slots=True)
class BackupRow:
    id: int
    at: datetime
    url_kind: str
    path: str
    size_bytes: int
    sha256: str
    verified: bool
    row_counts: dict[str, int]
    status: str
    message: str


@dataclass(frozen=True, slots=True)
class ApprovalRow:
    id: int
    client_order_id: str
    system: SystemName
    tier: str
    requested_at: datetime
    decided_at: datetime | None
    decision: str
    decided_by: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class IvRow:
    symbol: str
    day: date
    atm_iv: float
    source: str


@dataclass(frozen=True, slots=True)
class ModeChangeRow:
    id: int
    at: datetime
    from_mode: TradingMode
    to_mode: TradingMode
    who: str
    why: str
    approved: bool
    status: str


# --------------------------------------------------------------------------------------------
# Engine setup
# --------------------------------------------------------------------------------------------


def normalize_url(url: str) -> URL:
    """Parse ``url``; PostgreSQL URLs are pinned to the psycopg 3 driver."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_sqlite_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or str(url.database).startswith("file::memory:")


def make_engine(url: URL) -> Engine:
    """An engine for ``url``; on SQLite: WAL, foreign keys, busy timeout, explicit BEGIN."""
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)

    kwargs: dict[str, Any] = {}
    if _is_sqlite_memory(url):
        kwargs["poolclass"] = StaticPool
        kwargs["connect_args"] = {"check_same_thread": False}
    elif url.database:
        Path(url.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from the sqlite3 module (it skips it for SELECT/DDL): we emit it below.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
            cursor.execute("PRAGMA foreign_keys = ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writers take the write lock up front (BEGIN IMMEDIATE) so the busy timeout applies
        # instead of failing on a read->write lock upgrade; readers use a plain deferred BEGIN.
        # Straight to the driver: one statement per transaction, not worth the engine's
        # execution path (events, result set-up: half the cost of a one-row write).
        flavour = conn.get_execution_options().get(_BEGIN_OPTION, "")
        driver = conn.connection.driver_connection
        assert driver is not None, "a begun connection has its driver connection"
        driver.execute(_BEGIN_SQL[flavour])

    return engine


def _ny_day_bounds(day: date) -> tuple[datetime, datetime]:
    """[start, end) in UTC of the America/New_York calendar day ``day`` (DST aware)."""
    start = datetime.combine(day, time(0), tzinfo=NEW_YORK)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=NEW_YORK)
    return start.astimezone(UTC), end.astimezone(UTC)


def _on_day(column: Any, day: date) -> ColumnElement[bool]:
    start, end = _ny_day_bounds(day)
    condition: ColumnElement[bool] = (column >= start) & (column < end)
    return condition


# The hot reads' statements are built once per shape (which filters apply), their values bound
# per call: building and keying a statement costs about as much as running it on SQLite.
def _on_bound_day(column: Any) -> ColumnElement[bool]:
    """``_on_day`` with the day's bounds as parameters (``_day_params``)."""
    condition: ColumnElement[bool] = (column >= bindparam("_day_from")) & (
        column < bindparam("_day_to")
    )
    return condition


def _day_params(day: date | None) -> dict[str, datetime]:
    if day is None:
        return {}
    start, end = _ny_day_bounds(day)
    return {"_day_from": start, "_day_to": end}


def _system_params(system: SystemName | None) -> dict[str, SystemName]:
    return {} if system is None else {"_system": SystemName(system)}


@functools.lru_cache(maxsize=64)
def _listing_statement(
    record: type[Base], order: tuple[str, ...], day: str | None, system: bool, within: str | None
) -> Any:
    """SELECT of ``record`` by ``order``, of the bound day (``day``: its time column, bounds from
    ``_day_params``), of the bound ``_system``, with column ``within`` in the bound ``_in``."""
    columns = cast(Table, record.__table__).c
    stmt = select(record).order_by(*(columns[c] for c in order))
    if day is not None:
        stmt = stmt.where(_on_bound_day(columns[day]))
    if system:
        stmt = stmt.where(columns["system"] == bindparam("_system"))
    if within is not None:
        stmt = stmt.where(columns[within].in_(bindparam("_in", expanding=True)))
    return stmt


_SELECT_INTENT = select(IntentRecord).where(IntentRecord.client_order_id == bindparam("_cid"))
_SELECT_POSITION = select(PositionRecord).where(PositionRecord.position_id == bindparam("_pid"))
_LOCK_POSITION = _SELECT_POSITION.with_for_update()
_UPDATE_POSITION = update(PositionRecord).where(PositionRecord.position_id == bindparam("_pid"))


def _dialect_insert(dialect: str, record: type[Base]) -> Any:
    """The dialect's INSERT of ``record``'s table (PostgreSQL or SQLite: ON CONFLICT clauses)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(cast(Table, record.__table__))


@functools.lru_cache(maxsize=64)
def _insert_ignore_statement(dialect: str, record: type[Base]) -> Any:
    """``TradeStore._insert_ignore``'s statement for one table (no values)."""
    stmt = _dialect_insert(dialect, record)
    return stmt.on_conflict_do_nothing().returning(*stmt.table.primary_key.columns)


@functools.lru_cache(maxsize=64)
def _upsert_statement(
    dialect: str,
    record: type[Base],
    columns: tuple[str, ...],
    keys: tuple[str, ...],
    newer: str | None,
) -> Any:
    """``TradeStore._upsert``'s statement for one table and column set (no values)."""
    stmt = _dialect_insert(dialect, record)
    table = stmt.table
    where = None if newer is None else table.c[newer] <= stmt.excluded[newer]
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={k: stmt.excluded[k] for k in columns if k not in keys},
        where=where,
    )


_INSERT_PNL_MARK = insert(PnlMarkRecord)
_INSERT_ORDER_EVENT = insert(OrderEventRecord)
_INSERT_RISK_EVENT = insert(RiskEventRecord)
# the order path's intent updates, built once: the SET columns are the parameters' keys
_UPDATE_INTENT = update(IntentRecord).where(IntentRecord.client_order_id == bindparam("_cid"))
_RELEASE_INTENT = _UPDATE_INTENT.where(IntentRecord.claimed_by == bindparam("_owner"))

# --------------------------------------------------------------------------------------------
# Read memo for an exclusive ledger
# --------------------------------------------------------------------------------------------

_P = ParamSpec("_P")
_R = TypeVar("_R")
# the statements that change no table (reads, transaction control, connection set-up)
_NO_WRITE = re.compile(
    r"^\s*(?:SELECT|BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE|PRAGMA|SHOW|SET)\b", re.I
)
_WRITE_TABLE = re.compile(
    r"^\s*(?:INSERT\s+(?:OR\s+\w+\s+)?INTO|UPDATE|DELETE\s+FROM|REPLACE\s+INTO)\s+\"?(\w+)", re.I
)


def _frozen(value: Any) -> Any:
    """A hashable stand-in for a read's argument (iterables of kinds, statuses, ids)."""
    if isinstance(value, (str, bytes)) or value is None:
        return value
    if isinstance(value, (set, frozenset)):
        return frozenset(value)
    if isinstance(value, (list, tuple)) or (
        isinstance(value, Iterable) and not isinstance(value, Mapping)
    ):
        return tuple(value)
    return value


def _copy(value: Any) -> Any:
    """The memo hands out its own list/dict copies (the rows are frozen)."""
    if isinstance(value, list):
        return list(value)
    if isinstance(value, dict):
        return dict(value)
    return value


class _ReadMemo:
    """Results of the hot reads, kept until a statement writes a table they read.

    Only for a ledger this process alone writes (``TradeStore(url, exclusive=True)``: a
    backtest's own ledger). Every statement the store's engine sends is seen
    (``before_cursor_execute``): an INSERT/UPDATE/DELETE drops the reads of its table, at the
    statement and again at COMMIT; any other statement that is not a read (DDL, a migration)
    drops everything. A read that raced a write is not kept (generation check).
    """

    def __init__(self) -> None:
        self._values: dict[tuple[Any, ...], Any] = {}
        self._by_table: dict[str, set[tuple[Any, ...]]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[Any, ...]) -> tuple[bool, Any]:
        with self._lock:
            if key in self._values:
                self.hits += 1
                return True, _copy(self._values[key])
            self.misses += 1
            return False, None

    def put(
        self, key: tuple[Any, ...], tables: frozenset[str], value: Any, generation: int
    ) -> None:
        with self._lock:
            if generation != self.generation:
                return  # a write happened while reading: do not keep a possibly stale result
            self._values[key] = _copy(value)
            for table in tables:
                self._by_table.setdefault(table, set()).add(key)

    def invalidate(self, table: str | None) -> None:
        """Drop the reads of ``table`` (None: every read)."""
        with self._lock:
            self.generation += 1
            if table is None:
                self._values.clear()
                self._by_table.clear()
                return
            for key in self._by_table.pop(table, ()):
                self._values.pop(key, None)

    def seen(self, conn: Connection, statement: str) -> None:
        if _NO_WRITE.match(statement):
            return
        match = _WRITE_TABLE.match(statement)
        table = match.group(1).lower() if match else None
        self.invalidate(table)
        conn.info.setdefault("dte_written", set()).add(table)

    def committed(self, conn: Connection) -> None:
        for table in conn.info.pop("dte_written", ()):
            self.invalidate(table)

    def attach(self, engine: Engine) -> None:
        @event.listens_for(engine, "before_cursor_execute")
        def _before(conn: Connection, _cursor: Any, statement: str, *_: Any) -> None:
            self.seen(conn, statement)

        @event.listens_for(engine, "commit")
        def _commit(conn: Connection) -> None:
            self.committed(conn)

        @event.listens_for(engine, "rollback")
        def _rollback(conn: Connection) -> None:
            conn.info.pop("dte_written", None)


def _memoized(*tables: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Serve a read method from the store's ``_ReadMemo`` (when it has one) until one of
    ``tables`` is written."""
    watched = frozenset(tables)

    def wrap(method: Callable[_P, _R]) -> Callable[_P, _R]:
        name = method.__name__

        @functools.wraps(method)
        def read(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            memo: _ReadMemo | None = getattr(args[0], "_memo", None)
            if memo is None:
                return method(*args, **kwargs)
            positional = tuple(_frozen(a) for a in args[1:])
            named = {k: _frozen(v) for k, v in kwargs.items()}
            key = (name, positional, tuple(sorted(named.items())))
            found, value = memo.get(key)
            if found:
                return cast(_R, value)
            # held-back P&L marks are written first: a write during the read voids its result
            args[0]._flush_marks()  # type: ignore[attr-defined]
            generation = memo.generation
            # an iterator argument was consumed by the key: the read gets its values instead
            call_args = [
                f if isinstance(a, Iterator) else a
                for a, f in zip(args[1:], positional, strict=True)
            ]
            call_kwargs = {k: named[k] if isinstance(v, Iterator) else v for k, v in kwargs.items()}
            result = method(args[0], *call_args, **call_kwargs)  # type: ignore[arg-type]
            memo.put(key, watched, result, generation)
            return result

        return read

    return wrap


# --------------------------------------------------------------------------------------------
# Repository
# --------------------------------------------------------------------------------------------


class TradeStore:
    """Repository over the trade database; every method runs in its own short transaction."""

    def __init__(self, url: str, exclusive: bool = False) -> None:
        """``exclusive``: this process is the ledger's only writer (a backtest's own ledger), so
        the hot reads are served from memory until this store writes their table
        (``_ReadMemo``), and the P&L marks are held back and written in one batch before the
        store's next statement (a read of them included) or ``dispose``. Never for the trading
        ledger: flows, the CLI and the UI's approvals write it from other processes, and a live
        mark must be on disk when it is taken."""
        self.url = normalize_url(url)
        self._engine = make_engine(self.url)
        self._memo: _ReadMemo | None = None
        self._pending_marks: list[dict[str, Any]] | None = [] if exclusive else None
        self._marks_lock = threading.Lock()
        if exclusive:
            self._memo = _ReadMemo()
            self._memo.attach(self._engine)
        writer = self._engine
        if self.url.get_backend_name() == "sqlite":
            writer = self._engine.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        self._writer_engine = writer
        self._session = sessionmaker(bind=writer, expire_on_commit=False)
        self._read_session = sessionmaker(bind=self._engine, expire_on_commit=False)
        self._migrate_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TradeStore({self.url.render_as_string(hide_password=True)!r})"

    @property
    def engine(self) -> Engine:
        self._flush_marks()
        return self._engine

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    def _flush_marks(self) -> None:
        """Write the P&L marks an exclusive store holds back, in one transaction."""
        if self._pending_marks:
            with self._marks_lock:
                pending, self._pending_marks = self._pending_marks, []
            with self._writer_engine.begin() as conn:
                conn.execute(_INSERT_PNL_MARK, pending)

    @contextmanager
    def _write(self) -> Iterator[Session]:
        self._flush_marks()
        with self._session.begin() as session:
            yield session

    @contextmanager
    def _read(self) -> Iterator[Session]:
        self._flush_marks()
        with self._read_session.begin() as session:
            yield session

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction on a plain connection (SQLite: BEGIN IMMEDIATE, as ``_write``),
        for single-statement writes that need no ORM unit of work."""
        self._flush_marks()
        with self._writer_engine.begin() as conn:
            yield conn

    @contextmanager
    def _rows(self) -> Iterator[Connection]:
        """A read on a plain connection: rows, not ORM objects (the hot reads of the loop; about
        2.5x cheaper than an ORM session for the few rows they return). Same transaction rules
        as ``_read``; the column types (enums, money, UTC times) convert the values alike."""
        self._flush_marks()
        with self._engine.connect() as conn:
            yield conn

    # -- schema ---------------------------------------------------------------------------

    def alembic_config(self) -> Config:
        """The Alembic ``Config`` for this store (script_location = the migrations package)."""
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        cfg.set_main_option(
            "sqlalchemy.url", self.url.render_as_string(hide_password=False).replace("%", "%%")
        )
        return cfg

    def schema_revision(self) -> str | None:
        """The Alembic revision the database is at (None before the first migrate)."""
        from alembic.runtime.migration import MigrationContext

        with self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def migrate(self) -> None:
        """``alembic upgrade head`` on this database; a no-op (one query) when up to date."""
        from alembic import command
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        with self._migrate_lock:
            cfg = self.alembic_config()
            head = ScriptDirectory.from_config(cfg).get_current_head()
            with self._writer_engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_PG_MIGRATION_LOCK})")
                if MigrationContext.configure(conn).get_current_revision() == head:
                    return
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")

    def dispose(self) -> None:
        self._flush_marks()
        self._engine.dispose()

    def table_row_counts(self) -> dict[str, int]:
        """Row count of every table of the schema, by table name."""
        with self._read() as session:
            return {
                table.name: int(session.scalar(select(func.count()).select_from(table)) or 0)
                for table in sorted(Base.metadata.tables.values(), key=lambda t: t.name)
            }

    def _insert_ignore(
        self, session: Session | Connection, record: type[Base], values: dict[str, Any]
    ) -> bool:
        """INSERT ... ON CONFLICT DO NOTHING; True if the row was inserted (the statement is
        built once per table, ``values`` are its parameters)."""
        stmt = _insert_ignore_statement(self.dialect_name, record)
        return session.execute(stmt, values).first() is not None

    def _upsert(
        self,
        record: type[Base],
        values: Mapping[str, Any],
        keys: Sequence[str],
        newer: str | None = None,
    ) -> Any:
        """INSERT ... ON CONFLICT (``keys``) DO UPDATE every other column; with ``newer`` (a
        timestamp column) an existing row is replaced only by one at least as recent. The
        statement has no values: execute it with ``values`` as its parameters (built once per
        shape, so the hot writes skip building and keying a new statement each time)."""
        return _upsert_statement(self.dialect_name, record, tuple(values), tuple(keys), newer)

    # -- signals ----------------------------------------------------------------------------

    def record_signal(self, signal: Signal) -> bool:
        """Store ``signal``; False if its signal_id is already stored (nothing changes)."""
        with self._tx() as conn:
            return self._insert_ignore(
                conn,
                SignalRecord,
                {
                    "signal_id": signal.signal_id,
                    "system": signal.system,
                    "kind": signal.kind,
                    "underlying": signal.underlying,
                    "direction": signal.direction,
                    "confidence": float(signal.confidence),
                    "at": signal.at,
                    "reason": signal.reason,
                },
            )

    @_memoized("signals")
    def signals(self, day: date | None = None, system: SystemName | None = None) -> list[Signal]:
        stmt = _listing_statement(
            SignalRecord,
            ("at", "signal_id"),
            None if day is None else "at",
            system is not None,
            None,
        )
        params = {**_day_params(day), **_system_params(system)}
        with self._rows() as conn:
            return [
                Signal(
                    signal_id=row.signal_id,
                    system=row.system,
                    kind=row.kind,
                    underlying=row.underlying,
                    direction=row.direction,
                    confidence=row.confidence,
                    at=row.at,
                    reason=row.reason,
                )
                for row in conn.execute(stmt, params)
            ]

    # -- intents ----------------------------------------------------------------------------

    def save_intent(self, intent: OrderIntent, claim: tuple[str, datetime] | None = None) -> bool:
        """Persist ``intent`` as PENDING; False (and no change) if its client_order_id exists.

        ``claim`` (owner, until): the new row is claimed by ``owner`` in the same statement (see
        ``claim_intent``), so the run that stores an intent holds it from the first instant.
        """
        require_aware(intent.created_at, "OrderIntent.created_at")
        owner, until = claim if claim is not None else (None, None)
        if until is not None:
            require_aware(until, "claim until")
        with self._tx() as session:
            return self._insert_ignore(
                session,
                IntentRecord,
                {
                    "client_order_id": intent.client_order_id,
                    "system": intent.system,
                    "signal_id": intent.signal_id,
                    "action": intent.action,
                    "structure_kind": intent.spread.kind,
                    "spread": spread_to_json(intent.spread),
                    "quantity": intent.quantity,
                    "limit_price": intent.limit_price,
                    "worst_price": intent.worst_price,
                    "max_loss": intent.max_loss,
                    "created_at": intent.created_at,
                    "position_id": intent.position_id,
                    "reason": intent.reason,
                    "status": IntentStatus.PENDING,
                    "status_reason": "",
                    "broker_order_id": None,
                    "updated_at": intent.created_at,
                    "claimed_by": owner,
                    "claimed_until": until,
                },
            )

    @staticmethod
    def _stored_intent(row: IntentRecord | Row[Any]) -> StoredIntent:
        intent = OrderIntent(
            client_order_id=row.client_order_id,
            system=row.system,
            signal_id=row.signal_id,
            spread=spread_from_json(row.spread),
            action=row.action,
            quantity=row.quantity,
            limit_price=row.limit_price,
            worst_price=row.worst_price,
            max_loss=row.max_loss,
            created_at=row.created_at,
            position_id=row.position_id,
            reason=row.reason,
        )
        return StoredIntent(intent, row.status, row.status_reason, row.broker_order_id)

    @_memoized("intents")
    def intent_by_client_id(self, client_order_id: str) -> StoredIntent | None:
        with self._rows() as conn:
            row = conn.execute(_SELECT_INTENT, {"_cid": client_order_id}).first()
            return None if row is None else self._stored_intent(row)

    def claim_intent(
        self, client_order_id: str, owner: str, now: datetime, until: datetime
    ) -> str | None:
        """Take (or extend) the right to work the intent's order until ``until``.

        Succeeds (returns None) when nobody holds it, ``owner`` already does, or the holder's
        claim ran out before ``now``; otherwise returns the holder and changes nothing. One
        conditional UPDATE: two runs racing for an intent cannot both win. Unknown id -> KeyError.
        """
        require_aware(now, "now")
        require_aware(until, "until")
        free = (
            IntentRecord.claimed_by.is_(None)
            | (IntentRecord.claimed_by == owner)
            | (IntentRecord.claimed_until < now)
        )
        return self._claim(client_order_id, owner, until, free)

    def take_over_intent(
        self, client_order_id: str, owner: str, holder: str, until: datetime
    ) -> str | None:
        """Take the intent from ``holder`` (known to be gone, e.g. a dead process) if it still
        holds it; returns None on success, else the current holder."""
        require_aware(until, "until")
        return self._claim(client_order_id, owner, until, IntentRecord.claimed_by == holder)

    def _claim(
        self, client_order_id: str, owner: str, until: datetime, free: ColumnElement[bool]
    ) -> str | None:
        with self._tx() as session:
            result = session.execute(
                update(IntentRecord)
                .where(IntentRecord.client_order_id == client_order_id)
                .where(free)
                .values(claimed_by=owner, claimed_until=until)
            )
            if cast(CursorResult[Any], result).rowcount == 1:
                return None
            row = session.execute(
                select(IntentRecord.claimed_by).where(
                    IntentRecord.client_order_id == client_order_id
                )
            ).first()
            if row is None:
                raise KeyError(f"unknown intent {client_order_id!r}")
            return row.claimed_by or ""

    def release_intent(self, client_order_id: str, owner: str) -> None:
        """Give the intent up if ``owner`` holds it (no-op otherwise)."""
        with self._tx() as conn:
            conn.execute(
                _RELEASE_INTENT,
                {
                    "_cid": client_order_id,
                    "_owner": owner,
                    "claimed_by": None,
                    "claimed_until": None,
                },
            )

    def set_intent_status(
        self,
        client_order_id: str,
        status: IntentStatus,
        reason: str = "",
        broker_order_id: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Move an intent to ``status``; unknown id -> KeyError.

        ``broker_order_id`` is only written when given (a later call without it keeps it).
        ``at`` (default: now) is stored as ``updated_at``.
        """
        stamp = datetime.now(UTC) if at is None else at
        require_aware(stamp, "at")
        values: dict[str, Any] = {
            "_cid": client_order_id,
            "status": IntentStatus(status),
            "status_reason": reason,
            "updated_at": stamp,
        }
        if broker_order_id is not None:
            values["broker_order_id"] = broker_order_id
        with self._tx() as conn:
            result = conn.execute(_UPDATE_INTENT, values)
            if cast(CursorResult[Any], result).rowcount != 1:
                raise KeyError(f"unknown intent {client_order_id!r}")

    @_memoized("intents")
    def position_intents(self, position_id: str) -> list[StoredIntent]:
        """Every intent that closes (part of) ``position_id``, any day, oldest first."""
        stmt = (
            select(IntentRecord)
            .where(IntentRecord.position_id == position_id)
            .order_by(IntentRecord.created_at, IntentRecord.client_order_id)
        )
        with self._rows() as conn:
            return [self._stored_intent(row) for row in conn.execute(stmt)]

    @_memoized("intents")
    def intents(
        self,
        day: date | None = None,
        system: SystemName | None = None,
        statuses: Iterable[IntentStatus] | None = None,
    ) -> list[StoredIntent]:
        stmt = _listing_statement(
            IntentRecord,
            ("created_at", "client_order_id"),
            None if day is None else "created_at",
            system is not None,
            None if statuses is None else "status",
        )
        params: dict[str, Any] = {**_day_params(day), **_system_params(system)}
        if statuses is not None:
            params["_in"] = [IntentStatus(s) for s in statuses]
        with self._rows() as conn:
            return [self._stored_intent(row) for row in conn.execute(stmt, params)]

    # -- orders -----------------------------------------------------------------------------

    def record_order(
        self, order: BrokerOrder, system: SystemName, at: datetime, note: str = ""
    ) -> None:
        """Upsert the broker order's latest state and append an ``order_events`` row.

        The order's intent must be stored (``KeyError`` otherwise).
        """
        require_aware(at, "at")
        values = {
            "broker_order_id": order.broker_order_id,
            "client_order_id": order.client_order_id,
            "system": SystemName(system),
            "side": order.side,
            "quantity": order.quantity,
            "limit_price": order.limit_price,
            "status": order.status,
            "filled_quantity": order.filled_quantity,
            "avg_fill_price": order.avg_fill_price,
            "reason": order.reason,
            "updated_at": at,
        }
        event = {
            "broker_order_id": order.broker_order_id,
            "at": at,
            "status": order.status,
            "limit_price": order.limit_price,
            "filled_quantity": order.filled_quantity,
            "note": note,
        }
        try:
            with self._tx() as session:  # one round trip each; the FK checks the intent
                session.execute(self._upsert(OrderRecord, values, ["broker_order_id"]), values)
                session.execute(_INSERT_ORDER_EVENT, event)
        except IntegrityError:
            if self.intent_by_client_id(order.client_order_id) is None:
                raise KeyError(
                    f"order {order.broker_order_id!r} refers to unknown intent "
                    f"{order.client_order_id!r}"
                ) from None
            raise

    def orders(
        self, day: date | None = None, system: SystemName | None = None
    ) -> list[BrokerOrder]:
        """Broker orders (latest state), ``day`` filtering on their last update."""
        stmt = (
            select(OrderRecord, IntentRecord.spread)
            .join(IntentRecord, IntentRecord.client_order_id == OrderRecord.client_order_id)
            .order_by(OrderRecord.updated_at, OrderRecord.broker_order_id)
        )
        if day is not None:
            stmt = stmt.where(_on_day(OrderRecord.updated_at, day))
        if system is not None:
            stmt = stmt.where(OrderRecord.system == system)
        with self._read() as session:
            return [
                BrokerOrder(
                    broker_order_id=row.broker_order_id,
                    client_order_id=row.client_order_id,
                    side=row.side,
                    spread=spread_from_json(spread),
                    quantity=row.quantity,
                    limit_price=row.limit_price,
                    status=row.status,
                    filled_quantity=row.filled_quantity,
                    avg_fill_price=row.avg_fill_price,
                    reason=row.reason,
                )
                for row, spread in session.execute(stmt)
            ]

    def order_events(self, broker_order_id: str) -> list[OrderEvent]:
        """The append-only history of one broker order, oldest first."""
        stmt = (
            select(OrderEventRecord)
            .where(OrderEventRecord.broker_order_id == broker_order_id)
            .order_by(OrderEventRecord.at, OrderEventRecord.id)
        )
        with self._read() as session:
            return [
                OrderEvent(
                    broker_order_id=row.broker_order_id,
                    at=row.at,
                    status=row.status,
                    limit_price=row.limit_price,
                    filled_quantity=row.filled_quantity,
                    note=row.note,
                )
                for row in session.scalars(stmt)
            ]

    # -- fills ------------------------------------------------------------------------------

    def record_fill(self, fill: Fill, system: SystemName) -> bool:
        """Store an execution; False if its exec_id is already stored (nothing changes)."""
        require_aware(fill.at, "Fill.at")
        with self._tx() as session:
            return self._insert_ignore(
                session,
                FillRecord,
                {
                    "exec_id": fill.exec_id,
                    "client_order_id": fill.client_order_id,
                    "broker_order_id": fill.broker_order_id,
                    "system": SystemName(system),
                    "quantity": fill.quantity,
                    "price": fill.price,
                    "commission": fill.commission,
                    "at": fill.at,
                },
            )

    def fills(
        self,
        day: date | None = None,
        client_order_id: str | None = None,
        system: SystemName | None = None,
    ) -> list[Fill]:
        stmt = select(FillRecord).order_by(FillRecord.at, FillRecord.exec_id)
        if day is not None:
            stmt = stmt.where(_on_day(FillRecord.at, day))
        if system is not None:
            stmt = stmt.where(FillRecord.system == system)
        if client_order_id is not None:
            stmt = stmt.where(FillRecord.client_order_id == client_order_id)
        with self._read() as session:
            return [
                Fill(
                    client_order_id=row.client_order_id,
                    broker_order_id=row.broker_order_id,
                    exec_id=row.exec_id,
                    quantity=row.quantity,
                    price=row.price,
                    commission=row.commission,
                    at=row.at,
                )
                for row in session.scalars(stmt)
            ]

    # -- positions --------------------------------------------------------------------------

    @staticmethod
    def _position(row: PositionRecord | Row[Any]) -> Position:
        return Position(
            position_id=row.position_id,
            system=row.system,
            signal_kind=row.signal_kind,
            spread=spread_from_json(row.spread),
            quantity=row.quantity,
            entry_price=row.entry_price,
            opened_at=row.opened_at,
            max_loss=row.max_loss,
            entry_commission=row.entry_commission,
            status=row.status,
            closed_at=row.closed_at,
            exit_price=row.exit_price,
            exit_commission=row.exit_commission,
            closed_fraction_tiers=row.closed_fraction_tiers,
        )

    @staticmethod
    def _position_values(position: Position) -> dict[str, Any]:
        return {
            "position_id": position.position_id,
            "system": position.system,
            "signal_kind": position.signal_kind,
            "structure_kind": position.spread.kind,
            "spread": spread_to_json(position.spread),
            "underlying": position.spread.underlying,
            "expiry": position.spread.expiry,
            "quantity": position.quantity,
            "entry_price": position.entry_price,
            "entry_commission": position.entry_commission,
            "max_loss": position.max_loss,
            "opened_at": position.opened_at,
            "status": position.status,
            "closed_at": position.closed_at,
            "exit_price": position.exit_price,
            "exit_commission": position.exit_commission,
            "closed_fraction_tiers": position.closed_fraction_tiers,
        }

    def open_position(self, position: Position, open_client_order_id: str) -> None:
        """Store a new position. Idempotent for the same (position_id, open_client_order_id);
        a different opening order for an existing position_id raises ``ValueError``."""
        require_aware(position.opened_at, "Position.opened_at")
        values = self._position_values(position)
        values.update(open_client_order_id=open_client_order_id, close_client_order_id=None)
        with self._tx() as conn:
            if self._insert_ignore(conn, PositionRecord, values):
                return
            existing = conn.execute(_SELECT_POSITION, {"_pid": position.position_id}).first()
            if existing is not None and existing.open_client_order_id != open_client_order_id:
                raise ValueError(
                    f"position {position.position_id!r} already opened by "
                    f"{existing.open_client_order_id!r}"
                )

    def close_position(
        self,
        position_id: str,
        exit_price: Decimal,
        exit_commission: Decimal,
        closed_at: datetime,
        close_client_order_id: str,
    ) -> Position:
        """Close the whole position; returns it CLOSED (``realized()`` is its P&L).

        Unknown id -> KeyError. Repeating the call with the same closing order returns the
        stored position unchanged; closing an already closed position otherwise -> ValueError.
        """
        require_aware(closed_at, "closed_at")
        with self._tx() as conn:
            row = conn.execute(_LOCK_POSITION, {"_pid": position_id}).first()
            if row is None:
                raise KeyError(f"unknown position {position_id!r}")
            if row.status is PositionStatus.CLOSED:
                if row.close_client_order_id == close_client_order_id:
                    return self._position(row)
                raise ValueError(f"position {position_id!r} is already closed")
            closed = replace(
                self._position(row),
                status=PositionStatus.CLOSED,
                exit_price=_money(exit_price),
                exit_commission=_money(exit_commission),
                closed_at=closed_at,
            )
            conn.execute(
                _UPDATE_POSITION,
                {
                    "_pid": position_id,
                    "status": closed.status,
                    "exit_price": closed.exit_price,
                    "exit_commission": closed.exit_commission,
                    "closed_at": closed_at,
                    "close_client_order_id": close_client_order_id,
                },
            )
            return closed

    def reduce_position(
        self,
        position_id: str,
        quantity_closed: int,
        exit_price: Decimal,
        exit_commission: Decimal,
        at: datetime,
        close_client_order_id: str,
        tiers_done: int,
    ) -> Position:
        """Partially close a position; returns the CLOSED child holding the closed quantity.

        The child row is ``f"{position_id}-p{tiers_done}"`` with ``quantity_closed`` units; the
        parent keeps the rest (still OPEN, ``closed_fraction_tiers = tiers_done``). Entry
        commission and max loss are split pro rata (the parent keeps the rounding remainder).
        ``quantity_closed`` must be below the open quantity (use ``close_position`` for all).
        Repeating the call with the same child id and closing order returns the stored child.
        """
        require_aware(at, "at")
        child_id = f"{position_id}-p{tiers_done}"
        with self._write() as session:
            parent = session.get(PositionRecord, position_id, with_for_update=True)
            if parent is None:
                raise KeyError(f"unknown position {position_id!r}")
            existing = session.get(PositionRecord, child_id)
            if existing is not None:
                if existing.close_client_order_id == close_client_order_id:
                    return self._position(existing)
                raise ValueError(f"partial close {child_id!r} already recorded")
            if parent.status is not PositionStatus.OPEN:
                raise ValueError(f"position {position_id!r} is not open")
            if not 1 <= quantity_closed < parent.quantity:
                raise ValueError(
                    f"quantity_closed must be in [1, {parent.quantity - 1}], got {quantity_closed}"
                )
            fraction = Decimal(quantity_closed) / Decimal(parent.quantity)
            child_commission = _money(parent.entry_commission * fraction)
            child_max_loss = _money(parent.max_loss * fraction)
            child = replace(
                self._position(parent),
                position_id=child_id,
                quantity=quantity_closed,
                entry_commission=child_commission,
                max_loss=child_max_loss,
                status=PositionStatus.CLOSED,
                closed_at=at,
                exit_price=_money(exit_price),
                exit_commission=_money(exit_commission),
                closed_fraction_tiers=tiers_done,
            )
            values = self._position_values(child)
            values.update(
                open_client_order_id=parent.open_client_order_id,
                close_client_order_id=close_client_order_id,
            )
            session.add(PositionRecord(**values))
            parent.quantity -= quantity_closed
            parent.entry_commission -= child_commission
            parent.max_loss -= child_max_loss
            parent.closed_fraction_tiers = tiers_done
            session.flush()
            return child

    @_memoized("positions")
    def position(self, position_id: str) -> Position | None:
        with self._rows() as conn:
            row = conn.execute(_SELECT_POSITION, {"_pid": position_id}).first()
            return None if row is None else self._position(row)

    @_memoized("positions")
    def open_positions(self, system: SystemName | None = None) -> list[Position]:
        stmt = _listing_statement(
            PositionRecord, ("opened_at", "position_id"), None, system is not None, "status"
        )
        params = {**_system_params(system), "_in": [PositionStatus.OPEN]}
        with self._rows() as conn:
            return [self._position(row) for row in conn.execute(stmt, params)]

    @_memoized("positions")
    def positions_open_at(self, at: datetime, system: SystemName | None = None) -> list[Position]:
        """Rows open at instant ``at``: opened at or before it, not closed by then. A partly
        closed position shows as its parent row plus the partial-close rows closed after ``at``
        (together: the quantity open at ``at``)."""
        require_aware(at, "at")
        stmt = (
            select(PositionRecord)
            .where(PositionRecord.opened_at <= at)
            .where(PositionRecord.closed_at.is_(None) | (PositionRecord.closed_at > at))
            .order_by(PositionRecord.opened_at, PositionRecord.position_id)
        )
        if system is not None:
            stmt = stmt.where(PositionRecord.system == system)
        with self._rows() as conn:
            return [self._position(row) for row in conn.execute(stmt)]

    @_memoized("positions")
    def positions(
        self, day: date | None = None, system: SystemName | None = None
    ) -> list[Position]:
        """Positions opened or closed on the New York ``day`` (all positions without a day)."""
        stmt = select(PositionRecord).order_by(PositionRecord.opened_at, PositionRecord.position_id)
        if day is not None:
            stmt = stmt.where(
                _on_day(PositionRecord.opened_at, day) | _on_day(PositionRecord.closed_at, day)
            )
        if system is not None:
            stmt = stmt.where(PositionRecord.system == system)
        with self._rows() as conn:
            return [self._position(row) for row in conn.execute(stmt)]

    @_memoized("positions")
    def positions_closed_on(self, day: date, system: SystemName | None = None) -> list[Position]:
        """Rows closed on the New York ``day`` (whole closes and partial-close rows), by close."""
        # found by closed_at alone, the status checked on the rows: with a status condition,
        # SQLite's planner (no statistics) takes the status index, every closed row of the
        # ledger, over the day's range
        stmt = _listing_statement(
            PositionRecord, ("closed_at", "position_id"), "closed_at", system is not None, None
        )
        params = {**_day_params(day), **_system_params(system)}
        with self._rows() as conn:
            return [
                self._position(row)
                for row in conn.execute(stmt, params)
                if row.status is PositionStatus.CLOSED
            ]

    def record_peak(self, position_id: str, pnl_fraction: Decimal) -> Decimal:
        """Raise the position's peak P&L fraction to ``pnl_fraction`` if higher; return the peak.

        The peak only ever rises (a lower value leaves it as it is), so a repeated or late
        management check cannot lower the trailing stop's reference. Unknown id -> KeyError.
        """
        with self._write() as session:
            row = session.get(PositionRecord, position_id, with_for_update=True)
            if row is None:
                raise KeyError(f"unknown position {position_id!r}")
            value = float(pnl_fraction)
            if row.peak_pnl_fraction is None or value > row.peak_pnl_fraction:
                row.peak_pnl_fraction = value
            return _fraction(row.peak_pnl_fraction)

    def peaks(self, position_ids: Iterable[str] | None = None) -> dict[str, Decimal]:
        """Recorded peak P&L fractions (position_id -> peak) of ``position_ids`` (all if None);
        positions without a recorded peak are left out."""
        stmt = select(PositionRecord.position_id, PositionRecord.peak_pnl_fraction).where(
            PositionRecord.peak_pnl_fraction.is_not(None)
        )
        if position_ids is not None:
            stmt = stmt.where(PositionRecord.position_id.in_(list(position_ids)))
        with self._read() as session:
            return {pid: _fraction(peak) for pid, peak in session.execute(stmt) if peak is not None}

    # -- IV history (Mag7) ------------------------------------------------------------------

    def record_iv(self, symbol: str, day: date, atm_iv: float, source: str, at: datetime) -> None:
        """Store (or replace) ``symbol``'s 30-day ATM IV of ``day``."""
        require_aware(at, "at")
        _check_iv(atm_iv)
        values = {
            "symbol": symbol,
            "day": day,
            "atm_iv": float(atm_iv),
            "source": source,
            "recorded_at": at,
        }
        with self._tx() as conn:
            conn.execute(self._upsert(IvHistoryRecord, values, ["symbol", "day"]), values)

    def backfill_iv(
        self,
        symbol: str,
        values: Iterable[tuple[date, float]],
        source: str,
        at: datetime,
    ) -> int:
        """Insert the (day, atm_iv) values not stored yet (stored days are kept); the count added."""
        require_aware(at, "at")
        added = 0
        with self._write() as session:
            for day, iv in values:
                _check_iv(iv)
                added += self._insert_ignore(
                    session,
                    IvHistoryRecord,
                    {
                        "symbol": symbol,
                        "day": day,
                        "atm_iv": float(iv),
                        "source": source,
                        "recorded_at": at,
                    },
                )
        return added

    # -- close marks (carried positions' daily P&L baseline) ---------------------------------

    def record_position_marks(self, day: date, at: datetime, marks: Mapping[str, Decimal]) -> int:
        """Store each opened position's net mid of ``day`` (position id -> value), replacing a
        mark of the same day taken at or before ``at``; returns the number written."""
        require_aware(at, "at")
        if not marks:
            return 0
        rows = [
            {"position_id": position_id, "day": day, "value": _money(value), "at": at}
            for position_id, value in marks.items()
        ]
        upsert = self._upsert(PositionMarkRecord, rows[0], ["position_id", "day"], newer="at")
        with self._tx() as conn:
            conn.execute(upsert, rows)
        return len(rows)

    @_memoized("position_marks")
    def baseline_marks(self, position_ids: Iterable[str], day: date) -> dict[str, Decimal]:
        """The latest recorded mark before session ``day`` of each position (id -> value);
        positions never marked before ``day`` are left out."""
        wanted = sorted(set(position_ids))
        if not wanted:
            return {}
        stmt = (
            select(PositionMarkRecord)
            .where(PositionMarkRecord.position_id.in_(wanted))
            .where(PositionMarkRecord.day < day)
            .order_by(PositionMarkRecord.day, PositionMarkRecord.at)
        )
        with self._rows() as conn:
            return {row.position_id: row.value for row in conn.execute(stmt)}

    def iv_history(
        self, symbol: str, before: date | None = None, limit: int | None = None
    ) -> list[IvRow]:
        """``symbol``'s stored daily IV, oldest first: days before ``before`` (all if None), the
        last ``limit`` of them when given."""
        stmt = select(IvHistoryRecord).where(IvHistoryRecord.symbol == symbol)
        if before is not None:
            stmt = stmt.where(IvHistoryRecord.day < before)
        stmt = stmt.order_by(IvHistoryRecord.day.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as session:
            rows = [
                IvRow(symbol=row.symbol, day=row.day, atm_iv=row.atm_iv, source=row.source)
                for row in session.scalars(stmt)
            ]
        return rows[::-1]

    def iv_sessions(self, symbols: Iterable[str], before: date | None = None) -> dict[str, int]:
        """How many daily IV values are stored per symbol (days before ``before``)."""
        wanted = list(symbols)
        stmt = (
            select(IvHistoryRecord.symbol, func.count())
            .where(IvHistoryRecord.symbol.in_(wanted))
            .group_by(IvHistoryRecord.symbol)
        )
        if before is not None:
            stmt = stmt.where(IvHistoryRecord.day < before)
        with self._read() as session:
            found = {str(sym): int(n) for sym, n in session.execute(stmt)}
        return {sym: found.get(sym, 0) for sym in wanted}

    # -- risk events and trading state --------------------------------------------------------

    def record_risk_event(
        self,
        kind: str,
        severity: str,
        message: str,
        at: datetime,
        system: SystemName | None = None,
    ) -> None:
        """Append a risk event (``system`` None = account-wide)."""
        require_aware(at, "at")
        if severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
        values = {
            "system": None if system is None else SystemName(system),
            "at": at,
            "kind": kind,
            "severity": severity,
            "message": message,
        }
        with self._tx() as conn:
            conn.execute(_INSERT_RISK_EVENT, values)

    @_memoized("risk_events")
    def risk_events(
        self, day: date | None = None, kinds: Iterable[str] | None = None
    ) -> list[RiskEventRow]:
        stmt = _listing_statement(
            RiskEventRecord,
            ("at", "id"),
            None if day is None else "at",
            False,
            None if kinds is None else "kind",
        )
        params: dict[str, Any] = _day_params(day)
        if kinds is not None:
            params["_in"] = list(kinds)
        with self._rows() as conn:
            return [
                RiskEventRow(
                    at=row.at,
                    system=row.system,
                    kind=row.kind,
                    severity=row.severity,
                    message=row.message,
                )
                for row in conn.execute(stmt, params)
            ]

    def set_trading_state(
        self, state: TradingState, reason: str, at: datetime, manual: bool
    ) -> None:
        """Append a trading-state row; the latest row is the current state."""
        require_aware(at, "at")
        with self._tx() as conn:
            conn.execute(
                insert(TradingStateRecord).values(
                    at=at, state=TradingState(state), manual=manual, reason=reason
                )
            )

    @_memoized("trading_state")
    def trading_state(self, at: datetime | None = None) -> TradingStateRow | None:
        """The latest trading-state row (by time, then insertion), None if never set; with
        ``at``, the latest one set at or before it (the state as of ``at``)."""
        stmt = (
            select(TradingStateRecord)
            .order_by(TradingStateRecord.at.desc(), TradingStateRecord.id.desc())
            .limit(1)
        )
        if at is not None:
            require_aware(at, "at")
            stmt = stmt.where(TradingStateRecord.at <= at)
        with self._rows() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                return None
            return TradingStateRow(state=row.state, manual=row.manual, reason=row.reason, at=row.at)

    # -- P&L --------------------------------------------------------------------------------

    def record_pnl_mark(
        self, system: SystemName, at: datetime, realized: Decimal, unrealized: Decimal
    ) -> None:
        require_aware(at, "at")
        values = {
            "system": SystemName(system),
            "at": at,
            "realized": realized,
            "unrealized": unrealized,
        }
        if self._pending_marks is not None:  # exclusive: batched before the next statement
            with self._marks_lock:
                self._pending_marks.append(values)
            return
        with self._tx() as conn:  # one a loop minute: a prebuilt statement, parameters apart
            conn.execute(_INSERT_PNL_MARK, values)

    def pnl_marks(self, day: date, system: SystemName | None = None) -> list[PnlMark]:
        stmt = (
            select(PnlMarkRecord)
            .where(_on_day(PnlMarkRecord.at, day))
            .order_by(PnlMarkRecord.at, PnlMarkRecord.id)
        )
        if system is not None:
            stmt = stmt.where(PnlMarkRecord.system == system)
        with self._read() as session:
            return [
                PnlMark(
                    system=row.system, at=row.at, realized=row.realized, unrealized=row.unrealized
                )
                for row in session.scalars(stmt)
            ]

    def last_pnl_mark(self, day: date, system: SystemName) -> PnlMark | None:
        """``system``'s latest P&L mark of ``day`` (the last of ``pnl_marks``), None if none."""
        stmt = (
            select(PnlMarkRecord)
            .where(_on_day(PnlMarkRecord.at, day), PnlMarkRecord.system == system)
            .order_by(PnlMarkRecord.at.desc(), PnlMarkRecord.id.desc())
            .limit(1)
        )
        with self._read() as session:
            row = session.scalars(stmt).first()
            if row is None:
                return None
            return PnlMark(
                system=row.system, at=row.at, realized=row.realized, unrealized=row.unrealized
            )

    def upsert_daily_pnl(
        self,
        day: date,
        system: SystemName,
        realized: Decimal,
        unrealized: Decimal,
        commissions: Decimal,
        trades: int,
    ) -> None:
        values = {
            "day": day,
            "system": SystemName(system),
            "realized": realized,
            "unrealized": unrealized,
            "commissions": commissions,
            "trades": trades,
        }
        with self._tx() as conn:
            conn.execute(self._upsert(DailyPnlRecord, values, ["day", "system"]), values)

    def daily_pnl(self, day: date) -> list[DailyPnlRow]:
        stmt = (
            select(DailyPnlRecord).where(DailyPnlRecord.day == day).order_by(DailyPnlRecord.system)
        )
        with self._read() as session:
            return [
                DailyPnlRow(
                    day=row.day,
                    system=row.system,
                    realized=row.realized,
                    unrealized=row.unrealized,
                    commissions=row.commissions,
                    trades=row.trades,
                )
                for row in session.scalars(stmt)
            ]

    # -- backups ----------------------------------------------------------------------------

    def record_backup(
        self,
        *,
        at: datetime,
        url_kind: str,
        path: str,
        size_bytes: int,
        sha256: str,
        verified: bool,
        row_counts: Mapping[str, int],
        status: str,
        message: str = "",
    ) -> int:
        """Append one backup attempt; returns its id. ``status`` "ok" requires ``verified``."""
        require_aware(at, "at")
        if url_kind not in BACKUP_KINDS:
            raise ValueError(f"url_kind must be one of {BACKUP_KINDS}, got {url_kind!r}")
        if status not in BACKUP_STATUSES:
            raise ValueError(f"status must be one of {BACKUP_STATUSES}, got {status!r}")
        if status == "ok" and not verified:
            raise ValueError("a backup can only be recorded ok once it is verified")
        counts = {str(k): int(v) for k, v in sorted(row_counts.items())}
        with self._write() as session:
            row = BackupRecord(
                at=at,
                url_kind=url_kind,
                path=path,
                size_bytes=int(size_bytes),
                sha256=sha256,
                verified=verified,
                row_counts=json.dumps(counts, separators=(",", ":")),
                status=status,
                message=message,
            )
            session.add(row)
            session.flush()
            return row.id

    def backups(self, limit: int | None = None) -> list[BackupRow]:
        """Backup attempts, newest first (ok and failed alike; filter on ``status``)."""
        stmt = select(BackupRecord).order_by(BackupRecord.at.desc(), BackupRecord.id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._read() as session:
            return [
                BackupRow(
                    id=row.id,
                    at=row.at,
                    url_kind=row.url_kind,
                    path=row.path,
                    size_bytes=row.size_bytes,
                    sha256=row.sha256,
                    verified=row.verified,
                    row_counts={str(k): int(v) for k, v in json.loads(row.row_counts).items()},
                    status=row.status,
                    message=row.message,
                )
                for row in session.scalars(stmt)
            ]

    # -- approvals --------------------------------------------------------------------------

    @staticmethod
    def _approval(row: ApprovalRecord) -> ApprovalRow:
        return ApprovalRow(
            id=row.id,
            client_order_id=row.client_order_id,
            system=row.system,
            tier=row.tier,
            requested_at=row.requested_at,
            decided_at=row.decided_at,
            decision=row.decision,
            decided_by=row.decided_by,
            reason=row.reason,
        )

    def record_approval(
        self,
        client_order_id: str,
        system: SystemName,
        tier: str,
        requested_at: datetime,
        reason: str = "",
    ) -> int:
        """Append a pending approval request for an intent; returns its id."""
        require_aware(requested_at, "requested_at")
        with self._write() as session:
            row = ApprovalRecord(
                client_order_id=client_order_id,
                system=SystemName(system),
                tier=tier,
                requested_at=requested_at,
                decided_at=None,
                decision="pending",
                decided_by=None,
                reason=reason,
            )
            session.add(row)
            session.flush()
            return row.id

    def update_approval(
        self,
        approval_id: int,
        decision: str,
        decided_by: str,
        decided_at: datetime,
        reason: str = "",
    ) -> ApprovalRow:
        """Decide a pending approval (approve / reject / expired); returns the stored row.

        Unknown id -> KeyError. Repeating the same decision returns the stored row unchanged
        (a retried task); changing a decision already taken -> ValueError. A non-empty
        ``reason`` replaces the one stored with the request.
        """
        require_aware(decided_at, "decided_at")
        if decision not in APPROVAL_DECISIONS or decision == "pending":
            raise ValueError(f"decision must be one of {APPROVAL_DECISIONS[1:]}, got {decision!r}")
        with self._write() as session:
            row = session.get(ApprovalRecord, approval_id, with_for_update=True)
            if row is None:
                raise KeyError(f"unknown approval {approval_id!r}")
            if row.decision != "pending":
                if row.decision == decision:
                    return self._approval(row)
                raise ValueError(f"approval {approval_id} is already decided: {row.decision}")
            row.decision = decision
            row.decided_by = decided_by
            row.decided_at = decided_at
            if reason:
                row.reason = reason
            session.flush()
            return self._approval(row)

    def approvals(
        self, day: date | None = None, client_order_id: str | None = None
    ) -> list[ApprovalRow]:
        """Approvals requested on the New York ``day`` (all without one), oldest first."""
        stmt = select(ApprovalRecord).order_by(ApprovalRecord.requested_at, ApprovalRecord.id)
        if day is not None:
            stmt = stmt.where(_on_day(ApprovalRecord.requested_at, day))
        if client_order_id is not None:
            stmt = stmt.where(ApprovalRecord.client_order_id == client_order_id)
        with self._read() as session:
            return [self._approval(row) for row in session.scalars(stmt)]

    # -- mode changes -----------------------------------------------------------------------

    def record_mode_change(
        self,
        at: datetime,
        from_mode: TradingMode,
        to_mode: TradingMode,
        who: str,
        why: str,
        approved: bool,
        status: str,
    ) -> int:
        """Append a mode change (requested, refused or applied: ``status``); returns its id."""
        require_aware(at, "at")
        with self._write() as session:
            row = ModeChangeRecord(
                at=at,
                from_mode=TradingMode(from_mode),
                to_mode=TradingMode(to_mode),
                who=who,
                why=why,
                approved=approved,
                status=status,
            )
            session.add(row)
            session.flush()
            return row.id

    def mode_changes(self) -> list[ModeChangeRow]:
        """Every mode change, oldest first."""
        stmt = select(ModeChangeRecord).order_by(ModeChangeRecord.at, ModeChangeRecord.id)
        with self._read() as session:
            return [
                ModeChangeRow(
                    id=row.id,
                    at=row.at,
                    from_mode=row.from_mode,
                    to_mode=row.to_mode,
                    who=row.who,
                    why=row.why,
                    approved=row.approved,
                    status=row.status,
                )
                for row in session.scalars(stmt)
            ]
