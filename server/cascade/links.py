"""``GET /api/links``: this node's links to its parent and to its child nodes, for the
node's administrator.

For every live meeting it lists the uplink (on a child node: the one WebRTC link to the
parent's meeting) and the relays of child nodes (on a parent), each with its connection
state and the bytes and packets it has carried so far. An administrator reads it to see
which district is linked and how much the links carry; ``bench/cascade.py`` reads it to
measure a district's uplink. Like every read it is scoped to the administrator's subtree:
a meeting is listed only when they may see it (``meetings.visibility_clause``), and a relay
only of a child node whose registered units all lie in their subtree.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection
from sqlalchemy import select

from rooms.liveness import PacketWatch, connection_state
from server import auth, meetings
from server.attendance.store import OFFSET_FLAG_MS
from server.cascade import nodes
from server.cascade.parent_link import PARENT_LINK
from server.models import Meeting, Role
from server.sockets.signaling import REGISTRY
from server.state import ctx

routes = web.RouteTableDef()

NO_TRAFFIC = {"bytes_sent": 0, "bytes_received": 0, "packets_sent": 0, "packets_received": 0}


async def traffic(pc: RTCPeerConnection | None, watch: PacketWatch | None) -> dict[str, Any]:
    """The connection state of a peer connection and what its transport carried (SRTP and
    RTCP, as sent and received on the wire; one transport, the links are max-bundle).
    ``"none"`` without a peer connection (a relay whose node is gone), ``"disconnected"``
    while a connected link receives nothing (rooms/liveness.py)."""
    if pc is None:
        return {"connection": "none", **NO_TRAFFIC}
    totals = dict(NO_TRAFFIC)
    for stats in (await pc.getStats()).values():
        if stats.type == "transport":
            totals["bytes_sent"] += stats.bytesSent
            totals["bytes_received"] += stats.bytesReceived
            totals["packets_sent"] += stats.packetsSent
            totals["packets_received"] += stats.packetsReceived
    return {"connection": connection_state(pc, watch), **totals}


async def _in_scope(
    request: web.Request, user: auth.CurrentUser, meeting_ids: list[int]
) -> tuple[set[int], set[str]]:
    """The live meetings the administrator may see (the rule of server/meetings.py) and the
    child nodes whose registered units all lie in their subtree."""
    node = ctx(request)
    tree = node.units
    async with node.sessionmaker() as db:
        rows = await db.execute(
            select(Meeting.id).where(
                Meeting.id.in_(meeting_ids), meetings.visibility_clause(user, tree)
            )
        )
        visible = {int(mid) for mid in rows.scalars()}
    children = {
        info.code
        for info in await nodes.list_nodes(node)
        if info.units
        and all(
            code in tree.by_code and tree.in_subtree(tree.by_code[code].id, user.unit_id)
            for code in info.units
        )
    }
    return visible, children


@routes.get("/api/links")
async def api_links(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.ADMIN])
    app = request.app
    link = app.get(PARENT_LINK)
    parent = (
        {
            "url": link.parent_url,
            "node": link.code,
            "state": link.state,
            # This node's clock against the parent's (attendance times are corrected by it;
            # beyond 2 s the reports flag it: set the clock right).
            "clock_offset_ms": link.clock_offset_ms,
            "clock_off": link.clock_offset_ms is not None
            and abs(link.clock_offset_ms) > OFFSET_FLAG_MS,
            "rtt_ms": link.rtt_ms,
            "attendance_sent": link.outbox.sent,
            "attendance_waiting": await link.outbox.pending(),
        }
        if link is not None
        else None
    )
    uplinks = link.links if link is not None else {}
    lives = sorted(app[REGISTRY].meetings.values(), key=lambda m: m.meeting_id)
    visible, children = await _in_scope(request, user, [m.meeting_id for m in lives])
    found = []
    for live in (m for m in lives if m.meeting_id in visible):
        uplink = uplinks.get(live.meeting_id)
        relays = [
            {
                "node": relay.key,
                "online": relay.online,
                **await traffic(
                    relay.peer.pc if relay.peer else None, relay.peer.watch if relay.peer else None
                ),
            }
            for relay in sorted(live.relays.values(), key=lambda r: r.key)
            if relay.key in children
        ]
        found.append(
            {
                "meeting_id": live.meeting_id,
                "title": live.title,
                "uplink": await traffic(uplink.pc, uplink.watch) if uplink is not None else None,
                "relays": relays,
            }
        )
    return web.json_response(
        {"ok": True, "parent": parent, "meetings": found},
        headers={"Cache-Control": "no-store"},
    )
