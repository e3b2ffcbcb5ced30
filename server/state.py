"""What a running node holds: settings, database, the unit tree. One object, one AppKey."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Settings
from server.units import UnitTree

log = logging.getLogger(__name__)


@dataclass
class NodeContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret: str
    units: UnitTree = field(default_factory=UnitTree)
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    extras: dict[str, Any] = field(default_factory=dict)
    # This node's wall clock (seconds since 1970): attendance times, and the time told to a
    # child measuring its clock's offset. Tests set a wrong one on a node.
    clock: Callable[[], float] = time.time
    # Called with a meeting id after it is scheduled, changed, cancelled, started or ended
    # (the cascade tells child nodes; see server/cascade/nodelink.py).
    meeting_listeners: list[Callable[[int], Awaitable[None]]] = field(default_factory=list)
    # Called when this process ended a grant a socket holds (a login session, an account's
    # role or unit, a node credential): the socket guards re-check their sockets at once
    # (other processes notice within half a second).
    session_listeners: list[Callable[[], None]] = field(default_factory=list)

    async def announce(self, meeting_id: int) -> None:
        for listener in self.meeting_listeners:
            try:
                await listener(meeting_id)
            except Exception:  # a listener's failure must not undo the change itself
                log.exception("meeting listener failed", extra={"meeting": meeting_id})

    def sessions_changed(self) -> None:
        for listener in self.session_listeners:
            listener()

    async def reload_units(self) -> None:
        async with self.sessionmaker() as db:
            self.units = await UnitTree.load(db)


CTX = web.AppKey("hoinghi_ctx", NodeContext)


def ctx(request: web.Request) -> NodeContext:
    return request.app[CTX]
