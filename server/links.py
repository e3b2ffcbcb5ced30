"""``GET /api/links``: this node's links to its parent and to its child nodes, for the
node's administrator.

For every live meeting it lists the uplink (on a child node: the one WebRTC link to the
parent's meeting) and the relays of child nodes (on a parent), each with its connection
state and the bytes and packets it has carried so far. An administrator reads it to see
which district is linked and how much the links carry; ``bench/cascade.py`` reads it to
measure a district's uplink.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiortc import RTCPeerConnection

from server import auth
from server.models import Role
from server.parent_link import PARENT_LINK
from server.signaling import REGISTRY

routes = web.RouteTableDef()

NO_TRAFFIC = {"bytes_sent": 0, "bytes_received": 0, "packets_sent": 0, "packets_received": 0}


async def traffic(pc: RTCPeerConnection | None) -> dict[str, Any]:
    """The connection state of a peer connection and what its transport carried (SRTP and
    RTCP, as sent and received on the wire; one transport, the links are max-bundle)."""
    if pc is None:
        return {"connection": "new", **NO_TRAFFIC}
    totals = dict(NO_TRAFFIC)
    for stats in (await pc.getStats()).values():
        if stats.type == "transport":
            totals["bytes_sent"] += stats.bytesSent
            totals["bytes_received"] += stats.bytesReceived
            totals["packets_sent"] += stats.packetsSent
            totals["packets_received"] += stats.packetsReceived
    return {"connection": pc.connectionState, **totals}


@routes.get("/api/links")
async def api_links(request: web.Request) -> web.StreamResponse:
    auth.require_user(request, roles=[Role.ADMIN])
    app = request.app
    link = app.get(PARENT_LINK)
    parent = (
        {"url": link.parent_url, "node": link.code, "state": link.state}
        if link is not None
        else None
    )
    uplinks = link.links if link is not None else {}
    meetings = []
    for live in sorted(app[REGISTRY].meetings.values(), key=lambda m: m.meeting_id):
        uplink = uplinks.get(live.meeting_id)
        relays = [
            {
                "node": relay.key,
                "online": relay.online,
                **await traffic(relay.peer.pc if relay.peer else None),
            }
            for relay in sorted(live.relays.values(), key=lambda r: r.key)
        ]
        meetings.append(
            {
                "meeting_id": live.meeting_id,
                "title": live.title,
                "uplink": await traffic(uplink.pc) if uplink is not None else None,
                "relays": relays,
            }
        )
    return web.json_response(
        {"ok": True, "parent": parent, "meetings": meetings},
        headers={"Cache-Control": "no-store"},
    )
