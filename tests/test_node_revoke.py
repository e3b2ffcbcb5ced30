"""Revoking a child node's credential drops the link it already has (server/sockets/guard.py).

``hoinghi node revoke`` runs in its own process: the parent node hears of it only from the
database, and must still drop the child's /node socket within a second or so, and refuse
its relinks; the chair then sees the district offline.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient

from rooms.meeting import RELAY
from server.cascade.nodelink import NODE_NAMESPACE
from server.cascade.nodes import issue_credential
from server.cascade.parent_link import PARENT_LINK
from server.sockets.signaling import REGISTRY, SIO
from server.state import CTX
from tests.conftest import Node
from tests.live_helpers import start_as_chair, start_child, wait_for
from tests.test_cli import COMMAND

WAIT = 15.0
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def node_links(node: Node) -> list[str]:
    return [sid for sid, _ in node.app[SIO].manager.get_participants(NODE_NAMESPACE, None)]


async def cli(node: Node, *args: str) -> str:
    """Run ``hoinghi`` against the node's database, in a process of its own."""
    settings = node.app[CTX].settings
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOINGHI_")}
    env |= {
        "HOINGHI_DATA_DIR": str(settings.data_dir),
        "HOINGHI_DATABASE_URL": settings.effective_database_url,
    }
    proc = await asyncio.create_subprocess_exec(
        *COMMAND, *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def test_revoked_district_is_unlinked_at_once_and_its_relinks_refused(
    aiohttp_client: ClientFactory, tmp_path: Path, node: Node
) -> None:
    province = node
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    try:
        link = district.app[PARENT_LINK]
        await asyncio.wait_for(link.connected.wait(), WAIT)
        chair_session = await province.login("chutri")
        status, body = await chair_session.call(
            "POST",
            "/api/meetings",
            {
                "title": "Hội nghị thu hồi khoá nút",
                "starts_at": "2030-01-01T08:00:00+07:00",
                "invited_subtrees": ["CM-NC"],
            },
        )
        assert status == 201, body
        meeting_id = int(body["meeting"]["id"])
        chair = await start_as_chair(province, chair_session, meeting_id)
        live = province.app[REGISTRY].get(meeting_id)
        assert live is not None
        await wait_for(lambda: "CM-NC" in live.relays, WAIT, "the district relaying")
        assert len(node_links(province)) == 1

        await cli(province, "node", "revoke", "CM-NC")
        await wait_for(lambda: node_links(province) == [], WAIT, "the district's link dropped")
        await wait_for(lambda: link.state == "refused", WAIT, "the district told it is refused")
        assert link.refusal == "bad_credential"
        relay = live.relays.get("CM-NC")
        assert relay is None or (relay.role == RELAY and relay.peer is None)
        assert live.chair is not None
        nodes = live.state_for(live.chair)["nodes"]
        assert all(not n["online"] for n in nodes), nodes  # the chair sees it offline
        await asyncio.sleep(1.5)  # its reconnects keep being refused
        assert node_links(province) == []
        await chair.close()
    finally:
        await district.close()


async def test_a_new_credential_for_the_same_code_drops_the_link_made_with_the_old(
    aiohttp_client: ClientFactory, tmp_path: Path, node: Node
) -> None:
    district = await start_child(aiohttp_client, tmp_path, node, "CM-NC")
    try:
        await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), WAIT)
        assert len(node_links(node)) == 1
        await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], "")
        await wait_for(lambda: node_links(node) == [], WAIT, "the old credential's link dropped")
        await wait_for(
            lambda: district.app[PARENT_LINK].state == "refused", WAIT, "the district refused"
        )
    finally:
        await district.close()
