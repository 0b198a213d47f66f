"""Initial trade store schema.

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _money() -> sa.Numeric:  # type: ignore[type-arg]
    return sa.Numeric(18, 4)


def _system(nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("system", sa.String(16), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("signal_id", sa.String(128), nullable=False),
        _system(),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("underlying", sa.String(16), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("signal_id", name="pk_signals"),
    )
    op.create_index("ix_signals_at", "signals", ["at"])

    op.create_table(
        "intents",
        sa.Column("client_order_id", sa.String(64), nullable=False),
        _system(),
        sa.Column("signal_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(8), nullable=False),
        sa.Column("structure_kind", sa.String(32), nullable=False),
        sa.Column("spread", sa.Text(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("limit_price", _money(), nullable=False),
        sa.Column("worst_price", _money(), nullable=False),
        sa.Column("max_loss", _money(), nullable=False),
        sa.Column("created_at", _ts(), nullable=False),
        sa.Column("position_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=True),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("client_order_id", name="pk_intents"),
    )
    op.create_index("ix_intents_signal_id", "intents", ["signal_id"])
    op.create_index("ix_intents_created_at", "intents", ["created_at"])
    op.create_index("ix_intents_status", "intents", ["status"])

    op.create_table(
        "orders",
        sa.Column("broker_order_id", sa.String(64), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        _system(),
        sa.Column("side", sa.String(8), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("limit_price", _money(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("filled_quantity", sa.Integer(), nullable=False),
        sa.Column("avg_fill_price", _money(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("updated_at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("broker_order_id", name="pk_orders"),
        sa.ForeignKeyConstraint(
            ["client_order_id"],
            ["intents.client_order_id"],
            name="fk_orders_client_order_id_intents",
        ),
    )
    op.create_index("ix_orders_client_order_id", "orders", ["client_order_id"])
    op.create_index("ix_orders_updated_at", "orders", ["updated_at"])

    op.create_table(
        "order_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("limit_price", _money(), nullable=False),
        sa.Column("filled_quantity", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_order_events"),
        sa.ForeignKeyConstraint(
            ["broker_order_id"],
            ["orders.broker_order_id"],
            name="fk_order_events_broker_order_id_orders",
        ),
    )
    op.create_index("ix_order_events_broker_order_id", "order_events", ["broker_order_id"])

    op.create_table(
        "fills",
        sa.Column("exec_id", sa.String(128), nullable=False),
        sa.Column("client_order_id", sa.String(64), nullable=False),
        sa.Column("broker_order_id", sa.String(64), nullable=False),
        _system(),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("price", _money(), nullable=False),
        sa.Column("commission", _money(), nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.PrimaryKeyConstraint("exec_id", name="pk_fills"),
    )
    op.create_index("ix_fills_client_order_id", "fills", ["client_order_id"])
    op.create_index("ix_fills_at", "fills", ["at"])

    op.create_table(
        "positions",
        sa.Column("position_id", sa.String(128), nullable=False),
        _system(),
        sa.Column("signal_kind", sa.String(32), nullable=False),
        sa.Column("structure_kind", sa.String(32), nullable=False),
        sa.Column("spread", sa.Text(), nullable=False),
        sa.Column("underlying", sa.String(16), nullable=False),
        sa.Column("expiry", sa.Date(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("entry_price", _money(), nullable=False),
        sa.Column("entry_commission", _money(), nullable=False),
        sa.Column("max_loss", _money(), nullable=False),
        sa.Column("opened_at", _ts(), nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("closed_at", _ts(), nullable=True),
        sa.Column("exit_price", _money(), nullable=True),
        sa.Column("exit_commission", _money(), nullable=False),
        sa.Column("closed_fraction_tiers", sa.Integer(), nullable=False),
        sa.Column("open_client_order_id", sa.String(64), nullable=False),
        sa.Column("close_client_order_id", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("position_id", name="pk_positions"),
    )
    op.create_index("ix_positions_opened_at", "positions", ["opened_at"])
    op.create_index("ix_positions_closed_at", "positions", ["closed_at"])
    op.create_index("ix_positions_status", "positions", ["status"])

    op.create_table(
        "daily_pnl",
        sa.Column("day", sa.Date(), nullable=False),
        _system(),
        sa.Column("realized", _money(), nullable=False),
        sa.Column("unrealized", _money(), nullable=False),
        sa.Column("commissions", _money(), nullable=False),
        sa.Column("trades", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("day", "system", name="pk_daily_pnl"),
    )

    op.create_table(
        "pnl_marks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _system(),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("realized", _money(), nullable=False),
        sa.Column("unrealized", _money(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pnl_marks"),
    )
    op.create_index("ix_pnl_marks_at", "pnl_marks", ["at"])

    op.create_table(
        "risk_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _system(nullable=True),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_risk_events"),
        sa.CheckConstraint(
            "severity IN ('info', 'warning', 'critical')", name="ck_risk_events_severity"
        ),
    )
    op.create_index("ix_risk_events_at", "risk_events", ["at"])
    op.create_index("ix_risk_events_kind", "risk_events", ["kind"])

    op.create_table(
        "trading_state",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", _ts(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("manual", sa.Boolean(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_trading_state"),
    )
    op.create_index("ix_trading_state_at", "trading_state", ["at"])


def downgrade() -> None:
    for table in (
        "trading_state",
        "risk_events",
        "pnl_marks",
        "daily_pnl",
        "positions",
        "fills",
        "order_events",
        "orders",
        "intents",
        "signals",
    ):
        op.drop_table(table)
