"""Bad input never reaches a traceback: malformed JSON, wrong field types, unknown ids.

Every case here answers with a 4xx and a stable error code; a property test throws arbitrary
JSON at the meeting and login endpoints. All tests share one node (module scope): the
sessions are logged in once, before any test runs, so the failed-login limit that the
property test trips on /api/login cannot lock anyone out.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import event, given, settings
from hypothesis import strategies as st

from server.state import CTX
from tests.conftest import Node, Session, start_node

pytestmark = pytest.mark.asyncio(loop_scope="module")


def tomorrow() -> datetime:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)


@dataclass
class World:
    node: Node
    anon: Session
    chair: Session
    admin: Session
    meeting_id: int
    user_id: int

    def session(self, who: str) -> Session:
        return {"anon": self.anon, "chair": self.chair, "admin": self.admin}[who]

    async def meetings_count(self) -> int:
        status, body = await self.chair.call("GET", "/api/meetings")
        assert status == 200
        return len(body["meetings"])

    async def meeting(self) -> dict[str, Any]:
        status, body = await self.chair.call("GET", f"/api/meetings/{self.meeting_id}")
        assert status == 200, body
        return body["meeting"]


async def _start_client(app: web.Application) -> TestClient[Any, Any]:
    client: TestClient[Any, Any] = TestClient(TestServer(app))
    await client.start_server()
    return client


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[World]:
    tmp: Path = tmp_path_factory.mktemp("bad_input")
    node = await start_node(_start_client, tmp, f"sqlite+aiosqlite:///{tmp / 'test.sqlite3'}")
    anon = await node.anonymous()
    await anon.fetch_csrf()
    chair = await node.login("chutri")
    admin = await node.login("quantri")
    status, body = await chair.call(
        "POST",
        "/api/meetings",
        {
            "title": "Họp giao ban",
            "starts_at": tomorrow().isoformat(),
            "invited_subtrees": ["CM-NC"],
        },
    )
    assert status == 201, body
    status, users = await admin.call("GET", "/api/users")
    assert status == 200
    user_id = next(u["id"] for u in users["users"] if u["username"] == "kt.cm-nc-hr")
    yield World(node, anon, chair, admin, body["meeting"]["id"], user_id)
    await node.close()
    await node.client.close()


async def send_raw(session: Session, method: str, path: str, raw: bytes) -> tuple[int, Any]:
    resp = await session.client.request(
        method,
        path,
        data=raw,
        headers={"X-CSRF-Token": session.csrf, "Content-Type": "application/json"},
    )
    assert resp.content_type == "application/json", await resp.text()
    return resp.status, await resp.json()


def assert_error_body(body: Any) -> None:
    """The one error shape of the API: ok false, a code, a message, maybe field messages."""
    assert isinstance(body, dict), body
    assert body["ok"] is False
    assert isinstance(body["error"], str)
    assert body["error"]
    assert isinstance(body["message"], str)
    assert set(body) <= {"ok", "error", "message", "fields"}, body
    if "fields" in body:
        assert isinstance(body["fields"], dict)
        assert body["fields"]
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in body["fields"].items())


# -- malformed JSON ----------------------------------------------------------------------------

# (who sends it, method, path); "{mid}" and "{uid}" are filled in from the world.
JSON_ENDPOINTS = {
    "login": ("anon", "POST", "/api/login"),
    "create-meeting": ("chair", "POST", "/api/meetings"),
    "edit-meeting": ("chair", "PATCH", "/api/meetings/{mid}"),
    "add-unit": ("admin", "POST", "/api/units"),
    "rename-unit": ("admin", "PATCH", "/api/units/CM-NC"),
    "add-user": ("admin", "POST", "/api/users"),
    "change-user": ("admin", "PATCH", "/api/users/{uid}"),
}

MALFORMED = {
    "not-json": b"{title: 'Hop'}",
    "truncated": b'{"title": "Hop"',
    "json-array": b'[{"title": "Hop"}]',
    "json-string": b'"Hop giao ban"',
    "json-number": b"42",
    "json-null": b"null",
    "empty-body": b"",
    "invalid-utf8": b'{"title": "H\xff\xfep"}',
    "deeply-nested": b"[" * 100_000 + b"]" * 100_000,
    "number-past-int-digit-limit": b'{"duration_minutes": ' + b"9" * 5000 + b"}",
}


def fill(path: str, world: World) -> str:
    return path.format(mid=world.meeting_id, uid=world.user_id)


@pytest.mark.parametrize("endpoint", list(JSON_ENDPOINTS))
@pytest.mark.parametrize("malformed", list(MALFORMED))
async def test_malformed_json_body_answers_bad_json(
    world: World, endpoint: str, malformed: str
) -> None:
    who, method, path = JSON_ENDPOINTS[endpoint]
    before = await world.meeting()
    status, body = await send_raw(
        world.session(who), method, fill(path, world), MALFORMED[malformed]
    )
    assert (status, body["error"]) == (400, "bad_json"), body
    assert_error_body(body)
    assert await world.meeting() == before


# -- wrong types and missing fields ------------------------------------------------------------


def valid_meeting() -> dict[str, Any]:
    return {
        "title": "Họp chuyên đề",
        "starts_at": (tomorrow() + timedelta(days=2)).isoformat(),
        "duration_minutes": 90,
        "invited_units": ["CM-NC-HR"],
    }


PAST = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()

# (case id, change to a valid body: a value, or None to drop the field, field named in error)
BAD_MEETING_FIELDS = [
    ("title-number", {"title": 5}, "title"),
    ("title-blank", {"title": "   "}, "title"),
    ("title-too-long", {"title": "x" * 301}, "title"),
    ("starts-at-words", {"starts_at": "tomorrow"}, "starts_at"),
    ("starts-at-no-offset", {"starts_at": "2031-03-01T08:00:00"}, "starts_at"),
    ("starts-at-impossible-date", {"starts_at": "2031-02-30T08:00:00+07:00"}, "starts_at"),
    ("starts-at-in-past", {"starts_at": PAST}, "starts_at"),
    ("starts-at-year-9999", {"starts_at": "9999-12-31T20:00:00+00:00"}, "starts_at"),
    ("starts-at-overflows-utc", {"starts_at": "9999-12-31T23:00:00-05:00"}, "starts_at"),
    ("duration-text", {"duration_minutes": "x"}, "duration_minutes"),
    ("duration-too-short", {"duration_minutes": 3}, "duration_minutes"),
    ("duration-too-long", {"duration_minutes": 100_000}, "duration_minutes"),
    ("duration-fraction", {"duration_minutes": 90.5}, "duration_minutes"),
    ("invited-units-not-list", {"invited_units": "CM-NC"}, "invited_units"),
    ("invited-subtrees-not-list", {"invited_subtrees": "CM-NC"}, "invited_subtrees"),
    ("invited-unknown-unit", {"invited_units": ["CM-XX"]}, "invited_units"),
    ("description-number", {"description": 7}, "description"),
    ("unknown-extra-field", {"room": "Phòng 1"}, "room"),
]
MISSING_MEETING_FIELDS = ["title", "starts_at"]


def _invalid(body: Any, field: str) -> None:
    assert body["error"] == "invalid_field", body
    assert_error_body(body)
    assert field in body["fields"], body
    assert set(body["fields"]) == {field}, body


@pytest.mark.parametrize(
    ("change", "field"), [pytest.param(c, f, id=i) for i, c, f in BAD_MEETING_FIELDS]
)
async def test_scheduling_with_bad_field_names_that_field(
    world: World, change: dict[str, Any], field: str
) -> None:
    before = await world.meetings_count()
    status, body = await world.chair.call("POST", "/api/meetings", {**valid_meeting(), **change})
    assert status == 400, body
    _invalid(body, field)
    assert await world.meetings_count() == before


@pytest.mark.parametrize("field", MISSING_MEETING_FIELDS)
async def test_scheduling_without_required_field_names_that_field(world: World, field: str) -> None:
    data = valid_meeting()
    del data[field]
    status, body = await world.chair.call("POST", "/api/meetings", data)
    assert status == 400, body
    _invalid(body, field)


async def test_valid_meeting_body_used_by_these_tests_is_accepted(world: World) -> None:
    """The control for the cases above: only the change made each one fail."""
    status, body = await world.chair.call("POST", "/api/meetings", valid_meeting())
    assert status == 201, body


@pytest.mark.parametrize(
    ("change", "field"), [pytest.param(c, f, id=i) for i, c, f in BAD_MEETING_FIELDS]
)
async def test_editing_with_bad_field_names_that_field_and_changes_nothing(
    world: World, change: dict[str, Any], field: str
) -> None:
    before = await world.meeting()
    status, body = await world.chair.call(
        "PATCH", f"/api/meetings/{world.meeting_id}", {"title": "Không được lưu", **change}
    )
    assert status == 400, body
    _invalid(body, field)
    assert await world.meeting() == before


@pytest.mark.parametrize(
    ("data", "field"),
    [
        pytest.param({"username": 5, "password": "hoinghi-demo"}, "username", id="name-number"),
        pytest.param({"username": "chutri"}, "password", id="no-password"),
        pytest.param({"password": "hoinghi-demo"}, "username", id="no-username"),
        pytest.param({"username": "", "password": "x"}, "username", id="name-empty"),
        pytest.param(
            {"username": "chutri", "password": ["hoinghi-demo"]}, "password", id="password-list"
        ),
        pytest.param(
            {"username": "chutri", "password": "x", "remember": True}, "remember", id="extra"
        ),
    ],
)
async def test_login_with_bad_field_names_that_field(
    world: World, data: dict[str, Any], field: str
) -> None:
    status, body = await world.anon.call("POST", "/api/login", data)
    assert status == 400, body
    _invalid(body, field)


# -- unknown and malformed ids -----------------------------------------------------------------

BAD_IDS = {
    "unknown": "987654",
    "non-numeric": "abc",
    "negative": "-1",
    "huge": "99999999999999999999999",
    "float": "1.5",
}


@pytest.mark.parametrize("meeting_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
@pytest.mark.parametrize(
    ("method", "suffix", "data"),
    [
        pytest.param("GET", "", None, id="get"),
        pytest.param("PATCH", "", {"title": "x"}, id="patch"),
        pytest.param("POST", "/cancel", None, id="cancel"),
    ],
)
async def test_api_meeting_that_does_not_exist_is_404(
    world: World, meeting_id: str, method: str, suffix: str, data: Any
) -> None:
    status, body = await world.chair.call(method, f"/api/meetings/{meeting_id}{suffix}", data)
    assert (status, body["error"]) == (404, "meeting_not_found"), body
    assert_error_body(body)


@pytest.mark.parametrize("meeting_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
@pytest.mark.parametrize(
    ("method", "suffix"),
    [
        pytest.param("GET", "", id="view"),
        pytest.param("GET", "/edit", id="edit"),
        pytest.param("POST", "/edit", id="save"),
        pytest.param("POST", "/cancel", id="cancel"),
    ],
)
async def test_page_of_meeting_that_does_not_exist_is_404(
    world: World, meeting_id: str, method: str, suffix: str
) -> None:
    # A complete, valid form: only the id is wrong.
    start = local(world, tomorrow() + timedelta(days=3))
    form = form_for(world, start) if method == "POST" else None
    resp = await world.chair.client.request(
        method, f"/meetings/{meeting_id}{suffix}", data=form, allow_redirects=False
    )
    html = await resp.text()
    assert resp.status == 404, html
    assert "data-error-code=" in html  # the error page, not a bare traceback text
    if meeting_id.isdigit():
        assert 'data-error-code="meeting_not_found"' in html


@pytest.mark.parametrize("user_id", list(BAD_IDS.values()), ids=list(BAD_IDS))
async def test_changing_user_that_does_not_exist_is_404(world: World, user_id: str) -> None:
    status, body = await world.admin.call("PATCH", f"/api/users/{user_id}", {"full_name": "X"})
    assert (status, body["error"]) == (404, "user_not_found"), body


# -- the meeting form --------------------------------------------------------------------------


def form_for(world: World, starts_at: str, title: str = "Họp qua biểu mẫu") -> dict[str, str]:
    return {
        "csrf_token": world.chair.csrf,
        "title": title,
        "description": "",
        "starts_at": starts_at,
        "duration_minutes": "90",
        "invited_subtrees": "CM-NC",
    }


def local(world: World, when: datetime) -> str:
    return when.astimezone(world.node.app[CTX].settings.tz).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(
    ("starts_at", "message"),
    [
        pytest.param("31/02/2031 8h", "datetime", id="not-a-date"),
        pytest.param("2031-02-30T08:00", "datetime", id="impossible-date"),
        pytest.param("", "datetime", id="empty"),
        pytest.param("past", "must not be in the past", id="in-the-past"),
    ],
)
async def test_meeting_form_with_bad_start_shows_the_form_again_with_the_error(
    world: World, starts_at: str, message: str
) -> None:
    if starts_at == "past":
        starts_at = local(world, datetime.now(UTC) - timedelta(days=1))
    before = await world.meetings_count()
    resp = await world.chair.client.post(
        "/meetings/new",
        data=form_for(world, starts_at, "Họp giữ nguyên tiêu đề"),
        allow_redirects=False,
    )
    html = await resp.text()
    assert resp.status == 400, html
    assert 'action="/meetings/new"' in html
    assert 'value="Họp giữ nguyên tiêu đề"' in html  # what was typed is kept
    error = html.split('name="starts_at"', 1)[1].split("</label>", 1)[0]
    assert '<span class="field-error">' in error
    assert message in error
    assert html.count('class="field-error"') == 1  # only the start time is marked
    assert await world.meetings_count() == before


async def test_meeting_form_with_good_start_is_accepted(world: World) -> None:
    """The control for the form cases above."""
    resp = await world.chair.client.post(
        "/meetings/new",
        data=form_for(world, local(world, tomorrow() + timedelta(days=3))),
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    assert resp.headers["Location"].endswith("?flash=created")


async def test_edit_form_with_bad_start_shows_the_form_again_and_saves_nothing(
    world: World,
) -> None:
    before = await world.meeting()
    resp = await world.chair.client.post(
        f"/meetings/{world.meeting_id}/edit",
        data=form_for(world, "ngày mai", "Không được lưu"),
        allow_redirects=False,
    )
    html = await resp.text()
    assert resp.status == 400, html
    assert f'action="/meetings/{world.meeting_id}/edit"' in html
    assert '<span class="field-error">' in html.split('name="starts_at"', 1)[1]
    assert await world.meeting() == before


# -- arbitrary JSON ----------------------------------------------------------------------------


def str_iso(value: datetime) -> str:
    return value.isoformat()


json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)


json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
# Start times anywhere in the calendar, with and without an offset, often in the future
# (so that requests get through), and often on the calendar's first and last day, where
# converting between zones leaves datetime's range.
calendar_ends = st.datetimes(min_value=datetime(9999, 12, 31)) | st.datetimes(
    max_value=datetime(1, 1, 1, 23, 59)
)
start_times = st.one_of(
    st.datetimes(min_value=datetime(2030, 1, 1), timezones=st.timezones()).map(str_iso),
    st.datetimes(timezones=st.timezones()).map(str_iso),
    calendar_ends.flatmap(lambda d: st.timezones().map(lambda z: d.replace(tzinfo=z))).map(str_iso),
    st.datetimes().map(str_iso),
    st.integers(),
)
unit_codes = st.lists(
    st.sampled_from(["CM-NC", "CM-NC-HR", "CM-NH", "CM-TVT-KB"]), min_size=1, max_size=3
)
any_codes = st.lists(st.sampled_from(["CM-NC", "CM-NC-HR", "CM", "CM-XX", "", " CM-NH "]))


def objects(
    required: dict[str, st.SearchStrategy[Any]], optional: dict[str, st.SearchStrategy[Any]]
) -> st.SearchStrategy[Any]:
    """Any JSON value, or an object of the endpoint's fields with mostly plausible values:
    as drawn, with one field replaced by any JSON value, with one left out, or with one more.
    """
    plausible = st.fixed_dictionaries(required, optional=optional)
    keys = st.sampled_from([*required, *optional])
    return st.one_of(
        json_values,
        plausible,
        st.builds(lambda d, k, v: {**d, k: v}, plausible, keys, json_values),
        st.builds(lambda d, k: {x: y for x, y in d.items() if x != k}, plausible, keys),
        st.builds(lambda d, k, v: {**d, k: v}, plausible, st.text(max_size=10), json_values),
    )


meeting_bodies = objects(
    {
        "title": st.text(min_size=1, max_size=310),
        "starts_at": start_times,
        "invited_units": unit_codes | any_codes,
    },
    {
        "description": st.text(max_size=50),
        "duration_minutes": st.integers(0, 2000) | st.integers(),
        "invited_subtrees": unit_codes | any_codes,
    },
)
login_bodies = objects(
    {
        "username": st.sampled_from(["chutri", "kt.cm-nc-hr", "CHUTRI "]) | st.text(max_size=70),
        "password": st.text(max_size=300),
    },
    {},
)


def check_answer(status: int, body: Any) -> None:
    event(f"{status} {body.get('error', '') if isinstance(body, dict) else ''}")
    assert status < 500, body
    if status >= 400:
        assert_error_body(body)
    else:
        assert body["ok"] is True, body


async def check_pages_show(world: World, meeting_id: int) -> None:
    """What the API accepted, the pages can show: its detail and edit form."""
    for path in (f"/meetings/{meeting_id}", f"/meetings/{meeting_id}/edit"):
        resp = await world.chair.client.get(path, allow_redirects=False)
        assert resp.status == 200, (path, await resp.text())


async def post_json(session: Session, method: str, path: str, value: Any) -> tuple[int, Any]:
    return await send_raw(session, method, path, json.dumps(value).encode())


@settings(max_examples=60, deadline=None)
@given(value=meeting_bodies)
async def test_any_json_to_schedule_a_meeting_gets_a_clean_answer(world: World, value: Any) -> None:
    status, body = await post_json(world.chair, "POST", "/api/meetings", value)
    check_answer(status, body)
    if status == 201:
        await check_pages_show(world, body["meeting"]["id"])


@settings(max_examples=60, deadline=None)
@given(value=meeting_bodies)
async def test_any_json_to_edit_a_meeting_gets_a_clean_answer(world: World, value: Any) -> None:
    status, body = await post_json(world.chair, "PATCH", f"/api/meetings/{world.meeting_id}", value)
    check_answer(status, body)
    if status == 200:
        await check_pages_show(world, world.meeting_id)


@settings(max_examples=60, deadline=None)
@given(value=login_bodies)
async def test_any_json_to_log_in_gets_a_clean_answer(world: World, value: Any) -> None:
    status, body = await post_json(world.anon, "POST", "/api/login", value)
    check_answer(status, body)
    assert status != 200, body  # no generated body holds a real password
