"""A child node's session with its parent ends even when one of its tasks does not take
the cancel: on Python 3.11 the socket library's read loop can swallow it (its `wait_for`
returns a frame that arrived as the cancel landed, and reads on), and a stopping node then
waited on `sio.wait()` for as long as the parent kept the socket open (seen in CI: a node's
shutdown hung for the test's whole timeout)."""

from __future__ import annotations

import asyncio
import time

from server.cascade.parent_link import TASK_STOP_WAIT, _stop_tasks


async def test_stopping_a_sessions_tasks_does_not_wait_on_one_that_swallows_the_cancel() -> None:
    released = asyncio.Event()

    async def stubborn() -> None:
        while not released.is_set():
            try:
                await released.wait()
            except asyncio.CancelledError:
                continue  # what the read loop did

    async def polite() -> None:
        await asyncio.sleep(3600)

    async def failing() -> None:
        raise RuntimeError("the outbox stopped")

    loop = asyncio.get_running_loop()
    tasks = (loop.create_task(stubborn()), loop.create_task(polite()), loop.create_task(failing()))
    await asyncio.sleep(0)
    started = time.monotonic()
    await _stop_tasks(tasks)
    waited = time.monotonic() - started
    assert waited < TASK_STOP_WAIT + 5, waited  # bounded, not the test's timeout
    assert tasks[1].cancelled()
    assert isinstance(tasks[2].exception(), RuntimeError)
    assert not tasks[0].done()  # left to end when the socket closes
    released.set()
    await asyncio.wait_for(tasks[0], 5)
