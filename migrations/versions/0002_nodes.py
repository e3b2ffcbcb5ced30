"""Child nodes and their units; meetings mirrored from a parent node.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04

The pair (origin, origin_meeting_id) is made unique with a unique index rather than a table
constraint: SQLite adds a constraint only by rebuilding ``meetings`` (Alembic's batch mode),
and dropping the old table inside the migration's transaction, where foreign keys stay on,
would cascade-delete every row of ``meeting_units``. An index needs no rebuild on either
backend and refuses duplicates just the same.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(64), nullable=False),
        sa.Column("url", sa.String(300), nullable=False),
        sa.Column("secret_hash", sa.String(255), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_nodes"),
        sa.UniqueConstraint("code", name="uq_nodes_code"),
    )

    op.create_table(
        "node_units",
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name="fk_node_units_node_id_nodes", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name="fk_node_units_unit_id_units", ondelete="RESTRICT"
        ),
        sa.PrimaryKeyConstraint("node_id", "unit_id", name="pk_node_units"),
    )
    op.create_index("ix_node_units_unit_id", "node_units", ["unit_id"])

    op.add_column("meetings", sa.Column("origin", sa.String(300), nullable=True))
    op.add_column("meetings", sa.Column("origin_meeting_id", sa.Integer(), nullable=True))
    op.create_index("uq_meetings_origin", "meetings", ["origin", "origin_meeting_id"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_meetings_origin", table_name="meetings")
    # SQLite ≥ 3.35 drops a column in place (no rebuild, so no cascade on meeting_units).
    op.drop_column("meetings", "origin_meeting_id")
    op.drop_column("meetings", "origin")
    op.drop_table("node_units")
    op.drop_table("nodes")
