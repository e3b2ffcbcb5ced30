"""GET /api/links: who may read it, and what it shows of a real cascade's links."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from server.demo.tree import DEMO_PASSWORD
from server.sockets.signaling import REGISTRY
from tests.conftest import Session, Tree
from tests.live_helpers import (
    join_site,
    local_meeting_id,
    schedule,
    start_as_chair,
    wait_for,
)


async def _links(session: Session) -> dict[str, Any]:
    status, body = await session.call("GET", "/api/links")
    assert status == 200, body
    assert body["ok"] is True
    return dict(body)


@pytest.mark.timeout(120)
async def test_links_are_for_administrators_and_show_the_uplink_carrying_the_program(
    tree: Tree,
) -> None:
    province, district = tree.province, tree.districts["CM-NC"]
    # Nobody but an administrator reads it.
    anonymous = await province.anonymous()
    status, body = await anonymous.call("GET", "/api/links")
    assert (status, body["error"]) == (401, "not_authenticated")
    for user in ("chutri", "kt.cm-nc-hr"):
        node = province if user == "chutri" else district
        status, body = await (await node.login(user)).call("GET", "/api/links")
        assert (status, body["error"]) == (403, "forbidden")

    admin_p = await province.login("quantri")
    admin_d = await district.login("quantri")
    assert (await _links(admin_p))["parent"] is None  # the root has no parent
    parent = (await _links(admin_d))["parent"]
    assert parent["node"] == "CM-NC"
    assert parent["state"] == "connected"
    assert parent["url"].startswith("http://127.0.0.1:")

    title = "Hội nghị kiểm tra đường truyền"
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    local_id = await local_meeting_id(district, "kt.cm-nc-hr", title)
    site = await join_site(district, "kt.cm-nc-hr", local_id)
    chair = await start_as_chair(province, chair_session, meeting_id)
    await wait_for(
        lambda: site.probe is not None and site.probe.stats["chair.video"].frames > 30,
        20,
        "the program to reach the commune",
    )

    async def meeting(session: Session, meeting_id: int) -> dict[str, Any]:
        found = [m for m in (await _links(session))["meetings"] if m["meeting_id"] == meeting_id]
        assert len(found) == 1
        return dict(found[0])

    # The district's uplink and the province's relay of CM-NC are the two ends of one link.
    first_up = (await meeting(admin_d, local_id))["uplink"]
    first_relay = (await meeting(admin_p, meeting_id))["relays"]
    t0 = time.monotonic()
    await asyncio.sleep(2.0)
    up = (await meeting(admin_d, local_id))["uplink"]
    (relay,) = (await meeting(admin_p, meeting_id))["relays"]
    elapsed = time.monotonic() - t0
    assert [r["node"] for r in first_relay] == ["CM-NC"]
    assert relay["node"] == "CM-NC"
    assert relay["online"] is True
    assert up["connection"] == relay["connection"] == "connected"
    # The program flows down: at least some tens of kbit/s of a 320x240 video and a tone.
    down = (up["bytes_received"] - first_up["bytes_received"]) / elapsed
    assert down > 10_000, up
    assert up["packets_received"] > first_up["packets_received"]
    # What the province sent is what the district received, give or take what was in flight.
    assert relay["bytes_sent"] > 0
    assert abs(relay["bytes_sent"] - up["bytes_received"]) < 0.2 * relay["bytes_sent"]
    # The root's meeting has no uplink; the district's has no relays below it.
    assert (await meeting(admin_p, meeting_id))["uplink"] is None
    assert (await meeting(admin_d, local_id))["relays"] == []

    for s in (chair, site):
        await s.close()


async def _admin(node: Session, username: str, unit: str) -> None:
    status, body = await node.call(
        "POST",
        "/api/users",
        {
            "username": username,
            "full_name": f"Quản trị {unit}",
            "role": "admin",
            "unit": unit,
            "password": DEMO_PASSWORD,
        },
    )
    assert status == 201, body


@pytest.mark.timeout(120)
async def test_an_administrator_sees_only_the_live_meetings_and_relays_of_their_subtree(
    tree: Tree,
) -> None:
    province = tree.province
    root_admin = await province.login("quantri")
    await _admin(root_admin, "qt.cm-nh-rg", "CM-NH-RG")  # a commune of the other district
    await _admin(root_admin, "qt.cm-nh", "CM-NH")
    chair_session = await province.login("chutri")
    only_nc = await schedule(chair_session, title="Chỉ Năm Căn", invited_subtrees=["CM-NC"])
    both = await schedule(chair_session, title="Cả hai huyện", invited_subtrees=["CM-NC", "CM-NH"])
    chairs = [await start_as_chair(province, chair_session, mid) for mid in (only_nc, both)]
    try:
        await wait_for(
            lambda: all(
                len(province.app[REGISTRY].get(mid).relays) == n  # type: ignore[union-attr]
                for mid, n in ((only_nc, 1), (both, 2))
            ),
            20,
            "the districts' relays to join",
        )

        async def seen(session: Session) -> dict[int, list[str]]:
            return {
                m["meeting_id"]: [r["node"] for r in m["relays"]]
                for m in (await _links(session))["meetings"]
            }

        assert await seen(root_admin) == {only_nc: ["CM-NC"], both: ["CM-NC", "CM-NH"]}
        # A district's administrator: the meeting its district is invited to, its own relay.
        assert await seen(await province.login("qt.cm-nh")) == {both: ["CM-NH"]}
        # A commune's: the same meeting (its district is invited whole), no node's relay.
        assert await seen(await province.login("qt.cm-nh-rg")) == {both: []}
    finally:
        for chair in chairs:
            await chair.close()
