"""A socket guard: ends sockets whose grant (a login session, a node credential) has ended.

A socket is authenticated once, at connect; what allowed it can end later, on this node
process or on another one sharing the database (a logout, an admin disabling the account, a
revoked node credential). The guard keeps what each socket was granted with (a ``key``) and
re-checks all of them against the database about every ``EVERY`` seconds in one call of
``check``; a process that ends a grant itself calls ``nudge()`` so its own sockets go at once.
Each socket found ended is forgotten and handed to ``end`` with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

EVERY = 0.5  # seconds between checks: a grant ended on another process ends its sockets
CHECK_TIMEOUT = 5.0  # a database that does not answer delays the check, never blocks it

Key = TypeVar("Key")
Check = Callable[[Mapping[str, Key]], Awaitable[dict[str, str]]]
End = Callable[[str, str], Coroutine[Any, Any, None]]


class SocketGuard(Generic[Key]):
    def __init__(self, name: str, check: Check[Key], end: End, every: float = EVERY) -> None:
        self.name = name
        self._check = check
        self._end = end
        self._every = every
        self._keys: dict[str, Key] = {}
        self._nudged = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ending: set[asyncio.Task[None]] = set()

    def watch(self, sid: str, key: Key) -> None:
        self._keys[sid] = key
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def forget(self, sid: str) -> None:
        self._keys.pop(sid, None)

    def watched(self, sid: str) -> bool:
        return sid in self._keys

    def nudge(self) -> None:
        """Check now: this process just ended a grant."""
        self._nudged.set()

    async def recheck(self, sid: str) -> str | None:
        """Check one socket at once (before a powerful action). Returns the reason its grant
        ended, or None while it holds; an ended socket is ended just after (so the caller's
        refusal can be answered first)."""
        key = self._keys.get(sid)
        if key is None:
            return "ended"  # already ended, or never granted
        reasons = await asyncio.wait_for(self._check({sid: key}), CHECK_TIMEOUT)
        reason = reasons.get(sid)
        if reason is not None and self._keys.pop(sid, None) is not None:
            task = asyncio.get_running_loop().create_task(self._end(sid, reason))
            self._ending.add(task)
            task.add_done_callback(self._ending.discard)
        return reason

    async def _run(self) -> None:
        while self._keys:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._nudged.wait(), self._every)
            self._nudged.clear()
            keys = dict(self._keys)
            if not keys:
                continue
            try:
                reasons = await asyncio.wait_for(self._check(keys), CHECK_TIMEOUT)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: try again next round
                log.warning("%s check failed; retrying", self.name, exc_info=True)
                continue
            ended = [(sid, r) for sid, r in reasons.items() if self._keys.pop(sid, None)]
            for sid, reason in ended:
                log.info("%s: socket ended (%s)", self.name, reason, extra={"peer": sid})
            # Concurrently, so one slow socket delays no other's end.
            await asyncio.gather(
                *(self._end(sid, reason) for sid, reason in ended), return_exceptions=True
            )

    async def close(self) -> None:
        self._keys.clear()
        for task in (self._task, *self._ending):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
