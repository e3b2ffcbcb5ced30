"""A version on each meeting (compare-and-set for parallel changes); one row per login name
(locked by each login attempt, so failed logins are counted atomically) and ``checked`` on
each login failure (false while the attempt's password is being verified; the rows from
before are failures, so true).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02

``meetings.version`` is added in place with a server default (no table rebuild on SQLite,
which would cascade-delete ``meeting_units``; see 0002), and dropped in place on downgrade.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column(
        "meetings",
        sa.Column("version", sa.Integer(), nullable=False, server_default="0"),
    )
    op.add_column(
        "login_failures",
        sa.Column("checked", sa.Boolean(), nullable=False, server_default=sa.true()),
    )
    op.create_table(
        "login_accounts",
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("last_attempt_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("username", name="pk_login_accounts"),
    )


def downgrade() -> None:
    op.drop_table("login_accounts")
    op.drop_column("login_failures", "checked")
    op.drop_column("meetings", "version")
