"""SQLAlchemy 2 ORM models: units, users, sessions, login failures, meetings, child nodes,
attendance events and roll calls.

The schema is created by Alembic migrations (``migrations/``), never by ``create_all``.
"""

from __future__ import annotations

import enum
from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps stored in UTC and always returned timezone-aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    ADMIN = "admin"
    CHAIR = "chair"
    OPERATOR = "operator"
    SECRETARY = "secretary"


class MeetingStatus(enum.StrEnum):
    SCHEDULED = "scheduled"
    LIVE = "live"
    ENDED = "ended"
    CANCELLED = "cancelled"


class Unit(Base):
    """An administrative unit; each unit has one hall, its site (điểm cầu)."""

    __tablename__ = "units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[Role] = mapped_column(
        Enum(
            Role,
            name="user_role",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        )
    )
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="RESTRICT"), index=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    unit: Mapped[Unit] = relationship(lazy="joined")


class Session(Base):
    """A login session. The cookie holds a random token; only its SHA-256 is stored."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class LoginFailure(Base):
    """One failed login (``checked``), or a login attempt being checked (reserved before the
    password is verified, deleted when it was right); counted per account and per (account,
    address) within a window (server/login_limit.py)."""

    __tablename__ = "login_failures"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    checked: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    __table_args__ = (
        Index("ix_login_failures_username_at", "username", "at"),
        Index("ix_login_failures_address_at", "address", "at"),
    )


class LoginAccount(Base):
    """One row per account name ever tried: each login attempt locks it first, so that
    counting the failures and reserving the attempt are one step per account on every
    database (a row lock on PostgreSQL, the write lock on SQLite)."""

    __tablename__ = "login_accounts"

    username: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Meeting(Base):
    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    host_unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), index=True
    )
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_minutes: Mapped[int] = mapped_column(Integer, default=120)
    status: Mapped[MeetingStatus] = mapped_column(
        Enum(
            MeetingStatus,
            name="meeting_status",
            native_enum=False,
            length=16,
            values_callable=lambda e: [m.value for m in e],
        ),
        default=MeetingStatus.SCHEDULED,
    )
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Raised by every edit, cancel, start and end: a change begins with a compare-and-set on
    # it, so two parallel changes never merge (server/meetings.py, ``claim``).
    version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the chair really started and ended it (null until then); the attendance report's
    # meeting length. On a child node, when the parent's start and end reached this node.
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    # A meeting mirrored from the parent node: the parent's URL and its id there (both null
    # for a meeting of this node). Unique together, so a mirror is never stored twice.
    origin: Mapped[str | None] = mapped_column(String(300))
    origin_meeting_id: Mapped[int | None] = mapped_column(Integer)

    host_unit: Mapped[Unit] = relationship(lazy="joined")
    invites: Mapped[list[MeetingUnit]] = relationship(
        back_populates="meeting", cascade="all, delete-orphan", lazy="selectin"
    )

    __table_args__ = (
        # A unique index, not a table constraint: SQLite can only add a constraint by
        # rebuilding the table, and dropping the old ``meetings`` with foreign keys on
        # would cascade-delete every invitation (migration 0002).
        Index("uq_meetings_origin", "origin", "origin_meeting_id", unique=True),
    )


class MeetingUnit(Base):
    """An invited site. ``whole_subtree`` records that it came from choosing a whole unit."""

    __tablename__ = "meeting_units"

    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), primary_key=True, index=True
    )
    whole_subtree: Mapped[bool] = mapped_column(Boolean, default=False)

    meeting: Mapped[Meeting] = relationship(back_populates="invites")
    unit: Mapped[Unit] = relationship(lazy="joined")


class Node(Base):
    """A child node allowed to link to this one, and the units it may speak for.

    Only the Argon2 hash of the credential's secret is stored. ``created_at`` is when the
    current credential was issued: issuing again replaces the secret and the time.
    """

    __tablename__ = "nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    url: Mapped[str] = mapped_column(String(300), default="")
    secret_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What its link may carry, in kbit/s (rooms/budget.py); None: as measured.
    budget_kbit: Mapped[int | None] = mapped_column(Integer)

    units: Mapped[list[NodeUnit]] = relationship(
        back_populates="node", cascade="all, delete-orphan", lazy="selectin"
    )


class NodeUnit(Base):
    """A unit whose subtree a child node may speak for (a row, so units cannot vanish)."""

    __tablename__ = "node_units"

    node_id: Mapped[int] = mapped_column(
        ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True
    )
    unit_id: Mapped[int] = mapped_column(
        ForeignKey("units.id", ondelete="RESTRICT"), primary_key=True, index=True
    )

    node: Mapped[Node] = relationship(back_populates="units")
    unit: Mapped[Unit] = relationship(lazy="joined")


class AttendanceEvent(Base):
    """One thing that happened to a site (or a node) in a meeting, stored exactly once.

    ``(origin_node, origin_seq)`` is the event's id, made where it happened: the code of the
    node that saw it and that node's own gapless sequence. A parent stores events from below
    with the same id (an insert that skips an id already there, never a check first), so an
    event forwarded twice is stored once. ``at`` is the origin node's clock; ``offset_ms``
    is what to add to it for this node's clock (the sum of the measured offsets on the links
    it came up; 0 for this node's own events). ``up_pending`` marks an event still to be
    acknowledged by this node's parent (the outbox, server/attendance/outbox.py).
    """

    __tablename__ = "attendance_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    origin_node: Mapped[str] = mapped_column(String(64))
    origin_seq: Mapped[int] = mapped_column(Integer)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    # The site's unit code; for a node's events (node_down, node_up) the node's code is in
    # ``node`` and this is empty.
    unit_code: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    offset_ms: Mapped[int] = mapped_column(Integer, default=0)
    reason: Mapped[str] = mapped_column(String(32), default="")
    node: Mapped[str] = mapped_column(String(64), default="")
    head_count: Mapped[int | None] = mapped_column(Integer)
    roll_call: Mapped[str | None] = mapped_column(String(36))
    # JSON: names and positions with a head count, the units a node serves with its node
    # events.
    detail: Mapped[str] = mapped_column(Text, default="")
    up_pending: Mapped[bool] = mapped_column(Boolean, default=False)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        Index("uq_attendance_events_origin", "origin_node", "origin_seq", unique=True),
        Index("ix_attendance_events_up_pending", "up_pending", "id"),
    )


class RollCall(Base):
    """A roll call (điểm danh) of a meeting: the chair's node makes its id; every node that
    relays it stores it too, so its own report names it. Answers are attendance events."""

    __tablename__ = "roll_calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    meeting_id: Mapped[int] = mapped_column(
        ForeignKey("meetings.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the meeting
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class NodeMark(Base):
    """A named counter and time of this node: ``attendance`` is the last sequence number
    given to an event seen here; ``alive`` the last time the node knew itself running (the
    time of the drop recorded for its sites after a crash)."""

    __tablename__ = "node_marks"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)
    at: Mapped[datetime | None] = mapped_column(UTCDateTime)
