"""``GET /api/meetings/{id}/monitor`` (server/http/monitor.py): the monitoring wall's figures.

A real aiortc site receives the chair's program and the endpoint gives its figures as its
node measures them; a site below a child node comes through it (``via``); who may read it
(the host unit's administrator, chair and secretary, and those above), who is refused
(operators, the staff of a unit below the host: ``403``; a meeting they cannot see:
``404``), and a meeting not open on the node (``409 meeting_not_live``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from server.sockets.signaling import REGISTRY
from tests.conftest import Node, Session, Tree
from tests.live_helpers import (
    join_site,
    local_meeting_id,
    schedule,
    start_as_chair,
    wait_for,
)
from tests.test_protocol_doc import api_text, keys_of

RECEIVE_KEYS = {
    "mode",
    "tier",
    "quality",
    "kbit",
    "loss_pct",
    "rtt_ms",
    "fps",
    "freezes",
    "audio_played_pct",
}
SITE_KEYS = {"unit", "name", "path", "via", "online", "receive"}


async def monitor(session: Session, meeting_id: int | str) -> tuple[int, Any]:
    return await session.call("GET", f"/api/meetings/{meeting_id}/monitor")


async def wait_monitor(
    session: Session, meeting_id: int, check: Any, within: float = 60.0, what: str = ""
) -> dict[str, Any]:
    """Poll the endpoint (every 0.5 s, as a wall would, a little faster) until ``check``."""
    deadline = time.monotonic() + within
    body: Any = None
    while time.monotonic() < deadline:
        status, body = await monitor(session, meeting_id)
        assert status == 200, body
        if check(body):
            return dict(body)
        await asyncio.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what or check}; last answer {body}")


def site_of(body: dict[str, Any], unit: str) -> dict[str, Any] | None:
    return next((s for s in body["sites"] if s["unit"] == unit), None)


@pytest.mark.timeout(120)
async def test_the_wall_gives_a_real_sites_figures(node: Node) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(node, chair_session, mid)
    site = await join_site(node, "kt.cm-nc-hr", mid, decode=False)
    try:
        # The node sends the chair's program to the site: its kbit/s rise above zero.
        def sending(body: dict[str, Any]) -> bool:
            found = site_of(body, "CM-NC-HR")
            return bool(found and found["receive"] and found["receive"]["kbit"] > 0)

        body = await wait_monitor(chair_session, mid, sending, what="the site's kbit/s")
        assert body["ok"] is True
        assert body["meeting_id"] == mid
        assert body["status"] == "live"
        assert body["nodes"] == []
        found = site_of(body, "CM-NC-HR")
        assert found is not None
        assert set(found) == SITE_KEYS
        assert found["name"] == "Xã Hàm Rồng"
        assert found["path"][-1] == "Xã Hàm Rồng"
        assert found["path"][0] == "Tỉnh Cà Mau"
        assert found["via"] is None
        assert found["online"] is True
        receive = found["receive"]
        assert set(receive) == RECEIVE_KEYS
        assert receive["mode"] == "auto"
        assert receive["tier"] in ("high", "low", "lowest")
        assert receive["quality"] in ("good", "fair", "poor", "unknown")
        assert 0 < receive["kbit"] < 5000, receive
        assert 0 <= receive["loss_pct"] <= 100
        assert receive["freezes"] == 0  # an aiortc probe sends no link_stats
        # The figures the node judges the link by (rooms/linkrate.py), as it has them now.
        live = node.app[REGISTRY].get(mid)
        assert live is not None
        assert live.sites["CM-NC-HR"].estimate.public()["kbit"] > 0
        # A receive mode chosen by the site shows at once (the next answer, not 2 s later).
        assert (await site.call("receive_mode", {"mode": "lowest"}))["ok"]

        def lowest(b: dict[str, Any]) -> bool:
            s = site_of(b, "CM-NC-HR")
            return s is not None and s["receive"]["mode"] == "lowest"

        body = await wait_monitor(chair_session, mid, lowest, what="the lowest mode")
        found = site_of(body, "CM-NC-HR")
        assert found is not None
        assert found["receive"]["tier"] == "lowest"
        # Every answer key is documented in docs/protocol.md section 11.
        text = api_text()
        documented = {k for k in keys_of(body) if f"`{k}`" in text or f'"{k}"' in text}
        undocumented = keys_of(body) - {"ok"} - documented
        assert undocumented == set()
        # The site leaves: it is off the wall (the chair's console keeps it as offline).
        await site.close()
        await wait_monitor(
            chair_session, mid, lambda b: site_of(b, "CM-NC-HR") is None, what="the site gone"
        )
    finally:
        await site.close()
        await chair.close()


@pytest.mark.timeout(120)
async def test_who_may_read_the_wall(node: Node) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(node, chair_session, mid)
    try:
        # The host unit's staff (here the province's), of every role that runs a meeting.
        for username in ("chutri", "quantri", "thuky"):
            session = chair_session if username == "chutri" else await node.login(username)
            status, body = await monitor(session, mid)
            assert status == 200, (username, body)
            assert body["meeting_id"] == mid
        refused = {
            # An operator of an invited site: its own line is on its own page, not others'.
            "kt.cm-nc-hr": (403, "forbidden"),
            "kt.cm-nc": (403, "forbidden"),
            # A district invited to the province's meeting sees it, but does not host it.
            "chutri.cm-nc": (403, "forbidden"),
            "thuky.cm-nc": (403, "forbidden"),
            # A district not invited does not even see it.
            "chutri.cm-nh": (404, "meeting_not_found"),
            "kt.cm-nh-rg": (404, "meeting_not_found"),
        }
        for username, (code, error) in refused.items():
            status, body = await monitor(await node.login(username), mid)
            assert (status, body.get("error")) == (code, error), (username, body)
        anonymous = await node.anonymous()
        status, body = await monitor(anonymous, mid)
        assert (status, body["error"]) == (401, "not_authenticated")
        for bad in ("abc", "0", "99999999999", str(mid + 1000)):
            status, body = await monitor(chair_session, bad)
            assert (status, body["error"]) == (404, "meeting_not_found"), bad
    finally:
        await chair.close()


@pytest.mark.timeout(120)
async def test_a_district_chair_reads_its_own_meeting(node: Node) -> None:
    district = await node.login("chutri.cm-nc")
    mid = await schedule(district, invited_units=["CM-NC-HR"])
    chair = await start_as_chair(node, district, mid)
    try:
        for username in ("chutri.cm-nc", "thuky.cm-nc", "chutri", "thuky", "quantri"):
            session = district if username == "chutri.cm-nc" else await node.login(username)
            status, body = await monitor(session, mid)
            assert status == 200, (username, body)
        status, body = await monitor(await node.login("kt.cm-nc-hr"), mid)
        assert (status, body["error"]) == (403, "forbidden")
        status, body = await monitor(await node.login("chutri.cm-nh"), mid)
        assert (status, body["error"]) == (404, "meeting_not_found")
    finally:
        await chair.close()


@pytest.mark.timeout(120)
async def test_a_meeting_not_open_on_the_node_is_not_live(node: Node) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    # Scheduled, nobody joined: nothing to measure.
    status, body = await monitor(chair_session, mid)
    assert (status, body["error"]) == (409, "meeting_not_live"), body
    # Still refused by scope first: an operator learns nothing of whether it runs.
    status, body = await monitor(await node.login("kt.cm-nc-hr"), mid)
    assert (status, body["error"]) == (403, "forbidden")
    chair = await start_as_chair(node, chair_session, mid)
    try:
        status, body = await monitor(chair_session, mid)
        assert status == 200, body
        assert (await chair.call("end"))["ok"]
        await wait_for(lambda: (m := node.app[REGISTRY].get(mid)) is None or m.ended, 20, "the end")
        status, body = await monitor(chair_session, mid)
        assert (status, body["error"]) == (409, "meeting_not_live"), body
    finally:
        await chair.close()


@pytest.mark.timeout(240)
async def test_a_site_below_a_child_node_comes_through_it(tree: Tree) -> None:
    title = "Hội nghị giám sát qua nút huyện"
    chair_session = await tree.province.login("chutri")
    mid = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    district = tree.districts["CM-NC"]
    local = await local_meeting_id(district, "kt.cm-nc-hr", title)
    chair = await start_as_chair(tree.province, chair_session, mid)
    site = await join_site(district, "kt.cm-nc-hr", local, decode=False)
    try:
        body = await wait_monitor(
            chair_session,
            mid,
            lambda b: (s := site_of(b, "CM-NC-HR")) is not None and s["online"],
            what="the commune below the district node",
        )
        found = site_of(body, "CM-NC-HR")
        assert found is not None
        assert set(found) == SITE_KEYS
        assert found["via"] == "CM-NC"
        assert found["name"] == "Xã Hàm Rồng"
        assert body["nodes"] == [{"node": "CM-NC", "name": "Huyện Năm Căn", "online": True}]
        # As the district's node reports it in presence (null from a node that sends none).
        assert found["receive"] is None or set(found["receive"]) == RECEIVE_KEYS
        # The district's node answers for its copy of the meeting too (its own sites, their
        # figures measured there), under the same rule: the province's staff may read it, the
        # district's chair may not (the province hosts it).
        status, answer = await monitor(await district.login("quantri"), local)
        assert status == 200, answer
        here = site_of(answer, "CM-NC-HR")
        assert here is not None
        assert here["via"] is None
        assert set(here["receive"]) == RECEIVE_KEYS
        status, answer = await monitor(await district.login("chutri.cm-nc"), local)
        assert (status, answer["error"]) == (403, "forbidden")
    finally:
        await site.close()
        await chair.close()


# The chair's own console reads the figures from its state (docs/protocol.md section 7, the
# chair's `sites`: `receive`), and a child node sends them up in presence, both built from
# rooms/meeting.py ``site_state``.
@pytest.mark.timeout(120)
async def test_the_chairs_state_carries_each_sites_figures(node: Node) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(node, chair_session, mid)
    site = await join_site(node, "kt.cm-nc-hr", mid, decode=False)
    try:
        state = await chair.wait_state(
            lambda s: any(x["unit"] == "CM-NC-HR" for x in s.get("sites", [])), 30
        )
        found = next(x for x in state["sites"] if x["unit"] == "CM-NC-HR")
        assert set(found.get("receive") or {}) == RECEIVE_KEYS, found
    finally:
        await site.close()
        await chair.close()
