"""Attendance on a running node: what happens to sites becomes stored events, and stored
events become each live meeting's roster.

- Sites: the meeting socket tells ``joined``, ``left`` and ``dropped`` (awaited, so the event
  is stored before the join is answered); a site whose media link falls silent or fails
  while its socket stays open is a ``drop`` (``media``), and one whose link comes back a
  ``reconnect``, seen by ``meeting_changed`` (an observer of every live meeting).
- Nodes: the ``/node`` namespace tells ``node_link`` when a child node's link goes silent,
  is lost or comes back (``node_down``/``node_up``, with the units it serves).
- A restart: every second the node stores that it is alive; at the next start, each site
  still present in a live meeting gets a ``drop`` (``node_restart``) at that time, and the
  meeting a ``node_down``/``node_up`` pair for this node (the gap, for the sites below
  child nodes), so a crash reads as a drop and a rejoin, never as continuous presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from sqlalchemy import func, select

from rooms.meeting import SITE, LiveMeeting, Participant
from rooms.registry import Registry
from rooms.rollcall import RollCall
from rooms.roster import (
    DROP,
    JOIN,
    NODE_DOWN,
    NODE_UP,
    PRESENCE,
    RECONNECT,
    InvitedSite,
)
from server import meetings
from server.attendance.store import AttendanceStore, Stored
from server.models import AttendanceEvent, Meeting, MeetingStatus, NodeMark
from server.models import RollCall as RollCallRow
from server.state import CTX, NodeContext
from server.units import UnitTree

log = logging.getLogger(__name__)

ALIVE = "alive"
ALIVE_EVERY = 1.0


@dataclass
class _Link:
    site: Participant  # this join of the site (a rejoin on the same socket is a new one)
    online: bool


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def invited_sites(meeting: Meeting, tree: UnitTree) -> list[InvitedSite]:
    """A meeting's invited sites, each with its path and its group (the unit right below the
    host on its path: a district, or the commune itself under a province since 2025)."""
    out = []
    for uid in meetings.site_ids(meeting, tree):
        unit = tree.get(uid)
        path = tree.path(uid)
        codes = tuple(u.code for u in path)
        below = [u for u in path if tree.in_subtree(u.id, meeting.host_unit_id)]
        below = [u for u in below if u.id != meeting.host_unit_id]
        group = below[0] if below else unit
        parent = tree.by_id.get(unit.parent_id) if unit.parent_id is not None else None
        out.append(
            InvitedSite(
                unit=unit.code,
                name=unit.name,
                level=unit.level,
                path=codes,
                group=group.code,
                group_name=group.name,
                parent_name=parent.name if parent else "",
            )
        )
    return out


class Attendance:
    def __init__(self, app: web.Application, registry: Registry) -> None:
        self.app = app
        self.registry = registry
        self.store = AttendanceStore(app[CTX], app[CTX].settings.own_code)
        self.store.listeners.append(self._to_rosters)
        registry.on_open.append(self._opened)
        self.stopping = False
        # The media link of each local site as last seen: (meeting, unit) -> socket, online.
        self._links: dict[tuple[int, str], _Link] = {}
        # Each child node's link as last recorded: (meeting, node code) -> up.
        self._nodes: dict[tuple[int, str], bool] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker: asyncio.Task[None] | None = None
        self._seeding: dict[int, asyncio.Task[None]] = {}
        # One roll-call change at a time per meeting (two starts at once open one).
        self._roll_locks: dict[int, asyncio.Lock] = {}

    @property
    def node(self) -> NodeContext:
        return self.app[CTX]

    def spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, coro: Awaitable[Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("attendance: storing an event failed")

    # -- rosters ------------------------------------------------------------------------------

    def _opened(self, live: LiveMeeting) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(self._seed(live)))
        self._seeding[live.meeting_id] = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ready(self, live: LiveMeeting) -> None:
        """Wait until a newly opened meeting's roster is filled (the first state a joining
        chair gets lists every invited site)."""
        task = self._seeding.get(live.meeting_id)
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if task.done() and self._seeding.get(live.meeting_id) is task:
                del self._seeding[live.meeting_id]

    async def _seed(self, live: LiveMeeting) -> None:
        """Fill a newly opened meeting's roster: its invited sites and what happened so far
        (after a restart, the drops recorded at startup among it)."""
        tree = self.node.units
        async with self.node.sessionmaker() as db:
            meeting = await db.get(Meeting, live.meeting_id)
        if meeting is None:
            return
        live.roster.invite(invited_sites(meeting, tree))
        for event in await self.store.meeting_events(live.meeting_id):
            live.roster.apply(event.happening())
        live.changed()

    def _to_rosters(self, events: Sequence[Stored]) -> None:
        touched = []
        for event in events:
            live = self.registry.get(event.meeting_id)
            if live is not None and live.roster.apply(event.happening()):
                touched.append(live)
        for live in dict.fromkeys(touched):
            live.changed()

    # -- sites ---------------------------------------------------------------------------------

    async def joined(self, live: LiveMeeting, site: Participant, replaced: bool) -> None:
        """A site's join was accepted (``replaced``: its earlier link was still there)."""
        if site.role != SITE:
            return
        self._links[(live.meeting_id, site.key)] = _Link(site, True)
        await self.store.record(
            live.meeting_id, site.key, RECONNECT if replaced else JOIN, reason="join"
        )

    async def departed(self, live: LiveMeeting, site: Participant, kind: str, reason: str) -> None:
        """A site left (``leave``) or its socket was lost (``drop``)."""
        if site.role != SITE:
            return
        link = self._links.get((live.meeting_id, site.key))
        if link is not None and link.site is site:
            del self._links[(live.meeting_id, site.key)]
        if kind == DROP and self.stopping:
            reason = "node_stopped"
        state = live.roster.state_of(site.key)
        if kind == DROP and state != PRESENCE[JOIN]:
            return  # its media link was already recorded lost
        await self.store.record(live.meeting_id, site.key, kind, reason=reason)

    def meeting_changed(self, live: LiveMeeting) -> None:
        """Observer of every change: a site's media link lost or back while its socket
        stays open."""
        for site in live.sites.values():
            key = (live.meeting_id, site.key)
            link = self._links.get(key)
            if link is None or link.site is not site:
                continue
            online = live.site_state(site)["online"]
            if online == link.online:
                continue
            link.online = online
            self.spawn(
                self.store.record(
                    live.meeting_id, site.key, RECONNECT if online else DROP, reason="media"
                )
            )

    # -- roll calls -----------------------------------------------------------------------------

    async def start_roll_call(self, live: LiveMeeting) -> RollCall | None:
        """Open a roll call (the chair's node): stored, then shown to every site, here and
        below (the ``/node`` namespace passes it down). None when one is open already."""
        lock = self._roll_locks.setdefault(live.meeting_id, asyncio.Lock())
        async with lock:
            if live.roll_call is not None and live.roll_call.open:
                return None
            return await self._open_roll_call(live)

    async def _open_roll_call(self, live: LiveMeeting) -> RollCall:
        async with self.node.sessionmaker() as db, db.begin():
            count = (
                await db.execute(
                    select(func.count())
                    .select_from(RollCallRow)
                    .where(RollCallRow.meeting_id == live.meeting_id)
                )
            ).scalar_one()
            roll_call = RollCall(number=int(count) + 1, started_at=self.node.clock())
            db.add(
                RollCallRow(
                    id=roll_call.id,
                    meeting_id=live.meeting_id,
                    number=roll_call.number,
                    started_at=_time(roll_call.started_at),
                )
            )
        live.roll_call = roll_call
        live.changed()
        return roll_call

    async def end_roll_call(self, live: LiveMeeting) -> RollCall | None:
        """Close the open roll call; None when none is open."""
        lock = self._roll_locks.setdefault(live.meeting_id, asyncio.Lock())
        async with lock:
            roll_call = live.roll_call
            if roll_call is None or not roll_call.open:
                return None
            roll_call.ended_at = self.node.clock()
            await self.remember_roll_call(live.meeting_id, roll_call)
        live.changed()
        return roll_call

    async def remember_roll_call(self, meeting_id: int, roll_call: RollCall) -> None:
        """Store a roll call as it is now (an upsert: a child hears of it twice, at its
        start and at its end)."""
        async with self.node.sessionmaker() as db, db.begin():
            row = await db.get(RollCallRow, roll_call.id)
            if row is None:
                db.add(
                    RollCallRow(
                        id=roll_call.id,
                        meeting_id=meeting_id,
                        number=roll_call.number,
                        started_at=_time(roll_call.started_at),
                        ended_at=_time(roll_call.ended_at) if roll_call.ended_at else None,
                    )
                )
            elif roll_call.ended_at is not None:
                row.ended_at = _time(roll_call.ended_at)

    # -- child nodes --------------------------------------------------------------------------

    async def node_link(
        self, live: LiveMeeting, code: str, units: list[str], up: bool, reason: str
    ) -> None:
        """A child node's link in this meeting went down (silent, lost, left) or came up."""
        key = (live.meeting_id, code)
        if self._nodes.get(key, False) == up:
            return
        self._nodes[key] = up
        await self.store.record(
            live.meeting_id,
            "",
            NODE_UP if up else NODE_DOWN,
            node=code,
            reason=reason,
            detail={"units": sorted(units)},
        )

    # -- restarts ------------------------------------------------------------------------------

    async def recover(self) -> None:
        """At startup: close what a crash (or a stop) left open, at the last time alive."""
        node = self.node
        code = self.store.code
        async with node.sessionmaker() as db:
            mark = await db.get(NodeMark, ALIVE)
            alive = mark.at if mark is not None else None
            last = (
                select(
                    AttendanceEvent.meeting_id,
                    AttendanceEvent.unit_code,
                    func.max(AttendanceEvent.id).label("last_id"),
                )
                .where(
                    AttendanceEvent.origin_node == code,
                    AttendanceEvent.kind.in_(list(PRESENCE)),
                )
                .group_by(AttendanceEvent.meeting_id, AttendanceEvent.unit_code)
                .subquery()
            )
            open_rows = (
                await db.execute(
                    select(AttendanceEvent).join(last, AttendanceEvent.id == last.c.last_id)
                )
            ).scalars()
            still = [
                (r.meeting_id, r.unit_code, r.at)
                for r in open_rows
                if PRESENCE[r.kind] == PRESENCE[JOIN]
            ]
            live_ids = (
                await db.execute(select(Meeting.id).where(Meeting.status == MeetingStatus.LIVE))
            ).scalars()
            live_meetings = list(live_ids)
        for meeting_id, unit, at in still:
            when = max(at, alive) if alive is not None else at
            await self.store.record(meeting_id, unit, DROP, at=when, reason="node_restart")
        if alive is not None:
            served = sorted(node.settings.served_units)
            for meeting_id in live_meetings:
                for kind, when in ((NODE_DOWN, alive), (NODE_UP, self.store.now())):
                    await self.store.record(
                        meeting_id,
                        "",
                        kind,
                        at=when,
                        node=code,
                        reason="node_restart",
                        detail={"units": served},
                    )
        if still:
            log.info("attendance: %d sites present at the last stop marked dropped", len(still))

    async def _alive(self) -> None:
        while True:
            await self._mark_alive()
            await asyncio.sleep(ALIVE_EVERY)

    async def _mark_alive(self, at: datetime | None = None) -> None:
        with contextlib.suppress(Exception):  # a busy database: the next beat tries again
            async with self.node.sessionmaker() as db, db.begin():
                mark = await db.get(NodeMark, ALIVE)
                if mark is None:
                    db.add(NodeMark(name=ALIVE, value=0, at=at or self.store.now()))
                else:
                    mark.at = at or self.store.now()

    async def start(self) -> None:
        await self.recover()
        await self._mark_alive()
        self._ticker = asyncio.get_running_loop().create_task(self._alive())

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        for task in tuple(self._tasks):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.store.drain(), 2.0)
        await self._mark_alive()


ATTENDANCE = web.AppKey("hoinghi_attendance", Attendance)


def setup_attendance(app: web.Application, registry: Registry) -> Attendance:
    attendance = Attendance(app, registry)
    app[ATTENDANCE] = attendance

    async def _stopping(_app: web.Application) -> None:
        attendance.stopping = True

    # First of the shutdown handlers: the sockets closed after it are drops at a stop.
    app.on_shutdown.insert(0, _stopping)

    async def _run(_app: web.Application) -> AsyncIterator[None]:
        await attendance.start()
        yield
        await attendance.close()

    app.cleanup_ctx.append(_run)
    return attendance
