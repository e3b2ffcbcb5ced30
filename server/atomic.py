"""One transaction per change, and the database's refusals under contention as 409 answers.

A change that others may make at the same moment runs in ``atomic(sessionmaker)``. Inside
it, a check that must hold at commit is made by a write (a compare-and-set ``UPDATE`` or an
upsert that locks a row) before anything is decided; a read alone does not serialise:
SQLite's driver opens the transaction only at the first write, and PostgreSQL's READ
COMMITTED lets two readers see the same row.

What the database refuses under contention becomes a stable answer, never a 500:
- a unique key taken meanwhile by a parallel request: 409 ``duplicate``;
- a lock wait that ran out (SQLite's "database is locked", which under WAL is also a stale
  snapshot) or a PostgreSQL deadlock, serialization or lock failure: 409 ``conflict``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.errors import AppError

log = logging.getLogger(__name__)

# PostgreSQL: serialization_failure, deadlock_detected, lock_not_available.
CONTENTION_STATES = frozenset({"40001", "40P01", "55P03"})
UNIQUE_VIOLATION = "23505"


def conflict(
    message: str = "Someone else changed this at the same time; reload and retry.",
) -> AppError:
    return AppError(409, "conflict", message)


def duplicate(message: str = "It was created at the same time by another request.") -> AppError:
    return AppError(409, "duplicate", message)


def _sqlstate(exc: DBAPIError) -> str | None:
    for source in (exc.orig, getattr(exc.orig, "__cause__", None)):
        state = getattr(source, "sqlstate", None) or getattr(source, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def is_contention(exc: DBAPIError) -> bool:
    if _sqlstate(exc) in CONTENTION_STATES:
        return True
    text = str(exc.orig).lower()
    return "database is locked" in text or "database table is locked" in text


def is_unique_violation(exc: DBAPIError) -> bool:
    if not isinstance(exc, IntegrityError):
        return False
    return _sqlstate(exc) == UNIQUE_VIOLATION or "unique constraint failed" in str(exc.orig).lower()


@asynccontextmanager
async def atomic(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in one transaction: committed when the block ends, rolled back on error."""
    try:
        async with sessionmaker() as db, db.begin():
            yield db
    except DBAPIError as exc:
        if is_unique_violation(exc):
            raise duplicate() from exc
        if is_contention(exc):
            log.info("a change lost to a parallel one: %s", exc.orig)
            raise conflict() from exc
        raise
