"""The province chair watches a commune two links down: its video crosses the province ↔
district link only while watched (relay slots ``watch.N``, the ``watch`` node event).

The tree, the mirrored meeting and the sites come from tests/test_cascade.py; every counter
read here is a real aiortc RTP counter or a router counter on a real node."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from rooms.meeting import LiveMeeting
from rooms.peer import RELAY_LAYOUT, WALL_SLOTS
from rooms.uplink import UplinkLink
from server.cascade.parent_link import PARENT_LINK
from server.sockets.signaling import REGISTRY
from tests.conftest import Tree, start_node
from tests.live_helpers import (
    ClientFactory,
    follow,
    join_site,
    local_meeting_id,
    schedule,
    start_as_chair,
    start_child,
    stops,
    wait_for,
)

COMMUNE = "CM-NC-HR"
UP_SLOTS = ("up.video", *(f"watch.{i}" for i in range(WALL_SLOTS)))


def _by_slot(slots: Any, transceivers: list[Any]) -> dict[str, Any]:
    """A link's transceivers by slot name: both sides keep the layout's order."""
    return {s.name: t for s, t in zip(slots, transceivers, strict=True)}


async def _packets(stats_of: Any, kind: str, key: str) -> int:
    report = await stats_of.getStats()
    return sum(getattr(s, key) for s in report.values() if s.type == kind)


class Links:
    """The RTP counters of what goes up, on both ends of the district's link to the province."""

    def __init__(self, uplink: UplinkLink, province: LiveMeeting, district_code: str) -> None:
        self.uplink = uplink
        self.province = province
        self.district_code = district_code

    async def sent(self, slot: str) -> int:
        """RTP packets the district's uplink sender has sent up ``slot``."""
        sender = _by_slot(RELAY_LAYOUT, self.uplink.pc.getTransceivers())[slot].sender
        return await _packets(sender, "outbound-rtp", "packetsSent")

    async def received(self, slot: str) -> int:
        """RTP packets the province's receiver for the district's ``slot`` has received."""
        relay = self.province.relays[self.district_code]
        assert relay.peer is not None
        assert relay.peer.pc is not None
        receivers = _by_slot(relay.peer.layout, relay.peer.pc.getTransceivers())
        return await _packets(receivers[slot].receiver, "inbound-rtp", "packetsReceived")

    async def snapshot(self) -> dict[str, tuple[int, int, int]]:
        """Per upward video slot: packets sent, packets received, frames the router forwarded."""
        return {
            slot: (
                await self.sent(slot),
                await self.received(slot),
                self.uplink.consumers[slot].frames_sent,
            )
            for slot in UP_SLOTS
        }


async def quiet(read: Callable[[], Awaitable[Any]], what: str, within: float = 20.0) -> None:
    """Wait until ``read()`` (RTP and router counters) stays the same for 1.5 s, up to
    ``within`` seconds: what was already on its way has arrived and nothing more is sent."""
    deadline = time.monotonic() + within
    value, since = await read(), time.monotonic()
    while time.monotonic() - since < 1.5:
        assert time.monotonic() < deadline, f"{what} still flowing after {within} s"
        await asyncio.sleep(0.25)
        now = await read()
        if now != value:
            value, since = now, time.monotonic()


@pytest.mark.timeout(240)
async def test_province_chair_watches_a_commune_two_links_down_only_while_watched(
    tree: Tree,
) -> None:
    title = "Chủ trì xem một xã qua hai chặng"
    chair_session = await tree.province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    district = tree.districts["CM-NC"]
    local = await local_meeting_id(district, "kt.cm-nc-hr", title)
    commune = await join_site(district, "kt.cm-nc-hr", local, publish=True, size=(256, 144))
    chair = await start_as_chair(tree.province, chair_session, meeting_id, size=(256, 144))
    assert chair.probe is not None
    assert commune.probe is not None
    assert commune.probe.video is not None
    await chair.wait_state(lambda s: any(x["unit"] == COMMUNE for x in s.get("sites", [])), 20)

    province = tree.province.app[REGISTRY].get(meeting_id)
    district_live = district.app[REGISTRY].get(local)
    assert province is not None
    assert district_live is not None
    await wait_for(lambda: local in district.app[PARENT_LINK].links, 15, "the district's uplink")
    links = Links(district.app[PARENT_LINK].links[local], province, "CM-NC")
    await wait_for(
        lambda: "CM-NC" in province.relays and province.relays["CM-NC"].peer is not None,
        15,
        "the relay's media link",
    )
    camera = district_live.sites[COMMUNE].producer("video")
    assert camera is not None

    # Before any watch: the commune's camera reaches its node, and nothing of it goes up.
    frames = camera.frames
    await wait_for(lambda: camera.frames > frames + 30, 15, "the commune's camera on its node")
    assert await links.snapshot() == dict.fromkeys(UP_SLOTS, (0, 0, 0))

    # Watching it from the province starts its video across both links, to the chair's wall.
    assert (await chair.call("watch", {"unit": COMMUNE, "watch": True}))["ok"]
    state = await chair.wait_state(lambda s: s.get("watched", [None])[0] == COMMUNE)
    assert state["watched"] == [COMMUNE, None, None, None]
    wall = chair.probe.stats["wall.0"]
    await wait_for(lambda: len(wall.counters) > 30, 15, "the commune on the chair's wall")
    # It is the commune's own video (its counter), in order and advancing.
    for followed in await follow(commune.probe.video, {"wall.0": wall}, 60):
        followed.check()
    before = await links.snapshot()
    seen = len(wall.counters)
    await wait_for(lambda: len(wall.counters) > seen + 45, 30, "the wall to advance")
    after = await links.snapshot()
    sent, received, forwarded = (
        b - a for a, b in zip(before["watch.0"], after["watch.0"], strict=True)
    )
    assert sent > 20, (before, after)
    assert received > 20, (before, after)
    assert forwarded > 15, (before, after)
    for slot in UP_SLOTS[:1] + UP_SLOTS[2:]:  # only watch.0 carries it
        assert after[slot] == before[slot] == (0, 0, 0), slot

    # Unwatching stops the bytes on both links (within 2 s of the acknowledgement, on a
    # machine that is not starved; the bound asserted is generous).
    assert (await chair.call("watch", {"unit": COMMUNE, "watch": False}))["ok"]
    await quiet(links.snapshot, "the watched video on the links")
    await stops(lambda: wall.frames, "the watched video on the wall")
    assert district_live.up_watched == [None] * WALL_SLOTS
    await wait_for(lambda: camera.frames > frames + 60, 20, "the camera still runs on its node")
    await chair.wait_state(lambda s: s.get("watched") == [None] * WALL_SLOTS)

    # Refusals keep their codes; a site that is nowhere in the tree cannot be watched.
    refused = await chair.call("watch", {"unit": "CM-NC-XX", "watch": True})
    assert (refused["ok"], refused["error"]) == (False, "unknown_site")

    # A watched site that leaves below is taken off the wall, and nothing is sent up for it.
    assert (await chair.call("watch", {"unit": COMMUNE, "watch": True}))["ok"]
    await wait_for(lambda: district_live.up_watched[0] == COMMUNE, 10, "the watch order")
    await commune.close()
    await chair.wait_state(lambda s: s.get("watched") == [None] * WALL_SLOTS, 15)
    await wait_for(
        lambda: district_live.up_watched == [None] * WALL_SLOTS, 10, "the order withdrawn"
    )
    await chair.close()


@pytest.mark.timeout(300)
async def test_watch_crosses_every_link_of_a_chain_and_survives_a_relink(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # Province → district → commune node; the watched site is on the commune node, so its
    # video goes up two links, the district forwarding the province's order below.
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    commune_node = await start_child(aiohttp_client, tmp_path, district, COMMUNE)
    for n in (district, commune_node):
        await asyncio.wait_for(n.app[PARENT_LINK].connected.wait(), 15)

    title = "Chủ trì xem một xã ở nút xã"
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    mid_id = await local_meeting_id(district, "kt.cm-nc-tt", title)
    deep_id = await local_meeting_id(commune_node, "kt.cm-nc-hr", title)
    site = await join_site(commune_node, "kt.cm-nc-hr", deep_id, publish=True, size=(256, 144))
    chair = await start_as_chair(province, chair_session, meeting_id, size=(256, 144))
    assert chair.probe is not None
    assert site.probe is not None
    assert site.probe.video is not None
    await chair.wait_state(
        lambda s: any(x["unit"] == COMMUNE and x["media"] for x in s.get("sites", [])), 30
    )
    top_live = province.app[REGISTRY].get(meeting_id)
    mid_live = district.app[REGISTRY].get(mid_id)
    assert top_live is not None
    assert mid_live is not None
    await wait_for(
        lambda: all(
            live_id in n.app[PARENT_LINK].links
            for n, live_id in ((district, mid_id), (commune_node, deep_id))
        ),
        15,
        "both uplinks",
    )

    def relays_up() -> bool:
        """Both parents hold their relay's media link (a while after the uplinks, when busy)."""
        return all(
            live.relays.get(code) is not None and live.relays[code].peer is not None
            for live, code in ((top_live, "CM-NC"), (mid_live, COMMUNE))
        )

    await wait_for(relays_up, 30, "both relays' media links")

    def links() -> tuple[Links, Links]:
        """The district's link to the province, and the commune node's link to the district."""
        return (
            Links(district.app[PARENT_LINK].links[mid_id], top_live, "CM-NC"),
            Links(commune_node.app[PARENT_LINK].links[deep_id], mid_live, COMMUNE),
        )

    upper, lower = links()
    assert await upper.snapshot() == dict.fromkeys(UP_SLOTS, (0, 0, 0))
    assert await lower.snapshot() == dict.fromkeys(UP_SLOTS, (0, 0, 0))

    assert (await chair.call("watch", {"unit": COMMUNE, "watch": True}))["ok"]
    wall = chair.probe.stats["wall.0"]
    await wait_for(lambda: len(wall.counters) > 30, 20, "the commune, two links down, on the wall")
    for followed in await follow(site.probe.video, {"wall.0": wall}, 60):
        followed.check()
    before = (await upper.snapshot(), await lower.snapshot())
    seen = len(wall.counters)
    await wait_for(lambda: len(wall.counters) > seen + 45, 30, "the wall to advance")
    after = (await upper.snapshot(), await lower.snapshot())
    for b, a in zip(before, after, strict=True):
        assert a["watch.0"][0] > b["watch.0"][0] + 20, (b, a)  # sent up
        assert a["watch.0"][1] > b["watch.0"][1] + 20, (b, a)  # received above

    # The district relinks (its socket to the province drops): the chair still watches the
    # commune, the province tells the relinked district again, and the video comes back.
    await district.app[PARENT_LINK].sio.disconnect()
    await wait_for(
        lambda: top_live.relays.get("CM-NC") is not None and top_live.relays["CM-NC"].peer is None,
        10,
        "the province to lose the district's media link",
    )
    await wait_for(
        lambda: (
            mid_id in district.app[PARENT_LINK].links
            and district.app[PARENT_LINK].links[mid_id].connected
        ),
        30,
        "the district to relink",
    )
    assert chair.states[-1]["watched"][0] == COMMUNE
    frames = wall.frames
    await wait_for(lambda: wall.frames > frames + 30, 60, "the commune back on the wall")
    await wait_for(relays_up, 30, "both relays' media links")

    # Unwatching stops it on both links (within 2 s of the acknowledgement on a machine
    # that is not starved; the bound asserted is generous).
    assert (await chair.call("watch", {"unit": COMMUNE, "watch": False}))["ok"]
    upper, lower = links()

    async def both() -> tuple[Any, Any]:
        return await upper.snapshot(), await lower.snapshot()

    await quiet(both, "the watched video on the links")
    assert mid_live.up_watched == [None] * WALL_SLOTS
    for p in (chair, site):
        await p.close()
    for n in (commune_node, district, province):
        await n.close()
