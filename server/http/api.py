"""JSON API: the same operations as the pages, with ``{"ok": ...}`` envelopes.

Every state-changing call needs the ``X-CSRF-Token`` header: before login from
``GET /api/csrf``, after login from the login answer or ``GET /api/me``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from server import auth, meetings
from server.atomic import atomic
from server.cascade.doors import served_elsewhere
from server.errors import path_id, read_json
from server.models import Role
from server.state import ctx
from server.text import Line

routes = web.RouteTableDef()


def ok(status: int = 200, **body: Any) -> web.Response:
    return web.json_response(
        {"ok": True, **body}, status=status, headers={"Cache-Control": "no-store"}
    )


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: Line = Field(min_length=1, max_length=64)
    # Not checked for control characters: compared with the hash, never stored or shown, so
    # one with a control character just fails like any wrong password.
    password: str = Field(min_length=1, max_length=256)


@routes.get("/api/csrf")
async def api_csrf(request: web.Request) -> web.StreamResponse:
    user = auth.current_user(request)
    if user is not None:
        return ok(csrf_token=user.csrf_token)
    token, new_cookie = auth.prelogin_token(ctx(request), request)
    response = ok(csrf_token=token)
    if new_cookie:
        auth.set_cookie(response, request, auth.PRELOGIN_COOKIE, new_cookie)
    return response


@routes.post("/api/login")
async def api_login(request: web.Request) -> web.StreamResponse:
    body = await read_json(request, LoginIn)
    node = ctx(request)
    user = await auth.authenticate(node, body.username, body.password, auth.client_address(request))
    token, session = await auth.start_session(node, user)
    response = ok(
        user={
            "id": user.id,
            "username": user.username,
            "full_name": user.full_name,
            "role": user.role.value,
            "unit": node.units.get(user.unit_id).code,
        },
        csrf_token=session.csrf_token,
    )
    auth.attach_session_cookie(response, request, token)
    response.del_cookie(auth.PRELOGIN_COOKIE, path="/")
    return response


@routes.post("/api/logout")
async def api_logout(request: web.Request) -> web.StreamResponse:
    auth.require_user(request)
    response = ok()
    await auth.end_session(request, response)
    return response


@routes.get("/api/me")
async def api_me(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    unit = node.units.get(user.unit_id)
    door = await served_elsewhere(node, user.role, user.unit_id)
    return ok(
        user={**user.public(), "unit": unit.code, "unit_name": unit.name},
        csrf_token=user.csrf_token,
        served_by={"node": door["node"], "url": door["url"]} if door else None,
    )


# -- meetings ----------------------------------------------------------------------------------


def _meeting_id(request: web.Request) -> int:
    return path_id(request, "meeting_id", "meeting")


@routes.get("/api/meetings")
async def api_meetings(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    async with node.sessionmaker() as db:
        items = await meetings.list_visible(db, user, node.units)
    return ok(meetings=[meetings.meeting_json(m, node.units, user) for m in items])


@routes.post("/api/meetings")
async def api_meeting_create(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.CHAIR])
    data = await read_json(request, meetings.MeetingIn)
    node = ctx(request)
    async with atomic(node.sessionmaker) as db:
        meeting = await meetings.create_meeting(db, user, node.units, data)
    await node.announce(meeting.id)
    return ok(201, meeting=meetings.meeting_json(meeting, node.units, user))


@routes.get("/api/meetings/{meeting_id}")
async def api_meeting_get(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, _meeting_id(request))
    return ok(meeting=meetings.meeting_json(meeting, node.units, user))


@routes.patch("/api/meetings/{meeting_id}")
async def api_meeting_update(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    patch = await read_json(request, meetings.MeetingPatch)
    node = ctx(request)
    async with atomic(node.sessionmaker) as db:
        meeting = await meetings.get_visible(db, user, node.units, _meeting_id(request))
        await meetings.update_meeting(db, user, node.units, meeting, patch)
    await node.announce(meeting.id)
    return ok(meeting=meetings.meeting_json(meeting, node.units, user))


@routes.post("/api/meetings/{meeting_id}/cancel")
async def api_meeting_cancel(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    async with atomic(node.sessionmaker) as db:
        meeting = await meetings.get_visible(db, user, node.units, _meeting_id(request))
        await meetings.cancel_meeting(db, user, node.units, meeting)
    await node.announce(meeting.id)
    return ok(meeting=meetings.meeting_json(meeting, node.units, user))
