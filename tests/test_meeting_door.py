"""One site, one link, across nodes: the meeting socket enforces the right door.

A commune under a district node joins its meetings through that node; joining the same
meeting on the province node as well used to list the site twice to the chair. Now a `join`
on a node that does not serve the user's unit is refused `served_elsewhere`, naming the node
(its code and URL) that does; the host unit's chair is never refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import update

from server.cascade.nodes import issue_credential
from server.cascade.parent_link import PARENT_LINK
from server.models import Node as NodeRow
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.conftest import Node, start_node
from tests.live_helpers import Participant, local_meeting_id, schedule, start_child

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
TITLE = "Hội nghị một điểm cầu một đường"


async def socket(node: Node, username: str) -> Participant:
    participant = Participant(node, await node.login(username))
    await participant.connect()
    return participant


def url_of(node: Node) -> str:
    return f"http://127.0.0.1:{node.client.server.port}"


async def test_site_below_a_district_node_joins_only_there_and_is_told_where(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    opened: list[Participant] = []
    try:
        await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), 15)
        chair_session = await province.login("chutri")
        mid = await schedule(chair_session, title=TITLE, invited_subtrees=["CM-NC", "CM-NH"])
        local = await local_meeting_id(district, "kt.cm-nc-hr", TITLE)

        # Registered without a URL: refused all the same, the answer has no address.
        opened.append(on_province := await socket(province, "kt.cm-nc-hr"))
        ack = await on_province.call("join", {"meeting_id": mid})
        assert (ack["ok"], ack["error"], ack["node"], ack["url"]) == (
            False,
            "served_elsewhere",
            "CM-NC",
            "",
        ), ack
        # With the district's URL registered, the answer names where to go.
        async with province.app[CTX].sessionmaker() as db, db.begin():
            await db.execute(
                update(NodeRow).where(NodeRow.code == "CM-NC").values(url=url_of(district))
            )
        ack = await on_province.call("join", {"meeting_id": mid})
        assert (ack["error"], ack["node"], ack["url"]) == (
            "served_elsewhere",
            "CM-NC",
            url_of(district),
        ), ack
        assert "CM-NC" in ack["message"]
        # The live page there shows the same door, a link to the district, not the console.
        status, page = await on_province.session.call("GET", f"/meetings/{mid}/live")
        assert status == 200
        assert f'href="{url_of(district)}' in page, page[:2000]
        assert "door-link" in page
        assert "chair-video" not in page
        # The district's own chair is a site of this meeting too: refused on the province.
        opened.append(district_chair := await socket(province, "chutri.cm-nc"))
        ack = await district_chair.call("join", {"meeting_id": mid})
        assert (ack["error"], ack["node"]) == ("served_elsewhere", "CM-NC"), ack

        # Through its own node the commune joins; the province chair and a commune of a
        # district without a node of its own join on the province.
        opened.append(on_district := await socket(district, "kt.cm-nc-hr"))
        assert (await on_district.call("join", {"meeting_id": local}))["role"] == "site"
        opened.append(chair := await socket(province, "chutri"))
        assert (await chair.call("join", {"meeting_id": mid}))["role"] == "chair"
        opened.append(nh := await socket(province, "kt.cm-nh-dmu"))
        assert (await nh.call("join", {"meeting_id": mid}))["role"] == "site"

        # On the district node, a commune of another district is sent to the parent.
        opened.append(stranger := await socket(district, "kt.cm-nh-dmu"))
        ack = await stranger.call("join", {"meeting_id": local})
        assert (ack["error"], ack["node"], ack["url"]) == (
            "served_elsewhere",
            "parent",
            url_of(province),
        ), ack

        # The province lists each site once: its own, and the district's through its relay.
        assert (await chair.call("start"))["ok"]
        state = await chair.wait_latest(
            lambda s: sorted(x["unit"] for x in s["sites"]) == ["CM-NC-HR", "CM-NH-DMU"], 15
        )
        assert {x["unit"]: x.get("via") for x in state["sites"]} == {
            "CM-NC-HR": "CM-NC",
            "CM-NH-DMU": None,
        }
        live = province.app[REGISTRY].get(mid)
        assert live is not None
        assert sorted(live.sites) == ["CM-NH-DMU"]
    finally:
        for participant in opened:
            await participant.close()
        await district.close()
        await province.close()


async def test_the_host_units_chair_is_never_sent_away(
    aiohttp_client: ClientFactory, tmp_path: Path, node: Node
) -> None:
    """A district chair hosting a meeting on the province node, though a district node is
    registered for its unit, chairs it there."""
    await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], "http://district.example:8443")
    chair_session = await node.login("chutri.cm-nc")
    mid = await schedule(chair_session, title=TITLE, invited_units=["CM-NC-HR"])
    chair = await socket(node, "chutri.cm-nc")
    try:
        ack = await chair.call("join", {"meeting_id": mid})
        assert (ack["ok"], ack["role"]) == (True, "chair"), ack
    finally:
        await chair.close()


async def test_the_host_chair_chairs_a_mirrored_meeting_on_the_parent_never_on_the_child(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    """The province chair also has an account on the district node; there, the province's
    meeting is a mirror: joining it as chair would open a second console that could start or
    end a local copy. The join is refused ``served_elsewhere`` naming the parent, and the live
    page shows the door up; the district's operators still join it there as sites."""
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    opened: list[Participant] = []
    try:
        await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), 15)
        chair_session = await province.login("chutri")
        await schedule(chair_session, title=TITLE, invited_subtrees=["CM-NC"])
        local = await local_meeting_id(district, "kt.cm-nc-hr", TITLE)

        opened.append(chair_below := await socket(district, "chutri"))
        ack = await chair_below.call("join", {"meeting_id": local})
        assert (ack["ok"], ack["error"], ack["node"]) == (False, "served_elsewhere", "parent"), ack
        assert ack["url"] == district.app[CTX].settings.parent_url
        live = district.app[REGISTRY].get(local)
        assert live is None or live.chair is None
        status, page = await chair_below.session.call("GET", f"/meetings/{local}/live")
        assert status == 200
        assert "door-link" in page, page[:2000]
        assert 'data-role="chair"' not in page

        opened.append(site := await socket(district, "kt.cm-nc-hr"))
        ack = await site.call("join", {"meeting_id": local})
        assert ack["ok"], ack
    finally:
        for p in opened:
            await p.close()
