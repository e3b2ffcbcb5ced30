"""What a running node holds: settings, database, the unit tree. One object, one AppKey."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from argon2 import PasswordHasher
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.config import Settings
from server.units import UnitTree


@dataclass
class NodeContext:
    settings: Settings
    engine: AsyncEngine
    sessionmaker: async_sessionmaker[AsyncSession]
    secret: str
    units: UnitTree = field(default_factory=UnitTree)
    hasher: PasswordHasher = field(default_factory=PasswordHasher)
    extras: dict[str, Any] = field(default_factory=dict)

    async def reload_units(self) -> None:
        async with self.sessionmaker() as db:
            self.units = await UnitTree.load(db)


CTX = web.AppKey("hoinghi_ctx", NodeContext)


def ctx(request: web.Request) -> NodeContext:
    return request.app[CTX]
