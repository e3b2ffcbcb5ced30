"""The ``/meeting`` events of attendance: a site's head count, roll calls, calling a site.

Each handler checks the caller's role in the meeting; what it stores is an attendance event
(server/attendance/), committed before the answer, that travels up the tree like the rest.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rooms.meeting import CHAIR, SITE, RoomError
from rooms.roster import HEAD_COUNT, ONLINE, ROLL_ANSWER
from server.attendance.service import ATTENDANCE, Attendance
from server.sockets.protocol import CallSite, Empty, HeadCount, RollCallAnswer, fail, ok

if TYPE_CHECKING:
    from server.sockets.signaling import Handler, MeetingNamespace


class AttendanceEvents:
    def __init__(self, namespace: MeetingNamespace) -> None:
        self.ns = namespace

    def handlers(self) -> dict[str, Handler]:
        return {
            "head_count": self._head_count,
            "roll_call_start": self._roll_call_start,
            "roll_call_end": self._roll_call_end,
            "roll_call_answer": self._roll_call_answer,
            "call_site": self._call_site,
        }

    @property
    def attendance(self) -> Attendance:
        return self.ns.app[ATTENDANCE]

    async def _head_count(self, sid: str, data: HeadCount) -> dict[str, Any]:
        live, site = await self.ns._member(sid, SITE)
        names = [a.model_dump() for a in data.names]
        await self.attendance.store.record(
            live.meeting_id,
            site.key,
            HEAD_COUNT,
            head_count=data.count,
            detail={"names": names} if names else None,
        )
        return ok(count=data.count)

    async def _roll_call_start(self, sid: str, data: Empty) -> dict[str, Any]:
        live, _ = await self.ns._member(sid, CHAIR)
        if (refused := await self.ns._session_holds(sid)) is not None:
            return refused
        if not live.live:
            return fail("not_live")
        if live.roll_call is not None and live.roll_call.open:
            return fail("roll_call_open")
        roll_call = await self.attendance.start_roll_call(live)
        if roll_call is None:  # another start won meanwhile
            return fail("roll_call_open")
        return ok(roll_call=roll_call.public())

    async def _roll_call_end(self, sid: str, data: Empty) -> dict[str, Any]:
        live, _ = await self.ns._member(sid, CHAIR)
        if live.roll_call is None or not live.roll_call.open:
            return fail("no_roll_call")
        roll_call = await self.attendance.end_roll_call(live)
        if roll_call is None:  # another end won meanwhile
            return fail("no_roll_call")
        return ok(roll_call=roll_call.public(), tally=live.roster.tally(roll_call.id))

    async def _roll_call_answer(self, sid: str, data: RollCallAnswer) -> dict[str, Any]:
        live, site = await self.ns._member(sid, SITE)
        roll_call = live.roll_call
        if roll_call is None or not roll_call.open or roll_call.id != data.roll_call:
            return fail("roll_call_closed")
        await self.attendance.store.record(
            live.meeting_id, site.key, ROLL_ANSWER, head_count=data.count, roll_call=roll_call.id
        )
        return ok()

    async def _call_site(self, sid: str, data: CallSite) -> dict[str, Any]:
        """Give the floor to one site by name, or to the next (previous) connected site of
        the roster's order after (before) the one holding it."""
        live, _ = await self.ns._member(sid, CHAIR)
        unit = data.unit
        if unit is None:
            connected = live.sites.keys() | live.remote_sites.keys()
            order = [
                s["unit"]
                for s in live.roster.view()["sites"]
                if s["state"] == ONLINE and s["unit"] in connected
            ]
            if not order:
                return fail("no_site_to_call")
            if live.floor in order:
                i = order.index(live.floor) + (1 if data.step == "next" else -1)
            else:
                i = 0 if data.step == "next" else len(order) - 1
            if not 0 <= i < len(order):
                return fail("no_site_to_call")
            unit = order[i]
        try:
            live.give_floor(unit)
        except RoomError as exc:
            return fail(exc.code, exc.message)
        return ok(unit=unit)
