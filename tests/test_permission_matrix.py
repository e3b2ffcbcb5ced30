"""Who may do what, generated from the route table and the event table.

Every route of the app's router (method and path) and every ``/meeting`` event, for every
role (admin, chair, secretary, operator, anonymous), against a target inside and outside
the user's subtree, gets exactly the answer its rule below says: status and error code (or
redirect). The rules are ONE table (``RULES``, route -> rule; ``EVENT_RULES``, event ->
rule); a route or event with no rule fails, so a new route cannot ship without saying who
may use it.

The cast all works in district CM-NC (Huyện Năm Căn): its admin (created by the province
admin), chair, secretary, and the operator of its commune CM-NC-HR. Inside means the
district's tree (a meeting hosted by CM-NC inviting CM-NC-HR, unit CM-NC-HR, user
kt.cm-nc-hr); outside means district CM-NH's (a meeting hosted by CM-NH inviting CM-NH-RG,
unit CM-NH-RG, user kt.cm-nh-rg). Real logins, real sockets on a real port, the demo tree.
tests/test_permissions.py covers the province-level meetings matrix and the admin scope in
more depth.
"""

from __future__ import annotations

import fnmatch
import itertools
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import socketio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from rooms.peer import CHAIR_LAYOUT, SITE_LAYOUT
from rooms.probe import ProbePeer
from server.app import create_app
from server.sockets.protocol import EVENTS
from server.state import CTX
from tests.conftest import Node, Session, make_settings, start_node

pytestmark = pytest.mark.asyncio(loop_scope="module")

ROLES = ("admin", "chair", "secretary", "operator", "anonymous")
TARGETS = ("in", "out")
USERS = {
    "admin": "quantri.cm-nc",
    "chair": "chutri.cm-nc",
    "secretary": "thuky.cm-nc",
    "operator": "kt.cm-nc-hr",
    "anonymous": None,
}


@dataclass(frozen=True)
class Side:
    """The target's tree: inside (CM-NC) or outside (CM-NH) the cast's district."""

    host: str  # the district hosting the side's meeting
    chair: str  # its chair, who schedules the meeting
    unit: str  # a commune of the district, invited to the meeting
    user: str  # that commune's operator
    helper: str  # another invited commune, whose operator joins as a site
    helper_user: str


SIDES = {
    "in": Side("CM-NC", "chutri.cm-nc", "CM-NC-HR", "kt.cm-nc-hr", "CM-NC-TT", "kt.cm-nc-tt"),
    "out": Side("CM-NH", "chutri.cm-nh", "CM-NH-RG", "kt.cm-nh-rg", "CM-NH-TA", "kt.cm-nh-ta"),
}
NEW_CODES = (f"CM-MX-{n}" for n in itertools.count(1))
NEW_USERS = (f"moi{n}" for n in itertools.count(1))


# -- expected answers --------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """``"200"``; ``"200 +"`` / ``"200 -"``: the target is / is not listed; ``"303 PATTERN"``:
    a redirect there (``*`` any text); ``"login"``: to the login page; ``"403 CODE"``: that
    error code (JSON ``error`` or the error page's ``data-error-code``); for events ``"ok"``,
    an error code, or ``"refused"`` (the socket connect is refused)."""

    text: str

    @property
    def status(self) -> int:
        return 303 if self.text == "login" else int(self.text.split()[0])

    @property
    def detail(self) -> str:
        return self.text.split(" ", 1)[1] if " " in self.text else ""


@dataclass
class Reply:
    status: int
    code: str = ""
    location: str = ""
    listed: bool | None = None


Cell = str | tuple[str, str]  # the same answer for both targets, or (inside, outside)


@dataclass
class Rule:
    send: Callable[[Cx], Awaitable[Reply]]
    cells: dict[str, Cell]
    own_session: bool = False  # the request ends or replaces the caller's session

    def expect(self, role: str, target: str) -> Expect:
        cell = self.cells[role]
        return Expect(cell if isinstance(cell, str) else cell[TARGETS.index(target)])


def rule(
    send: Callable[[Cx], Awaitable[Reply]], *, own_session: bool = False, **cells: Cell
) -> Rule:
    """A rule: ``everyone=`` for the roles not named, ``staff=`` for every logged-in one."""
    everyone = cells.pop("everyone", None)
    staff = cells.pop("staff", everyone)
    table: dict[str, Cell] = {}
    for role in ROLES:
        value = cells.get(role, everyone if role == "anonymous" else staff)
        assert value is not None, f"a rule needs a cell for {role}"
        table[role] = value
    return Rule(send, table, own_session)


# -- requests ----------------------------------------------------------------------------------


@dataclass
class Cx:
    """One cell's request context: the caller, the target side, and the ids it needs."""

    world: World
    session: Session
    role: str
    target: str
    meetings: dict[str, int] = field(default_factory=dict)

    @property
    def side(self) -> Side:
        return SIDES[self.target]

    @property
    def meeting(self) -> int:
        return self.meetings[self.target]

    @property
    def username(self) -> str:
        return USERS[self.role] or "khach.la"  # the anonymous caller tries a made-up name


async def api(cx: Cx, method: str, path: str, body: Any = None) -> Reply:
    status, answer = await cx.session.call(method, path, body)
    code = answer.get("error", "") if isinstance(answer, dict) else ""
    return Reply(status, code, "", None)


async def page(cx: Cx, method: str, path: str, form: list[tuple[str, str]] | None = None) -> Reply:
    data = None if form is None else [("csrf_token", cx.session.csrf), *form]
    resp = await cx.session.client.request(method, path, data=data, allow_redirects=False)
    text = await resp.text()
    found = re.search(r'data-error-code="([^"]*)"', text)
    return Reply(resp.status, found.group(1) if found else "", resp.headers.get("Location", ""))


def listing(
    method: str, path: str, marker: Callable[[Cx], str]
) -> Callable[[Cx], Awaitable[Reply]]:
    """A list: the reply says whether the target's marker (id, code, name) is in it."""

    async def send(cx: Cx) -> Reply:
        resp = await cx.session.client.request(
            method, path, headers={"X-CSRF-Token": cx.session.csrf}, allow_redirects=False
        )
        text = await resp.text()
        found = re.search(r'data-error-code="([^"]*)"', text)
        code = found.group(1) if found else ""
        if resp.content_type == "application/json":
            code = (await resp.json()).get("error", "")
        listed = marker(cx) in text if resp.status == 200 else None
        return Reply(resp.status, code, resp.headers.get("Location", ""), listed)

    return send


def get(path: str) -> Callable[[Cx], Awaitable[Reply]]:
    async def send(cx: Cx) -> Reply:
        return await (api if path.startswith("/api/") else page)(cx, "GET", path)

    return send


def download(path: Callable[[Cx], str]) -> Callable[[Cx], Awaitable[Reply]]:
    """A file (CSV, XLSX) or, refused, the error page: read as bytes."""

    async def send(cx: Cx) -> Reply:
        resp = await cx.session.client.get(path(cx), allow_redirects=False)
        text = (await resp.read()).decode("utf-8", "replace")
        found = re.search(r'data-error-code="([^"]*)"', text)
        return Reply(resp.status, found.group(1) if found else "", resp.headers.get("Location", ""))

    return send


def tomorrow(days: int = 1) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)


def meeting_form(cx: Cx) -> list[tuple[str, str]]:
    when = tomorrow(2).astimezone(cx.world.node.app[CTX].settings.tz).strftime("%Y-%m-%dT%H:%M")
    return [
        ("title", "Họp qua biểu mẫu"),
        ("description", ""),
        ("starts_at", when),
        ("duration_minutes", "90"),
        ("invited_units", cx.side.unit),
    ]


def new_user(cx: Cx) -> dict[str, str]:
    return {
        "username": next(NEW_USERS),
        "full_name": "Người dùng mới",
        "role": "operator",
        "unit": cx.side.unit,
        "password": "mat-khau-moi",
    }


def new_unit(cx: Cx) -> dict[str, str]:
    return {"code": next(NEW_CODES), "name": "Xã Mới", "level": "commune", "parent": cx.side.host}


def meeting_marker(kind: str) -> Callable[[Cx], str]:
    if kind == "json":
        return lambda cx: f'"id": {cx.meeting},'
    if kind == "links":
        return lambda cx: f'"meeting_id": {cx.meeting},'
    return lambda cx: f'href="/meetings/{cx.meeting}"'


async def links(cx: Cx) -> Reply:
    """``GET /api/links`` while both sides' meetings are live on this node (their chairs
    joined): the admin sees the one in its subtree only."""
    chairs = [await cx.world.socket(SIDES[t].chair) for t in TARGETS]
    for target, chair in zip(TARGETS, chairs, strict=True):
        ack = await chair.call("join", {"meeting_id": cx.meetings[target]}, namespace="/meeting")
        assert ack["ok"], ack
    try:
        resp = await cx.session.client.get("/api/links")
        body = await resp.json()
        listed = None
        if resp.status == 200:
            listed = cx.meeting in [m["meeting_id"] for m in body["meetings"]]
        return Reply(resp.status, body.get("error", ""), "", listed)
    finally:
        for chair in chairs:
            await chair.disconnect()


def monitor(method: str) -> Callable[[Cx], Awaitable[Reply]]:
    """``/api/meetings/{id}/monitor`` while the target's meeting is open on this node (its
    chair joined; else ``409 meeting_not_live``): the host's administrator, chair and
    secretary read it. HEAD too: its plain twin would find the meeting not open."""

    async def send(cx: Cx) -> Reply:
        chair = await cx.world.socket(cx.side.chair)
        ack = await chair.call("join", {"meeting_id": cx.meeting}, namespace="/meeting")
        assert ack["ok"], ack
        try:
            path = f"/api/meetings/{cx.meeting}/monitor"
            if method == "HEAD":
                resp = await cx.session.client.head(path, allow_redirects=False)
                return Reply(resp.status)
            return await api(cx, method, path)
        finally:
            await chair.disconnect()

    return send


F = "403 forbidden"
NA = "401 not_authenticated"
MNF = "404 meeting_not_found"
LOGIN = "login"

# -- THE rules: one per route of the router (HEAD answers as its GET) ---------------------------

RULES: dict[str, Rule] = {
    # pages
    "GET /": rule(get("/"), staff="303 /meetings", anonymous="303 /login"),
    "GET /login": rule(get("/login"), staff="303 /meetings", anonymous="200"),
    "POST /login": rule(
        lambda cx: page(
            cx,
            "POST",
            "/login",
            [("username", cx.username), ("password", "hoinghi-demo"), ("next", "/meetings")],
        ),
        own_session=True,
        staff="303 /meetings",
        anonymous="401",  # the login page again, with the error
    ),
    "POST /logout": rule(
        lambda cx: page(cx, "POST", "/logout", []),
        own_session=True,
        everyone="303 /login?flash=logged_out",
    ),
    "GET /lang/{lang}": rule(get("/lang/vi"), everyone="303 /meetings"),
    "GET /meetings": rule(
        listing("GET", "/meetings", meeting_marker("page")),
        staff=("200 +", "200 -"),
        anonymous=LOGIN,
    ),
    "GET /meetings/new": rule(get("/meetings/new"), staff=F, chair="200", anonymous=LOGIN),
    "POST /meetings/new": rule(
        lambda cx: page(cx, "POST", "/meetings/new", meeting_form(cx)),
        staff=F,
        chair=("303 /meetings/*?flash=created", "400"),
        anonymous=LOGIN,
    ),
    "GET /meetings/{meeting_id}": rule(
        lambda cx: page(cx, "GET", f"/meetings/{cx.meeting}"), staff=("200", MNF), anonymous=LOGIN
    ),
    "GET /meetings/{meeting_id}/edit": rule(
        lambda cx: page(cx, "GET", f"/meetings/{cx.meeting}/edit"),
        staff=F,
        chair=("200", MNF),
        anonymous=LOGIN,
    ),
    "POST /meetings/{meeting_id}/edit": rule(
        lambda cx: page(cx, "POST", f"/meetings/{cx.meeting}/edit", meeting_form(cx)),
        staff=F,
        chair=("303 /meetings/*?flash=saved", MNF),
        anonymous=LOGIN,
    ),
    "POST /meetings/{meeting_id}/cancel": rule(
        lambda cx: page(cx, "POST", f"/meetings/{cx.meeting}/cancel", []),
        staff=F,
        chair=("303 /meetings/*?flash=cancelled", MNF),
        anonymous=LOGIN,
    ),
    "GET /meetings/{meeting_id}/live": rule(
        lambda cx: page(cx, "GET", f"/meetings/{cx.meeting}/live"),
        admin=("403 not_invited", MNF),
        secretary=("403 not_invited", MNF),
        chair=("200", MNF),  # the host's chair: the console
        operator=("200", MNF),  # an invited site
        anonymous=LOGIN,
    ),
    "GET /admin/units": rule(
        listing("GET", "/admin/units", lambda cx: cx.side.unit),
        staff=F,
        admin=("200 +", "200 -"),
        anonymous=LOGIN,
    ),
    "POST /admin/units": rule(
        lambda cx: page(cx, "POST", "/admin/units", list(new_unit(cx).items())),
        staff=F,
        admin=("303 /admin/units?flash=unit_added", "400"),
        anonymous=LOGIN,
    ),
    "GET /admin/users": rule(
        listing("GET", "/admin/users", lambda cx: cx.side.user),
        staff=F,
        admin=("200 +", "200 -"),
        anonymous=LOGIN,
    ),
    "POST /admin/users": rule(
        lambda cx: page(cx, "POST", "/admin/users", list(new_user(cx).items())),
        staff=F,
        admin=("303 /admin/users?flash=user_added", "400"),
        anonymous=LOGIN,
    ),
    "POST /admin/users/{user_id}": rule(
        lambda cx: page(
            cx, "POST", f"/admin/users/{cx.world.user_ids[cx.side.user]}", [("active", "1")]
        ),
        staff=F,
        admin=("303 /admin/users?flash=user_updated", "404 user_not_found"),
        anonymous=LOGIN,
    ),
    "POST /admin/users/{user_id}/unlock": rule(
        lambda cx: page(cx, "POST", f"/admin/users/{cx.world.user_ids[cx.side.user]}/unlock", []),
        staff=F,
        admin=("303 /admin/users?flash=user_unlocked", "404 user_not_found"),
        anonymous=LOGIN,
    ),
    # JSON API
    "GET /api/csrf": rule(get("/api/csrf"), everyone="200"),
    "POST /api/login": rule(
        lambda cx: api(
            cx, "POST", "/api/login", {"username": cx.username, "password": "hoinghi-demo"}
        ),
        own_session=True,
        staff="200",
        anonymous="401 bad_credentials",
    ),
    "POST /api/logout": rule(
        lambda cx: api(cx, "POST", "/api/logout"), own_session=True, staff="200", anonymous=NA
    ),
    "GET /api/me": rule(get("/api/me"), staff="200", anonymous=NA),
    "GET /api/meetings": rule(
        listing("GET", "/api/meetings", meeting_marker("json")),
        staff=("200 +", "200 -"),
        anonymous=NA,
    ),
    "POST /api/meetings": rule(
        lambda cx: api(
            cx,
            "POST",
            "/api/meetings",
            {
                "title": "Họp mới",
                "starts_at": tomorrow().isoformat(),
                "invited_units": [cx.side.unit],
            },
        ),
        staff=F,
        chair=("201", "400 invalid_field"),
        anonymous=NA,
    ),
    "GET /api/meetings/{meeting_id}": rule(
        lambda cx: api(cx, "GET", f"/api/meetings/{cx.meeting}"), staff=("200", MNF), anonymous=NA
    ),
    "PATCH /api/meetings/{meeting_id}": rule(
        lambda cx: api(cx, "PATCH", f"/api/meetings/{cx.meeting}", {"title": "Tiêu đề đã sửa"}),
        staff=(F, MNF),  # visible but not theirs to change; outside, not even visible
        chair=("200", MNF),
        anonymous=NA,
    ),
    "POST /api/meetings/{meeting_id}/cancel": rule(
        lambda cx: api(cx, "POST", f"/api/meetings/{cx.meeting}/cancel"),
        staff=(F, MNF),
        chair=("200", MNF),
        anonymous=NA,
    ),
    "GET /api/units": rule(
        listing("GET", "/api/units", lambda cx: f'"code": "{cx.side.unit}"'),
        staff=("200 +", "200 -"),
        anonymous=NA,
    ),
    "POST /api/units": rule(
        lambda cx: api(cx, "POST", "/api/units", new_unit(cx)),
        staff=F,
        admin=("201", "400 invalid_field"),
        anonymous=NA,
    ),
    "PATCH /api/units/{code}": rule(
        lambda cx: api(
            cx, "PATCH", f"/api/units/{cx.side.unit}", {"name": cx.world.unit_name(cx.side.unit)}
        ),
        staff=F,
        admin=("200", "404 unit_not_found"),
        anonymous=NA,
    ),
    "GET /api/users": rule(
        listing("GET", "/api/users", lambda cx: f'"username": "{cx.side.user}"'),
        staff=F,
        admin=("200 +", "200 -"),
        anonymous=NA,
    ),
    "POST /api/users": rule(
        lambda cx: api(cx, "POST", "/api/users", new_user(cx)),
        staff=F,
        admin=("201", "400 invalid_field"),
        anonymous=NA,
    ),
    "PATCH /api/users/{user_id}": rule(
        lambda cx: api(
            cx, "PATCH", f"/api/users/{cx.world.user_ids[cx.side.user]}", {"full_name": "Kỹ thuật"}
        ),
        staff=F,
        admin=("200", "404 user_not_found"),
        anonymous=NA,
    ),
    "POST /api/users/{user_id}/unlock": rule(
        lambda cx: api(cx, "POST", f"/api/users/{cx.world.user_ids[cx.side.user]}/unlock"),
        staff=F,
        admin=("200", "404 user_not_found"),
        anonymous=NA,
    ),
    "GET /api/links": rule(links, staff=F, admin=("200 +", "200 -"), anonymous=NA),
    # attendance reports: every role reads the rows in its scope (an operator: its own site)
    "GET /meetings/{meeting_id}/attendance": rule(
        lambda cx: listing(
            "GET", f"/meetings/{cx.meeting}/attendance", lambda cx: f'data-unit="{cx.side.unit}"'
        )(cx),
        staff=("200 +", MNF),
        anonymous=LOGIN,
    ),
    "GET /meetings/{meeting_id}/attendance.csv": rule(
        download(lambda cx: f"/meetings/{cx.meeting}/attendance.csv"),
        staff=("200", MNF),
        anonymous=LOGIN,
    ),
    "GET /meetings/{meeting_id}/attendance.xlsx": rule(
        download(lambda cx: f"/meetings/{cx.meeting}/attendance.xlsx"),
        staff=("200", MNF),
        anonymous=LOGIN,
    ),
    "GET /api/meetings/{meeting_id}/attendance": rule(
        lambda cx: api(cx, "GET", f"/api/meetings/{cx.meeting}/attendance"),
        staff=("200", MNF),
        anonymous=NA,
    ),
    "GET /reports/attendance": rule(get("/reports/attendance"), staff="200", anonymous=LOGIN),
    "GET /reports/attendance.csv": rule(
        download(lambda cx: "/reports/attendance.csv"), staff="200", anonymous=LOGIN
    ),
    "GET /reports/attendance.xlsx": rule(
        download(lambda cx: "/reports/attendance.xlsx"), staff="200", anonymous=LOGIN
    ),
    "GET /api/reports/attendance": rule(get("/api/reports/attendance"), staff="200", anonymous=NA),
    # the monitoring wall: every site's figures, for those who run the meeting, not operators
    "GET /api/meetings/{meeting_id}/monitor": rule(
        monitor("GET"), staff=("200", MNF), operator=(F, MNF), anonymous=NA
    ),
    "HEAD /api/meetings/{meeting_id}/monitor": rule(
        monitor("HEAD"), staff=("200", MNF), operator=(F, MNF), anonymous=NA
    ),
    # files and the socket.io transport: public (the socket authenticates on its namespace)
    "GET /static/{tail}": rule(get("/static/app.css"), everyone="200"),
    "GET /vendor/socket.io/{tail}": rule(
        get("/vendor/socket.io/socket.io.esm.min.js"), everyone="200"
    ),
    "GET /socket.io/": rule(get("/socket.io/?EIO=4&transport=polling"), everyone="200"),
    # engine.io answers GET and POST only; aiohttp's HEAD twin of its GET route is refused.
    "HEAD /socket.io/": rule(
        lambda cx: page(cx, "HEAD", "/socket.io/?EIO=4&transport=polling"), everyone="405"
    ),
    "POST /socket.io/": rule(
        lambda cx: page(cx, "POST", "/socket.io/?EIO=4&transport=polling", []), everyone="400"
    ),
    "OPTIONS /socket.io/": rule(
        lambda cx: page(cx, "OPTIONS", "/socket.io/?EIO=4&transport=polling"), everyone="200"
    ),
}


# -- THE rules for /meeting events: each caller joins the target meeting first ------------------

OFFERS: dict[str, str] = {}  # layout name -> a real aiortc offer, made once


NJ = "not_joined"
EVENT_RULES: dict[str, tuple[Callable[[Cx], dict[str, Any]], dict[str, Cell]]] = {
    # (payload, cells); admin and secretary are never participants; outside, nobody can join.
    "join": (
        lambda cx: {"meeting_id": cx.meeting},
        {
            "admin": ("not_invited", "meeting_not_found"),
            "secretary": ("not_invited", "meeting_not_found"),
            "chair": ("ok", "meeting_not_found"),
            "operator": ("ok", "meeting_not_found"),
        },
    ),
    "offer": (
        lambda cx: {"sdp": OFFERS["chair" if cx.role == "chair" else "site"]},
        {"chair": ("ok", NJ), "operator": ("ok", NJ)},
    ),
    "start": (lambda cx: {}, {"chair": ("ok", NJ), "operator": ("forbidden", NJ)}),
    "end": (lambda cx: {}, {"chair": ("ok", NJ), "operator": ("forbidden", NJ)}),
    "raise_hand": (
        lambda cx: {"raised": True},
        {"chair": ("forbidden", NJ), "operator": ("ok", NJ)},
    ),
    "give_floor": (
        lambda cx: {"unit": cx.side.helper},
        {"chair": ("ok", NJ), "operator": ("forbidden", NJ)},
    ),
    "take_floor": (lambda cx: {}, {"chair": ("ok", NJ), "operator": ("forbidden", NJ)}),
    "mute": (
        lambda cx: {"unit": cx.side.helper, "muted": True},
        {"chair": ("ok", NJ), "operator": ("forbidden", NJ)},
    ),
    "watch": (
        lambda cx: {"unit": cx.side.helper, "watch": True},
        {"chair": ("ok", NJ), "operator": ("forbidden", NJ)},
    ),
    "devices": (
        lambda cx: {"mic_on": True, "camera_on": False},
        {"chair": ("ok", NJ), "operator": ("ok", NJ)},
    ),
    "leave": (lambda cx: {}, {"chair": "ok", "operator": "ok", "admin": "ok", "secretary": "ok"}),
    # Attendance: a site gives its own head count and answers roll calls; only the chair
    # starts and ends one (here before the meeting is started: not_live, no_roll_call) and
    # calls a site.
    "head_count": (
        lambda cx: {"count": 12},
        {"chair": ("forbidden", NJ), "operator": ("ok", NJ)},
    ),
    "roll_call_start": (lambda cx: {}, {"chair": ("not_live", NJ), "operator": ("forbidden", NJ)}),
    "roll_call_end": (
        lambda cx: {},
        {"chair": ("no_roll_call", NJ), "operator": ("forbidden", NJ)},
    ),
    "roll_call_answer": (
        lambda cx: {"roll_call": "00000000-0000-0000-0000-000000000000", "count": 3},
        {"chair": ("forbidden", NJ), "operator": ("roll_call_closed", NJ)},
    ),
    "call_site": (
        lambda cx: {"unit": cx.side.helper},
        {"chair": ("ok", NJ), "operator": ("forbidden", NJ)},
    ),
    # A participant's own link: its receive mode and its page's figures (a relay has neither).
    "receive_mode": (
        lambda cx: {"mode": "low"},
        {"chair": ("ok", NJ), "operator": ("ok", NJ)},
    ),
    "link_stats": (
        lambda cx: {"slots": [{"slot": "chair.video", "frames_decoded": 5}]},
        {"chair": ("ok", NJ), "operator": ("ok", NJ)},
    ),
}


def event_expect(event: str, role: str, target: str) -> Expect:
    cells = EVENT_RULES[event][1]
    if role == "anonymous":
        return Expect("refused")
    cell = cells.get(role, NJ)  # admin and secretary: the join was refused
    return Expect(cell if isinstance(cell, str) else cell[TARGETS.index(target)])


# -- the node ----------------------------------------------------------------------------------


def router_routes() -> list[tuple[str, str]]:
    """(method, path) of every route of the app's router, HEAD twins included."""
    here = Path(tempfile.gettempdir())
    app = create_app(make_settings(here, f"sqlite+aiosqlite:///{here / 'matrix.db'}"))
    found: list[tuple[str, str]] = []
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = (
            info["prefix"].rstrip("/") + "/{tail}"
            if "prefix" in info
            else (info.get("formatter") or info["path"])
        )
        if (route.method, path) not in found:
            found.append((route.method, path))
    return found


ROUTES = router_routes()


@dataclass
class World:
    node: Node
    sessions: dict[str | None, Session]  # by username; None: not logged in
    user_ids: dict[str, int]
    sockets: list[socketio.AsyncClient] = field(default_factory=list)

    def unit_name(self, code: str) -> str:
        return self.node.app[CTX].units.by_code[code].name

    async def session(self, username: str | None) -> Session:
        if username is None:
            session = await self.node.anonymous()
            await session.fetch_csrf()  # a real browser has the pre-login token
            return session
        return await self.node.login(username)

    async def make_meetings(self) -> dict[str, int]:
        ids = {}
        for target, side in SIDES.items():
            chair = self.sessions[side.chair]
            status, body = await chair.call(
                "POST",
                "/api/meetings",
                {
                    "title": f"Họp {side.host}",
                    "starts_at": tomorrow().isoformat(),
                    "invited_units": [side.unit, side.helper],
                },
            )
            assert status == 201, body
            ids[target] = body["meeting"]["id"]
        return ids

    async def socket(
        self, username: str | None, session: Session | None = None
    ) -> socketio.AsyncClient:
        """A /meeting socket with the user's cookie (``None``: without one)."""
        if session is None and username is not None:
            session = self.sessions[username]
        cookie = (
            "; ".join(f"{c.key}={c.value}" for c in session.client.session.cookie_jar)
            if session is not None
            else ""
        )
        sio = socketio.AsyncClient(reconnection=False)
        self.sockets.append(sio)
        await sio.connect(
            f"http://127.0.0.1:{self.node.client.server.port}",
            namespaces=["/meeting"],
            headers={"Cookie": cookie} if cookie else {},
            transports=["websocket"],
            wait_timeout=20,
        )
        return sio

    async def close_sockets(self) -> None:
        for sio in self.sockets:
            if sio.connected:
                await sio.disconnect()
        self.sockets.clear()


async def _start_client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("matrix")
    node = await start_node(_start_client, tmp, f"sqlite+aiosqlite:///{tmp / 'test.sqlite3'}")
    province = await node.login("quantri")
    status, body = await province.call(
        "POST",
        "/api/users",
        {
            "username": USERS["admin"],
            "full_name": "Quản trị huyện Năm Căn",
            "role": "admin",
            "unit": "CM-NC",
            "password": "hoinghi-demo",
        },
    )
    assert status == 201, body
    status, body = await province.call("GET", "/api/users")
    user_ids = {u["username"]: u["id"] for u in body["users"]}
    names = {
        *USERS.values(),
        *(s.chair for s in SIDES.values()),
        *(s.helper_user for s in SIDES.values()),
    }
    sessions: dict[str | None, Session] = {}
    world = World(node, sessions, user_ids)
    for username in names:
        sessions[username] = await world.session(username)
    for name, layout in (("chair", CHAIR_LAYOUT), ("site", SITE_LAYOUT)):
        probe = ProbePeer(layout, publish=False, decode=False)
        OFFERS[name] = await probe.offer()
        await probe.close()
    yield world
    await node.close()
    await node.client.close()


# -- the matrix --------------------------------------------------------------------------------


def route_cells() -> list[Any]:
    return [
        pytest.param(f"{method} {path}", role, target, id=f"{method} {path}-{role}-{target}")
        for method, path in ROUTES
        for role in ROLES
        for target in TARGETS
    ]


async def test_every_route_and_event_has_exactly_one_rule() -> None:
    routes = {f"{m} {p}" for m, p in ROUTES if m != "HEAD" or f"{m} {p}" in RULES}
    assert routes - set(RULES) == set(), "new route without a rule"
    assert set(RULES) - routes == set(), "a rule for a route the router no longer has"
    heads = {f"GET {p}" for m, p in ROUTES if m == "HEAD"}
    assert heads <= routes, "a HEAD route answers as its GET, which needs a rule"
    assert set(EVENTS) == set(EVENT_RULES), "new event without a rule (or a stale one)"


@pytest.mark.parametrize(("route", "role", "target"), route_cells())
async def test_route_answers_each_role_as_its_rule_says(
    world: World, route: str, role: str, target: str
) -> None:
    method, path = route.split(" ", 1)
    head = method == "HEAD"
    found = RULES.get(route)
    if found is None and head:  # a HEAD twin answers as its GET
        found = RULES.get(f"GET {path}")
    assert found is not None, f"new route without a rule: {route}"
    username = USERS[role]
    session = await world.session(username) if found.own_session else world.sessions[username]
    cx = Cx(world, session, role, target, await world.make_meetings())
    expect = found.expect(role, target)
    if head and route not in RULES:
        resp = await session.client.head(_probe_path(path, cx), allow_redirects=False)
        reply = Reply(resp.status, location=resp.headers.get("Location", ""))
    else:
        reply = await found.send(cx)
    _check(route, role, target, expect, reply, head)


def _probe_path(path: str, cx: Cx) -> str:
    """The GET rule's path for a HEAD request (its target filled in)."""
    samples = {
        "/lang/{lang}": "/lang/vi",
        "/static/{tail}": "/static/app.css",
        "/vendor/socket.io/{tail}": "/vendor/socket.io/socket.io.esm.min.js",
        "/socket.io/": "/socket.io/?EIO=4&transport=polling",
    }
    return samples.get(path, path.replace("{meeting_id}", str(cx.meeting)))


def _check(route: str, role: str, target: str, expect: Expect, reply: Reply, head: bool) -> None:
    where = f"{route} as {role}, target {target}: expected {expect.text!r}, got {reply}"
    if expect.text == "login":
        assert reply.status == 303, where
        assert reply.location.startswith("/login?next="), where
        return
    assert reply.status == expect.status, where
    detail = expect.detail
    if reply.status in (301, 302, 303, 307, 308):
        assert fnmatch.fnmatchcase(reply.location, detail), where
    elif head:
        return
    elif detail in ("+", "-"):
        assert reply.listed is (detail == "+"), where
    elif reply.status >= 400:
        assert reply.code == detail, where


@pytest.mark.parametrize(
    ("event", "role", "target"),
    [
        pytest.param(e, r, t, id=f"{e}-{r}-{t}")
        for e in sorted(EVENTS)
        for r in ROLES
        for t in TARGETS
    ],
)
async def test_meeting_event_answers_each_role_as_its_rule_says(
    world: World, event: str, role: str, target: str
) -> None:
    assert event in EVENT_RULES, f"new event without a rule: {event}"
    build = EVENT_RULES[event][0]
    expect = event_expect(event, role, target)
    ids = await world.make_meetings()
    username = USERS[role]
    cx = Cx(world, world.sessions[username], role, target, ids)
    try:
        helper = await world.socket(cx.side.helper_user)  # a site the chair can act on
        ack = await helper.call(
            "join", {"meeting_id": cx.meeting}, namespace="/meeting", timeout=20
        )
        assert ack["ok"], ack
        if role == "anonymous":
            with pytest.raises(socketio.exceptions.ConnectionError):
                await world.socket(None)
            return
        actor = await world.socket(username)
        if event != "join":
            await actor.call("join", {"meeting_id": cx.meeting}, namespace="/meeting", timeout=20)
        ack = await actor.call(event, build(cx), namespace="/meeting", timeout=20)
        got = "ok" if ack.get("ok") else ack.get("error")
        assert got == expect.text, f"{event} as {role}, target {target}: {ack}"
    finally:
        await world.close_sockets()
