"""Attendance: events stored once by their origin id, roll calls, node marks (the event
sequence and the last time the node knew itself alive), and the real start and end of a
meeting.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03

Columns are added to ``meetings`` in place (no table rebuild on SQLite, see 0002).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("meetings", sa.Column("started_at", TS, nullable=True))
    op.add_column("meetings", sa.Column("ended_at", TS, nullable=True))
    op.create_table(
        "attendance_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("origin_node", sa.String(64), nullable=False),
        sa.Column("origin_seq", sa.Integer(), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("unit_code", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("offset_ms", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column("head_count", sa.Integer(), nullable=True),
        sa.Column("roll_call", sa.String(36), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("up_pending", sa.Boolean(), nullable=False),
        sa.Column("stored_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name="fk_attendance_events_meeting_id_meetings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_attendance_events"),
    )
    op.create_index(
        "uq_attendance_events_origin",
        "attendance_events",
        ["origin_node", "origin_seq"],
        unique=True,
    )
    op.create_index("ix_attendance_events_up_pending", "attendance_events", ["up_pending", "id"])
    op.create_index("ix_attendance_events_meeting_id", "attendance_events", ["meeting_id"])
    op.create_table(
        "roll_calls",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("meeting_id", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("ended_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["meeting_id"],
            ["meetings.id"],
            name="fk_roll_calls_meeting_id_meetings",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_roll_calls"),
    )
    op.create_index("ix_roll_calls_meeting_id", "roll_calls", ["meeting_id"])
    op.create_table(
        "node_marks",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("value", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_node_marks"),
    )


def downgrade() -> None:
    op.drop_table("node_marks")
    op.drop_index("ix_roll_calls_meeting_id", table_name="roll_calls")
    op.drop_table("roll_calls")
    op.drop_index("ix_attendance_events_meeting_id", table_name="attendance_events")
    op.drop_index("ix_attendance_events_up_pending", table_name="attendance_events")
    op.drop_index("uq_attendance_events_origin", table_name="attendance_events")
    op.drop_table("attendance_events")
    op.drop_column("meetings", "ended_at")
    op.drop_column("meetings", "started_at")
