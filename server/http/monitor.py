"""``GET /api/meetings/{id}/monitor``: the monitoring wall's figures as JSON, for a meeting
open on this node.

The same site list the chair's console shows (``state.sites``, docs/protocol.md section 7),
cut to what the wall needs: each site connected here or below a child node with its unit,
name, path, the child node it comes through (``via``), whether it is online and its
``receive`` (mode, tier, line quality, kbit/s, loss, round trip, frame rate, freezes, audio
played). The local sites' figures are read from the live meeting now; those below a child
node are as its last ``presence`` reported them.

Access: the meeting must be visible to the user (else ``404 meeting_not_found``, so its
existence does not leak). Then an administrator, a chair or a secretary whose unit's
subtree holds the meeting's host unit may read it; anyone else who can see the meeting
(an operator; a district's staff looking at a province meeting their district attends) gets
``403 forbidden``: the figures are every site's, and an operator's page shows its own. A
meeting nobody has opened on this node (no chair or site joined yet, it ended, or it runs
on another node) answers ``409 meeting_not_live``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rooms.meeting import LiveMeeting
from server import auth, meetings
from server.errors import AppError, forbidden, path_id
from server.models import Meeting, Role
from server.sockets.signaling import REGISTRY
from server.state import ctx
from server.units import UnitTree

routes = web.RouteTableDef()

# Who may read the wall: those who run the meeting (its chair, its secretary, the host's
# administrator) and those above them. An operator sees only its own line, on its page.
MONITOR_ROLES = (Role.ADMIN, Role.CHAIR, Role.SECRETARY)


def may_monitor(user: auth.CurrentUser, tree: UnitTree, meeting: Meeting) -> bool:
    return user.role in MONITOR_ROLES and tree.in_subtree(meeting.host_unit_id, user.unit_id)


def monitor_sites(live: LiveMeeting) -> list[dict[str, Any]]:
    """Every site of the chair's ``state.sites``, here and below, by unit path, with the
    wall's keys only. A site here has no ``via``; a site below a child node whose node
    reports no figures (an older version) has ``receive`` ``null``."""
    keys = ("unit", "name", "path", "via", "online", "receive")
    return [{key: site.get(key) for key in keys} for site in live.site_list()]


@routes.get("/api/meetings/{meeting_id}/monitor")
async def api_meeting_monitor(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    meeting_id = path_id(request, "meeting_id", "meeting")
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, meeting_id)
    if not may_monitor(user, node.units, meeting):
        raise forbidden("Only the host unit's administrator, chair or secretary may monitor it.")
    live = request.app[REGISTRY].get(meeting.id)
    if live is None or live.ended:
        raise AppError(
            409, "meeting_not_live", "The meeting is not open on this node: nobody has joined it."
        )
    return web.json_response(
        {
            "ok": True,
            "meeting_id": meeting.id,
            "status": live.status,
            "sites": monitor_sites(live),
            "nodes": live.node_list(),
        },
        headers={"Cache-Control": "no-store"},
    )
