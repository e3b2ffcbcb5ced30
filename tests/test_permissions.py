"""Who may do what: every meeting endpoint (API and pages) for every role and tree position.

The matrix below is the specification. Two meetings are set up for every cell:

* P, hosted by the province chair (chutri, CM), inviting district CM-NC as a whole subtree
  and the single commune CM-TVT-KB;
* D, hosted by the chair of district CM-NH (chutri.cm-nh), inviting every commune of CM-NH.

The matrix cells share one node (module scope: 200+ cells on a fresh node each would take
over a minute); every cell creates its own P and D, so no cell sees another's changes.
The invitation-scope and administration tests further down each get a fresh node.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from server.state import CTX
from tests.conftest import Node, Session, start_node

# -- the cast ----------------------------------------------------------------------------------

# Column label in the matrix -> demo account (None: not logged in).
ACTORS: dict[str, str | None] = {
    "anon": None,
    "admin": "quantri",  # admin of the province
    "chair": "chutri",  # chair of the province: hosts P
    "secr": "thuky",  # secretary of the province
    "nc.ch": "chutri.cm-nc",  # chair of CM-NC, invited to P as a whole district
    "tvt.ch": "chutri.cm-tvt",  # chair of CM-TVT: only its commune KB is invited to P
    "nh.ch": "chutri.cm-nh",  # chair of CM-NH: hosts D, not invited to P
    "hr.op": "kt.cm-nc-hr",  # operator of a commune under the invited district CM-NC
    "kb.op": "kt.cm-tvt-kb",  # operator of the singly invited commune CM-TVT-KB
    "kh.op": "kt.cm-tvt-kh",  # operator of KB's sibling commune, not invited
    "rg.op": "kt.cm-nh-rg",  # operator of a commune of CM-NH, invited to D only
}

# One row per endpoint, one column per actor (same order as ACTORS). Cells:
#   200 / 201 / 303   allowed (303: a page form went through and redirects to the meeting)
#   401               API: error "not_authenticated"
#   login             page: 303 to /login?next=<the page>
#   403               error "forbidden"
#   404               error "meeting_not_found"
#   PD / P / D / -    list endpoints: 200, and exactly these of the two meetings are listed
MATRIX = """
endpoint      anon  admin chair secr  nc.ch tvt.ch nh.ch hr.op kb.op kh.op rg.op
api.list      401   PD    PD    PD    P     P      D     P     P     -     D
api.create    401   403   201   403   201   201    201   403   403   403   403
api.get.P     401   200   200   200   200   200    404   200   200   404   404
api.get.D     401   200   200   200   404   404    200   404   404   404   200
api.patch.P   401   403   200   403   403   403    404   403   403   404   404
api.patch.D   401   403   200   403   404   404    200   404   404   404   403
api.cancel.P  401   403   200   403   403   403    404   403   403   404   404
api.cancel.D  401   403   200   403   404   404    200   404   404   404   403
page.list     login PD    PD    PD    P     P      D     P     P     -     D
page.new      login 403   200   403   200   200    200   403   403   403   403
page.create   login 403   303   403   303   303    303   403   403   403   403
page.view.P   login 200   200   200   200   200    404   200   200   404   404
page.view.D   login 200   200   200   404   404    200   404   404   404   200
page.edit.P   login 403   200   403   403   403    404   403   403   403   403
page.edit.D   login 403   200   403   404   404    200   403   403   403   403
page.save.P   login 403   303   403   403   403    404   403   403   403   403
page.save.D   login 403   303   403   404   404    303   403   403   403   403
page.cancel.P login 403   303   403   403   403    404   403   403   403   403
page.cancel.D login 403   303   403   404   404    303   403   403   403   403
"""


def _cells() -> list[Any]:
    lines = [line.split() for line in MATRIX.strip().splitlines()]
    header, rows = lines[0], lines[1:]
    assert header[1:] == list(ACTORS), "matrix columns must match ACTORS"
    params = []
    for endpoint, *outcomes in rows:
        assert len(outcomes) == len(ACTORS), endpoint
        for actor, outcome in zip(ACTORS, outcomes, strict=True):
            params.append(pytest.param(actor, endpoint, outcome, id=f"{endpoint}-{actor}"))
    return params


P_TITLE = "Hội nghị tỉnh triển khai nhiệm vụ 2027"
D_TITLE = "Họp huyện Ngọc Hiển về phòng chống thiên tai"
D_INVITES = ["CM-NH-RG", "CM-NH-TA", "CM-NH-TAT", "CM-NH-VA", "CM-NH-VAD", "CM-NH-DMU", "CM-NH-TGT"]


def tomorrow() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


def local_form_time(node: Node, when: datetime) -> str:
    """A start time as the form's datetime-local input sends it (node time zone, no offset)."""
    return when.astimezone(node.app[CTX].settings.tz).strftime("%Y-%m-%dT%H:%M")


# -- one node for the whole matrix -------------------------------------------------------------


@dataclass
class World:
    node: Node
    sessions: dict[str, Session]

    @property
    def chair(self) -> Session:
        return self.sessions["chair"]

    async def make_meetings(self) -> dict[str, int]:
        status, body = await self.chair.call(
            "POST",
            "/api/meetings",
            {
                "title": P_TITLE,
                "starts_at": tomorrow().isoformat(),
                "invited_subtrees": ["CM-NC"],
                "invited_units": ["CM-TVT-KB"],
            },
        )
        assert status == 201, body
        province = body["meeting"]["id"]
        status, body = await self.sessions["nh.ch"].call(
            "POST",
            "/api/meetings",
            {"title": D_TITLE, "starts_at": tomorrow().isoformat(), "invited_units": D_INVITES},
        )
        assert status == 201, body
        return {"P": province, "D": body["meeting"]["id"]}

    async def meeting(self, meeting_id: int) -> dict[str, Any]:
        """The meeting as the province chair (who sees both) reads it."""
        status, body = await self.chair.call("GET", f"/api/meetings/{meeting_id}")
        assert status == 200, body
        return body["meeting"]

    def invite_for(self, actor: str) -> tuple[str, str]:
        """(host code, a unit the actor's unit could invite): its first child unit."""
        username = ACTORS[actor]
        tree = self.node.app[CTX].units
        unit = "CM" if username is None else _demo_unit(username)
        children = tree.child_units(tree.by_code[unit].id)
        return unit, children[0].code if children else "CM-NC-HR"


def _demo_unit(username: str) -> str:
    if username in ("quantri", "chutri", "thuky"):
        return "CM"
    return username.split(".", 1)[1].upper()


async def _start_client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("permissions")
    node = await start_node(_start_client, tmp, f"sqlite+aiosqlite:///{tmp / 'test.sqlite3'}")
    sessions: dict[str, Session] = {}
    for actor, username in ACTORS.items():
        if username is None:
            sessions[actor] = await node.anonymous()
            await sessions[actor].fetch_csrf()  # a real browser has the pre-login token
        else:
            sessions[actor] = await node.login(username)
    yield World(node, sessions)
    await node.close()
    await node.client.close()


# -- requests ----------------------------------------------------------------------------------


async def page(
    session: Session, method: str, path: str, form: list[tuple[str, str]] | None = None
) -> tuple[int, str, str]:
    """A browser request to a page: (status, body, Location), redirects not followed."""
    data = None
    if form is not None:
        data = [("csrf_token", session.csrf), *form]
    resp = await session.client.request(method, path, data=data, allow_redirects=False)
    return resp.status, await resp.text(), resp.headers.get("Location", "")


def meeting_form(
    world: World, title: str, invited_units: list[str], invited_subtrees: list[str]
) -> list[tuple[str, str]]:
    form = [
        ("title", title),
        ("description", ""),
        ("starts_at", local_form_time(world.node, tomorrow() + timedelta(days=1))),
        ("duration_minutes", "90"),
    ]
    form += [("invited_units", code) for code in invited_units]
    form += [("invited_subtrees", code) for code in invited_subtrees]
    return form


def form_for(world: World, which: str, title: str) -> list[tuple[str, str]]:
    if which == "P":
        return meeting_form(world, title, ["CM-TVT-KB"], ["CM-NC"])
    return meeting_form(world, title, D_INVITES, [])


def listed(ids: dict[str, int], shown: set[int]) -> str:
    """Which of P and D are among ``shown``, as a matrix cell spells it."""
    letters = "".join(k for k in ("P", "D") if ids[k] in shown)
    return letters or "-"


def page_lists(ids: dict[str, int], html: str) -> str:
    return listed(ids, {mid for mid in ids.values() if f'href="/meetings/{mid}"' in html})


# -- the matrix --------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("actor", "endpoint", "expected"), _cells())
async def test_meeting_access_matrix(
    world: World, actor: str, endpoint: str, expected: str
) -> None:
    ids = await world.make_meetings()
    session = world.sessions[actor]
    kind, action, *rest = endpoint.split(".")
    which = rest[0] if rest else None
    mid = ids[which] if which else None
    before = await world.meeting(mid) if mid else None

    if kind == "api":
        await _check_api(world, session, actor, action, ids, mid, expected)
    else:
        await _check_page(world, session, actor, action, ids, mid, which, expected)

    # A refused change leaves the meeting exactly as it was.
    refused = expected == "login" or expected in ("401", "403", "404")
    if mid is not None and action in ("patch", "cancel", "save") and refused:
        assert await world.meeting(mid) == before


async def _check_api(
    world: World,
    session: Session,
    actor: str,
    action: str,
    ids: dict[str, int],
    mid: int | None,
    expected: str,
) -> None:
    if action == "list":
        status, body = await session.call("GET", "/api/meetings")
    elif action == "create":
        host, invitee = world.invite_for(actor)
        status, body = await session.call(
            "POST",
            "/api/meetings",
            {"title": "Họp mới", "starts_at": tomorrow().isoformat(), "invited_units": [invitee]},
        )
    elif action == "get":
        status, body = await session.call("GET", f"/api/meetings/{mid}")
    elif action == "patch":
        status, body = await session.call(
            "PATCH", f"/api/meetings/{mid}", {"title": "Tiêu đề đã sửa"}
        )
    elif action == "cancel":
        status, body = await session.call("POST", f"/api/meetings/{mid}/cancel")
    else:
        pytest.fail(f"unknown API action {action}")

    if expected == "401":
        assert (status, body["error"]) == (401, "not_authenticated")
    elif expected == "403":
        assert (status, body["error"]) == (403, "forbidden")
    elif expected == "404":
        assert (status, body["error"]) == (404, "meeting_not_found")
    elif action == "list":
        assert status == 200, body
        assert listed(ids, {m["id"] for m in body["meetings"]}) == expected
    elif action == "create":
        assert (status, expected) == (201, "201"), body
        assert body["meeting"]["host_unit"] == host
        assert body["meeting"]["can_manage"] is True
    else:
        assert (status, expected) == (200, "200"), body
        meeting = body["meeting"]
        assert meeting["id"] == mid
        if action == "get":
            assert meeting["title"] == (P_TITLE if mid == ids["P"] else D_TITLE)
        elif action == "patch":
            assert meeting["title"] == "Tiêu đề đã sửa"
            assert (await world.meeting(mid))["title"] == "Tiêu đề đã sửa"
        else:
            assert meeting["status"] == "cancelled"
            assert (await world.meeting(mid))["status"] == "cancelled"


async def _check_page(
    world: World,
    session: Session,
    actor: str,
    action: str,
    ids: dict[str, int],
    mid: int | None,
    which: str | None,
    expected: str,
) -> None:
    if action == "list":
        path, method, form = "/meetings", "GET", None
    elif action == "new":
        path, method, form = "/meetings/new", "GET", None
    elif action == "create":
        _host, invitee = world.invite_for(actor)
        path, method = "/meetings/new", "POST"
        form = meeting_form(world, "Họp qua biểu mẫu", [invitee], [])
    elif action == "view":
        path, method, form = f"/meetings/{mid}", "GET", None
    elif action == "edit":
        path, method, form = f"/meetings/{mid}/edit", "GET", None
    elif action == "save":
        assert which is not None
        path, method = f"/meetings/{mid}/edit", "POST"
        form = form_for(world, which, "Sửa qua biểu mẫu")
    elif action == "cancel":
        path, method, form = f"/meetings/{mid}/cancel", "POST", []
    else:
        pytest.fail(f"unknown page action {action}")

    status, html, location = await page(session, method, path, form)

    if expected == "login":
        assert (status, location) == (303, f"/login?next={path}")
    elif expected == "403":
        assert status == 403, html
        assert 'data-error-code="forbidden"' in html
    elif expected == "404":
        assert status == 404, html
        assert 'data-error-code="meeting_not_found"' in html
    elif action == "list":
        assert status == 200, html
        assert page_lists(ids, html) == expected
    elif action == "new":
        assert (status, expected) == (200, "200"), html
        assert 'action="/meetings/new"' in html
    elif action == "create":
        assert (status, expected) == (303, "303"), html
        assert location.startswith("/meetings/")
        assert location.endswith("?flash=created")
        new_id = int(location.removeprefix("/meetings/").split("?")[0])
        assert new_id not in ids.values()
        assert (await world.meeting(new_id))["title"] == "Họp qua biểu mẫu"
    elif action in ("view", "edit"):
        assert (status, expected) == (200, "200"), html
        title = P_TITLE if which == "P" else D_TITLE
        assert title in html
        if action == "edit":
            assert f'action="/meetings/{mid}/edit"' in html
    elif action == "save":
        assert (status, expected) == (303, "303"), html
        assert location == f"/meetings/{mid}?flash=saved"
        assert (await world.meeting(mid))["title"] == "Sửa qua biểu mẫu"
    else:
        assert (status, expected) == (303, "303"), html
        assert location == f"/meetings/{mid}?flash=cancelled"
        assert (await world.meeting(mid))["status"] == "cancelled"


# -- whom a chair may invite -------------------------------------------------------------------


async def test_district_chair_cannot_invite_another_districts_commune(node: Node) -> None:
    chair = await node.login("chutri.cm-nh")
    for field, code in (("invited_units", "CM-TVT-KB"), ("invited_subtrees", "CM-NC")):
        status, body = await chair.call(
            "POST",
            "/api/meetings",
            {"title": "Họp huyện", "starts_at": tomorrow().isoformat(), field: [code]},
        )
        assert status == 400, body
        assert body["error"] == "invalid_field"
        assert list(body["fields"]) == [field]
        assert code in body["fields"][field]
    # Nothing was scheduled by the refused attempts.
    status, body = await chair.call("GET", "/api/meetings")
    assert (status, body["meetings"]) == (200, [])


async def test_chair_cannot_invite_the_host_unit_itself(node: Node) -> None:
    chair = await node.login("chutri.cm-nh")
    for field in ("invited_units", "invited_subtrees"):
        status, body = await chair.call(
            "POST",
            "/api/meetings",
            {"title": "Họp huyện", "starts_at": tomorrow().isoformat(), field: ["CM-NH"]},
        )
        assert (status, body["error"]) == (400, "invalid_field"), body
        assert "not under the host unit" in body["fields"][field]


async def test_district_chair_cannot_add_outside_commune_to_own_meeting_by_edit(
    node: Node,
) -> None:
    chair = await node.login("chutri.cm-nh")
    status, body = await chair.call(
        "POST",
        "/api/meetings",
        {"title": "Họp huyện", "starts_at": tomorrow().isoformat(), "invited_units": ["CM-NH-RG"]},
    )
    assert status == 201, body
    mid = body["meeting"]["id"]
    status, body = await chair.call(
        "PATCH", f"/api/meetings/{mid}", {"invited_units": ["CM-NH-RG", "CM-TVT-KB"]}
    )
    assert (status, body["error"]) == (400, "invalid_field"), body
    assert "invited_units" in body["fields"]
    status, body = await chair.call("GET", f"/api/meetings/{mid}")
    assert body["meeting"]["sites"] == ["CM-NH-RG"]
    outsider = await node.login("kt.cm-tvt-kb")
    assert (await outsider.call("GET", f"/api/meetings/{mid}"))[0] == 404


async def test_province_chair_edits_meeting_hosted_by_district_below(node: Node) -> None:
    district = await node.login("chutri.cm-nh")
    status, body = await district.call(
        "POST",
        "/api/meetings",
        {"title": "Họp huyện", "starts_at": tomorrow().isoformat(), "invited_units": ["CM-NH-RG"]},
    )
    assert status == 201, body
    mid = body["meeting"]["id"]

    province = await node.login("chutri")
    status, body = await province.call("GET", f"/api/meetings/{mid}")
    assert (status, body["meeting"]["can_manage"]) == (200, True)
    status, body = await province.call(
        "PATCH",
        f"/api/meetings/{mid}",
        {"title": "Họp huyện (tỉnh điều chỉnh)", "invited_units": ["CM-NH-RG", "CM-NH-TA"]},
    )
    assert status == 200, body
    assert body["meeting"]["title"] == "Họp huyện (tỉnh điều chỉnh)"
    assert body["meeting"]["host_unit"] == "CM-NH"  # the host does not move to the editor
    assert body["meeting"]["sites"] == ["CM-NH-RG", "CM-NH-TA"]

    # Invites stay under the host, even when the editor's own unit is wider.
    status, body = await province.call(
        "PATCH", f"/api/meetings/{mid}", {"invited_units": ["CM-NC-HR"]}
    )
    assert (status, body["error"]) == (400, "invalid_field"), body
    assert "invited_units" in body["fields"]

    # The district chair sees the province's change.
    status, body = await district.call("GET", f"/api/meetings/{mid}")
    assert body["meeting"]["title"] == "Họp huyện (tỉnh điều chỉnh)"


async def test_district_chair_cannot_edit_province_meeting_it_is_invited_to(node: Node) -> None:
    province = await node.login("chutri")
    status, body = await province.call(
        "POST",
        "/api/meetings",
        {"title": "Họp tỉnh", "starts_at": tomorrow().isoformat(), "invited_subtrees": ["CM-NC"]},
    )
    assert status == 201, body
    mid = body["meeting"]["id"]
    district = await node.login("chutri.cm-nc")
    status, body = await district.call("GET", f"/api/meetings/{mid}")
    assert (status, body["meeting"]["can_manage"]) == (200, False)
    status, body = await district.call("PATCH", f"/api/meetings/{mid}", {"title": "Đổi tên"})
    assert (status, body["error"]) == (403, "forbidden")
    status, html, _ = await page(district, "GET", f"/meetings/{mid}")
    assert status == 200
    assert f'href="/meetings/{mid}/edit"' not in html  # no edit button either


# -- administration scope (server/http/admin.py) ------------------------------------------------


async def user_ids(admin: Session) -> dict[str, int]:
    status, body = await admin.call("GET", "/api/users")
    assert status == 200, body
    return {u["username"]: u["id"] for u in body["users"]}


async def add_district_admin(node: Node) -> Session:
    """The province admin creates an admin for district CM-NC; log in as that admin."""
    province = await node.login("quantri")
    status, body = await province.call(
        "POST",
        "/api/users",
        {
            "username": "quantri.cm-nc",
            "full_name": "Quản trị huyện Năm Căn",
            "role": "admin",
            "unit": "CM-NC",
            "password": "mat-khau-huyen",
        },
    )
    assert status == 201, body
    assert body["user"]["unit"] == "CM-NC"
    return await node.login("quantri.cm-nc", "mat-khau-huyen")


async def test_province_admin_lists_and_adds_users_and_units(node: Node) -> None:
    admin = await node.login("quantri")
    ids = await user_ids(admin)
    assert {"quantri", "chutri", "kt.cm-nc-hr", "kt.cm-nh-rg", "kt.cm-tvt-kb"} <= set(ids)

    status, body = await admin.call(
        "POST",
        "/api/users",
        {
            "username": "kt2.cm-nh-rg",
            "full_name": "Kỹ thuật dự phòng",
            "role": "operator",
            "unit": "CM-NH-RG",
            "password": "mat-khau-moi",
        },
    )
    assert status == 201, body
    assert "kt2.cm-nh-rg" in await user_ids(admin)

    status, body = await admin.call("GET", "/api/units")
    assert status == 200
    codes = [u["code"] for u in body["units"]]
    assert codes[0] == "CM"
    assert {"CM-NC", "CM-NH-RG", "CM-TVT-KB"} <= set(codes)

    status, body = await admin.call(
        "POST",
        "/api/units",
        {"code": "CM-NC-MOI", "name": "Xã Mới", "level": "commune", "parent": "CM-NC"},
    )
    assert status == 201, body
    assert body["unit"] == {
        "code": "CM-NC-MOI",
        "name": "Xã Mới",
        "level": "commune",
        "parent": "CM-NC",
    }


ADMIN_ONLY = [
    ("GET", "/api/users", None),
    (
        "POST",
        "/api/users",
        {
            "username": "nguoi.moi",
            "full_name": "Người mới",
            "role": "chair",
            "unit": "CM-NC-HR",
            "password": "mat-khau-moi",
        },
    ),
    ("PATCH", "/api/users/1", {"active": False}),
    (
        "POST",
        "/api/units",
        {"code": "CM-NC-MOI", "name": "Xã Mới", "level": "commune", "parent": "CM-NC"},
    ),
    ("PATCH", "/api/units/CM-NC", {"name": "Huyện Mới"}),
]


@pytest.mark.parametrize("username", ["chutri", "thuky", "kt.cm-nc", "chutri.cm-nc"])
async def test_non_admins_may_not_manage_users_or_units(node: Node, username: str) -> None:
    session = await node.login(username)
    for method, path, body in ADMIN_ONLY:
        status, answer = await session.call(method, path, body)
        assert (status, answer["error"]) == (403, "forbidden"), (method, path, answer)
    admin = await node.login("quantri")
    ids = await user_ids(admin)
    assert "nguoi.moi" not in ids
    status, body = await admin.call("GET", "/api/units")
    names = {u["code"]: u["name"] for u in body["units"]}
    assert "CM-NC-MOI" not in names
    assert names["CM-NC"] == "Huyện Năm Căn"
    # User 1 was not disabled: it can still log in.
    first = next(name for name, uid in ids.items() if uid == 1)
    await node.login(first)


async def test_anonymous_gets_401_from_admin_api(node: Node) -> None:
    anon = await node.anonymous()
    await anon.fetch_csrf()
    for method, path, body in [("GET", "/api/units", None), *ADMIN_ONLY]:
        status, answer = await anon.call(method, path, body)
        assert (status, answer["error"]) == (401, "not_authenticated"), (method, path)


async def test_unit_list_for_non_admins_is_their_own_subtree(node: Node) -> None:
    commune = await node.login("kt.cm-nc-hr")
    status, body = await commune.call("GET", "/api/units")
    assert status == 200
    assert [u["code"] for u in body["units"]] == ["CM-NC-HR"]
    district = await node.login("chutri.cm-nc")
    status, body = await district.call("GET", "/api/units")
    codes = {u["code"] for u in body["units"]}
    assert "CM-NC" in codes
    assert "CM-NC-HR" in codes
    assert all(code.startswith("CM-NC") for code in codes)
    assert len(codes) == 9  # the district and its eight communes


async def test_district_admin_sees_only_users_of_its_district(node: Node) -> None:
    district = await add_district_admin(node)
    names = set(await user_ids(district))
    assert {"quantri.cm-nc", "chutri.cm-nc", "thuky.cm-nc", "kt.cm-nc", "kt.cm-nc-hr"} <= names
    assert not names & {"quantri", "chutri", "thuky", "chutri.cm-nh", "kt.cm-nh-rg"}
    assert all(name.endswith("cm-nc") or ".cm-nc-" in name for name in names)


async def test_district_admin_cannot_add_user_or_unit_in_another_district(node: Node) -> None:
    district = await add_district_admin(node)
    new_user = {
        "username": "kt2.cm-nh-rg",
        "full_name": "Kỹ thuật",
        "role": "operator",
        "unit": "CM-NH-RG",
        "password": "mat-khau-moi",
    }
    status, body = await district.call("POST", "/api/users", new_user)
    assert (status, body["error"]) == (400, "invalid_field"), body
    assert list(body["fields"]) == ["unit"]
    status, body = await district.call(
        "POST", "/api/users", {**new_user, "username": "kt2.cm", "unit": "CM"}
    )
    assert (status, body["error"]) == (400, "invalid_field"), body  # nor above itself

    status, body = await district.call(
        "POST",
        "/api/units",
        {"code": "CM-NH-MOI", "name": "Xã Mới", "level": "commune", "parent": "CM-NH"},
    )
    assert (status, body["error"]) == (400, "invalid_field"), body
    assert list(body["fields"]) == ["parent"]
    status, body = await district.call("PATCH", "/api/units/CM-NH", {"name": "Đổi tên"})
    assert (status, body["error"]) == (404, "unit_not_found"), body

    # Inside its own district the same admin may add a user (the refusals were about scope).
    status, body = await district.call(
        "POST", "/api/users", {**new_user, "username": "kt2.cm-nc-hr", "unit": "CM-NC-HR"}
    )
    assert status == 201, body
    province = await node.login("quantri")
    names = set(await user_ids(province))
    assert "kt2.cm-nc-hr" in names
    assert not names & {"kt2.cm-nh-rg", "kt2.cm"}


async def test_district_admin_cannot_change_user_outside_its_district(node: Node) -> None:
    district = await add_district_admin(node)
    province = await node.login("quantri")
    ids = await user_ids(province)
    for outside in ("kt.cm-nh-rg", "chutri", "quantri"):
        status, body = await district.call("PATCH", f"/api/users/{ids[outside]}", {"active": False})
        assert (status, body["error"]) == (404, "user_not_found"), (outside, body)
    # They are all still active and can log in.
    for outside in ("kt.cm-nh-rg", "chutri", "quantri"):
        await node.login(outside)
    # Moving a user of its own district into another district is refused as well.
    status, body = await district.call(
        "PATCH", f"/api/users/{ids['kt.cm-nc-hr']}", {"unit": "CM-NH-RG"}
    )
    assert (status, body["error"]) == (400, "invalid_field"), body
    # But it may change a user of its own district.
    status, body = await district.call(
        "PATCH", f"/api/users/{ids['kt.cm-nc-hr']}", {"full_name": "Kỹ thuật Hàm Rồng"}
    )
    assert (status, body["user"]["full_name"]) == (200, "Kỹ thuật Hàm Rồng")


@pytest.mark.parametrize("change", [{"active": False}, {"role": "operator"}])
async def test_admin_cannot_disable_self_or_drop_own_admin_role(
    node: Node, change: dict[str, Any]
) -> None:
    admin = await node.login("quantri")
    ids = await user_ids(admin)
    status, body = await admin.call("PATCH", f"/api/users/{ids['quantri']}", change)
    assert (status, body["error"]) == (403, "forbidden"), body
    # Still an active admin with a working session.
    status, body = await admin.call("GET", "/api/me")
    assert (status, body["user"]["role"]) == (200, "admin")
    status, body = await admin.call("GET", "/api/users")
    assert status == 200
    me = next(u for u in body["users"] if u["username"] == "quantri")
    assert (me["active"], me["role"]) == (True, "admin")
