"""HTML pages (Jinja2): login, meeting list, detail and form. Admin pages: server/http/admin.py."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from aiohttp import web
from pydantic import ValidationError

from server import auth, login_limit, meetings
from server.atomic import atomic
from server.cascade.doors import served_elsewhere
from server.errors import AppError, field_errors, path_id
from server.http import reports
from server.http.live_pages import live_role
from server.http.redirects import safe_next
from server.http.rendering import render
from server.i18n import LANG_COOKIE, LANGS, error_text, request_lang
from server.models import MeetingStatus, Role
from server.state import ctx
from server.units import UnitTree

log = logging.getLogger(__name__)
routes = web.RouteTableDef()


def _prepare_prelogin(request: web.Request) -> None:
    token, new_cookie = auth.prelogin_token(ctx(request), request)
    request[auth.PRELOGIN_CSRF] = token
    if new_cookie:
        request[auth.PRELOGIN_NEW_COOKIE] = new_cookie


# -- login -------------------------------------------------------------------------------------


@routes.get("/", name="index")
async def index(request: web.Request) -> web.StreamResponse:
    if auth.current_user(request) is None:
        raise web.HTTPSeeOther("/login")
    raise web.HTTPSeeOther("/meetings")


@routes.get("/login", name="login")
async def login_page(request: web.Request) -> web.StreamResponse:
    if auth.current_user(request) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    _prepare_prelogin(request)
    return render(request, "login.html", next=safe_next(request.query.get("next")), error=None)


@routes.post("/login")
async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    username = str(form.get("username", ""))
    password = str(form.get("password", ""))
    target = safe_next(str(form.get("next", "")) or None)
    node = ctx(request)
    try:
        user = await auth.authenticate(node, username, password, auth.client_address(request))
    except AppError as err:
        _prepare_prelogin(request)
        lang = request_lang(request)
        seconds = int(err.fields.get("retry_after_seconds", "60"))
        text = error_text(lang, err.code, err.message, wait=login_limit.wait_words(lang, seconds))
        return render(
            request, "login.html", status=err.status, next=target, error=text, username=username
        )
    if await served_elsewhere(node, user.role, user.unit_id) is not None:
        target = "/meetings"  # the page that names the node serving the user's unit
    token, _session = await auth.start_session(node, user)
    response = web.HTTPSeeOther(target)
    auth.attach_session_cookie(response, request, token)
    response.del_cookie(auth.PRELOGIN_COOKIE, path="/")
    raise response


@routes.post("/logout", name="logout")
async def logout(request: web.Request) -> web.StreamResponse:
    response = web.HTTPSeeOther("/login?flash=logged_out")
    await auth.end_session(request, response)
    raise response


@routes.get("/lang/{lang}", name="lang")
async def switch_lang(request: web.Request) -> web.StreamResponse:
    lang = request.match_info["lang"]
    if lang not in LANGS:
        raise AppError(404, "http_404", "No such language.")
    response = web.HTTPSeeOther(safe_next(request.query.get("next")))
    response.set_cookie(
        LANG_COOKIE,
        lang,
        max_age=365 * 86400,
        path="/",
        samesite="Lax",
        httponly=True,
        secure=auth.is_secure(request),
    )
    raise response


# -- meetings ----------------------------------------------------------------------------------


def local_time(request: web.Request, value: datetime) -> str:
    return value.astimezone(ctx(request).settings.tz).strftime("%d/%m/%Y %H:%M")


def invite_tree(tree: UnitTree, host_unit_id: int) -> list[dict[str, Any]]:
    """Rows for the invite chooser: every unit under the host, indented by depth."""
    rows = []
    for info, depth in tree.walk(host_unit_id):
        if info.id == host_unit_id:
            continue
        rows.append(
            {"unit": info, "depth": depth, "has_children": bool(tree.children.get(info.id))}
        )
    return rows


def sites_tree(tree: UnitTree, site_ids: set[int], host_unit_id: int) -> list[dict[str, Any]]:
    """The invited sites shown under their parents, from the host down."""
    keep: set[int] = set()
    for sid in site_ids:
        keep |= {u.id for u in tree.path(sid)}
    rows = []
    for info, depth in tree.walk(host_unit_id):
        if info.id in keep and info.id != host_unit_id:
            rows.append({"unit": info, "depth": depth, "invited": info.id in site_ids})
    return rows


@routes.get("/meetings", name="meetings")
async def meeting_list(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    door = await served_elsewhere(node, user.role, user.unit_id)
    if door is not None:
        return render(request, "served_elsewhere.html", door=door)
    async with node.sessionmaker() as db:
        items = await meetings.list_visible(db, user, node.units)
    rows = [
        {
            "m": m,
            "host": node.units.by_id.get(m.host_unit_id),
            "when": local_time(request, m.starts_at),
            "sites": len(meetings.site_ids(m, node.units)),
        }
        for m in items
    ]
    return render(request, "meetings.html", rows=rows, can_schedule=user.role is Role.CHAIR)


def _form_values(request: web.Request, form: Any) -> dict[str, Any]:
    return {
        "title": str(form.get("title", "")),
        "description": str(form.get("description", "")),
        "starts_at": str(form.get("starts_at", "")),
        "duration_minutes": str(form.get("duration_minutes", "120")),
        "invited_units": [str(v) for v in form.getall("invited_units", [])],
        "invited_subtrees": [str(v) for v in form.getall("invited_subtrees", [])],
    }


def _parse_local(request: web.Request, text: str) -> datetime | str:
    try:
        naive = datetime.fromisoformat(text)
    except ValueError:
        return text
    if naive.tzinfo is None:
        return naive.replace(tzinfo=ctx(request).settings.tz)
    return naive


def _meeting_form(
    request: web.Request,
    *,
    meeting_id: int | None,
    values: dict[str, Any],
    errors: dict[str, str],
    host_id: int | None = None,
    status: int = 200,
) -> web.Response:
    """The schedule/edit form; ``host_id`` is the meeting's host (new meetings: the chair's)."""
    user = auth.require_user(request)
    node = ctx(request)
    if host_id is None:
        host_id = user.unit_id
    # Errors on list items ("invited_units.3") are shown at their field.
    shown: dict[str, str] = {}
    for key, text in errors.items():
        shown.setdefault(key.split(".")[0], text)
    return render(
        request,
        "meeting_form.html",
        status=status,
        meeting_id=meeting_id,
        values=values,
        errors=shown,
        invite_rows=invite_tree(node.units, host_id),
        host=node.units.by_id[host_id],
        timezone=node.settings.timezone,
    )


@routes.get("/meetings/new", name="meeting_new")
async def meeting_new(request: web.Request) -> web.StreamResponse:
    auth.require_user(request, roles=[Role.CHAIR])
    values = {
        "title": "",
        "description": "",
        "starts_at": "",
        "duration_minutes": "120",
        "invited_units": [],
        "invited_subtrees": [],
    }
    return _meeting_form(request, meeting_id=None, values=values, errors={})


@routes.post("/meetings/new")
async def meeting_create(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.CHAIR])
    node = ctx(request)
    form = await request.post()
    values = _form_values(request, form)
    try:
        data = meetings.MeetingIn.model_validate(
            {**values, "starts_at": _parse_local(request, values["starts_at"])}
        )
        async with atomic(node.sessionmaker) as db:
            meeting = await meetings.create_meeting(db, user, node.units, data)
        await node.announce(meeting.id)
    except ValidationError as exc:
        return _meeting_form(
            request, meeting_id=None, values=values, errors=field_errors(exc), status=400
        )
    except AppError as err:
        if err.code != "invalid_field":
            raise
        return _meeting_form(request, meeting_id=None, values=values, errors=err.fields, status=400)
    raise web.HTTPSeeOther(f"/meetings/{meeting.id}?flash=created")


def _meeting_id(request: web.Request) -> int:
    return path_id(request, "meeting_id", "meeting")


@routes.get("/meetings/{meeting_id:\\d+}", name="meeting")
async def meeting_detail(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    node = ctx(request)
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, _meeting_id(request))
    sites = meetings.site_ids(meeting, node.units)
    can_join = live_role(user, node.units, meeting) is not None and meeting.status in (
        MeetingStatus.SCHEDULED,
        MeetingStatus.LIVE,
    )
    # Once it started: who attended, for the sites whose report rows the user may read
    # (an operator: its own), and the real start and end.
    attended: dict[str, int] | None = None
    real: dict[str, str] = {}
    if meeting.started_at is not None:
        report = await reports.load_report(request, user, meeting)
        attended = {row.unit: row.minutes for row in report.rows if row.invited}
        real["start"] = local_time(request, meeting.started_at)
        if report.span.end is not None:
            real["end"] = local_time(request, report.span.end)
    return render(
        request,
        "meeting_detail.html",
        can_join=can_join,
        m=meeting,
        host=node.units.by_id.get(meeting.host_unit_id),
        when=local_time(request, meeting.starts_at),
        site_rows=sites_tree(node.units, sites, meeting.host_unit_id),
        site_count=len(sites),
        can_manage=meetings.may_manage(user, node.units, meeting)
        and meeting.status is MeetingStatus.SCHEDULED,
        attended=attended,
        real=real,
    )


@routes.get("/meetings/{meeting_id:\\d+}/edit", name="meeting_edit")
async def meeting_edit(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.CHAIR])
    node = ctx(request)
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, _meeting_id(request))
    meetings.require_manage(user, node.units, meeting)
    data = meetings.meeting_json(meeting, node.units)
    values = {
        **data,
        "starts_at": meeting.starts_at.astimezone(node.settings.tz).strftime("%Y-%m-%dT%H:%M"),
        "duration_minutes": str(meeting.duration_minutes),
    }
    return _meeting_form(
        request, meeting_id=meeting.id, values=values, errors={}, host_id=meeting.host_unit_id
    )


@routes.post("/meetings/{meeting_id:\\d+}/edit")
async def meeting_update(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.CHAIR])
    node = ctx(request)
    form = await request.post()
    values = _form_values(request, form)
    mid = _meeting_id(request)
    async with node.sessionmaker() as db:
        found = await meetings.get_visible(db, user, node.units, mid)  # 404 before validation
    meetings.require_manage(user, node.units, found)
    try:
        patch = meetings.MeetingPatch.model_validate(
            {**values, "starts_at": _parse_local(request, values["starts_at"])}
        )
        async with atomic(node.sessionmaker) as db:
            meeting = await meetings.get_visible(db, user, node.units, mid)
            await meetings.update_meeting(db, user, node.units, meeting, patch)
        await node.announce(mid)
    except ValidationError as exc:
        return _meeting_form(
            request,
            meeting_id=mid,
            values=values,
            errors=field_errors(exc),
            host_id=found.host_unit_id,
            status=400,
        )
    except AppError as err:
        if err.code != "invalid_field":
            raise
        return _meeting_form(
            request,
            meeting_id=mid,
            values=values,
            errors=err.fields,
            host_id=found.host_unit_id,
            status=400,
        )
    raise web.HTTPSeeOther(f"/meetings/{mid}?flash=saved")


@routes.post("/meetings/{meeting_id:\\d+}/cancel", name="meeting_cancel")
async def meeting_cancel(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request, roles=[Role.CHAIR])
    node = ctx(request)
    mid = _meeting_id(request)
    async with atomic(node.sessionmaker) as db:
        meeting = await meetings.get_visible(db, user, node.units, mid)
        await meetings.cancel_meeting(db, user, node.units, meeting)
    await node.announce(mid)
    raise web.HTTPSeeOther(f"/meetings/{mid}?flash=cancelled")
