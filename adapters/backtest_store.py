"""Stored backtest results: runs (parameters, source, code version, metrics), trades, daily equity.

Kept apart from the trading ledger on purpose: its own tables (``backtest_*``) in their own
SQLAlchemy metadata, created on first use (``create_all``, idempotent), in a database of their
own (by default ``reports/backtests/backtests.db``; any SQLAlchemy URL works, PostgreSQL too).
The trade store's Alembic chain stays untouched: a backtest never writes to the trading schema,
and the trading schema never grows tables the trading code does not use. ``SCHEMA_VERSION`` is
checked on open; a different version is refused with a message rather than misread.

Conventions: times are stored as ISO-8601 text with their UTC offset (New York for market times),
money as exact decimal text, metrics and parameters as JSON (sorted keys).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

SCHEMA_VERSION = "1"

_META = sa.MetaData()

SCHEMA = sa.Table(
    "backtest_schema",
    _META,
    sa.Column("version", sa.String(16), primary_key=True),
)

RUNS = sa.Table(
    "backtest_runs",
    _META,
    sa.Column("run_id", sa.String(80), primary_key=True),
    sa.Column("system", sa.String(16), nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("seed", sa.Integer, nullable=True),
    sa.Column("start_day", sa.String(10), nullable=False),
    sa.Column("end_day", sa.String(10), nullable=False),
    sa.Column("parameters", sa.Text, nullable=False),
    sa.Column("code_version", sa.String(80), nullable=False),
    sa.Column("created_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=False, default=""),
    sa.Column("metrics", sa.Text, nullable=False, default="{}"),
    sa.Column("ledger_url", sa.Text, nullable=False),
    sa.Column("report_dir", sa.Text, nullable=False),
    sa.CheckConstraint("status IN ('running', 'completed', 'failed')", name="ck_bt_runs_status"),
)

TRADES = sa.Table(
    "backtest_trades",
    _META,
    sa.Column("run_id", sa.String(80), sa.ForeignKey("backtest_runs.run_id"), primary_key=True),
    sa.Column("position_id", sa.String(80), primary_key=True),
    sa.Column("system", sa.String(16), nullable=False),
    sa.Column("signal_kind", sa.String(32), nullable=False),
    sa.Column("underlying", sa.String(16), nullable=False),
    sa.Column("structure", sa.Text, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("opened_at", sa.String(40), nullable=False),
    sa.Column("closed_at", sa.String(40), nullable=False),
    sa.Column("entry_price", sa.String(32), nullable=False),
    sa.Column("exit_price", sa.String(32), nullable=False),
    sa.Column("commissions", sa.String(32), nullable=False),
    sa.Column("pnl", sa.String(32), nullable=False),
    sa.Column("exit_reason", sa.Text, nullable=False),
)

EQUITY = sa.Table(
    "backtest_equity",
    _META,
    sa.Column("run_id", sa.String(80), sa.ForeignKey("backtest_runs.run_id"), primary_key=True),
    sa.Column("day", sa.String(10), primary_key=True),
    sa.Column("system", sa.String(16), primary_key=True),  # "all", "smart0dte", "mag7"
    sa.Column("equity", sa.String(32), nullable=False),
    sa.Column("realized", sa.String(32), nullable=False),
    sa.Column("unrealized", sa.String(32), nullable=False),
    sa.Column("commissions", sa.String(32), nullable=False),
    sa.Column("trades", sa.Integer, nullable=False),
)


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    system: str
    source: str
    seed: int | None
    start_day: date
    end_day: date
    parameters: dict[str, Any]
    code_version: str
    created_at: datetime
    finished_at: datetime | None
    status: str
    message: str
    metrics: dict[str, Any]
    ledger_url: str
    report_dir: str


@dataclass(frozen=True, slots=True)
class TradeRow:
    position_id: str
    system: str
    signal_kind: str
    underlying: str
    structure: str
    quantity: int
    opened_at: datetime
    closed_at: datetime
    entry_price: Decimal
    exit_price: Decimal
    commissions: Decimal
    pnl: Decimal
    exit_reason: str


@dataclass(frozen=True, slots=True)
class EquityRow:
    day: date
    system: str
    equity: Decimal
    realized: Decimal
    unrealized: Decimal
    commissions: Decimal
    trades: int


def _json(value: Mapping[str, Any]) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _iso(t: datetime) -> str:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"naive datetime {t!r}")
    return t.isoformat()


class BacktestStore:
    """Repository of backtest results (see the module docstring)."""

    def __init__(self, url: str) -> None:
        self.url = url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self._engine = sa.create_engine(url)
        _META.create_all(self._engine)
        with self._engine.begin() as conn:
            stored = conn.execute(sa.select(SCHEMA.c.version)).scalars().all()
            if not stored:
                conn.execute(SCHEMA.insert().values(version=SCHEMA_VERSION))
            elif stored != [SCHEMA_VERSION]:
                raise RuntimeError(
                    f"backtest results at {self._engine.url.render_as_string(hide_password=True)}"
                    f" have schema version {stored}, this code reads {SCHEMA_VERSION}"
                )

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    def dispose(self) -> None:
        self._engine.dispose()

    # -- writes --------------------------------------------------------------------------------
    def start_run(
        self,
        run_id: str,
        *,
        system: str,
        source: str,
        seed: int | None,
        start_day: date,
        end_day: date,
        parameters: Mapping[str, Any],
        code_version: str,
        created_at: datetime,
        ledger_url: str,
        report_dir: str,
    ) -> None:
        with self._engine.begin() as conn:
            conn.execute(
                RUNS.insert().values(
                    run_id=run_id,
                    system=system,
                    source=source,
                    seed=seed,
                    start_day=start_day.isoformat(),
                    end_day=end_day.isoformat(),
                    parameters=_json(parameters),
                    code_version=code_version,
                    created_at=_iso(created_at),
                    status="running",
                    message="",
                    metrics="{}",
                    ledger_url=ledger_url,
                    report_dir=report_dir,
                )
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        finished_at: datetime,
        metrics: Mapping[str, Any] | None = None,
        message: str = "",
    ) -> None:
        values: dict[str, Any] = {
            "status": status,
            "finished_at": _iso(finished_at),
            "message": message,
        }
        if metrics is not None:
            values["metrics"] = _json(metrics)
        with self._engine.begin() as conn:
            done = conn.execute(RUNS.update().where(RUNS.c.run_id == run_id).values(**values))
            if done.rowcount != 1:
                raise KeyError(f"unknown backtest run {run_id!r}")

    def save_trades(self, run_id: str, trades: Sequence[TradeRow]) -> None:
        rows = [
            {
                "run_id": run_id,
                "position_id": t.position_id,
                "system": t.system,
                "signal_kind": t.signal_kind,
                "underlying": t.underlying,
                "structure": t.structure,
                "quantity": t.quantity,
                "opened_at": _iso(t.opened_at),
                "closed_at": _iso(t.closed_at),
                "entry_price": str(t.entry_price),
                "exit_price": str(t.exit_price),
                "commissions": str(t.commissions),
                "pnl": str(t.pnl),
                "exit_reason": t.exit_reason,
            }
            for t in trades
        ]
        self._replace(TRADES, run_id, rows)

    def save_equity(self, run_id: str, points: Sequence[EquityRow]) -> None:
        rows = [
            {
                "run_id": run_id,
                "day": p.day.isoformat(),
                "system": p.system,
                "equity": str(p.equity),
                "realized": str(p.realized),
                "unrealized": str(p.unrealized),
                "commissions": str(p.commissions),
                "trades": p.trades,
            }
            for p in points
        ]
        self._replace(EQUITY, run_id, rows)

    def _replace(self, table: sa.Table, run_id: str, rows: list[dict[str, Any]]) -> None:
        """A run's rows of ``table``, replaced in one transaction (a rerun stores them anew)."""
        with self._engine.begin() as conn:
            conn.execute(table.delete().where(table.c.run_id == run_id))
            if rows:
                conn.execute(table.insert(), rows)

    # -- reads ---------------------------------------------------------------------------------
    @staticmethod
    def _run(row: sa.Row[Any]) -> RunRow:
        return RunRow(
            run_id=row.run_id,
            system=row.system,
            source=row.source,
            seed=row.seed,
            start_day=date.fromisoformat(row.start_day),
            end_day=date.fromisoformat(row.end_day),
            parameters=json.loads(row.parameters),
            code_version=row.code_version,
            created_at=datetime.fromisoformat(row.created_at),
            finished_at=datetime.fromisoformat(row.finished_at) if row.finished_at else None,
            status=row.status,
            message=row.message or "",
            metrics=json.loads(row.metrics or "{}"),
            ledger_url=row.ledger_url,
            report_dir=row.report_dir,
        )

    def run(self, run_id: str) -> RunRow | None:
        with self._engine.connect() as conn:
            row = conn.execute(RUNS.select().where(RUNS.c.run_id == run_id)).first()
        return None if row is None else self._run(row)

    def runs(self, limit: int | None = None) -> list[RunRow]:
        """Runs, newest first."""
        stmt = RUNS.select().order_by(RUNS.c.created_at.desc(), RUNS.c.run_id.desc())
        if limit is not None:
            stmt = stmt.limit(limit)
        with self._engine.connect() as conn:
            return [self._run(r) for r in conn.execute(stmt)]

    def trades(self, run_id: str) -> list[TradeRow]:
        stmt = (
            TRADES.select()
            .where(TRADES.c.run_id == run_id)
            .order_by(TRADES.c.closed_at, TRADES.c.position_id)
        )
        with self._engine.connect() as conn:
            return [
                TradeRow(
                    position_id=r.position_id,
                    system=r.system,
                    signal_kind=r.signal_kind,
                    underlying=r.underlying,
                    structure=r.structure,
                    quantity=r.quantity,
                    opened_at=datetime.fromisoformat(r.opened_at),
                    closed_at=datetime.fromisoformat(r.closed_at),
                    entry_price=Decimal(r.entry_price),
                    exit_price=Decimal(r.exit_price),
                    commissions=Decimal(r.commissions),
                    pnl=Decimal(r.pnl),
                    exit_reason=r.exit_reason,
                )
                for r in conn.execute(stmt)
            ]

    def equity(self, run_id: str, system: str = "all") -> list[EquityRow]:
        stmt = (
            EQUITY.select()
            .where(EQUITY.c.run_id == run_id, EQUITY.c.system == system)
            .order_by(EQUITY.c.day)
        )
        with self._engine.connect() as conn:
            return [
                EquityRow(
                    day=date.fromisoformat(r.day),
                    system=r.system,
                    equity=Decimal(r.equity),
                    realized=Decimal(r.realized),
                    unrealized=Decimal(r.unrealized),
                    commissions=Decimal(r.commissions),
                    trades=r.trades,
                )
                for r in conn.execute(stmt)
            ]
