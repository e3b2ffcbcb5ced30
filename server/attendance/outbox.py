"""A child node's attendance outbox: events still to be acknowledged by the parent.

The outbox is the ``up_pending`` rows of ``attendance_events`` (so it survives a restart of
the child), sent oldest first in batches over the parent link (the ``attendance`` event of
the ``/node`` namespace) with the parent's meeting id and this node's clock offset to the
parent. A batch is marked sent only once the parent has answered for it; a batch sent twice
(the answer lost with the link) is stored once up there, by the events' ids. While the link
is down nothing is sent; when it returns, sending resumes where the parent's answers left
off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy import select, update

from server.attendance.store import Stored, stored
from server.models import AttendanceEvent, Meeting
from server.state import NodeContext

log = logging.getLogger(__name__)

BATCH = 200
RETRY = 1.0

# Sends one batch up and returns the parent's acknowledgement.
Send = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class Outbox:
    def __init__(self, node: NodeContext, parent_url: str) -> None:
        self.node = node
        self.parent_url = parent_url
        self.sent = 0  # events acknowledged by the parent since this process started
        self._due = asyncio.Event()

    def nudge(self, events: Sequence[Stored] = ()) -> None:
        """Listener of the store: a new event may be due."""
        self._due.set()

    async def pending(self) -> int:
        async with self.node.sessionmaker() as db:
            rows = await db.execute(
                select(AttendanceEvent.id).where(AttendanceEvent.up_pending.is_(True))
            )
            return len(rows.all())

    async def _batch(self) -> tuple[list[int], list[dict[str, Any]], list[int]]:
        """The oldest pending events, as sent up; and the ids of pending events whose
        meeting the parent does not know (a local meeting here): nothing to send."""
        async with self.node.sessionmaker() as db:
            rows = (
                await db.execute(
                    select(AttendanceEvent, Meeting.origin, Meeting.origin_meeting_id)
                    .join(Meeting, Meeting.id == AttendanceEvent.meeting_id)
                    .where(AttendanceEvent.up_pending.is_(True))
                    .order_by(AttendanceEvent.id)
                    .limit(BATCH)
                )
            ).all()
        ids, events, orphans = [], [], []
        for row, origin, parent_id in rows:
            if origin != self.parent_url or parent_id is None:
                orphans.append(row.id)
                continue
            ids.append(row.id)
            events.append(stored(row).wire(parent_id, 0))
        return ids, events, orphans

    async def _done(self, ids: list[int]) -> None:
        async with self.node.sessionmaker() as db, db.begin():
            await db.execute(
                update(AttendanceEvent)
                .where(AttendanceEvent.id.in_(ids))
                .values(up_pending=False)
                .execution_options(synchronize_session=False)
            )

    async def run(self, send: Send, offset_ms: Callable[[], int]) -> None:
        """Send until cancelled (the link closed); the caller runs it while linked."""
        self._due.set()
        while True:
            await self._due.wait()
            self._due.clear()
            while True:
                ids, events, orphans = await self._batch()
                if orphans:
                    log.warning(
                        "attendance: %d events of meetings the parent does not know are "
                        "kept here only",
                        len(orphans),
                    )
                    await self._done(orphans)
                if not events:
                    break
                try:
                    ack = await send({"events": events, "offset_ms": offset_ms()})
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a timeout, a dropped link: try again shortly
                    log.info("attendance: sending up failed (%s); retrying", type(exc).__name__)
                    await asyncio.sleep(RETRY)
                    continue
                if not ack.get("ok"):
                    log.warning("attendance: the parent refused a batch: %s", ack.get("error"))
                    await asyncio.sleep(RETRY)
                    continue
                for refused in ack.get("rejected") or []:
                    log.warning("attendance: the parent refused event %s", refused)
                await self._done(ids)
                self.sent += len(ids)
