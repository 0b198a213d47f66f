"""Close marks of open positions (the prior-close baseline of a carried position's daily P&L),
and the run that holds an intent's order (one run works an order at a time).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "position_marks",
        sa.Column("position_id", sa.String(64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("value", sa.Numeric(18, 4), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("position_id", "day", name="pk_position_marks"),
    )
    with op.batch_alter_table("intents") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(160), nullable=True))
        batch.add_column(sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_intents_position_id", ["position_id"])


def downgrade() -> None:
    with op.batch_alter_table("intents") as batch:
        batch.drop_index("ix_intents_position_id")
        batch.drop_column("claimed_until")
        batch.drop_column("claimed_by")
    op.drop_table("position_marks")
