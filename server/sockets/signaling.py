"""The ``/meeting`` socket.io namespace: joining, offer/answer, and the chair's controls.

python-socketio ships no type hints, so it is wrapped here and nowhere else. A handler's
return value is the acknowledgement: ``{"ok": true, ...}`` or ``{"ok": false, "error": CODE,
"message": TEXT}``; no traceback reaches a client (docs/protocol.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie
from typing import Any

import socketio
from aiohttp import web
from socketio import packet
from sqlalchemy.exc import TimeoutError as SQLAlchemyTimeout

from rooms.meeting import CHAIR, SITE, LiveMeeting, Participant, RoomError
from rooms.peer import MediaError
from rooms.registry import Registry
from rooms.roster import DROP, LEAVE
from server import auth, meetings
from server.attendance.service import ATTENDANCE
from server.cascade.doors import PARENT, served_elsewhere
from server.errors import AppError
from server.models import MeetingStatus, Role
from server.sockets import sessions as socket_sessions
from server.sockets.attendance_events import AttendanceEvents
from server.sockets.guard import SocketGuard
from server.sockets.link_events import LinkEvents
from server.sockets.protocol import (
    EVENTS,
    Devices,
    Empty,
    GiveFloor,
    Join,
    Mute,
    Offer,
    RaiseHand,
    Watch,
    fail,
    ok,
    validate,
)
from server.state import CTX, NodeContext

log = logging.getLogger(__name__)

NAMESPACE = "/meeting"
MAX_MESSAGE = 128 * 1024
# engine.io's heartbeat: the node pings every PING_INTERVAL s and a client that has heard
# nothing for PING_INTERVAL + PING_TIMEOUT s drops the socket and reconnects, so a page learns
# that its node is gone within 3 s (docs/protocol.md, "Liveness"); the node, likewise, of a
# page whose network went away. A ping costs a few bytes a second per socket.
PING_INTERVAL = 1
PING_TIMEOUT = 2
CLOSE_TIMEOUT = 2.0  # at shutdown, for every socket to be closed
# A meeting's participants get at most one ``state`` per PUSH_EVERY s (changes in between are
# coalesced), and none that equals the last one they got: a burst of attendance events
# from hundreds of sites must not become hundreds of pushes of the chair's whole roster to
# every site (bench/attendance.py). The pages show a change within this.
PUSH_EVERY = 0.2
REGISTRY = web.AppKey("hoinghi_registry", Registry)
SIO = web.AppKey("hoinghi_sio", socketio.AsyncServer)

Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]
CLOSED = (MeetingStatus.CANCELLED, MeetingStatus.ENDED)


class Server(socketio.AsyncServer):  # type: ignore[misc]
    """The socket.io server, refusing client events named like its own connection events.

    python-socketio passes a client's ``connect`` or ``disconnect`` event to a namespace's
    ``trigger_event`` exactly as it passes the real ones, so the namespace cannot tell them
    apart; here, where a client's event arrives, it can. Every namespace on this server is
    covered (``/meeting`` and ``/node``).
    """

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: Any, data: Any) -> None:
        event = data[0] if isinstance(data, list) and data else None
        if event not in self.reserved_events:
            await super()._handle_event(eio_sid, namespace, id, data)
            return
        if id is not None:  # the client asked for an acknowledgement: give it the refusal
            answer = fail("unknown_event", f"No event {event!r}: the name is reserved.")
            await self._send_packet(
                eio_sid,
                self.packet_class(packet.ACK, namespace=namespace or "/", id=id, data=[answer]),
            )


# The two private methods overridden or called above: a python-socketio that renamed them
# would silently let reserved names through again, so refuse to start instead.
if not all(
    callable(getattr(socketio.AsyncServer, m, None)) for m in ("_handle_event", "_send_packet")
):
    raise RuntimeError("this python-socketio version lacks AsyncServer._handle_event/_send_packet")


class MeetingNamespace(socketio.AsyncNamespace):  # type: ignore[misc]
    def __init__(self, app: web.Application) -> None:
        super().__init__(NAMESPACE)
        self.app = app
        self.registry = Registry(self._changed)
        # Also told of every change of a live meeting (the cascade reports up and down).
        self.observers: list[Callable[[LiveMeeting], None]] = []
        self._dirty: set[int] = set()
        self._flush: asyncio.Task[None] | None = None
        self._pushed_at: dict[int, float] = {}  # meeting id -> loop time of its last push
        self._last_state: dict[str, dict[str, Any]] = {}  # sid -> the state it was sent
        self._tasks: set[asyncio.Task[Any]] = set()
        # Sockets between their connect and the start of their disconnect: a handler that
        # awaited meanwhile checks here that its socket is still there (a join racing a close).
        self._connected: set[str] = set()
        # Each socket's login session, re-checked against the database: a logout, a disabled
        # account, a reset password, a new role or unit, an expiry ends the socket within 1 s.
        self.guard: SocketGuard[socket_sessions.Ticket] = SocketGuard(
            "meeting sessions",
            lambda tickets: socket_sessions.ended(self.node, tickets),
            self._end_session,
        )
        self.handlers: dict[str, Handler] = {
            "join": self._join,
            "offer": self._offer,
            "start": self._start,
            "end": self._end,
            "raise_hand": self._raise_hand,
            "give_floor": self._give_floor,
            "take_floor": self._take_floor,
            "mute": self._mute,
            "watch": self._watch,
            "devices": self._devices,
            "leave": self._leave,
            **AttendanceEvents(self).handlers(),
            **LinkEvents(self).handlers(),
        }
        assert set(self.handlers) == set(EVENTS), "every event needs a model and a handler"

    @property
    def node(self) -> NodeContext:
        return self.app[CTX]

    # -- connection ---------------------------------------------------------------------------

    async def on_connect(self, sid: str, environ: dict[str, Any], auth_data: Any = None) -> None:
        cookie = SimpleCookie(environ.get("HTTP_COOKIE", ""))
        morsel = cookie.get(auth.SESSION_COOKIE)
        found = await socket_sessions.open_ticket(self.node, morsel.value) if morsel else None
        if found is None:
            # socket.io sends {"message": arg 1, "data": arg 2}; a lone dict would be str()-ed.
            raise socketio.exceptions.ConnectionRefusedError(
                "not_authenticated", {"error": "not_authenticated", "message": "Log in first."}
            )
        user, ticket = found
        await self.save_session(sid, {"user": user})
        self._connected.add(sid)
        self.guard.watch(sid, ticket)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self._connected.discard(sid)
        self._last_state.pop(sid, None)
        self.guard.forget(sid)
        session = await self.get_session(sid)
        await self._depart(sid, session, DROP, "socket")

    async def trigger_event(self, event: str, *args: Any) -> Any:
        """Every event goes through here: model validation, then its handler, then the ack."""
        # Only the server's own connection events arrive under these names: signaling.Server
        # answers a client's event named so ``unknown_event`` before it reaches a namespace.
        if event in ("connect", "disconnect"):
            return await super().trigger_event(event, *args)
        sid = args[0]
        payload = args[1] if len(args) > 1 else {}
        handler = self.handlers.get(event)
        if handler is None:
            return fail("unknown_event", f"No event {event!r}.")
        if not self.guard.watched(sid):  # its session ended: the socket is being closed
            return fail("not_authenticated", "The session has ended; log in again.")
        data = validate(EVENTS[event], payload)
        if isinstance(data, dict):
            return data
        try:
            return await handler(sid, data)
        except (RoomError, MediaError) as exc:
            return fail(exc.code, exc.message)
        except AppError as exc:
            return fail(
                exc.code if exc.code in ("meeting_not_found",) else "forbidden", exc.message
            )
        except (TimeoutError, SQLAlchemyTimeout):  # the database's connections are all busy
            log.warning("event %s: the database is busy", event, extra={"peer": sid})
            return fail("node_busy")
        except Exception:
            if sid not in self._connected:  # its socket closed meanwhile: nobody to answer
                log.info("event %s of a closed socket dropped", event, extra={"peer": sid})
            else:
                log.exception("event %s failed", event)
            return fail("internal_error")

    # -- helpers ------------------------------------------------------------------------------

    async def _end_session(self, sid: str, reason: str) -> None:
        """The guard found this socket's session ended: say why, then close it (and so
        leave its meeting)."""
        with contextlib.suppress(Exception):  # gone already: nothing to tell
            await self.emit("session_ended", {"reason": reason}, to=sid)
        await self.disconnect(sid)

    async def _session_holds(self, sid: str) -> dict[str, Any] | None:
        """Before an action that changes a meeting: the refusal when the socket's session
        ended since the guard last looked (the socket is then closed), else None."""
        reason = await self.guard.recheck(sid)
        if reason is None:
            return None
        return fail("not_authenticated", f"The session has ended ({reason}); log in again.")

    async def _member(self, sid: str, role: str | None = None) -> tuple[LiveMeeting, Participant]:
        session = await self.get_session(sid)
        live = self.registry.get(session.get("meeting_id", 0))
        participant = live.by_sid(sid) if live else None
        if live is None or participant is None:
            raise RoomError("not_joined", "Join a meeting first.")
        if role is not None and participant.role != role:
            raise RoomError("forbidden", f"Only the {role} may do this.")
        return live, participant

    async def _set_status(self, meeting_id: int, status: MeetingStatus) -> MeetingStatus | None:
        """Store ``status`` unless the meeting is closed (cancelled or ended): nothing reopens
        one. Returns the status found."""
        async with self.node.sessionmaker() as db, db.begin():
            return await meetings.set_status(db, meeting_id, status)

    def _changed(self, live: LiveMeeting) -> None:
        """Coalesce state broadcasts: one per meeting per loop turn."""
        for observer in self.observers:
            observer(live)
        self._dirty.add(live.meeting_id)
        if self._flush is None or self._flush.done():
            self._flush = asyncio.get_running_loop().create_task(self._broadcast())

    async def _broadcast(self) -> None:
        # Loop: a change made while the sends below are awaited finds this task not done
        # and schedules nothing, so it must be picked up here.
        loop = asyncio.get_running_loop()
        while self._dirty:
            await asyncio.sleep(0)
            now = loop.time()
            last = self._pushed_at
            due = {m for m in self._dirty if now - last.get(m, -PUSH_EVERY) >= PUSH_EVERY}
            if not due:  # every changed meeting was pushed just now: wait for the first
                await asyncio.sleep(
                    min(PUSH_EVERY - (now - self._pushed_at[m]) for m in self._dirty)
                )
                continue
            self._dirty -= due
            sends = []
            for meeting_id in due:
                live = self.registry.get(meeting_id)
                if live is None:
                    self._pushed_at.pop(meeting_id, None)
                    continue
                sends.extend(self._states(live, now))
            # Concurrently, so one slow socket stalls nobody.
            await asyncio.gather(*sends, return_exceptions=True)

    def _states(self, live: LiveMeeting, now: float) -> list[Awaitable[Any]]:
        """The sends of a meeting's state to each participant whose state changed."""
        self._pushed_at[live.meeting_id] = now
        sends = []
        for p in (live.chair, *live.sites.values()):
            if p is None:
                continue
            state = live.state_for(p)
            if self._last_state.get(p.sid) == state:
                continue
            self._last_state[p.sid] = state
            sends.append(self.emit("state", state, to=p.sid))
        return sends

    async def _depart(
        self, sid: str, session: dict[str, Any], kind: str | None, reason: str
    ) -> None:
        """A socket leaves its meeting: ``kind`` is how attendance records it (a ``leave``
        asked for, a ``drop``: the socket was lost; None: not at all)."""
        live = self.registry.get(session.get("meeting_id", 0))
        if live is None:
            return
        participant = live.by_sid(sid)
        if participant is not None:
            await live.leave(participant)
            if kind is not None:
                await self.app[ATTENDANCE].departed(live, participant, kind, reason)
        if live.ended and live.chair is None and not live.sites:
            await self.registry.discard(live)

    # -- events -------------------------------------------------------------------------------

    async def _join(self, sid: str, data: Join) -> dict[str, Any]:
        if (refused := await self._session_holds(sid)) is not None:
            return refused
        session = await self.get_session(sid)
        user: auth.CurrentUser = session["user"]
        node = self.node
        tree = node.units
        async with node.sessionmaker() as db:
            meeting = await meetings.get_visible(db, user, tree, data.meeting_id)
        if meeting.status in CLOSED:
            return fail("meeting_not_open", f"The meeting is {meeting.status.value}.")
        if user.role is Role.CHAIR and user.unit_id == meeting.host_unit_id:
            role = CHAIR
        elif user.role in (Role.OPERATOR, Role.CHAIR) and user.unit_id in meetings.site_ids(
            meeting, tree
        ):
            role = SITE
        else:
            return fail("not_invited")
        if role == SITE or meeting.origin is not None:
            # One site, one link: a site whose unit another node serves (a child below, or
            # the parent above) joins there, never here too. The host's chair always may, on
            # the host's node: a meeting mirrored from the parent is chaired up there.
            door = await served_elsewhere(node, user.role, user.unit_id, with_url_only=False)
            if door is not None:
                where = "the parent node" if door["node"] == PARENT else f"node {door['node']}"
                return fail(
                    "served_elsewhere",
                    f"Your unit is served by {where}: join the meeting there.",
                    node=door["node"],
                    url=door["url"],
                )
        if session.get("meeting_id"):
            # Joining the same meeting again (a new media link) is no leave: the join says it.
            again = session["meeting_id"] == meeting.id
            await self._depart(sid, session, None if again else LEAVE, "switched")
        unit = tree.get(user.unit_id)
        live = self.registry.open(meeting.id, meeting.title, tree.get(meeting.host_unit_id).code)
        if meeting.status is MeetingStatus.LIVE and not live.live:
            live.live = True  # the node restarted during a live meeting
        await self.app[ATTENDANCE].ready(live)
        participant = Participant(
            key=unit.code,
            role=role,
            unit_name=unit.name,
            unit_path=[u.name for u in tree.path(unit.id)],
            user_id=user.id,
            sid=sid,
        )
        old = await live.join(participant)
        session["meeting_id"] = meeting.id
        if old is not None and old.sid != sid:
            await self.emit("replaced", {"meeting_id": meeting.id}, to=old.sid)
        with contextlib.suppress(KeyError):  # the socket is gone: checked just below
            await self.save_session(sid, session)
        if sid not in self._connected:
            # It closed while this join awaited: its disconnect may have found nothing to
            # remove, so remove the participant here (leaving twice is harmless).
            await self._depart(sid, session, DROP, "socket")
            return fail("not_joined", "The socket closed during the join.")
        await self.app[ATTENDANCE].joined(
            live, participant, replaced=old is not None and old.sid != sid
        )
        log.info("joined", extra={"meeting": meeting.id, "unit": unit.code, "peer": sid})
        return ok(
            role=role,
            unit=unit.code,
            layout=[s.public() for s in live.layout(role)],
            state=live.state_for(participant),
        )

    async def _offer(self, sid: str, data: Offer) -> dict[str, Any]:
        live, participant = await self._member(sid)
        if participant.peer is not None:
            return fail("already_negotiated")
        answer = await live.connect(participant, data.sdp)
        live.changed()  # the chair's view of this site's media changed
        return ok(sdp=answer, type="answer")

    async def _start(self, sid: str, data: Empty) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        if (refused := await self._session_holds(sid)) is not None:
            return refused
        if live.ended:
            return fail("meeting_ended")
        found = await self._set_status(live.meeting_id, MeetingStatus.LIVE)
        if found in CLOSED:
            return fail("meeting_not_open", f"The meeting is {found.value}.")
        live.start()
        await self.node.announce(live.meeting_id)
        return ok()

    async def _end(self, sid: str, data: Empty) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        if (refused := await self._session_holds(sid)) is not None:
            return refused
        await self._set_status(live.meeting_id, MeetingStatus.ENDED)
        await self.end_meeting(live.meeting_id)
        await self.node.announce(live.meeting_id)
        return ok()

    async def end_meeting(self, meeting_id: int) -> None:
        """End a live meeting from outside a chair's socket (the parent node ended it)."""
        live = self.registry.get(meeting_id)
        if live is None or live.ended:
            return
        attendance = self.app[ATTENDANCE]
        for site in list(live.sites.values()):
            await attendance.departed(live, site, LEAVE, "meeting_ended")
        await live.end()
        # The last state first (status "ended"), whatever the push interval, then ``ended``.
        self._dirty.discard(meeting_id)
        now = asyncio.get_running_loop().time()
        await asyncio.gather(*self._states(live, now), return_exceptions=True)
        # To the current links only: one that left, or was replaced, is elsewhere by now.
        ended = {"meeting_id": meeting_id}
        await asyncio.gather(
            *(self.emit("ended", ended, to=p.sid) for p in (live.chair, *live.sites.values()) if p),
            return_exceptions=True,
        )

    async def _raise_hand(self, sid: str, data: RaiseHand) -> dict[str, Any]:
        live, participant = await self._member(sid, SITE)
        live.raise_hand(participant, data.raised)
        return ok()

    async def _give_floor(self, sid: str, data: GiveFloor) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        live.give_floor(data.unit)
        return ok()

    async def _take_floor(self, sid: str, data: Empty) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        live.take_floor()
        return ok()

    async def _mute(self, sid: str, data: Mute) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        live.set_muted(data.unit, data.muted)
        return ok()

    async def _watch(self, sid: str, data: Watch) -> dict[str, Any]:
        live, _ = await self._member(sid, CHAIR)
        live.watch(data.unit, data.watch)
        return ok()

    async def _devices(self, sid: str, data: Devices) -> dict[str, Any]:
        live, participant = await self._member(sid)
        live.report_devices(participant, data.mic_on, data.camera_on)
        return ok()

    async def _leave(self, sid: str, data: Empty) -> dict[str, Any]:
        session = await self.get_session(sid)
        await self._depart(sid, session, LEAVE, "leave")
        session.pop("meeting_id", None)
        await self.save_session(sid, session)
        return ok()

    async def close(self) -> None:
        """At shutdown: the sockets first, then the meetings' peer connections.

        aiohttp's graceful shutdown waits for every open request, and a socket.io socket is
        one that never ends by itself: closing them all here (pages are told at once and
        start reconnecting; child nodes too) lets a SIGTERM stop the node within seconds.
        """
        eio = self.app[SIO].eio
        # A namespace disconnect first: the page hears "io server disconnect" at once (an
        # engine.io close alone reached it only when its heartbeat ran out).
        sids = [sid for sid, _ in self.app[SIO].manager.get_participants(NAMESPACE, None)]
        await asyncio.gather(*(self.disconnect(sid) for sid in sids), return_exceptions=True)
        log.info("stopping: %d meeting sockets closed", len(sids))
        # Then every engine.io socket left (child nodes' links), each by its id: one may
        # already be gone by the time its close runs.
        closing = [eio.disconnect(sid) for sid in list(eio.sockets)]
        if closing:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), CLOSE_TIMEOUT
                )
            except TimeoutError:
                log.warning("sockets still closing after %.0f s at shutdown", CLOSE_TIMEOUT)
        if self._flush is not None:
            self._flush.cancel()
        await self.guard.close()
        await self.registry.close()


MEETING_NS = web.AppKey("hoinghi_meeting_namespace", MeetingNamespace)


def setup_signaling(app: web.Application) -> MeetingNamespace:
    sio = Server(
        async_mode="aiohttp",
        # Same-origin only: a page elsewhere cannot drive a user's socket with their cookie.
        cors_allowed_origins=None,
        max_http_buffer_size=MAX_MESSAGE,
        # A closed tab or a dead link is noticed within PING_INTERVAL + PING_TIMEOUT.
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        logger=False,
        engineio_logger=False,
    )
    namespace = MeetingNamespace(app)
    sio.register_namespace(namespace)
    sio.attach(app)
    app[SIO] = sio
    app[REGISTRY] = namespace.registry
    app[MEETING_NS] = namespace
    app[CTX].session_listeners.append(namespace.guard.nudge)

    async def _close(_app: web.Application) -> None:
        await namespace.close()

    app.on_shutdown.append(_close)
    return namespace
