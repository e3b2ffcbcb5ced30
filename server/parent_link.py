"""A child node's link to its parent: one socket to the parent's ``/node`` namespace.

It mirrors the meetings that concern this node's units into the local database (so the
operators below see them in advance), opens a live meeting locally when the parent starts
it, and joins the parent's meeting as one relay (rooms/uplink.py). When the parent is out of
reach, local meetings go on for the sites here; the link retries with backoff and jitter and
resubscribes by itself when the parent is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import datetime
from typing import Any

import socketio
from aiohttp import web
from sqlalchemy import delete, select

from rooms.uplink import UplinkLink
from server.models import Meeting, MeetingStatus, MeetingUnit
from server.signaling import MEETING_NS, REGISTRY
from server.state import CTX, NodeContext

log = logging.getLogger(__name__)

BACKOFF_MIN = 0.5
BACKOFF_MAX = 15.0
CALL_TIMEOUT = 15.0


class ParentLink:
    def __init__(self, app: web.Application) -> None:
        self.app = app
        settings = app[CTX].settings
        self.parent_url = settings.parent_url
        self.credential = settings.parent_credential.get_secret_value()
        self.code = self.credential.split(".", 1)[0]
        self.units = list(settings.served_units)
        self.public_url = settings.public_url
        self.sio = socketio.AsyncClient(reconnection=False, logger=False, engineio_logger=False)
        self.sio.on("meeting", self._on_meeting, namespace="/node")
        self.state = "connecting"  # "connected" or "unreachable"
        self.links: dict[int, UplinkLink] = {}  # by local meeting id
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()

    @property
    def node(self) -> NodeContext:
        return self.app[CTX]

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        delay = BACKOFF_MIN
        while True:
            try:
                await self._session()
                delay = BACKOFF_MIN  # it was up: start over quickly next time
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.info("parent %s unreachable: %s", self.parent_url, exc.__class__.__name__)
            self.state = "unreachable"
            self.connected.clear()
            await self._drop_links()
            # Full jitter, so children of a restarted parent do not return all at once.
            await asyncio.sleep(random.uniform(BACKOFF_MIN, delay))
            delay = min(BACKOFF_MAX, delay * 2)

    async def _session(self) -> None:
        await self.sio.connect(
            self.parent_url,
            namespaces=["/node"],
            auth={"credential": self.credential},
            transports=["websocket"],
            wait_timeout=10,
        )
        try:
            ack = await self.sio.call(
                "hello",
                {"units": self.units, "url": self.public_url},
                namespace="/node",
                timeout=CALL_TIMEOUT,
            )
            if not ack.get("ok"):
                log.error("parent refused this node's units: %s", ack.get("error"))
                await asyncio.sleep(BACKOFF_MAX)
                return
            self.state = "connected"
            self.connected.set()
            log.info("linked to parent %s as %s", self.parent_url, self.code)
            for summary in ack["meetings"]:
                await self.mirror(summary)
            await self.sio.wait()
        finally:
            if self.sio.connected:
                await self.sio.disconnect()

    async def _on_meeting(self, data: Any) -> None:
        if isinstance(data, dict) and isinstance(data.get("meeting"), dict):
            self._spawn(self.mirror(data["meeting"]))

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
        async with node.sessionmaker() as db, db.begin():
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
        if status is MeetingStatus.LIVE:
            await self._relay(local_id, summary)
        elif status in (MeetingStatus.ENDED, MeetingStatus.CANCELLED):
            await self._close_link(local_id)
            await self.app[MEETING_NS].end_meeting(local_id)
        return local_id

    # -- the relay link per live meeting --------------------------------------------------------

    async def _relay(self, local_id: int, summary: dict[str, Any]) -> None:
        existing = self.links.get(local_id)
        if existing is not None and not existing.closed:
            return
        live = self.app[REGISTRY].open(local_id, summary["title"], summary["host_unit"])
        live.live = True
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
            await link.accept(ack["sdp"])
        except Exception as exc:
            log.warning("relay for meeting %s failed: %s", summary["id"], exc)
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


PARENT_LINK = web.AppKey("hoinghi_parent_link", ParentLink)


def setup_parent_link(app: web.Application) -> None:
    """On a child node, keep the link to the parent for the node's lifetime."""

    async def _link(app: web.Application) -> Any:
        link = ParentLink(app)
        app[PARENT_LINK] = link
        link.start()
        yield
        await link.close()

    app.cleanup_ctx.append(_link)
