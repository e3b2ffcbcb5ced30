"""Link budgets: the kbit/s a child node's link may carry (rooms/budget.py).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03

A nullable column added in place: no budget set means the link's measured estimate alone.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("nodes", sa.Column("budget_kbit", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("nodes") as batch:
        batch.drop_column("budget_kbit")
