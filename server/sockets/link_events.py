"""The ``/meeting`` events of a participant's own link: its receive mode, and the page's
report of what it receives (rooms/tiers.py, rooms/linkrate.py).

Each acts on the caller's own link only; a child node's relay link has neither (its tiers
follow its budget and what its sites need).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from rooms.meeting import RELAY, RoomError
from server.sockets.protocol import LinkReport, ReceiveMode, ok

if TYPE_CHECKING:
    from server.sockets.signaling import Handler, MeetingNamespace


class LinkEvents:
    def __init__(self, namespace: MeetingNamespace) -> None:
        self.ns = namespace

    def handlers(self) -> dict[str, Handler]:
        return {"receive_mode": self._receive_mode, "link_stats": self._link_stats}

    async def _receive_mode(self, sid: str, data: ReceiveMode) -> dict[str, Any]:
        live, participant = await self.ns._member(sid)
        if participant.role == RELAY:
            raise RoomError("forbidden", "A relay's tiers follow its budget.")
        live.set_receive_mode(participant, data.mode)
        return ok(receive=live.reception(participant))

    async def _link_stats(self, sid: str, data: LinkReport) -> dict[str, Any]:
        _, participant = await self.ns._member(sid)
        participant.estimate.client_report(data, time.monotonic())
        return ok()
