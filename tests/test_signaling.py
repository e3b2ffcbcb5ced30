"""The ``/meeting`` socket.io namespace through a real node: real sockets, real aiortc offers.

Each test logs demo users in over HTTP, connects python-socketio clients to the node's port
with the session cookie, and checks acknowledgements and the events the node pushes
(docs/protocol.md). Waits poll for a condition; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import socketio
from aiortc.sdp import SessionDescription

from rooms.peer import CHAIR_LAYOUT, SITE_LAYOUT, Slot
from rooms.probe import ProbePeer
from server.auth import SESSION_COOKIE
from server.sockets.protocol import EVENTS, MAX_SDP
from server.sockets.signaling import REGISTRY, SIO
from tests.conftest import Node, Session

NS = "/meeting"
WAIT = 10.0  # generous: a condition that holds is seen long before this

SITE_SLOTS = [
    "camera",
    "camera.low",
    "microphone",
    "chair.video",
    "chair.audio",
    "floor.video",
    "floor.audio",
]
CHAIR_SLOTS = [
    "camera",
    "camera.low",
    "microphone",
    "floor.video",
    "floor.audio",
    "wall.0",
    "wall.1",
    "wall.2",
    "wall.3",
]
HR_PATH = ["Tỉnh Cà Mau", "Huyện Năm Căn", "Xã Hàm Rồng"]
CHAIR_ACTIONS: list[tuple[str, dict[str, Any]]] = [
    ("start", {}),
    ("end", {}),
    ("give_floor", {"unit": "CM-NC-HR"}),
    ("take_floor", {}),
    ("mute", {"unit": "CM-NC-HR", "muted": True}),
    ("watch", {"unit": "CM-NC-HR", "watch": True}),
]


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()


def session_cookie(session: Session) -> str:
    for cookie in session.client.session.cookie_jar:
        if cookie.key == SESSION_COOKIE:
            return cookie.value
    raise AssertionError("the login left no session cookie")


@dataclass
class Link:
    """One socket.io client on /meeting and everything the node pushed to it."""

    sio: socketio.AsyncClient
    states: list[dict[str, Any]] = field(default_factory=list)
    ended: list[dict[str, Any]] = field(default_factory=list)
    replaced: list[dict[str, Any]] = field(default_factory=list)
    connect_errors: list[Any] = field(default_factory=list)

    async def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        ack = await self.sio.call(event, payload, namespace=NS, timeout=WAIT)
        assert isinstance(ack, dict), (event, ack)
        return ack

    async def ok(self, event: str, payload: Any = None) -> dict[str, Any]:
        ack = await self.call(event, payload)
        assert ack.get("ok") is True, (event, payload, ack)
        return ack

    async def refused(self, event: str, payload: Any, code: str) -> dict[str, Any]:
        ack = await self.call(event, payload)
        assert ack.get("ok") is False, (event, payload, ack)
        assert ack["error"] == code, (event, payload, ack)
        assert isinstance(ack["message"], str), ack
        assert ack["message"], ack
        return ack

    async def state_where(
        self, check: Callable[[dict[str, Any]], bool], what: str
    ) -> dict[str, Any]:
        """Wait until the newest state event satisfies ``check`` (states are snapshots)."""
        deadline = time.monotonic() + WAIT
        while True:
            if self.states and check(self.states[-1]):
                return self.states[-1]
            if time.monotonic() > deadline:
                last = self.states[-1] if self.states else None
                raise AssertionError(f"no state event where {what}; last: {last}")
            await asyncio.sleep(0.02)

    async def wait_for(self, events: list[dict[str, Any]], what: str) -> dict[str, Any]:
        deadline = time.monotonic() + WAIT
        while not events:
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} event")
            await asyncio.sleep(0.02)
        return events[-1]


Connect = Callable[..., Awaitable[Link]]


@pytest.fixture
async def connect(node: Node) -> AsyncIterator[Connect]:
    """``await connect(session)`` opens a /meeting socket as that user (None: no cookie);
    with ``refused=True`` it expects the node to refuse the connect."""
    links: list[Link] = []
    url = f"http://127.0.0.1:{node.client.server.port}"

    async def _connect(
        session: Session | None,
        headers: dict[str, str] | None = None,
        refused: bool = False,
    ) -> Link:
        sio = socketio.AsyncClient(reconnection=False)
        link = Link(sio)
        sio.on("state", link.states.append, namespace=NS)
        sio.on("ended", link.ended.append, namespace=NS)
        sio.on("replaced", link.replaced.append, namespace=NS)
        sio.on("connect_error", link.connect_errors.append, namespace=NS)
        links.append(link)
        sent = dict(headers or {})
        if session is not None:
            sent["Cookie"] = f"{SESSION_COOKIE}={session_cookie(session)}"
        if not refused:
            await sio.connect(
                url, headers=sent, namespaces=[NS], transports=["websocket"], wait_timeout=WAIT
            )
            return link
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                url, headers=sent, namespaces=[NS], transports=["websocket"], wait_timeout=WAIT
            )
        assert not sio.connected
        return link

    yield _connect
    for link in links:
        if link.sio.connected:
            await link.sio.disconnect()


@pytest.fixture
async def probes() -> AsyncIterator[Callable[[Sequence[Slot]], ProbePeer]]:
    """Headless aiortc participants (no media sources), closed after the test."""
    made: list[ProbePeer] = []

    def _make(layout: Sequence[Slot]) -> ProbePeer:
        probe = ProbePeer(layout, publish=False, decode=False)
        made.append(probe)
        return probe

    yield _make
    for probe in made:
        await probe.close()


async def schedule(chair: Session, **invites: list[str]) -> int:
    status, body = await chair.call(
        "POST",
        "/api/meetings",
        {"title": "Hội nghị trực tuyến thử nghiệm", "starts_at": tomorrow(), **invites},
    )
    assert status == 201, body
    return int(body["meeting"]["id"])


async def joined(node: Node, connect: Connect, username: str, meeting_id: int) -> Link:
    link = await connect(await node.login(username))
    await link.ok("join", {"meeting_id": meeting_id})
    return link


def check_answer(answer: str, layout: Sequence[Slot]) -> None:
    """The node's answer: one section per slot in order, reversed directions, one codec."""
    parsed = SessionDescription.parse(answer)
    assert [m.kind for m in parsed.media] == [s.kind for s in layout]
    assert [m.direction for m in parsed.media] == [
        "recvonly" if s.publish else "sendonly" for s in layout
    ]
    for m in parsed.media:
        mimes = {c.mimeType.lower() for c in m.rtp.codecs}
        assert mimes == ({"video/vp8", "video/rtx"} if m.kind == "video" else {"audio/opus"})
        assert m.ice is not None
        assert m.ice.usernameFragment
        assert m.dtls is not None
        assert m.dtls.fingerprints
    bundle = next(g for g in parsed.group if g.semantic == "BUNDLE")
    assert bundle.items == [m.rtp.muxId for m in parsed.media]


def drop_lines(sdp: str, prefix: str) -> str:
    return "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith(prefix))


def without_vp8(sdp: str) -> str:
    """The offer with VP8 (and its RTX) removed: video sections keep only H.264."""
    vp8 = set(re.findall(r"a=rtpmap:(\d+) VP8/90000", sdp))
    assert vp8, "aiortc offers VP8"
    drop = vp8 | {pt for pt, apt in re.findall(r"a=fmtp:(\d+) apt=(\d+)", sdp) if apt in vp8}
    lines = []
    for line in sdp.split("\r\n"):
        if line.startswith("m=video"):
            parts = line.split(" ")
            line = " ".join(parts[:3] + [p for p in parts[3:] if p not in drop])
        else:
            match = re.match(r"a=(?:rtpmap|rtcp-fb|fmtp):(\d+)", line)
            if match and match.group(1) in drop:
                continue
        lines.append(line)
    assert "VP8" not in "\r\n".join(lines)
    return "\r\n".join(lines)


# -- connecting --------------------------------------------------------------------------------


REFUSED = {
    "message": "not_authenticated",
    "data": {"error": "not_authenticated", "message": "Log in first."},
}


async def test_socket_without_session_cookie_is_refused(node: Node, connect: Connect) -> None:
    link = await connect(None, refused=True)
    # What socket.io-client shows as connect_error: err.message and err.data.
    assert link.connect_errors == [REFUSED]
    assert link.states == []


async def test_forged_or_logged_out_cookie_is_refused(node: Node, connect: Connect) -> None:
    forged = {"Cookie": f"{SESSION_COOKIE}=forged-token-0123456789"}
    assert (await connect(None, headers=forged, refused=True)).connect_errors == [REFUSED]
    # A real cookie works, and stops working once its session has logged out.
    session = await node.login("kt.cm-nc-hr")
    token = session_cookie(session)
    link = await connect(session)
    assert link.sio.connected
    status, _ = await session.call("POST", "/api/logout")
    assert status == 200
    stale = {"Cookie": f"{SESSION_COOKIE}={token}"}
    assert (await connect(None, headers=stale, refused=True)).connect_errors == [REFUSED]


async def test_cross_origin_socket_is_refused(node: Node, connect: Connect) -> None:
    session = await node.login("kt.cm-nc-hr")
    await connect(session, headers={"Origin": "http://evil.example"}, refused=True)
    # The Engine.IO handshake itself is what refuses it.
    handshake = "/socket.io/?EIO=4&transport=polling"
    resp = await session.client.get(handshake, headers={"Origin": "http://evil.example"})
    assert resp.status == 400
    assert "not an accepted origin" in await resp.text()
    own = f"http://127.0.0.1:{node.client.server.port}"
    resp = await session.client.get(handshake, headers={"Origin": own})
    assert resp.status == 200
    link = await connect(session, headers={"Origin": own})
    assert link.sio.connected
    await link.ok("leave")


# -- refusals before and around join -----------------------------------------------------------


async def test_events_before_join_are_not_joined(node: Node, connect: Connect) -> None:
    link = await connect(await node.login("chutri"))
    payloads = {
        "offer": {"sdp": "v=0\r\n"},
        "start": {},
        "end": {},
        "raise_hand": {"raised": True},
        "give_floor": {"unit": "CM-NC-HR"},
        "take_floor": {},
        "mute": {"unit": "CM-NC-HR", "muted": True},
        "watch": {"unit": "CM-NC-HR", "watch": True},
        "devices": {"mic_on": True, "camera_on": False},
        "head_count": {"count": 3},
        "roll_call_start": {},
        "roll_call_end": {},
        "roll_call_answer": {"roll_call": "x", "count": 3},
        "call_site": {"step": "next"},
        "receive_mode": {"mode": "low"},
        "link_stats": {"slots": []},
    }
    assert set(payloads) == set(EVENTS) - {"join", "leave"}
    for event, payload in payloads.items():
        await link.refused(event, payload, "not_joined")
    # leave is always accepted, joined or not.
    await link.ok("leave")


async def test_unknown_event(node: Node, connect: Connect) -> None:
    link = await connect(await node.login("chutri"))
    ack = await link.refused("fly_to_the_moon", {"x": 1}, "unknown_event")
    assert "fly_to_the_moon" in ack["message"]
    await link.refused("message", "hello", "unknown_event")


async def test_join_unknown_and_invisible_meetings(node: Node, connect: Connect) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    await (await connect(chair)).refused("join", {"meeting_id": mid + 1000}, "meeting_not_found")
    # A commune of another district neither sees the meeting nor may learn it exists.
    outsider = await connect(await node.login("kt.cm-tvt-kh"))
    await outsider.refused("join", {"meeting_id": mid}, "meeting_not_found")
    # An id beyond the database's integer column is a bad request, not a node failure.
    ack = await outsider.refused("join", {"meeting_id": 2**63}, "bad_request")
    assert "meeting_id" in ack["fields"]


async def test_visible_but_not_a_site_is_not_invited(node: Node, connect: Connect) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_units=["CM-TVT-KB"])
    # The district sees the meeting (a commune under it is invited) but is not a site.
    district = await connect(await node.login("kt.cm-tvt"))
    await district.refused("join", {"meeting_id": mid}, "not_invited")
    # The host unit's secretary sees it too, and is neither chair nor site.
    secretary = await connect(await node.login("thuky"))
    await secretary.refused("join", {"meeting_id": mid}, "not_invited")
    # The invited commune is a site.
    commune = await connect(await node.login("kt.cm-tvt-kb"))
    ack = await commune.ok("join", {"meeting_id": mid})
    assert ack["role"] == "site"
    assert ack["unit"] == "CM-TVT-KB"


async def test_cancelled_meeting_is_not_open(node: Node, connect: Connect) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    status, _ = await chair.call("POST", f"/api/meetings/{mid}/cancel")
    assert status == 200
    await (await connect(chair)).refused("join", {"meeting_id": mid}, "meeting_not_open")
    site = await connect(await node.login("kt.cm-nc-hr"))
    await site.refused("join", {"meeting_id": mid}, "meeting_not_open")


async def test_roles_guard_chair_actions_and_raise_hand(node: Node, connect: Connect) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    site = await joined(node, connect, "kt.cm-nc-hr", mid)
    # A district chair at an invited site joins as a site, not as the meeting's chair.
    district_chair = await joined(node, connect, "chutri.cm-nc", mid)
    for link in (site, district_chair):
        for event, payload in CHAIR_ACTIONS:
            await link.refused(event, payload, "forbidden")
    await chair.refused("raise_hand", {"raised": True}, "forbidden")
    # The refused "end" ended nothing, and the refused "start" started nothing.
    state = await chair.state_where(lambda s: len(s["sites"]) == 2, "both sites are listed")
    assert state["status"] == "waiting"
    assert site.ended == []


async def test_chair_actions_on_a_site_that_is_not_connected(node: Node, connect: Connect) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    for unit in ("CM-NC-HR", "NO-SUCH-UNIT"):
        await chair.refused("give_floor", {"unit": unit}, "unknown_site")
        await chair.refused("mute", {"unit": unit, "muted": True}, "unknown_site")
        await chair.refused("watch", {"unit": unit, "watch": True}, "unknown_site")
    # Unwatching a site that is not on the wall is a no-op, not an error.
    await chair.ok("watch", {"unit": "CM-NC-HR", "watch": False})


async def test_the_wall_holds_four_sites(node: Node, connect: Connect) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    codes = ["CM-NC", "CM-NC-HR", "CM-NC-HT", "CM-NC-HV", "CM-NC-TT"]
    for code in codes:
        await joined(node, connect, f"kt.{code.lower()}", mid)
    await chair.state_where(lambda s: len(s["sites"]) == 5, "five sites are listed")
    for code in codes[:4]:
        await chair.ok("watch", {"unit": code, "watch": True})
    await chair.ok("watch", {"unit": codes[0], "watch": True})  # already on the wall
    await chair.refused("watch", {"unit": codes[4], "watch": True}, "wall_full")
    await chair.state_where(lambda s: s["watched"] == codes[:4], "four sites on the wall")
    # Unwatching frees that slot, and the next site takes it.
    await chair.ok("watch", {"unit": "CM-NC-HR", "watch": False})
    await chair.ok("watch", {"unit": codes[4], "watch": True})
    await chair.state_where(
        lambda s: s["watched"] == ["CM-NC", "CM-NC-TT", "CM-NC-HT", "CM-NC-HV"],
        "the fifth site in the freed slot",
    )


# -- malformed payloads -------------------------------------------------------------------------

NOT_OBJECTS: list[Any] = ["text", 7, [1, 2], True]

# (event, payload, field named in the error)
MALFORMED: list[tuple[str, Any, str]] = [
    ("join", {}, "meeting_id"),
    ("join", {"meeting_id": "1"}, "meeting_id"),
    ("join", {"meeting_id": 1.5}, "meeting_id"),
    ("join", {"meeting_id": True}, "meeting_id"),
    ("join", {"meeting_id": 0}, "meeting_id"),
    ("join", {"meeting_id": -3}, "meeting_id"),
    ("join", {"meeting_id": None}, "meeting_id"),
    ("join", {"meeting_id": 1, "role": "chair"}, "role"),
    ("offer", {}, "sdp"),
    ("offer", {"sdp": 5}, "sdp"),
    ("offer", {"sdp": ""}, "sdp"),
    ("offer", {"sdp": ["v=0"]}, "sdp"),
    ("offer", {"sdp": "x" * (MAX_SDP + 1)}, "sdp"),
    ("offer", {"sdp": "v=0\r\n", "type": "offer"}, "type"),
    ("start", {"now": True}, "now"),
    ("end", {"reason": "done"}, "reason"),
    ("take_floor", {"unit": "CM-NC-HR"}, "unit"),
    ("leave", {"meeting_id": 1}, "meeting_id"),
    ("raise_hand", {}, "raised"),
    ("raise_hand", {"raised": "yes"}, "raised"),
    ("raise_hand", {"raised": 1}, "raised"),
    ("raise_hand", {"raised": True, "unit": "CM"}, "unit"),
    ("give_floor", {}, "unit"),
    ("give_floor", {"unit": ""}, "unit"),
    ("give_floor", {"unit": "X" * 65}, "unit"),
    ("give_floor", {"unit": 12}, "unit"),
    ("mute", {"unit": "CM-NC-HR"}, "muted"),
    ("mute", {"muted": True}, "unit"),
    ("mute", {"unit": "CM-NC-HR", "muted": "true"}, "muted"),
    ("mute", {"unit": "CM-NC-HR", "muted": True, "all": True}, "all"),
    ("watch", {"unit": "CM-NC-HR"}, "watch"),
    ("watch", {"unit": None, "watch": True}, "unit"),
    ("watch", {"unit": "CM-NC-HR", "watch": 0}, "watch"),
    ("devices", {"mic_on": True}, "camera_on"),
    ("devices", {"camera_on": False}, "mic_on"),
    ("devices", {"mic_on": "on", "camera_on": False}, "mic_on"),
    ("devices", {"mic_on": True, "camera_on": False, "speaker_on": True}, "speaker_on"),
    ("head_count", {}, "count"),
    ("head_count", {"count": -1}, "count"),
    ("head_count", {"count": 100_001}, "count"),
    ("head_count", {"count": "12"}, "count"),
    ("head_count", {"count": 3, "names": [{"name": "An\u0000"}]}, "names.0.name"),
    ("head_count", {"count": 3, "names": [{"position": "Chủ tịch"}]}, "names.0.name"),
    ("head_count", {"count": 3, "names": [{"name": "An"}] * 501}, "names"),
    ("roll_call_start", {"id": "x"}, "id"),
    ("roll_call_end", {"now": True}, "now"),
    ("roll_call_answer", {"count": 3}, "roll_call"),
    ("roll_call_answer", {"roll_call": "x", "count": True}, "count"),
    ("roll_call_answer", {"roll_call": "x" * 37, "count": 3}, "roll_call"),
    ("call_site", {"step": "sideways"}, "step"),
    ("call_site", {"unit": ""}, "unit"),
    ("receive_mode", {"mode": "best"}, "mode"),
    ("receive_mode", {}, "mode"),
    ("link_stats", {"slots": [{"slot": "chair\nvideo"}]}, "slots.0.slot"),
    (
        "link_stats",
        {"slots": [{"slot": "chair.video", "freeze_count": -1}]},
        "slots.0.freeze_count",
    ),
    ("link_stats", {"rtt_ms": "fast"}, "rtt_ms"),
    ("link_stats", {"slots": [{"slot": "a"}] * 17}, "slots"),
]


async def test_malformed_payloads_are_bad_request_with_fields(node: Node, connect: Connect) -> None:
    assert {event for event, _, _ in MALFORMED} == set(EVENTS)
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    link = await connect(await node.login("kt.cm-nc-hr"))
    for event, payload, name in MALFORMED:
        ack = await link.refused(event, payload, "bad_request")
        assert name in ack["fields"], (event, payload, ack)
        assert all(isinstance(v, str) and v for v in ack["fields"].values()), ack
    # Joined, the same payloads are still refused before any handler runs.
    await link.ok("join", {"meeting_id": mid})
    for event, payload, name in MALFORMED:
        ack = await link.refused(event, payload, "bad_request")
        assert name in ack["fields"], (event, payload, ack)


async def test_payloads_that_are_not_objects(node: Node, connect: Connect) -> None:
    link = await connect(await node.login("kt.cm-nc-hr"))
    for event in EVENTS:
        for payload in NOT_OBJECTS:
            ack = await link.refused(event, payload, "bad_request")
            assert list(ack["fields"]) == ["payload"], (event, payload, ack)
    # A missing payload is an empty object: fine for events without fields.
    ack = await link.refused("devices", None, "bad_request")
    assert set(ack["fields"]) == {"mic_on", "camera_on"}
    await link.ok("leave")
    await link.ok("leave", (None,))  # an explicit null, likewise


async def test_sdp_size_limit_is_exact(node: Node, connect: Connect) -> None:
    link = await connect(await node.login("kt.cm-nc-hr"))
    # At the limit the payload is valid (the handler then wants a join first).
    await link.refused("offer", {"sdp": "x" * MAX_SDP}, "not_joined")
    ack = await link.refused("offer", {"sdp": "x" * (MAX_SDP + 1)}, "bad_request")
    assert list(ack["fields"]) == ["sdp"]


# -- offers and answers -------------------------------------------------------------------------


async def test_bad_offers_are_refused_and_the_link_still_negotiates(
    node: Node, connect: Connect, probes: Callable[[Sequence[Slot]], ProbePeer]
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    site = await joined(node, connect, "kt.cm-nc-hr", mid)

    # Not well-formed SDP (no o=, s=, t= lines; not SDP at all): bad_sdp.
    await site.refused("offer", {"sdp": "v=0 garbage"}, "bad_sdp")
    await site.refused("offer", {"sdp": "v=0\r\n"}, "bad_sdp")
    await site.refused("offer", {"sdp": "not an sdp at all"}, "bad_sdp")
    # Well-formed SDP whose sections do not follow the layout: bad_offer.
    # A real offer in the chair's layout: nine sections where a site needs seven.
    ack = await site.refused("offer", {"sdp": await probes(CHAIR_LAYOUT).offer()}, "bad_offer")
    assert "7" in ack["message"]
    # The site's layout offered by the chair: seven sections where the chair needs nine.
    ack = await chair.refused("offer", {"sdp": await probes(SITE_LAYOUT).offer()}, "bad_offer")
    assert "9" in ack["message"]
    # Right count, wrong order: microphone before camera.
    swapped = (SITE_LAYOUT[2], SITE_LAYOUT[1], SITE_LAYOUT[0], *SITE_LAYOUT[3:])
    await site.refused("offer", {"sdp": await probes(swapped).offer()}, "bad_offer")
    # Right kinds, wrong direction: the camera section offered as receive-only.
    receive_only = (Slot("camera", "video", False), *SITE_LAYOUT[1:])
    await site.refused("offer", {"sdp": await probes(receive_only).offer()}, "bad_offer")
    # The chair's layout reversed: same length, every section out of place.
    reversed_chair = tuple(reversed(CHAIR_LAYOUT))
    await chair.refused("offer", {"sdp": await probes(reversed_chair).offer()}, "bad_offer")
    # A proper offer with its ICE credentials, its BUNDLE group, or VP8 removed.
    proper = await probes(SITE_LAYOUT).offer()
    await site.refused("offer", {"sdp": drop_lines(proper, "a=ice-ufrag:")}, "bad_sdp")
    await site.refused("offer", {"sdp": drop_lines(proper, "a=group:BUNDLE")}, "bad_offer")
    await site.refused("offer", {"sdp": without_vp8(proper)}, "unsupported_codec")

    # After every refusal the same join still negotiates, and a second offer is refused.
    probe = probes(SITE_LAYOUT)
    ack = await site.ok("offer", {"sdp": await probe.offer()})
    assert ack["type"] == "answer"
    check_answer(ack["sdp"], SITE_LAYOUT)
    await probe.accept(ack["sdp"])
    await site.refused("offer", {"sdp": await probes(SITE_LAYOUT).offer()}, "already_negotiated")
    # The node goes on serving: the chair's own offer is answered, states keep coming.
    chair_probe = probes(CHAIR_LAYOUT)
    ack = await chair.ok("offer", {"sdp": await chair_probe.offer()})
    check_answer(ack["sdp"], CHAIR_LAYOUT)
    await chair_probe.accept(ack["sdp"])
    await chair.state_where(
        lambda s: [x["unit"] for x in s["sites"]] == ["CM-NC-HR"] and s["sites"][0]["media"],
        "the site is listed with media",
    )
    await site.ok("devices", {"mic_on": False, "camera_on": True})
    await site.state_where(lambda s: s["you"]["unit"] == "CM-NC-HR", "a state reaches the site")


async def test_join_again_starts_over(
    node: Node, connect: Connect, probes: Callable[[Sequence[Slot]], ProbePeer]
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    site = await joined(node, connect, "kt.cm-nc-hr", mid)
    await site.ok("offer", {"sdp": await probes(SITE_LAYOUT).offer()})
    await site.refused("offer", {"sdp": await probes(SITE_LAYOUT).offer()}, "already_negotiated")
    await site.ok("join", {"meeting_id": mid})
    probe = probes(SITE_LAYOUT)
    ack = await site.ok("offer", {"sdp": await probe.offer()})
    check_answer(ack["sdp"], SITE_LAYOUT)
    await probe.accept(ack["sdp"])


# -- a meeting, start to end --------------------------------------------------------------------


async def test_meeting_flow_hand_floor_mute_watch_end(
    node: Node, connect: Connect, probes: Callable[[Sequence[Slot]], ProbePeer]
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])

    chair = await connect(chair_session)
    ack = await chair.ok("join", {"meeting_id": mid})
    assert ack["role"] == "chair"
    assert ack["unit"] == "CM"
    assert [s["slot"] for s in ack["layout"]] == CHAIR_SLOTS
    assert ack["layout"][0] == {"slot": "camera", "kind": "video", "direction": "sendonly"}
    assert ack["layout"][1] == {"slot": "camera.low", "kind": "video", "direction": "sendonly"}
    assert ack["layout"][2] == {"slot": "microphone", "kind": "audio", "direction": "sendonly"}
    assert {s["direction"] for s in ack["layout"][3:]} == {"recvonly"}
    assert ack["state"] == {
        "meeting_id": mid,
        "title": "Hội nghị trực tuyến thử nghiệm",
        "status": "waiting",
        "chair_present": True,
        "upper_level": None,
        "floor": None,
        "you": {
            "unit": "CM",
            "role": "chair",
            "has_floor": False,
            "muted": False,
            "hand_raised": False,
            "receive": ack["state"]["you"]["receive"],
            "publish": {"high": True, "low": True},
        },
        "sites": [],
        "queue": [],
        "watched": [None, None, None, None],
        "nodes": [],
        "roll_call": None,
        "roster": ack["state"]["roster"],
    }
    # Every invited site is listed from the first state on, none of them here yet: Năm Căn
    # district's hall and its eight communes.
    roster = ack["state"]["roster"]
    assert (roster["present"], roster["expected"]) == (0, 9)
    assert {s["state"] for s in roster["sites"]} == {"never"}
    assert {s["group"] for s in roster["sites"]} == {"CM-NC"}

    site = await connect(await node.login("kt.cm-nc-hr"))
    ack = await site.ok("join", {"meeting_id": mid})
    assert ack["role"] == "site"
    assert ack["unit"] == "CM-NC-HR"
    assert [s["slot"] for s in ack["layout"]] == SITE_SLOTS
    assert [s["kind"] for s in ack["layout"]] == ["video"] + ["video", "audio"] * 3
    assert "sites" not in ack["state"]
    assert "queue" not in ack["state"]
    assert "roster" not in ack["state"]  # a site does not see the others
    assert ack["state"]["chair_present"] is True
    assert ack["state"]["you"] == {
        "unit": "CM-NC-HR",
        "role": "site",
        "has_floor": False,
        "muted": False,
        "hand_raised": False,
        "head_count": None,
        "receive": ack["state"]["you"]["receive"],
        "publish": {"high": False, "low": False},
    }

    state = await chair.state_where(lambda s: len(s["sites"]) == 1, "the site is listed")
    state = await chair.state_where(
        lambda s: s["roster"]["present"] == 1, "the roster counts the site present"
    )
    hr = next(s for s in state["roster"]["sites"] if s["unit"] == "CM-NC-HR")
    assert (hr["state"], hr["node"]) == ("online", "root")
    assert state["roster"]["groups"] == [
        {"group": "CM-NC", "name": "Huyện Năm Căn", "present": 1, "expected": 9}
    ]
    assert state["sites"][0] == {
        "online": True,
        "link": "none",
        "unit": "CM-NC-HR",
        "name": "Xã Hàm Rồng",
        "path": HR_PATH,
        "media": False,
        "hand_raised": False,
        "muted": False,
        "mic_on": True,
        "camera_on": True,
        "receive": {
            "mode": "auto",
            "tier": "low",
            "quality": "unknown",
            "kbit": 0,
            "loss_pct": 0.0,
            "rtt_ms": None,
            "fps": 0.0,
            "freezes": 0,
            "audio_played_pct": None,
        },
    }

    probe = probes(SITE_LAYOUT)
    answer = await site.ok("offer", {"sdp": await probe.offer()})
    await probe.accept(answer["sdp"])
    await chair.state_where(lambda s: s["sites"][0]["media"] is True, "the site has media")

    await chair.ok("start")
    await site.state_where(lambda s: s["status"] == "live", "the site sees it live")

    await site.ok("raise_hand", {"raised": True})
    state = await chair.state_where(lambda s: s["queue"] != [], "the queue holds the hand")
    assert state["queue"] == [{"unit": "CM-NC-HR", "name": "Xã Hàm Rồng", "path": HR_PATH}]
    assert state["sites"][0]["hand_raised"] is True
    await site.state_where(lambda s: s["you"]["hand_raised"] is True, "the site's hand is up")

    await chair.ok("give_floor", {"unit": "CM-NC-HR"})
    state = await site.state_where(lambda s: s["you"]["has_floor"] is True, "the site speaks")
    assert state["floor"] == {"unit": "CM-NC-HR", "name": "Xã Hàm Rồng"}
    assert state["you"]["hand_raised"] is False  # giving the floor lowers the hand
    state = await chair.state_where(lambda s: s["floor"] is not None, "the chair sees the floor")
    assert state["queue"] == []

    await chair.ok("take_floor")
    state = await site.state_where(lambda s: s["you"]["has_floor"] is False, "floor taken")
    assert state["floor"] is None

    await chair.ok("mute", {"unit": "CM-NC-HR", "muted": True})
    await site.state_where(lambda s: s["you"]["muted"] is True, "the site is muted")
    await chair.ok("watch", {"unit": "CM-NC-HR", "watch": True})
    await chair.state_where(
        lambda s: s["watched"] == ["CM-NC-HR", None, None, None], "the site is on the wall"
    )
    await site.ok("devices", {"mic_on": False, "camera_on": True})
    await chair.state_where(lambda s: s["sites"][0]["mic_on"] is False, "the mic is off")

    assert site.ended == []
    await chair.ok("end")
    assert await site.wait_for(site.ended, "ended") == {"meeting_id": mid}
    # The state saying so came first (socket.io keeps a socket's order).
    assert site.states[-1]["status"] == "ended"
    await site.refused("offer", {"sdp": await probes(SITE_LAYOUT).offer()}, "meeting_ended")
    # Ended for good: nobody joins it again.
    late = await connect(await node.login("kt.cm-nc-hr"))
    await late.refused("join", {"meeting_id": mid}, "meeting_not_open")
    status, body = await chair_session.call("GET", f"/api/meetings/{mid}")
    assert status == 200
    assert body["meeting"]["status"] == "ended"


async def test_start_does_not_reopen_an_ended_or_cancelled_meeting(
    node: Node, connect: Connect
) -> None:
    chair_session = await node.login("chutri")
    ended_id = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", ended_id)
    await chair.ok("start")
    await chair.ok("end")
    await chair.refused("start", {}, "meeting_ended")
    status, body = await chair_session.call("GET", f"/api/meetings/{ended_id}")
    assert (status, body["meeting"]["status"]) == (200, "ended")
    site = await connect(await node.login("kt.cm-nc-hr"))
    await site.refused("join", {"meeting_id": ended_id}, "meeting_not_open")

    # Cancelled (over HTTP) while the chair waits in the room: start refuses, nothing changes.
    cancelled_id = await schedule(chair_session, invited_subtrees=["CM-NC"])
    await chair.ok("join", {"meeting_id": cancelled_id})
    status, _ = await chair_session.call("POST", f"/api/meetings/{cancelled_id}/cancel")
    assert status == 200
    await chair.refused("start", {}, "meeting_not_open")
    status, body = await chair_session.call("GET", f"/api/meetings/{cancelled_id}")
    assert (status, body["meeting"]["status"]) == (200, "cancelled")
    await site.refused("join", {"meeting_id": cancelled_id}, "meeting_not_open")


async def test_second_link_of_a_site_replaces_the_first(node: Node, connect: Connect) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    first = await joined(node, connect, "kt.cm-nc-hr", mid)
    await first.ok("raise_hand", {"raised": True})
    await chair.state_where(lambda s: len(s["queue"]) == 1, "the hand is queued")
    second = await joined(node, connect, "kt.cm-nc-hr", mid)
    assert await first.wait_for(first.replaced, "replaced") == {"meeting_id": mid}
    await first.refused("raise_hand", {"raised": False}, "not_joined")
    # The new link keeps the raised hand; the site is listed once.
    state = await chair.state_where(
        lambda s: [x["unit"] for x in s["sites"]] == ["CM-NC-HR"], "one site"
    )
    assert [q["unit"] for q in state["queue"]] == ["CM-NC-HR"]
    await second.ok("raise_hand", {"raised": False})
    await chair.state_where(lambda s: s["queue"] == [], "the hand is down")
    assert second.replaced == []


async def test_leaving_and_disconnecting_remove_the_site(node: Node, connect: Connect) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    leaver = await joined(node, connect, "kt.cm-nc-hr", mid)
    dropper = await joined(node, connect, "kt.cm-nc", mid)
    await chair.state_where(lambda s: len(s["sites"]) == 2, "both sites are listed")
    await leaver.ok("leave")
    await leaver.refused("raise_hand", {"raised": True}, "not_joined")
    await dropper.sio.disconnect()
    await chair.state_where(lambda s: s["sites"] == [], "no site is listed")
    # A link that left gets no "ended": the node pushes it before the chair's ack, so it
    # would be ahead of the leaver's next acknowledgement on the same socket.
    await chair.ok("end")
    await leaver.ok("leave")
    assert leaver.ended == []
    assert chair.ended == [{"meeting_id": mid}]


async def test_concurrent_hands_all_reach_the_chair(node: Node, connect: Connect) -> None:
    """Every site changing at once: the newest state shows every change."""
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    users = ("kt.cm-nc-hr", "kt.cm-nc-tt", "kt.cm-nc-hv", "kt.cm-nc")
    sites = [await joined(node, connect, user, mid) for user in users]
    await chair.state_where(lambda s: len(s["sites"]) == len(sites), "every site is listed")
    for round_ in range(8):
        raised = round_ % 2 == 0
        # Every site at once; the newest state must show every hand as it now is.
        await asyncio.gather(*(site.ok("raise_hand", {"raised": raised}) for site in sites))
        want = len(sites) if raised else 0
        await chair.state_where(lambda s, n=want: len(s["queue"]) == n, f"{want} hands are up")


async def test_a_change_made_while_a_state_is_being_sent_is_not_lost(
    node: Node, connect: Connect
) -> None:
    """State broadcasts are coalesced; a change that lands while one is being sent must get
    a broadcast of its own. The test shares the node's event loop, so it makes the second
    change exactly then, on the live meeting the sockets joined."""
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await joined(node, connect, "chutri", mid)
    await joined(node, connect, "kt.cm-nc-hr", mid)
    await chair.state_where(lambda s: len(s["sites"]) == 1, "the site is listed")
    namespace = node.app[SIO].namespace_handlers[NS]
    live = node.app[REGISTRY].get(mid)
    assert live is not None
    site = live.sites["CM-NC-HR"]
    live.raise_hand(site, True)  # schedules a broadcast (within PUSH_EVERY of the last)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        await asyncio.sleep(0)
        flush = namespace._flush
        if not namespace._dirty and flush is not None and not flush.done():
            break  # the broadcast took its snapshot and is sending it
    else:
        raise AssertionError("the broadcast never started sending")
    live.report_devices(site, False, True)  # a change while that broadcast is under way
    await chair.state_where(
        lambda s: s["sites"][0]["hand_raised"] and not s["sites"][0]["mic_on"],
        "both changes are shown",
    )
