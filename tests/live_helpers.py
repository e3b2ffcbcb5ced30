"""A participant for tests: a real socket.io client on /meeting plus a real aiortc ProbePeer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import socketio
from aiohttp.test_utils import TestClient

from rooms.peer import Slot
from rooms.probe import ProbePeer
from server.cascade.nodes import issue_credential
from server.cascade.parent_link import PARENT_LINK
from server.demo.tree import DEMO_PASSWORD
from server.state import CTX
from tests.conftest import Node, Session, start_node
from tests.tcp_gate import TcpGate

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


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

    async def wait_latest(
        self, check: Callable[[dict[str, Any]], bool], within: float = 10.0
    ) -> dict[str, Any]:
        """Like ``wait_state``, but only the latest state counts (for "no longer" checks)."""
        await wait_for(lambda: bool(self.states) and check(self.states[-1]), within, "a state")
        return self.states[-1]

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


# -- the cascade: nodes in a tree ----------------------------------------------------------


async def start_child(
    aiohttp_client: ClientFactory,
    base: Path,
    parent: Node,
    code: str,
    served_units: list[str] | None = None,
    *,
    credential: str | None = None,
    parent_url: str | None = None,
) -> Node:
    """A child node of ``parent``, in its own directory and SQLite database under ``base``.

    The parent registers it as ``code`` for ``served_units`` (default: the unit named like the
    node) unless a ``credential`` is given; it links to the parent's port, or ``parent_url``.
    """
    units = served_units or [code]
    if credential is None:
        credential = await issue_credential(parent.app[CTX], code, units, "")
    path = base / code
    path.mkdir()
    return await start_node(
        aiohttp_client,
        path,
        f"sqlite+aiosqlite:///{path / 'node.sqlite3'}",
        parent_url=parent_url or f"http://127.0.0.1:{parent.client.server.port}",
        parent_credential=credential,
        served_units=units,
    )


async def add_unit(
    node: Node, code: str, name: str, level: str, parent: str, operator: str | None = None
) -> None:
    """Add a unit on a node through its admin API, and an operator account for it if named."""
    admin = await node.login("quantri")
    status, body = await admin.call(
        "POST", "/api/units", {"code": code, "name": name, "level": level, "parent": parent}
    )
    assert status == 201, body
    if operator is None:
        return
    status, body = await admin.call(
        "POST",
        "/api/users",
        {
            "username": operator,
            "full_name": f"Kỹ thuật {name}",
            "role": "operator",
            "unit": code,
            "password": DEMO_PASSWORD,
        },
    )
    assert status == 201, body


async def local_meeting_id(node: Node, operator: str, title: str) -> int:
    """The id under which a child node mirrors a meeting of a node above it."""
    session = await node.login(operator)
    found: list[int] = []

    async def check() -> bool:
        _status, body = await session.call("GET", "/api/meetings")
        found[:] = [m["id"] for m in body.get("meetings", []) if m["title"] == title]
        return bool(found)

    deadline = time.monotonic() + 15
    while not await check():
        assert time.monotonic() < deadline, f"{operator} never saw the meeting on its node"
        await asyncio.sleep(0.1)
    return found[0]


async def join_site(node: Node, operator: str, meeting_id: int, **probe: Any) -> Participant:
    """An operator's site joined to a meeting, receiving only (unless ``probe`` says else)."""
    site = Participant(node, await node.login(operator))
    await site.connect()
    await site.join(meeting_id, **{"publish": False, **probe})
    return site


async def district_behind_gate(
    aiohttp_client: ClientFactory, tmp_path: Path, code: str = "CM-NC"
) -> tuple[Node, Node, TcpGate]:
    """A province node and its child node ``code``, linked through a TcpGate and ready.

    ``gate.block()`` cuts the district's uplink for real; the caller closes the gate.
    """
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    gate = TcpGate(province.client.server.port)
    gate_port = await gate.start()
    district = await start_child(
        aiohttp_client, tmp_path, province, code, parent_url=f"http://127.0.0.1:{gate_port}"
    )
    await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), 15)
    return province, district, gate


async def start_as_chair(
    node: Node, session: Session, meeting_id: int, **probe: Any
) -> Participant:
    """The chair joins its meeting (publishing its counter video and tone, 320x240 unless
    ``probe`` says otherwise) and starts it."""
    chair = Participant(node, session)
    await chair.connect()
    await chair.join(meeting_id, **{"size": (320, 240), **probe})
    assert (await chair.call("start"))["ok"]
    return chair


async def chair_and_site_live(
    province: Node,
    site_node: Node,
    title: str,
    subtrees: list[str],
    operator: str = "kt.cm-nc-hr",
) -> tuple[Participant, Participant]:
    """The province chair schedules ``title`` for ``subtrees``; ``operator`` joins it on
    ``site_node`` (counting frames, not decoding them); the chair joins and starts it."""
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=subtrees)
    local = await local_meeting_id(site_node, operator, title)
    site = await join_site(site_node, operator, local, decode=False)
    return await start_as_chair(province, chair_session, meeting_id), site
