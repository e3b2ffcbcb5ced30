"""The live meetings of this node, by meeting id."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rooms.meeting import LiveMeeting


class Registry:
    def __init__(self, on_change: Callable[[LiveMeeting], None]) -> None:
        self.meetings: dict[int, LiveMeeting] = {}
        self._on_change = on_change
        # Told of each meeting opened here (attendance fills its roster).
        self.on_open: list[Callable[[LiveMeeting], Any]] = []

    def get(self, meeting_id: int) -> LiveMeeting | None:
        return self.meetings.get(meeting_id)

    def open(self, meeting_id: int, title: str, host_code: str) -> LiveMeeting:
        live = self.meetings.get(meeting_id)
        if live is None or live.ended:
            live = LiveMeeting(meeting_id, title, host_code, self._on_change)
            self.meetings[meeting_id] = live
            for listener in self.on_open:
                listener(live)
        return live

    async def discard(self, live: LiveMeeting) -> None:
        """Forget an ended meeting once its last participant has left."""
        if self.meetings.get(live.meeting_id) is live:
            del self.meetings[live.meeting_id]
        await live.close()

    async def close(self) -> None:
        """Close every meeting at once (a node stopping must not take a second per peer)."""
        lives = tuple(self.meetings.values())
        self.meetings.clear()
        await asyncio.gather(*(live.close() for live in lives))
