"""A participant for tests: a real socket.io client on /meeting plus a real aiortc ProbePeer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import socketio

from rooms.peer import Slot
from rooms.probe import ProbePeer
from tests.conftest import Node, Session


class Participant:
    def __init__(self, node: Node, session: Session) -> None:
        self.node = node
        self.session = session
        self.sio = socketio.AsyncClient(reconnection=False)
        self.states: list[dict[str, Any]] = []
        self.events: list[tuple[str, Any]] = []
        self.probe: ProbePeer | None = None
        self.sio.on("state", self._on_state, namespace="/meeting")
        self.sio.on("ended", lambda d: self.events.append(("ended", d)), namespace="/meeting")
        self.sio.on("replaced", lambda d: self.events.append(("replaced", d)), namespace="/meeting")

    def _on_state(self, data: dict[str, Any]) -> None:
        self.states.append(data)

    async def connect(self) -> None:
        port = self.node.client.server.port
        cookies = "; ".join(f"{c.key}={c.value}" for c in self.session.client.session.cookie_jar)
        await self.sio.connect(
            f"http://127.0.0.1:{port}",
            namespaces=["/meeting"],
            headers={"Cookie": cookies},
            transports=["websocket"],
            wait_timeout=10,
        )

    async def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        result: dict[str, Any] = await self.sio.call(
            event, payload if payload is not None else {}, namespace="/meeting", timeout=20
        )
        return result

    async def join(self, meeting_id: int, **probe_args: Any) -> dict[str, Any]:
        ack = await self.call("join", {"meeting_id": meeting_id})
        assert ack["ok"], ack
        layout = tuple(
            Slot(s["slot"], s["kind"], s["direction"] == "sendonly") for s in ack["layout"]
        )
        self.probe = ProbePeer(layout, **probe_args)
        answer = await self.call("offer", {"sdp": await self.probe.offer()})
        assert answer["ok"], answer
        await self.probe.accept(answer["sdp"])
        await self.probe.wait_connected()
        return ack

    async def wait_state(
        self, check: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            for state in reversed(self.states):
                if check(state):
                    return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"no matching state within {within} s; last: {self.states[-1:]}")

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        if self.probe is not None:
            await self.probe.close()


async def schedule(chair: Session, **body: Any) -> int:
    payload = {
        "title": "Hội nghị trực tuyến thử nghiệm",
        "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        **body,
    }
    status, data = await chair.call("POST", "/api/meetings", payload)
    assert status == 201, data
    return int(data["meeting"]["id"])


async def wait_for(check: Callable[[], bool], within: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.05)
