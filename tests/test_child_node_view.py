"""What a child node's users and clients see of the meetings mirrored from its parent: where
each came from (to find the local id of the parent's meeting), and, before the link to the
parent is up after a restart, an `upper_level` that says so instead of null."""

from __future__ import annotations

import time
from pathlib import Path

from server.cascade.parent_link import CONNECT_WAIT
from server.state import CTX
from tests.conftest import start_node
from tests.live_helpers import (
    ClientFactory,
    Participant,
    district_behind_gate,
    local_meeting_id,
    schedule,
    start_as_chair,
    wait_for,
)


async def test_a_mirrored_meeting_names_its_origin_and_the_parents_id_in_list_and_detail(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    province, district, gate = await district_behind_gate(aiohttp_client, tmp_path)
    try:
        chair = await province.login("chutri")
        title = "Họp tỉnh, nhìn từ huyện"
        parent_id = await schedule(chair, title=title, invited_subtrees=["CM-NC"])
        local_id = await local_meeting_id(district, "kt.cm-nc-hr", title)
        parent_url = district.app[CTX].settings.parent_url
        operator = await district.login("kt.cm-nc-hr")
        _status, listed = await operator.call("GET", "/api/meetings")
        mirrored = next(m for m in listed["meetings"] if m["id"] == local_id)
        assert mirrored["origin"] == parent_url
        assert mirrored["origin_meeting_id"] == parent_id
        status, detail = await operator.call("GET", f"/api/meetings/{local_id}")
        assert status == 200
        assert detail["meeting"]["origin"] == parent_url
        assert detail["meeting"]["origin_meeting_id"] == parent_id
        # The parent's own meeting came from nowhere else.
        _status, own = await chair.call("GET", f"/api/meetings/{parent_id}")
        assert own["meeting"]["origin"] is None
        assert own["meeting"]["origin_meeting_id"] is None
    finally:
        await gate.close()


async def test_a_restarted_child_shows_connecting_before_it_links_then_connected(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    province, district, gate = await district_behind_gate(aiohttp_client, tmp_path)
    site: Participant | None = None
    try:
        chair_session = await province.login("chutri")
        title = "Huyện khởi động lại trong lúc họp"
        parent_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
        local_id = await local_meeting_id(district, "kt.cm-nc-hr", title)
        chair = await start_as_chair(province, chair_session, parent_id)
        operator = await district.login("kt.cm-nc-hr")

        async def mirrored_live() -> bool:
            _status, body = await operator.call("GET", f"/api/meetings/{local_id}")
            return bool(body["meeting"]["status"] == "live")

        deadline = time.monotonic() + 20
        while not await mirrored_live():
            assert time.monotonic() < deadline, "the district never mirrored the start"
            await wait_for(lambda: True, 0.2)

        # The district stops; it comes back on the same database while the way to the
        # province hangs (the gate accepts and delivers nothing).
        settings = district.app[CTX].settings
        await district.close()
        await district.client.close()
        gate.block()
        path = tmp_path / "CM-NC"
        started = time.monotonic()
        restarted = await start_node(
            aiohttp_client,
            path,
            f"sqlite+aiosqlite:///{path / 'node.sqlite3'}",
            parent_url=settings.parent_url,
            parent_credential=settings.parent_credential.get_secret_value(),
            served_units=list(settings.served_units),
        )
        site = Participant(restarted, await restarted.login("kt.cm-nc-hr"))
        await site.connect()
        ack = await site.call("join", {"meeting_id": local_id})
        assert ack["ok"], ack
        upper = ack["state"]["upper_level"]
        if time.monotonic() - started < CONNECT_WAIT:
            assert upper == "connecting", ack["state"]
        else:  # a very busy machine: the first attempt already timed out
            assert upper == "unreachable", ack["state"]

        gate.unblock()
        await site.wait_state(lambda s: s.get("upper_level") == "connected", 45)
        await chair.close()
    finally:
        if site is not None:
            await site.close()
        await gate.close()
