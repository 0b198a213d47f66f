"""Mag7 state: per-position peak P&L fraction (trailing stop) and the daily IV history table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # nullable: positions opened before this revision (and every Smart-0DTE one) have no peak
    op.add_column("positions", sa.Column("peak_pnl_fraction", sa.Float(), nullable=True))
    op.create_table(
        "iv_history",
        sa.Column("symbol", sa.String(16), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("atm_iv", sa.Float(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "day", name="pk_iv_history"),
    )


def downgrade() -> None:
    op.drop_table("iv_history")
    with op.batch_alter_table("positions") as batch:
        batch.drop_column("peak_pnl_fraction")
