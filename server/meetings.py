"""Scheduling meetings: who may see and change which meeting, and the wire models.

Scope rule (one rule for every role): a user sees a meeting when its host unit, or one of
its invited sites, lies in the user's subtree; a user whose unit lies under a unit invited
as a whole subtree sees it too. Only a chair may schedule (host = the chair's unit), and
only a chair whose subtree holds the host unit may edit or cancel, before the meeting starts.

Parallel changes: each edit or cancel runs in one transaction (server/atomic.py) whose first
write is ``claim``, a compare-and-set on the meeting's version and status. Of two changes
that read the same version, one claims it and applies whole; the other gets 409 ``conflict``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import or_, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from server.atomic import conflict
from server.auth import CurrentUser
from server.errors import AppError, forbidden, invalid, not_found
from server.models import Meeting, MeetingStatus, MeetingUnit, Role, utcnow
from server.text import Line, Text
from server.units import UnitTree

# A chair may set a start a little in the past ("starting now"), not hours back.
PAST_SLACK = timedelta(minutes=10)
# Nothing reopens a meeting in these.
CLOSED = (MeetingStatus.CANCELLED, MeetingStatus.ENDED)


def _require_offset(value: datetime | None) -> datetime | None:
    if value is None:
        return value
    if value.tzinfo is None:
        raise ValueError("must include a time zone offset, e.g. 2026-12-01T08:00:00+07:00")
    # Stored in UTC and shown in the node's zone: both must stay within datetime's range.
    try:
        in_utc = value.astimezone(UTC)
    except OverflowError:
        raise ValueError("is out of range") from None
    if in_utc.year > 9998:
        raise ValueError("must be before the year 9999")
    return value


class MeetingIn(BaseModel):
    """Body of POST /api/meetings and (all fields optional) PATCH /api/meetings/{id}."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Line = Field(min_length=1, max_length=300)
    description: Text = Field("", max_length=5000)
    starts_at: datetime
    duration_minutes: int = Field(120, ge=5, le=24 * 60)
    invited_units: list[Line] = Field(default_factory=list, max_length=5000)
    invited_subtrees: list[Line] = Field(default_factory=list, max_length=5000)

    _aware = field_validator("starts_at")(_require_offset)


class MeetingPatch(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Line | None = Field(None, min_length=1, max_length=300)
    description: Text | None = Field(None, max_length=5000)
    starts_at: datetime | None = None
    duration_minutes: int | None = Field(None, ge=5, le=24 * 60)
    invited_units: list[Line] | None = Field(None, max_length=5000)
    invited_subtrees: list[Line] | None = Field(None, max_length=5000)

    _aware = field_validator("starts_at")(_require_offset)


# -- scope -------------------------------------------------------------------------------------


def visibility_clause(user: CurrentUser, tree: UnitTree) -> Any:
    subtree = tree.subtree_ids(user.unit_id)
    ancestors = [u.id for u in tree.ancestors(user.unit_id)]
    invited_below = select(MeetingUnit.meeting_id).where(MeetingUnit.unit_id.in_(subtree))
    invited_whole_above = select(MeetingUnit.meeting_id).where(
        MeetingUnit.unit_id.in_(ancestors), MeetingUnit.whole_subtree.is_(True)
    )
    return or_(
        Meeting.host_unit_id.in_(subtree),
        Meeting.id.in_(invited_below),
        Meeting.id.in_(invited_whole_above),
    )


async def list_visible(db: AsyncSession, user: CurrentUser, tree: UnitTree) -> list[Meeting]:
    rows = await db.execute(
        select(Meeting).where(visibility_clause(user, tree)).order_by(Meeting.starts_at.desc())
    )
    return list(rows.scalars().unique().all())


async def get_visible(
    db: AsyncSession, user: CurrentUser, tree: UnitTree, meeting_id: int
) -> Meeting:
    meeting = (
        await db.execute(
            select(Meeting).where(Meeting.id == meeting_id, visibility_clause(user, tree))
        )
    ).scalar_one_or_none()
    if meeting is None:
        raise not_found("meeting")
    return meeting


def _chair_of_host(user: CurrentUser, tree: UnitTree, meeting: Meeting) -> bool:
    return user.role is Role.CHAIR and tree.in_subtree(meeting.host_unit_id, user.unit_id)


def may_manage(user: CurrentUser, tree: UnitTree, meeting: Meeting) -> bool:
    """Whether ``user`` may edit or cancel ``meeting`` here. Never a meeting mirrored from
    the parent node (``origin`` set): the parent runs it, and its next mirror would undo a
    change made here (server/cascade/parent_link.py ``mirror``)."""
    return meeting.origin is None and _chair_of_host(user, tree, meeting)


def require_manage(user: CurrentUser, tree: UnitTree, meeting: Meeting) -> None:
    if not _chair_of_host(user, tree, meeting):
        raise forbidden("Only a chair of the host unit may change this meeting.")
    if meeting.origin is not None:
        raise AppError(
            409, "meeting_mirrored", "This meeting is run by the node above; change it there."
        )
    if meeting.status is not MeetingStatus.SCHEDULED:
        raise AppError(
            409,
            "meeting_not_editable",
            f"The meeting is {meeting.status.value}; it can no longer be changed.",
        )


async def claim(db: AsyncSession, meeting: Meeting) -> None:
    """The first write of a change: raise the version read with ``meeting``, only if nobody
    changed the meeting since and it is still scheduled.

    On PostgreSQL a parallel claim of the same row waits for this transaction to end, then
    finds the version gone; on SQLite the write lock orders them the same way. So the later
    of two changes made from the same reading is refused instead of merged.
    """
    result = await db.execute(
        update(Meeting)
        .where(
            Meeting.id == meeting.id,
            Meeting.version == meeting.version,
            Meeting.status == MeetingStatus.SCHEDULED,
        )
        .values(version=Meeting.version + 1, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    assert isinstance(result, CursorResult)
    if result.rowcount != 1:
        raise conflict(
            "The meeting was changed or started at the same time; reload it and try again."
        )
    set_committed_value(meeting, "version", meeting.version + 1)


async def set_status(
    db: AsyncSession, meeting_id: int, status: MeetingStatus
) -> MeetingStatus | None:
    """Store a start (``live``) or an end unless the meeting is closed; returns the status
    found (None: no such meeting).

    A guarded UPDATE from the status read, never a blind write: a cancel committed meanwhile
    is not undone, and an edit that read the meeting before finds its version raised.
    """
    found: MeetingStatus | None = None
    for _attempt in range(3):
        found = (
            await db.execute(select(Meeting.status).where(Meeting.id == meeting_id))
        ).scalar_one_or_none()
        if found is None or found in CLOSED or found is status:
            return found
        result = await db.execute(
            update(Meeting)
            .where(Meeting.id == meeting_id, Meeting.status == found)
            .values(
                status=status,
                version=Meeting.version + 1,
                updated_at=utcnow(),
                **_real_time(status),
            )
            .execution_options(synchronize_session=False)
        )
        assert isinstance(result, CursorResult)
        if result.rowcount == 1:
            return found
    return found


def _real_time(status: MeetingStatus) -> dict[str, Any]:
    """The column that records when a start or an end really happened."""
    if status is MeetingStatus.LIVE:
        return {"started_at": utcnow()}
    if status is MeetingStatus.ENDED:
        return {"ended_at": utcnow()}
    return {}


def site_ids(meeting: Meeting, tree: UnitTree) -> set[int]:
    """Every invited site: single units, and every unit under one invited as a whole."""
    out: set[int] = set()
    for invite in meeting.invites:
        if invite.unit_id not in tree.by_id:
            continue
        out |= tree.subtree_ids(invite.unit_id) if invite.whole_subtree else {invite.unit_id}
    return out


def resolve_invites(
    user: CurrentUser,
    tree: UnitTree,
    host_unit_id: int,
    units: list[str],
    subtrees: list[str],
) -> dict[int, bool]:
    """Map invited unit codes to {unit_id: whole_subtree}, checking each is in scope."""
    chosen: dict[int, bool] = {}
    for field, codes, whole in (
        ("invited_units", units, False),
        ("invited_subtrees", subtrees, True),
    ):
        for code in codes:
            info = tree.by_code.get(code)
            if info is None:
                raise invalid({field: f"unknown unit {code!r}"})
            if info.id == host_unit_id or not tree.in_subtree(info.id, host_unit_id):
                raise invalid({field: f"unit {code!r} is not under the host unit"})
            chosen[info.id] = chosen.get(info.id, False) or whole
    if not chosen:
        raise invalid({"invited_units": "invite at least one unit"})
    # A unit chosen alone but already covered by a whole ancestor adds nothing.
    whole_ids = [uid for uid, whole in chosen.items() if whole]
    return {
        uid: whole
        for uid, whole in chosen.items()
        if whole or not any(uid != w and tree.in_subtree(uid, w) for w in whole_ids)
    }


def _check_start(starts_at: datetime) -> None:
    if starts_at < utcnow() - PAST_SLACK:
        raise invalid({"starts_at": "must not be in the past"})


async def create_meeting(
    db: AsyncSession, user: CurrentUser, tree: UnitTree, data: MeetingIn
) -> Meeting:
    if user.role is not Role.CHAIR:
        raise forbidden("Only a chair may schedule a meeting.")
    _check_start(data.starts_at)
    invites = resolve_invites(user, tree, user.unit_id, data.invited_units, data.invited_subtrees)
    meeting = Meeting(
        title=data.title,
        description=data.description,
        host_unit_id=user.unit_id,
        starts_at=data.starts_at,
        duration_minutes=data.duration_minutes,
        status=MeetingStatus.SCHEDULED,
        created_by_id=user.id,
        invites=[MeetingUnit(unit_id=uid, whole_subtree=w) for uid, w in invites.items()],
    )
    db.add(meeting)
    await db.flush()
    return meeting


async def update_meeting(
    db: AsyncSession, user: CurrentUser, tree: UnitTree, meeting: Meeting, patch: MeetingPatch
) -> Meeting:
    require_manage(user, tree, meeting)
    # Checked before the claim, so a refused edit leaves the version alone.
    if patch.starts_at is not None and patch.starts_at != meeting.starts_at:
        _check_start(patch.starts_at)
    invites: dict[int, bool] | None = None
    if patch.invited_units is not None or patch.invited_subtrees is not None:
        current_units = [tree.get(i.unit_id).code for i in meeting.invites if not i.whole_subtree]
        current_whole = [tree.get(i.unit_id).code for i in meeting.invites if i.whole_subtree]
        invites = resolve_invites(
            user,
            tree,
            meeting.host_unit_id,
            patch.invited_units if patch.invited_units is not None else current_units,
            patch.invited_subtrees if patch.invited_subtrees is not None else current_whole,
        )
    await claim(db, meeting)
    if patch.title is not None:
        meeting.title = patch.title
    if patch.description is not None:
        meeting.description = patch.description
    if patch.starts_at is not None:
        meeting.starts_at = patch.starts_at
    if patch.duration_minutes is not None:
        meeting.duration_minutes = patch.duration_minutes
    if invites is not None:
        meeting.invites.clear()
        await db.flush()
        meeting.invites.extend(
            MeetingUnit(unit_id=uid, whole_subtree=w) for uid, w in invites.items()
        )
    meeting.updated_at = utcnow()
    await db.flush()
    return meeting


async def cancel_meeting(
    db: AsyncSession, user: CurrentUser, tree: UnitTree, meeting: Meeting
) -> Meeting:
    require_manage(user, tree, meeting)
    await claim(db, meeting)
    meeting.status = MeetingStatus.CANCELLED
    meeting.updated_at = utcnow()
    await db.flush()
    return meeting


def meeting_json(
    meeting: Meeting, tree: UnitTree, user: CurrentUser | None = None
) -> dict[str, Any]:
    host = tree.by_id.get(meeting.host_unit_id)
    out: dict[str, Any] = {
        "id": meeting.id,
        "title": meeting.title,
        "description": meeting.description,
        "host_unit": host.code if host else None,
        "starts_at": meeting.starts_at.isoformat(),
        "duration_minutes": meeting.duration_minutes,
        "status": meeting.status.value,
        # When it really started and ended (null until then).
        "started_at": meeting.started_at.isoformat() if meeting.started_at else None,
        "ended_at": meeting.ended_at.isoformat() if meeting.ended_at else None,
        "invited_units": sorted(
            tree.get(i.unit_id).code for i in meeting.invites if not i.whole_subtree
        ),
        "invited_subtrees": sorted(
            tree.get(i.unit_id).code for i in meeting.invites if i.whole_subtree
        ),
        "sites": sorted(tree.get(uid).code for uid in site_ids(meeting, tree)),
        # A meeting mirrored from the parent node: the parent's URL and its id there (how a
        # child node's operator finds the local id of the parent's meeting); else both null.
        "origin": meeting.origin,
        "origin_meeting_id": meeting.origin_meeting_id,
    }
    if user is not None:
        out["can_manage"] = may_manage(user, tree, meeting) and (
            meeting.status is MeetingStatus.SCHEDULED
        )
    return out
