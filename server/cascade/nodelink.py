"""The parent's side of the cascade: the ``/node`` socket.io namespace child nodes link to.

A child authenticates with the credential ``hoinghi node add`` issued (never logged), says
which units it serves (each must lie under a unit it was registered for), and then hears of
every meeting that concerns those units as it is scheduled, changed, cancelled, started and
ended. For a live meeting it joins as one RELAY participant: the program crosses the link
once, however many sites sit below (rooms/uplink.py is the child's side).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any, Literal

import socketio
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from rooms.meeting import RELAY, LiveMeeting, Participant, RoomError
from rooms.peer import WALL_SLOTS, MediaError
from server import meetings
from server.attendance.service import ATTENDANCE
from server.attendance.store import MAX_BATCH, EventIn
from server.cascade.nodes import (
    NodeError,
    NodeInfo,
    budgets,
    check_units,
    ended_links,
    verify_credential,
)
from server.models import Meeting, MeetingStatus
from server.sockets.guard import SocketGuard
from server.sockets.protocol import MAX_SDP, Event, fail, ok, validate
from server.sockets.signaling import MEETING_NS, REGISTRY, SIO
from server.state import CTX, NodeContext
from server.text import Line
from server.units import UnitTree

log = logging.getLogger(__name__)

NODE_NAMESPACE = "/node"
# A child beats every second; after this much silence (checked every WATCH_EVERY, so shown
# within 3 s) it and its sites are shown offline.
SILENCE = 2.5
WATCH_EVERY = 0.5
BUDGET_EVERY = 4  # watch rounds: budgets are read again every 2 s


class Hello(Event):
    units: list[Line] = Field(min_length=1, max_length=1000)
    url: Line = Field("", max_length=300)


class RelayJoin(Event):
    meeting_id: int = Field(ge=1, le=2**31 - 1)


class RelayOffer(Event):
    meeting_id: int = Field(ge=1, le=2**31 - 1)
    sdp: str = Field(min_length=1, max_length=MAX_SDP)


class ReceptionReport(BaseModel):
    """What a site below receives and how its node judges its link (rooms/linkrate.py)."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["auto", "high", "low", "lowest", "audio", "none"] = "auto"
    tier: Literal["high", "low", "lowest"] | None = None
    quality: Literal["good", "fair", "poor", "unknown"] = "unknown"
    kbit: int = Field(0, ge=0, le=10**7)
    loss_pct: float = Field(0.0, ge=0, le=100)
    rtt_ms: int | None = Field(None, ge=0, le=600_000)
    fps: float = Field(0.0, ge=0, le=1000)
    freezes: int = Field(0, ge=0, le=10**12)
    audio_played_pct: float | None = Field(None, ge=0, le=100)


class SiteReport(BaseModel):
    model_config = ConfigDict(extra="ignore")

    unit: Line = Field(min_length=1, max_length=64)
    name: Line = Field(max_length=200)
    path: list[Line] = Field(max_length=16)
    hand_raised: bool = False
    hand_raised_at: float = 0.0
    media: bool = False
    muted: bool = False
    mic_on: bool = True
    camera_on: bool = True
    online: bool = True  # false: a node between the reporter and the site went silent
    receive: ReceptionReport | None = None


class Presence(Event):
    meeting_id: int = Field(ge=1, le=2**31 - 1)
    sites: list[SiteReport] = Field(max_length=5000)
    # The video tiers in use below the child (rooms/budget.py); absent: every tier.
    needs: list[Literal["high", "low", "lowest"]] | None = Field(None, max_length=3)


class Heartbeat(Event):
    pass


class AttendanceBatch(Event):
    """Child → parent: attendance events, oldest first, with the child's measured clock
    offset to this node (added to each event's own offset)."""

    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)
    offset_ms: int = Field(0, ge=-(10**12), le=10**12)


class RollCallOrder(Event):
    """Parent → child ``roll_call``: a roll call opened or closed by the chair above."""

    meeting_id: int = Field(ge=1, le=2**31 - 1)
    id: Line = Field(min_length=1, max_length=36)
    number: int = Field(ge=1, le=10_000)
    started_at: float = Field(ge=0, le=253_402_300_799)
    ended_at: float | None = Field(None, ge=0, le=253_402_300_799)


class WatchOrder(Event):
    """Parent → child ``watch``: send ``unit``'s video up relay slot ``watch.{slot}``
    (``on``), or stop. The child checks it with this model too (server/cascade/parent_link.py)."""

    meeting_id: int = Field(ge=1, le=2**31 - 1)
    unit: Line = Field(min_length=1, max_length=64)
    slot: int = Field(ge=0, le=WALL_SLOTS - 1)
    on: bool


NODE_EVENTS: dict[str, type[Event]] = {
    "attendance": AttendanceBatch,
    "heartbeat": Heartbeat,
    "hello": Hello,
    "presence": Presence,
    "relay_join": RelayJoin,
    "relay_offer": RelayOffer,
    "relay_leave": RelayJoin,
}


def meeting_summary(meeting: Meeting, tree: UnitTree) -> dict[str, Any]:
    """What a child node needs to mirror a meeting for the operators below it."""
    data = meetings.meeting_json(meeting, tree)
    return {
        key: data[key]
        for key in (
            "id",
            "title",
            "description",
            "host_unit",
            "starts_at",
            "duration_minutes",
            "status",
            "started_at",
            "ended_at",
            "invited_units",
            "invited_subtrees",
        )
    }


def concerns(meeting: Meeting, tree: UnitTree, units: list[int]) -> bool:
    """Whether a meeting invites a site under (or at) one of ``units``."""
    sites = meetings.site_ids(meeting, tree)
    return any(tree.in_subtree(site, unit) for site in sites for unit in units)


class NodeNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, app: web.Application) -> None:
        super().__init__(NODE_NAMESPACE)
        self.app = app
        self._floor_sent: dict[int, str | None] = {}
        # What each relay was told to send up: (meeting id, relay sid) -> watch slot -> unit.
        self._watch_sent: dict[tuple[int, str], dict[int, str]] = {}
        self._watch_out: collections.deque[tuple[str, dict[str, Any]]] = collections.deque()
        self._watch_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beats: dict[str, float] = {}  # sid -> last heard
        self._silent: set[str] = set()
        self._watchdog: asyncio.Task[None] | None = None
        # Sockets between their connect and the start of their disconnect (a relay_join that
        # awaited while its socket closed must not leave a relay behind).
        self._linked: set[str] = set()
        # Each link's units (ids), kept past its disconnect for the attendance record.
        self._units_of: dict[str, list[int]] = {}
        # The roll call each meeting's relays were told of: meeting id -> (id, open).
        self._roll_sent: dict[int, tuple[str, bool] | None] = {}
        # Each link's credential, re-checked against the database: `hoinghi node revoke` (or a
        # new credential for the same code) drops the link within a second.
        self.guard: SocketGuard[NodeInfo] = SocketGuard(
            "node links", lambda links: ended_links(self.node, links), self._drop_link
        )

    @property
    def node(self) -> NodeContext:
        return self.app[CTX]

    async def on_connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        credential = auth.get("credential") if isinstance(auth, dict) else None
        address = environ.get("REMOTE_ADDR", "unknown")
        try:
            info = await verify_credential(
                self.node, credential if isinstance(credential, str) else "", address
            )
        except NodeError:  # verify_credential logged it, without the secret
            raise socketio.exceptions.ConnectionRefusedError(
                "bad_credential",
                {"error": "bad_credential", "message": "Unknown, wrong or revoked credential."},
            ) from None
        await self.save_session(sid, {"node": info, "units": [], "relays": {}, "address": address})
        self._beats[sid] = time.monotonic()
        self._linked.add(sid)
        self.guard.watch(sid, info)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        log.info("node %s linked from %s", info.code, address)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._linked.discard(sid)
        self.guard.forget(sid)
        self._beats.pop(sid, None)
        self._silent.discard(sid)
        session = await self.get_session(sid)
        for meeting_id in list(session.get("relays", {})):
            # Not a leave: the chair sees the node and its sites offline until it relinks.
            await self._leave(sid, session, meeting_id, lost=True)
        self._units_of.pop(sid, None)

    async def trigger_event(self, event: str, *args: Any) -> Any:
        # Only the server's own connection events arrive under these names: signaling.Server
        # answers a client's event named so ``unknown_event`` before it reaches a namespace.
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid, payload = args[0], (args[1] if len(args) > 1 else {})
        self._heard(sid)
        model = NODE_EVENTS.get(event)
        if model is None:
            return fail("unknown_event", f"No event {event!r}.")
        data = validate(model, payload)
        if isinstance(data, dict):
            return data
        try:
            return await getattr(self, f"_{event}")(sid, data)
        except NodeError as exc:
            return fail(exc.code, exc.message)
        except (RoomError, MediaError) as exc:
            return fail(exc.code, exc.message)
        except (TimeoutError, SQLAlchemyTimeout):  # the database's connections are all busy
            log.warning("node event %s: the database is busy", event)
            return fail("node_busy")
        except Exception:
            log.exception("node event %s failed", event)
            return fail("internal_error")

    # -- events -------------------------------------------------------------------------------

    # -- liveness -------------------------------------------------------------------------------

    def _heard(self, sid: str) -> None:
        if sid not in self._linked:
            return  # an event handled after its socket closed must not revive its beat
        self._beats[sid] = time.monotonic()
        if sid in self._silent:
            self._silent.discard(sid)
            self._set_online(sid, True)

    async def _heartbeat(self, sid: str, data: Heartbeat) -> dict[str, Any]:
        # This node's clock: the child measures its offset from it (and the round trip).
        return ok(now=self.node.clock())

    async def _attendance(self, sid: str, data: AttendanceBatch) -> dict[str, Any]:
        """Store a child's events exactly once; an event outside what the link may speak
        for (a meeting that does not concern its units, a site outside them) is refused by
        its index and not stored. The whole batch is acknowledged: the child sends on."""
        session = await self.get_session(sid)
        units: list[int] = session.get("units", [])
        if not units:
            return fail("not_joined", "Say hello first.")
        tree = self.node.units
        concerning: dict[int, bool] = {}
        accepted: list[EventIn] = []
        rejected: list[dict[str, Any]] = []
        for index, event in enumerate(data.events):
            if event.meeting_id not in concerning:
                concerning[event.meeting_id] = bool(
                    await self._meetings_for(units, event.meeting_id)
                )
            # A site's event speaks for its unit, a node's for the units it serves: each
            # must lie under the link's (a child cannot cut sites elsewhere off the record).
            spoken = event.node_units() or ([event.unit_code] if event.unit_code else [])
            found = [tree.by_code.get(code) for code in spoken]
            if not concerning[event.meeting_id]:
                rejected.append({"index": index, "error": "meeting_not_found"})
            elif not spoken or any(
                u is None or not any(tree.in_subtree(u.id, mine) for mine in units) for u in found
            ):
                rejected.append({"index": index, "error": "unit_out_of_scope"})
            else:
                accepted.append(event)
        if rejected:
            log.warning(
                "node %s sent %d attendance events it may not speak for",
                session["node"].code,
                len(rejected),
            )
        new, duplicates = await self.app[ATTENDANCE].store.store_from_below(
            accepted, data.offset_ms
        )
        return ok(stored=len(new), duplicates=duplicates, rejected=rejected)

    async def _refresh_budgets(self) -> None:
        """`hoinghi node set --budget` from any process: the relays of live meetings here
        follow it within BUDGET_EVERY checks."""
        relays = [
            relay for live in self.app[REGISTRY].meetings.values() for relay in live.relays.values()
        ]
        if not relays:
            return
        try:
            found = await budgets(self.node, {relay.key for relay in relays})
        except Exception:  # a busy database: the next round tries again
            log.warning("reading the link budgets failed", exc_info=True)
            return
        for relay in relays:
            relay.budget_kbit = found.get(relay.key)

    async def _watch(self) -> None:
        budget_due = BUDGET_EVERY
        woke = time.monotonic()
        while self._beats:
            await asyncio.sleep(WATCH_EVERY)
            now = time.monotonic()
            # A loop that ran late (this node busy) heard nobody meanwhile: its lateness is
            # not the children's silence, so it is added to every child's last beat.
            late = now - woke - WATCH_EVERY
            woke = now
            if late > WATCH_EVERY:
                for sid in self._beats:
                    self._beats[sid] += late
            budget_due -= 1
            if budget_due <= 0:
                budget_due = BUDGET_EVERY
                await self._refresh_budgets()
            for sid, last in list(self._beats.items()):
                if now - last > SILENCE and sid not in self._silent:
                    self._silent.add(sid)
                    log.warning("node link %s silent for %.1f s", sid, now - last)
                    self._set_online(sid, False)

    def _set_online(self, sid: str, online: bool) -> None:
        for live in list(self.app[REGISTRY].meetings.values()):
            relay = live.by_sid(sid)
            if relay is not None and relay.role == RELAY:
                live.set_relay_online(relay.key, online)
                self._spawn(self._node_state(sid, live, relay.key, online, "silent"))

    async def _node_state(
        self, sid: str, live: LiveMeeting, code: str, up: bool, reason: str
    ) -> None:
        """Attendance: a child node's link in a meeting went down or came back up."""
        tree = self.node.units
        units = [tree.get(i).code for i in self._units_of.get(sid, []) if i in tree.by_id]
        try:
            await self.app[ATTENDANCE].node_link(live, code, units, up, reason)
        except Exception:
            log.exception("attendance: recording node %s %s failed", code, "up" if up else "down")

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _hello(self, sid: str, data: Hello) -> dict[str, Any]:
        session = await self.get_session(sid)
        info = session["node"]
        try:
            await check_units(self.node, info, data.units, session["address"])
        except NodeError as exc:  # check_units logged it
            return fail(exc.code, exc.message)
        tree = self.node.units
        session["units"] = [tree.by_code[c].id for c in data.units]
        self._units_of[sid] = session["units"]
        session["url"] = data.url
        await self.save_session(sid, session)
        await self.enter_room(sid, "nodes")
        return ok(meetings=await self._meetings_for(session["units"]))

    async def _meetings_for(
        self, units: list[int], meeting_id: int | None = None
    ) -> list[dict[str, Any]]:
        tree = self.node.units
        async with self.node.sessionmaker() as db:
            query = select(Meeting).where(
                Meeting.status.in_(
                    [
                        MeetingStatus.SCHEDULED,
                        MeetingStatus.LIVE,
                        MeetingStatus.CANCELLED,
                        MeetingStatus.ENDED,
                    ]
                )
            )
            if meeting_id is not None:
                query = query.where(Meeting.id == meeting_id)
            else:
                query = query.where(
                    Meeting.status.in_([MeetingStatus.SCHEDULED, MeetingStatus.LIVE])
                )
            rows = (await db.execute(query)).scalars().unique().all()
        return [meeting_summary(m, tree) for m in rows if concerns(m, tree, units)]

    async def _relay_join(self, sid: str, data: RelayJoin) -> dict[str, Any]:
        session = await self.get_session(sid)
        info = session["node"]
        found = await self._meetings_for(session["units"], data.meeting_id)
        if not found:
            return fail("meeting_not_found")
        summary = found[0]
        if summary["status"] != MeetingStatus.LIVE.value:
            return fail("meeting_not_open", f"The meeting is {summary['status']}.")
        live = self.app[REGISTRY].open(data.meeting_id, summary["title"], summary["host_unit"])
        live.live = True
        tree = self.node.units
        unit = tree.by_code.get(info.code) or tree.get(session["units"][0])
        relay = Participant(
            key=info.code,
            role=RELAY,
            unit_name=unit.name,
            unit_path=[u.name for u in tree.path(unit.id)],
            user_id=0,
            sid=sid,
            budget_kbit=(await budgets(self.node, [info.code])).get(info.code),
        )
        self._floor_sent.pop(data.meeting_id, None)  # the newcomer must hear who speaks
        self._roll_sent.pop(data.meeting_id, None)  # and of an open roll call
        await live.join(relay)
        session["relays"][data.meeting_id] = True
        with contextlib.suppress(KeyError):  # the socket is gone: checked just below
            await self.save_session(sid, session)
        if sid not in self._linked:  # it closed during the join: leave no relay behind
            await self._leave(sid, session, data.meeting_id, lost=True)
            return fail("not_joined", "The link closed during the join.")
        await self._node_state(sid, live, relay.key, True, "joined")
        return ok(layout=[s.public() for s in live.layout(RELAY)])

    async def _relay_offer(self, sid: str, data: RelayOffer) -> dict[str, Any]:
        live, relay = await self._relay(sid, data.meeting_id)
        answer = await live.connect(relay, data.sdp)
        return ok(sdp=answer, type="answer")

    async def _presence(self, sid: str, data: Presence) -> dict[str, Any]:
        live, relay = await self._relay(sid, data.meeting_id)
        session = await self.get_session(sid)
        tree = self.node.units
        outside = [
            site.unit
            for site in data.sites
            if site.unit not in tree.by_code
            or not any(tree.in_subtree(tree.by_code[site.unit].id, u) for u in session["units"])
        ]
        if outside:
            log.warning("node %s reported sites outside its scope: %s", relay.key, outside[:5])
            return fail("unit_out_of_scope", f"Sites outside this node's units: {outside[:5]}")
        relay.needs = None if data.needs is None else frozenset(data.needs)
        live.set_remote_sites(relay.key, [site.model_dump() for site in data.sites])
        return ok()

    async def _relay_leave(self, sid: str, data: RelayJoin) -> dict[str, Any]:
        session = await self.get_session(sid)
        await self._leave(sid, session, data.meeting_id)
        await self.save_session(sid, session)
        return ok()

    async def _relay(self, sid: str, meeting_id: int) -> tuple[LiveMeeting, Participant]:
        live = self.app[REGISTRY].get(meeting_id)
        relay = live.by_sid(sid) if live else None
        if live is None or relay is None:
            raise RoomError("not_joined", "Join the meeting as a relay first.")
        return live, relay

    async def _leave(
        self, sid: str, session: dict[str, Any], meeting_id: int, lost: bool = False
    ) -> None:
        session.get("relays", {}).pop(meeting_id, None)
        live = self.app[REGISTRY].get(meeting_id)
        # By socket, not by node code: a node that relinked has a newer relay by now, and
        # the old socket's late disconnect must not remove it.
        relay = live.by_sid(sid) if live is not None else None
        if live is not None and relay is not None and relay.role == RELAY:
            await (live.relay_lost(relay) if lost else live.leave(relay))
            await self._node_state(sid, live, relay.key, False, "lost" if lost else "left")

    # -- telling children ---------------------------------------------------------------------

    def meeting_changed(self, live: LiveMeeting) -> None:
        """Observer of live meetings: tell every relay when the floor moves, and what to
        send up its watch slots."""
        self._send_watches(live)
        if not live.relays:
            return
        self._send_roll_call(live)
        holder = live.floor_holder()
        unit = holder["unit"] if holder else None
        if (
            self._floor_sent.get(live.meeting_id, None) == unit
            and live.meeting_id in self._floor_sent
        ):
            return
        self._floor_sent[live.meeting_id] = unit
        payload = {
            "meeting_id": live.meeting_id,
            "unit": unit,
            "name": holder["name"] if holder else None,
        }
        sids = [relay.sid for relay in live.relays.values()]
        task = asyncio.get_running_loop().create_task(self._emit_all("floor", payload, sids))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _send_roll_call(self, live: LiveMeeting) -> None:
        """Tell every relay when a roll call opens or closes (a relay that joined later is
        told of the one open)."""
        roll_call = live.roll_call
        now = (roll_call.id, roll_call.open) if roll_call is not None else None
        if live.meeting_id in self._roll_sent and self._roll_sent[live.meeting_id] == now:
            return
        self._roll_sent[live.meeting_id] = now
        if roll_call is None:
            return
        order = RollCallOrder(meeting_id=live.meeting_id, **roll_call.public_order())
        sids = [relay.sid for relay in live.relays.values()]
        self._spawn(self._emit_all("roll_call", order.model_dump(), sids))

    def _send_watches(self, live: LiveMeeting) -> None:
        """Tell each relay what changed in the sites it must send up (stops first). A relay
        that relinked has a new socket, so it is told everything that is still watched."""
        wanted = live.relay_watches()
        linked = {relay.sid: relay.key for relay in live.relays.values()}
        for key in [k for k in self._watch_sent if k[0] == live.meeting_id]:
            if key[1] not in linked:
                del self._watch_sent[key]
        for sid, code in linked.items():
            sent = self._watch_sent.setdefault((live.meeting_id, sid), {})
            want = wanted.get(code, {})
            for slot, unit in sorted(sent.items()):
                if want.get(slot) != unit:
                    del sent[slot]
                    self._queue_watch(
                        sid, WatchOrder(meeting_id=live.meeting_id, unit=unit, slot=slot, on=False)
                    )
            for slot, unit in sorted(want.items()):
                if sent.get(slot) != unit:
                    sent[slot] = unit
                    self._queue_watch(
                        sid, WatchOrder(meeting_id=live.meeting_id, unit=unit, slot=slot, on=True)
                    )

    def _queue_watch(self, sid: str, order: WatchOrder) -> None:
        """One sender for all watch orders, so each relay gets them in the order decided."""
        self._watch_out.append((sid, order.model_dump()))
        if self._watch_task is None or self._watch_task.done():
            task = asyncio.get_running_loop().create_task(self._drain_watches())
            self._watch_task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain_watches(self) -> None:
        while self._watch_out:
            sid, payload = self._watch_out.popleft()
            with contextlib.suppress(Exception):  # the child may be gone meanwhile
                await self.emit("watch", payload, to=sid)

    async def _emit_all(self, event: str, payload: dict[str, Any], sids: list[str]) -> None:
        await asyncio.gather(
            *(self.emit(event, payload, to=sid) for sid in sids), return_exceptions=True
        )

    async def announce(self, meeting_id: int) -> None:
        """Send the meeting to every linked child it concerns."""
        sessions = []
        for sid in self._linked_sids():
            session = await self.get_session(sid)
            if session and session.get("units"):
                sessions.append((sid, session))
        sends = []
        for sid, session in sessions:
            found = await self._meetings_for(session["units"], meeting_id)
            if found:
                sends.append(self.emit("meeting", {"meeting": found[0]}, to=sid))
        await asyncio.gather(*sends, return_exceptions=True)

    def _linked_sids(self) -> list[str]:
        manager = self.app[SIO].manager
        return [sid for sid, _eio in manager.get_participants(NODE_NAMESPACE, "nodes")]

    async def _drop_link(self, sid: str, reason: str) -> None:
        log.warning("node link %s dropped: its credential was %s", sid, reason)
        await self.disconnect(sid)  # its relinks are refused bad_credential at connect

    async def close(self) -> None:
        await self.guard.close()
        for task in (self._watchdog, *self._tasks):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task


NODE_NS = web.AppKey("hoinghi_node_namespace", NodeNamespace)


def setup_nodelink(app: web.Application) -> NodeNamespace:
    namespace = NodeNamespace(app)
    app[SIO].register_namespace(namespace)
    app[NODE_NS] = namespace
    app[CTX].meeting_listeners.append(namespace.announce)
    app[MEETING_NS].observers.append(namespace.meeting_changed)
    app[CTX].session_listeners.append(namespace.guard.nudge)

    async def _close(_app: web.Application) -> None:
        await namespace.close()

    app.on_shutdown.append(_close)
    return namespace
