"""A participant for tests: a real socket.io client on /meeting plus a real aiortc ProbePeer."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import socketio
from aiohttp.test_utils import TestClient

from rooms.peer import Slot
from rooms.probe import ProbePeer, SlotStats
from rooms.synthetic import AUDIO_SAMPLES, CounterVideoTrack, ToneAudioTrack
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


# -- media that follows its sender ---------------------------------------------------------
#
# What a receive slot shows is compared with what its sender produced, never with a frame
# rate: the synthetic sender runs in the test process, and on a busy machine it, the nodes
# and the receivers all share the same starved CPU. A lost packet costs frames until the
# keyframe that heals it; what must hold is that the picture keeps advancing in order
# (counters read with their check row, rooms/synthetic.py), that it is its sender's, that
# it comes back after every loss (``TAIL`` readable frames past the window), and that most
# of the audio packets arrive.
#
# How many of a window's frames a starved test process decodes is a speed figure: under two
# busy loops and other test runs (load average 6 to 9 on two cores) the three-sites test saw
# 70, 157 and 234 of 300, the node's own receiver giving up gaps (0.4 s) and waiting for
# keyframes; so it is reported in failure messages, not asserted. A forwarding that breaks
# the picture or drops frames as a rule shows no readable tail and fails in ``follow``.

# Each audio packet is whole and a loss costs only itself; at load 6 to 9 the receivers heard
# 74 % to 92 % of what the sender produced. A steady loss of half or more never passes.
AUDIO_SHARE = 0.5
# Readable frames shown past the window: the picture came back after its largest gap. Ten,
# not thirty: under both cores' busy loops a two-hop floor test showed receivers well past
# the window (sender at 955, latest shown 659 to 832) yet fewer than 30 readable frames
# within 90 s, most pictures decoded against a lost reference and unreadable.
TAIL = 10
# No latency bound: on a starved machine the receivers in the test process decode slower
# than the sender produces (seen: three sites 150 to 340 frames behind a sender itself down
# to 5 frames a second, under two busy loops), and aiortc queues what it has not decoded.
# What a latency bound would catch is caught without one: a stale or replayed stream never
# shows frames numbered past the window, and no slot may show a frame its sender has not yet
# produced (a stream from another sender, started earlier); tests also check picture sizes.


@dataclass
class Followed:
    """What one receive slot showed of the frames its sender numbered ``first``..``last - 1``."""

    what: str
    arrived: list[int]  # every counter the slot showed since the window opened, in order
    first: int
    last: int
    lag: int  # sender's counter minus the slot's latest, when the tail had arrived (shown)
    ahead: list[int]  # counters shown that the sender had not produced when they arrived

    @property
    def delivered(self) -> int:
        return len({c for c in self.arrived if self.first <= c < self.last})

    def largest_gap(self) -> tuple[int, int]:
        """The two counters on either side of the largest jump among those shown."""
        pairs = list(itertools.pairwise(self.arrived))
        return max(pairs, key=lambda p: p[1] - p[0], default=(self.first, self.first))

    def __str__(self) -> str:
        before, after = self.largest_gap()
        return (
            f"{self.what}: {self.delivered} of {self.last - self.first} frames "
            f"{self.first}..{self.last - 1}, largest gap {before}→{after}, lag {self.lag}"
        )

    def check(self, detail: str = "") -> None:
        """In order and never ahead of its sender; ``detail`` (node-side counters, say) goes
        into the failure message."""
        back = [(a, b) for a, b in itertools.pairwise(self.arrived) if b < a]
        assert not back, f"the picture went backwards {back[:5]}: {self} {detail}"
        assert not self.ahead, f"frames from another sender {self.ahead[:5]}: {self} {detail}"


async def follow(
    sender: CounterVideoTrack,
    slots: dict[str, SlotStats],
    frames: int = 60,
    within: float = 90.0,
) -> list[Followed]:
    """Open a window of the next ``frames`` frames ``sender`` produces and wait, up to
    ``within`` seconds, until every slot has shown ``TAIL`` frames past it: a picture that
    stopped, or never came back after a loss, fails here; a frame from before the window
    (a stale or replayed stream) never counts. ``Followed.check`` asserts the rest."""
    opened = time.monotonic()
    first = sender.counter
    last = first + frames
    lags: dict[str, int] = {}
    ahead: dict[str, list[int]] = {name: [] for name in slots}
    looked = {name: len(stats.counters) for name, stats in slots.items()}

    def tail(stats: SlotStats) -> int:
        return sum(1 for c in stats.counters[-TAIL:] if c >= last)

    while len(lags) < len(slots):
        for name, stats in slots.items():
            # Every counter that arrived since the last look, against what the sender has
            # produced by now (frames arrive after they are produced).
            ahead[name] += [c for c in stats.counters[looked[name] :] if c >= sender.counter]
            looked[name] = len(stats.counters)
            if name not in lags and tail(stats) >= TAIL:
                lags[name] = sender.counter - stats.counters[-1]
        if time.monotonic() > opened + within:
            latest = {n: s.counters[-1] if s.counters else None for n, s in slots.items()}
            raise AssertionError(
                f"the picture stopped advancing: window {first}..{last - 1}, sender at "
                f"{sender.counter}, latest shown {latest}"
            )
        await asyncio.sleep(0.05)
    return [
        Followed(name, stats.counters_since(opened), first, last, lags[name], ahead[name])
        for name, stats in slots.items()
    ]


async def hear(
    sender: ToneAudioTrack,
    slots: dict[str, SlotStats],
    packets: int,
    share: float = AUDIO_SHARE,
    within: float = 60.0,
) -> None:
    """Wait until, ``packets`` audio packets or more after the call, every slot has received
    ``share`` of the packets ``sender`` produced since the call (20 ms each), up to
    ``within`` seconds. A steady loss above 1 - ``share`` never passes; a delay does."""
    opened = time.monotonic()
    sent_before = sender.samples // AUDIO_SAMPLES
    heard_before = {name: s.audio_packets for name, s in slots.items()}

    def heard_enough() -> bool:
        sent = sender.samples // AUDIO_SAMPLES - sent_before
        return sent >= packets and all(
            s.audio_packets - heard_before[n] >= share * sent for n, s in slots.items()
        )

    while not heard_enough():
        if time.monotonic() > opened + within:
            sent = sender.samples // AUDIO_SAMPLES - sent_before
            heard = {n: s.audio_packets - heard_before[n] for n, s in slots.items()}
            raise AssertionError(f"audio: {sent} packets sent, heard {heard}")
        await asyncio.sleep(0.05)


async def stops(
    count: Callable[[], int], what: str, quiet: float = 1.5, within: float = 60.0
) -> None:
    """Wait until ``count()`` stays the same for ``quiet`` seconds, up to ``within``: media
    that was stopped, once what was already on its way has arrived (on a busy machine a
    backlog not yet decoded takes seconds to drain). Media that goes on never passes."""
    deadline = time.monotonic() + within
    value, since = count(), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"{what} still arriving after {within} s"
        await asyncio.sleep(0.05)
        if count() != value:
            value, since = count(), time.monotonic()


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
