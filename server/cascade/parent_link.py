"""A child node's link to its parent: one socket to the parent's ``/node`` namespace.

It mirrors the meetings that concern this node's units into the local database (so the
operators below see them in advance), opens a live meeting locally when the parent starts
it, and joins the parent's meeting as one relay (rooms/uplink.py). When the parent is out of
reach, local meetings go on for the sites here; the link retries with backoff and jitter and
resubscribes by itself when the parent is back.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import ssl
from datetime import datetime
from typing import Any

import aiohttp
import socketio
from aiohttp import web
from pydantic import ValidationError
from sqlalchemy import delete, select

from rooms.meeting import LiveMeeting
from rooms.peer import RELAY_LAYOUT, MediaError, check_answer
from rooms.rollcall import RollCall
from rooms.uplink import UplinkLink
from server.attendance.outbox import Outbox
from server.attendance.service import ATTENDANCE
from server.cascade.nodelink import RollCallOrder, WatchOrder
from server.models import Meeting, MeetingStatus, MeetingUnit, utcnow
from server.sockets.signaling import MEETING_NS, REGISTRY
from server.state import CTX, NodeContext

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.5
BACKOFF_MAX = 15.0
CALL_TIMEOUT = 15.0
HEARTBEAT = 1.0
HEARTBEAT_WAIT = 1.5
DISCONNECT_WAIT = 2.0
CONNECT_WAIT = 10.0
TASK_STOP_WAIT = 1.0
# The clock offset to the parent is that of the beat with the shortest round trip among the
# last few (the least delayed either way); few, so a clock set right is seen within seconds.
OFFSET_SAMPLES = 5


class LinkRefused(Exception):
    """The parent answered and refused this node; ``code`` is its stable error code."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


# What the operator of a refused child node can do, by the parent's code.
REMEDIES = {
    "bad_credential": (
        "the parent does not accept this node's credential (wrong, replaced or revoked); "
        "ask the parent's administrator for a new one (hoinghi node add CODE) and set it "
        "as HOINGHI_PARENT_CREDENTIAL"
    ),
    "unit_out_of_scope": (
        "served_units lists a unit the parent did not register this node for; correct "
        "HOINGHI_SERVED_UNITS or ask the parent's administrator to register the unit"
    ),
}


class ParentLink:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        settings = app[CTX].settings
        self.parent_url = settings.parent_url
        self.credential = settings.parent_credential.get_secret_value()
        # The code is everything before the secret's dot (a code may itself hold dots); a
        # malformed credential has none, and is not logged as a code.
        self.code = self.credential.rsplit(".", 1)[0] if "." in self.credential else ""
        self.units = list(settings.served_units)
        self.public_url = settings.public_url
        self.sio = self._client()
        self.state = "connecting"  # "connected", "unreachable" or "refused"
        # Why the parent refused this node ("bad_credential", "unit_out_of_scope"), if it did.
        self.refusal: str | None = None
        self._refused_with: str | None = None
        self.links: dict[int, UplinkLink] = {}  # by local meeting id
        self.parent_ids: dict[int, int] = {}  # local meeting id -> the parent's id
        # Each ``meeting`` event is mirrored in its own task: one at a time, in the order
        # received (the lock is FIFO), so two never insert one meeting or merge invitations.
        self._mirror_lock = asyncio.Lock()
        # Local ids of every meeting mirrored from the parent (loaded at startup, then kept
        # by ``mirror``): their ``upper_level`` is this link's state from the first join on,
        # "connecting" before a restarted node has linked, never null.
        self.mirrored: set[int] = set()
        self._presence_due: set[int] = set()
        self._presence_task: asyncio.Task[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()
        # Attendance events wait here until the parent has them (server/attendance/outbox.py).
        self.outbox = Outbox(app[CTX], self.parent_url)
        # The parent's clock minus this node's, in ms, and the round trip it was measured
        # with, from the heartbeats (None until measured).
        self.clock_offset_ms: int | None = None
        self.rtt_ms: int | None = None
        self._samples: collections.deque[tuple[float, float]] = collections.deque(
            maxlen=OFFSET_SAMPLES
        )

    def _client(self) -> socketio.AsyncClient:
        """A new socket per session: one whose link died is not reused. An https parent is
        reached over TLS, its certificate checked against the system's CAs, or against
        ``parent_ca_file`` when set (a parent with its own or a private CA's certificate)."""
        options: dict[str, Any] = {}
        ca_file = self.app[CTX].settings.parent_ca_file
        if ca_file is not None:
            options["websocket_extra_options"] = {
                "ssl": ssl.create_default_context(cafile=str(ca_file))
            }
        sio = socketio.AsyncClient(
            reconnection=False, logger=False, engineio_logger=False, **options
        )
        sio.on("meeting", self._on_meeting, namespace="/node")
        sio.on("floor", self._on_floor, namespace="/node")
        sio.on("connect_error", self._on_connect_error, namespace="/node")
        sio.on("watch", self._on_watch, namespace="/node")
        sio.on("roll_call", self._on_roll_call, namespace="/node")
        return sio

    @property
    def node(self) -> NodeContext:
        return self.app[CTX]

    async def load_mirrored(self) -> None:
        async with self.node.sessionmaker() as db:
            rows = await db.execute(select(Meeting.id).where(Meeting.origin.is_not(None)))
            self.mirrored.update(rows.scalars())

    def start(self) -> None:
        self.app[MEETING_NS].observers.append(self._local_change)
        self.app[ATTENDANCE].store.listeners.append(self.outbox.nudge)
        self._task = asyncio.get_running_loop().create_task(self._run())

    def _set_upper(self, state: str) -> None:
        self.state = state
        for local_id in self.mirrored | set(self.parent_ids):
            live = self.app[REGISTRY].get(local_id)
            if live is not None and live.upper != state:
                live.upper = state
                live.changed()

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            upper = "unreachable"
            try:
                await self._session()
                delay = BACKOFF_MIN  # it was up: start over quickly next time
            except LinkRefused as exc:
                # Retried with the same backoff: the parent's administrator may fix it there.
                upper, self.refusal = "refused", exc.code
                log.error(
                    "parent %s refused this node (%s): %s",
                    self.parent_url,
                    exc.code,
                    REMEDIES.get(exc.code, "see the parent's log"),
                    extra={"node": self.code or "-"},
                )
            except asyncio.CancelledError:
                if _cancelled_by_owner():
                    raise
                # The socket library's own task was cancelled under it: a failed session.
                log.info("parent link to %s reset", self.parent_url)
            except Exception as exc:
                log.info("parent %s unreachable: %s", self.parent_url, _why(exc))
            await self._close_http()
            self.connected.clear()
            self._set_upper(upper)
            await self._drop_links()
            # Full jitter, so children of a restarted parent do not return all at once.
            await asyncio.sleep(random.uniform(BACKOFF_MIN, delay))
            delay = min(BACKOFF_MAX, delay * 2)

    async def _session(self) -> None:
        self.sio = self._client()
        self._refused_with = None
        # Bounded: through a dead link the websocket handshake itself can hang for minutes.
        try:
            await asyncio.wait_for(
                self.sio.connect(
                    self.parent_url,
                    namespaces=["/node"],
                    auth={"credential": self.credential},
                    transports=["websocket"],
                    wait_timeout=10,
                ),
                CONNECT_WAIT,
            )
        except TimeoutError:
            await self._abandon_socket()
            raise
        except socketio.exceptions.ConnectionError:
            if self._refused_with is not None:  # the parent answered, and said no
                raise LinkRefused(self._refused_with) from None
            raise
        try:
            ack = await self.sio.call(
                "hello",
                {"units": self.units, "url": self.public_url},
                namespace="/node",
                timeout=CALL_TIMEOUT,
            )
            if not ack.get("ok"):
                raise LinkRefused(str(ack.get("error"))[:64])
            self.refusal = None
            self._set_upper("connected")
            self.connected.set()
            log.info("linked to parent %s as %s", self.parent_url, self.code)
            for summary in ack["meetings"]:
                await self.mirror(summary)
            with contextlib.suppress(Exception):  # the offset before the first events go up
                await self._beat()
            loop = asyncio.get_running_loop()
            beats = loop.create_task(self._heartbeats())
            waiting = loop.create_task(self.sio.wait())
            sending = loop.create_task(self.outbox.run(self._send_attendance, self._offset))
            try:
                # Ends when the socket closes, or when the parent stops answering heartbeats.
                await asyncio.wait({beats, waiting, sending}, return_when=asyncio.FIRST_COMPLETED)
                if sending.done() and not sending.cancelled() and sending.exception():
                    log.error("attendance outbox stopped", exc_info=sending.exception())
            finally:
                await _stop_tasks((beats, waiting, sending))
        finally:
            # Say so below at once; a dead link's graceful close could take many seconds.
            self.connected.clear()
            self._set_upper("unreachable")
            await self._drop_links()
            await self._abandon_socket()

    async def _close_http(self) -> None:
        """The socket's HTTP session (the library opens one per client and leaves it open
        when a connect fails); each session has a new client, so close the old one's."""
        http = getattr(self.sio.eio, "http", None)
        if http is not None and not http.closed:
            with contextlib.suppress(Exception):
                await http.close()

    async def _abandon_socket(self) -> None:
        """Close the session's socket without waiting long on a dead link."""
        try:
            await asyncio.wait_for(self.sio.disconnect(), DISCONNECT_WAIT)
        except asyncio.CancelledError:
            if _cancelled_by_owner():
                raise
        except Exception as exc:  # a dead link fails to close in many ways
            log.debug("closing the parent socket: %s", exc.__class__.__name__)

    async def _send_attendance(self, batch: dict[str, Any]) -> dict[str, Any]:
        ack = await self.sio.call("attendance", batch, namespace="/node", timeout=CALL_TIMEOUT)
        return ack if isinstance(ack, dict) else {"ok": False, "error": "bad_answer"}

    def _offset(self) -> int:
        return self.clock_offset_ms or 0

    async def _beat(self) -> None:
        """One heartbeat; its answer carries the parent's clock: the offset is measured as
        NTP does, the parent's time against the middle of the round trip."""
        clock = self.node.clock
        sent = clock()
        ack = await self.sio.call("heartbeat", {}, namespace="/node", timeout=HEARTBEAT_WAIT)
        back = clock()
        now = ack.get("now") if isinstance(ack, dict) else None
        if isinstance(now, int | float) and not isinstance(now, bool):
            self._samples.append((back - sent, now - (sent + back) / 2))
            rtt, offset = min(self._samples)
            self.rtt_ms, self.clock_offset_ms = round(rtt * 1000), round(offset * 1000)

    async def _heartbeats(self) -> None:
        """Beat every HEARTBEAT s; two unanswered beats in a row mean the parent is gone."""
        missed = 0
        while missed < 2:
            await asyncio.sleep(HEARTBEAT)
            try:
                await self._beat()
                missed = 0
            except (TimeoutError, socketio.exceptions.TimeoutError):
                missed += 1
            except socketio.exceptions.BadNamespaceError:
                return
        log.warning("parent %s stopped answering heartbeats", self.parent_url)

    async def _on_connect_error(self, data: Any = None) -> None:
        """The parent refused the namespace connect; socket.io sends {message, data}. A
        transport failure (no TCP, an untrusted TLS certificate, no websocket) arrives as a
        plain message instead: that is an unreachable parent, not a refusal."""
        if not isinstance(data, dict):
            return
        detail = data.get("data")
        code = detail.get("error") if isinstance(detail, dict) else None
        if not isinstance(code, str):
            code = data.get("message")
        self._refused_with = code[:64] if isinstance(code, str) else "refused"

    async def _on_meeting(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("meeting"), dict):
            self._spawn(self.mirror(data["meeting"]))

    def _live_for(self, parent_id: Any) -> LiveMeeting | None:
        """The local live meeting mirroring the parent's meeting ``parent_id``."""
        local_id = next((lid for lid, pid in self.parent_ids.items() if pid == parent_id), None)
        return self.app[REGISTRY].get(local_id) if local_id is not None else None

    async def _on_floor(self, data: Any) -> None:
        if not isinstance(data, dict):
            return
        live = self._live_for(data.get("meeting_id"))
        unit, name = data.get("unit"), data.get("name")
        if live is not None and (unit is None or isinstance(unit, str)):
            live.floor_from_parent(unit, name if isinstance(name, str) else None)

    async def _on_watch(self, data: Any) -> None:
        """The parent wants a site's video up a watch slot (or no longer)."""
        try:
            order = WatchOrder.model_validate(data)
        except ValidationError:
            log.warning("the parent sent a malformed watch order")
            return
        live = self._live_for(order.meeting_id)
        if live is not None:
            live.watch_from_parent(order.unit, order.slot, order.on)

    async def _on_roll_call(self, data: Any) -> None:
        """The chair above opened (or closed) a roll call: the sites here are asked."""
        try:
            order = RollCallOrder.model_validate(data)
        except ValidationError:
            log.warning("the parent sent a malformed roll call")
            return
        live = self._live_for(order.meeting_id)
        if live is None:
            return
        current = live.roll_call
        if current is not None and current.id == order.id:
            current.ended_at = order.ended_at
        else:
            current = RollCall(
                number=order.number,
                id=order.id,
                started_at=order.started_at,
                ended_at=order.ended_at,
            )
            live.roll_call = current
        live.changed()
        try:
            await self.app[ATTENDANCE].remember_roll_call(live.meeting_id, current)
        except Exception:
            log.exception("storing the parent's roll call failed")

    # -- presence up ------------------------------------------------------------------------------

    def _local_change(self, live: Any) -> None:
        """A local live meeting changed: report its sites up (coalesced)."""
        if live.meeting_id in self.mirrored and live.upper != self.state:
            live.upper = self.state  # opened here before the link was up (a restart)
        if live.meeting_id not in self.links or not self.connected.is_set():
            return
        self._presence_due.add(live.meeting_id)
        if self._presence_task is None or self._presence_task.done():
            self._presence_task = asyncio.get_running_loop().create_task(self._send_presence())

    async def _send_presence(self) -> None:
        while self._presence_due:
            await asyncio.sleep(0)
            due, self._presence_due = self._presence_due, set()
            for local_id in due:
                live = self.app[REGISTRY].get(local_id)
                parent_id = self.parent_ids.get(local_id)
                if live is None or parent_id is None or not self.sio.connected:
                    continue
                with contextlib.suppress(Exception):  # the link may drop meanwhile
                    await self.sio.emit(
                        "presence",
                        {
                            "meeting_id": parent_id,
                            "sites": live.presence(),
                            "needs": live.needs(),
                        },
                        namespace="/node",
                    )

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- mirroring ----------------------------------------------------------------------------

    async def mirror(self, summary: dict[str, Any]) -> int | None:
        """Store a parent's meeting locally; open or end it here as the parent did."""
        node = self.node
        tree = node.units
        host = tree.by_code.get(summary["host_unit"])
        if host is None:
            log.warning(
                "meeting %s: host unit %s is not in this node's tree",
                summary["id"],
                summary["host_unit"],
            )
            return None
        status = MeetingStatus(summary["status"])
        invites = [(code, False) for code in summary["invited_units"]]
        invites += [(code, True) for code in summary["invited_subtrees"]]
        async with self._mirror_lock, node.sessionmaker() as db, db.begin():
            meeting = (
                await db.execute(
                    select(Meeting).where(
                        Meeting.origin == self.parent_url,
                        Meeting.origin_meeting_id == summary["id"],
                    )
                )
            ).scalar_one_or_none()
            if meeting is None:
                meeting = Meeting(
                    origin=self.parent_url, origin_meeting_id=summary["id"], host_unit_id=host.id
                )
                db.add(meeting)
            meeting.title = summary["title"]
            meeting.description = summary["description"]
            meeting.starts_at = datetime.fromisoformat(summary["starts_at"])
            meeting.duration_minutes = summary["duration_minutes"]
            meeting.status = status
            # The parent's real start and end (an older parent sends none: then the time
            # this node heard of it).
            for column in ("started_at", "ended_at"):
                if getattr(meeting, column) is None and summary.get(column):
                    setattr(meeting, column, _parent_time(summary[column]))
            if status is MeetingStatus.LIVE and meeting.started_at is None:
                meeting.started_at = utcnow()
            if status is MeetingStatus.ENDED and meeting.ended_at is None:
                meeting.ended_at = utcnow()
            meeting.version = (meeting.version or 0) + 1  # as every change (meetings.claim)
            await db.flush()
            await db.execute(delete(MeetingUnit).where(MeetingUnit.meeting_id == meeting.id))
            db.add_all(
                MeetingUnit(
                    meeting_id=meeting.id, unit_id=tree.by_code[code].id, whole_subtree=whole
                )
                for code, whole in invites
                if code in tree.by_code
            )
            await db.flush()
            local_id = meeting.id
        self.mirrored.add(local_id)
        if status is MeetingStatus.LIVE:
            await self._relay(local_id, summary)
        elif status in (MeetingStatus.ENDED, MeetingStatus.CANCELLED):
            await self._close_link(local_id)
            await self.app[MEETING_NS].end_meeting(local_id)
        # Pass it on to this node's own children, at any depth below (server/cascade/nodelink.py).
        await node.announce(local_id)
        return local_id

    # -- the relay link per live meeting --------------------------------------------------------

    async def _relay(self, local_id: int, summary: dict[str, Any]) -> None:
        existing = self.links.get(local_id)
        if existing is not None and not existing.closed:
            return
        live = self.app[REGISTRY].open(local_id, summary["title"], summary["host_unit"])
        live.live = True
        live.upper = "connected"
        self.parent_ids[local_id] = summary["id"]
        link = UplinkLink(live, self.code)
        self.links[local_id] = link
        try:
            ack = await self.sio.call(
                "relay_join", {"meeting_id": summary["id"]}, namespace="/node", timeout=CALL_TIMEOUT
            )
            if not ack.get("ok"):
                raise RuntimeError(f"relay_join refused: {ack.get('error')}")
            offer = await link.offer()
            ack = await self.sio.call(
                "relay_offer",
                {"meeting_id": summary["id"], "sdp": offer},
                namespace="/node",
                timeout=CALL_TIMEOUT,
            )
            if not ack.get("ok"):
                raise RuntimeError(f"relay_offer refused: {ack.get('error')}")
            # The parent's answer passes the checks its offers pass (rooms/sdp_checks.py),
            # and setting it is bounded: a bad one is refused with its code, never awaited.
            answer = ack.get("sdp")
            if not isinstance(answer, str):
                raise MediaError("bad_sdp", "the parent's answer carries no SDP")
            check_answer(answer, RELAY_LAYOUT)
            await asyncio.wait_for(link.accept(answer), CALL_TIMEOUT)
            self._local_change(live)  # tell the parent who is here already
        except Exception as exc:
            why = f"{exc.code}: {exc.message}" if isinstance(exc, MediaError) else exc
            log.warning("relay for meeting %s failed: %s", summary["id"], why)
            self.links.pop(local_id, None)
            await link.close()
            return
        live.changed()

    async def _close_link(self, local_id: int) -> None:
        link = self.links.pop(local_id, None)
        if link is not None:
            await link.close()

    async def _drop_links(self) -> None:
        for local_id in list(self.links):
            await self._close_link(local_id)
            live = self.app[REGISTRY].get(local_id)
            if live is not None:
                live.changed()

    async def close(self) -> None:
        if self._presence_task is not None:
            self._presence_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._presence_task
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in tuple(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop_links()
        if self.sio.connected:
            await self.sio.disconnect()


async def _stop_tasks(tasks: tuple[asyncio.Task[Any], ...]) -> None:
    """Cancel a session's tasks and wait for them, but not for ever: `sio.wait()` waits on
    the socket library's read loop, and on Python 3.11 that loop's `wait_for` can swallow
    the cancel (a frame arriving as it lands) and read on. The socket is closed next, which
    ends the loop; a task still running then is left to end with it."""
    for task in tasks:
        task.cancel()
        task.add_done_callback(_retrieve)
    await asyncio.wait(tasks, timeout=TASK_STOP_WAIT)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # already logged where it mattered; not "never retrieved"


def _parent_time(value: Any) -> datetime | None:
    """A time the parent sent (ISO 8601 with an offset), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def _why(exc: BaseException) -> str:
    """What made a connect fail, for the log: the socket library wraps the real error (an
    untrusted certificate, a refused TCP connect) in a bare "Connection error"."""
    inner: BaseException = exc
    for _ in range(6):
        nxt = inner.__cause__ or inner.__context__
        if nxt is None:
            break
        inner = nxt
    if isinstance(inner, ssl.SSLCertVerificationError | aiohttp.ClientConnectorCertificateError):
        return (
            "the parent's TLS certificate is not trusted (set parent_ca_file to its CA, or to "
            "its own certificate)"
        )
    if inner is exc:
        return exc.__class__.__name__
    return f"{exc.__class__.__name__}: {inner.__class__.__name__}: {str(inner)[:160]}"


def _cancelled_by_owner() -> bool:
    """Whether this task itself is being cancelled (not a library's inner task under it)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


PARENT_LINK = web.AppKey("hoinghi_parent_link", ParentLink)


def setup_parent_link(app: web.Application) -> None:
    """On a child node, keep the link to the parent for the node's lifetime."""

    async def _link(app: web.Application) -> Any:
        link = ParentLink(app)
        app[PARENT_LINK] = link
        await link.load_mirrored()
        link.start()
        yield
        await link.close()

    app.cleanup_ctx.append(_link)
