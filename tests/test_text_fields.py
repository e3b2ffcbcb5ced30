"""Every text field refuses control characters (server/text.py).

The first test walks every pydantic model of the server package and feeds each string field
a NUL, an ESC, a right-to-left override and (single-line fields) a newline: a new model with
a plain ``str`` fails it. The others go through the real surfaces: the JSON API, the form
pages, a /meeting socket event and the ``hoinghi`` command.
"""

from __future__ import annotations

import importlib
import pkgutil
import sqlite3
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

import server
from server.text import LINE_MESSAGE, ControlCharacterError, control_free
from tests.conftest import Node
from tests.test_cli import hoinghi
from tests.test_signaling import (  # noqa: F401  (connect is a fixture)
    Connect,
    connect,
    schedule,
    tomorrow,
)

# Fields that are not text and keep every character. Each entry says why.
EXEMPT = {
    # SDP is a protocol text with CR LF line ends, checked by its own parser (rooms/peer.py).
    ("server.sockets.protocol", "Offer", "sdp"),
    ("server.cascade.nodelink", "RelayOffer", "sdp"),
    # A login's password is compared with the stored hash, never stored or shown: one with a
    # control character just fails like a wrong one (a different answer would say more).
    ("server.http.api", "LoginIn", "password"),
}
# Multi-line fields: a newline and a tab are allowed, every other control is refused.
MULTILINE = {
    ("server.meetings", "MeetingIn", "description"),
    ("server.meetings", "MeetingPatch", "description"),
}
REFUSED_EVERYWHERE = ["a\x00b", "a\x1bb", "a\u202eb", "a\x07b", "a\u2028b", "a\x7fb", "a\x85b"]
REFUSED_IN_LINES = ["a\nb", "a\tb", "a\rb"]


def server_models() -> list[type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    for info in pkgutil.walk_packages(server.__path__, "server."):
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if (
                isinstance(value, type)
                and issubclass(value, BaseModel)
                and value.__module__.startswith("server.")
            ):
                found[f"{value.__module__}.{value.__qualname__}"] = value
    return [found[key] for key in sorted(found)]


def _shape(annotation: Any) -> str | None:
    """How a field holds text: "str", "list" (of str), or None (not text)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _shape(typing.get_args(annotation)[0])
    if annotation is str:
        return "str"
    if origin in (typing.Union, types.UnionType):
        shapes = {_shape(arg) for arg in typing.get_args(annotation)} - {None}
        return shapes.pop() if shapes else None
    if origin in (list, tuple, set, frozenset):
        return "list" if any(_shape(a) for a in typing.get_args(annotation)) else None
    return None


def text_fields() -> list[tuple[type[BaseModel], str, str]]:
    fields = []
    for model in server_models():
        for name, info in model.model_fields.items():
            shape = _shape(info.annotation)
            if shape is not None:
                fields.append((model, name, shape))
    return fields


def _refuses(model: type[BaseModel], name: str, shape: str, text: str) -> bool:
    """Whether ``model`` refuses ``text`` in field ``name`` (other fields may be missing:
    only errors at this field count)."""
    value: Any = [text] if shape == "list" else text
    try:
        model.model_validate({name: value})
    except Exception as exc:  # ValidationError, or a model validator's own
        errors = getattr(exc, "errors", lambda: [])()
        return any(err["loc"] and err["loc"][0] == name for err in errors)
    return False


def test_the_walk_finds_the_wire_models() -> None:
    names = {f"{m.__module__}.{m.__qualname__}.{n}" for m, n, _ in text_fields()}
    for expected in (
        "server.meetings.MeetingIn.title",
        "server.meetings.MeetingPatch.invited_units",
        "server.http.admin.UserIn.full_name",
        "server.http.admin.UnitPatch.name",
        "server.http.api.LoginIn.username",
        "server.units.UnitEntry.name",
        "server.sockets.protocol.GiveFloor.unit",
        "server.cascade.nodelink.Hello.units",
        "server.cascade.nodelink.SiteReport.path",
        "server.cascade.nodelink.WatchOrder.unit",
        "server.config.Settings.public_url",
    ):
        assert expected in names


def test_every_text_field_of_every_model_refuses_control_characters() -> None:
    weak = []
    for model, name, shape in text_fields():
        key = (model.__module__, model.__qualname__, name)
        if key in EXEMPT:
            continue
        refused = list(REFUSED_EVERYWHERE)
        if key not in MULTILINE:
            refused += REFUSED_IN_LINES
        for text in refused:
            if not _refuses(model, name, shape, text):
                weak.append(f"{'.'.join(key)} takes {text!r}")
        if key in MULTILINE and _refuses(model, name, shape, "line one\nline two\tend"):
            weak.append(f"{'.'.join(key)} refuses a newline or tab")
    assert not weak, "\n".join(weak)


def test_control_free() -> None:
    assert control_free("Hội nghị  giao ban") == "Hội nghị  giao ban"
    assert control_free("a\r\nb\tc\n", multiline=True) == "a\nb\tc\n"
    for text, multiline in [
        ("a\nb", False),
        ("a\tb", False),
        ("a\rb", True),
        ("a\x00b", True),
        ("a\u2066b", True),
        ("a\u2029b", True),
        ("a\ud800b", True),
        ("a\x9bb", True),
    ]:
        with pytest.raises(ControlCharacterError) as caught:
            control_free(text, multiline=multiline)
        assert caught.value.index == 1
        assert f"U+{ord(text[1]):04X}" in str(caught.value)
    # Marks that only hint direction, and joiners in names, are not refused.
    assert control_free("a\u200eb\u200dc") == "a\u200eb\u200dc"


# -- the real surfaces ------------------------------------------------------------------------


async def _meeting_count(node: Node) -> int:
    status, body = await (await node.login("chutri")).call("GET", "/api/meetings")
    assert status == 200, body
    return len(body["meetings"])


async def test_api_meeting_create_and_patch_refuse_a_bell(node: Node) -> None:
    chair = await node.login("chutri")
    before = await _meeting_count(node)
    for body in (
        {"title": "Giao ban\x07"},
        {"title": "Giao ban", "description": "dòng\x1b[31m"},
        {"title": "Giao ban", "invited_units": ["CM-NC\x00"]},
        {"title": "\u202enab oaig"},
        {"title": "Giao\nban"},
    ):
        body = {"starts_at": tomorrow(), "invited_units": ["CM-NC"], **body}
        status, answer = await chair.call("POST", "/api/meetings", body)
        assert status == 400, (body, answer)
        assert answer["error"] == "invalid_field", answer
        assert set(answer["fields"]) <= {"title", "description", "invited_units.0"}, answer
    assert await _meeting_count(node) == before

    mid = await schedule(chair, invited_units=["CM-NC"])
    status, answer = await chair.call(
        "POST",
        "/api/meetings",
        {
            "title": "T",
            "description": "a\r\nb",
            "starts_at": tomorrow(),
            "invited_units": ["CM-NC"],
        },
    )
    assert status == 201, answer
    assert answer["meeting"]["description"] == "a\nb"
    for patch in ({"title": "Đổi\x07"}, {"description": "x\x00"}):
        status, answer = await chair.call("PATCH", f"/api/meetings/{mid}", patch)
        assert status == 400, (patch, answer)
        assert answer["error"] == "invalid_field"
        assert list(answer["fields"]) == list(patch), answer
    status, answer = await chair.call("GET", f"/api/meetings/{mid}")
    assert status == 200
    assert answer["meeting"]["title"] == "Hội nghị trực tuyến thử nghiệm"
    assert answer["meeting"]["description"] == ""


async def test_api_admin_refuses_control_characters(node: Node) -> None:
    admin = await node.login("quantri")
    status, answer = await admin.call(
        "POST",
        "/api/units",
        {"code": "CM-X", "name": "Xã\x07 Mới", "level": "commune", "parent": "CM-NC"},
    )
    assert (status, answer["error"], list(answer["fields"])) == (400, "invalid_field", ["name"])
    status, answer = await admin.call("PATCH", "/api/units/CM-NC", {"name": "Huyện\tNăm Căn"})
    assert (status, answer["error"], list(answer["fields"])) == (400, "invalid_field", ["name"])
    status, answer = await admin.call(
        "POST",
        "/api/users",
        {
            "username": "moi",
            "full_name": "Nguyễn\u202e Văn A",
            "role": "operator",
            "unit": "CM-NC",
            "password": "mat-khau-dai",
        },
    )
    assert (status, answer["error"], list(answer["fields"])) == (
        400,
        "invalid_field",
        ["full_name"],
    )
    status, answer = await admin.call(
        "POST",
        "/api/users",
        {
            "username": "moi",
            "full_name": "Nguyễn Văn A",
            "role": "operator",
            "unit": "CM-NC",
            "password": "mat-khau\x00dai",
        },
    )
    assert (status, answer["error"], list(answer["fields"])) == (
        400,
        "invalid_field",
        ["password"],
    )
    status, answer = await admin.call("GET", "/api/users")
    assert "moi" not in {u["username"] for u in answer["users"]}
    status, answer = await admin.call("GET", "/api/units")
    assert "CM-X" not in {u["code"] for u in answer["units"]}
    names = {u["code"]: u["name"] for u in answer["units"]}
    assert names["CM-NC"] == "Huyện Năm Căn"


async def test_login_with_a_control_character_is_a_wrong_password(node: Node) -> None:
    anonymous = await node.anonymous()
    await anonymous.fetch_csrf()
    status, answer = await anonymous.call(
        "POST", "/api/login", {"username": "chutri", "password": "hoinghi-demo\x00"}
    )
    assert (status, answer["error"]) == (401, "bad_credentials"), answer
    status, answer = await anonymous.call(
        "POST", "/api/login", {"username": "chu\x00tri", "password": "hoinghi-demo"}
    )
    assert status == 400, answer
    assert answer["error"] == "invalid_field", answer
    assert list(answer["fields"]) == ["username"]


async def test_login_page_with_a_nul_username_is_a_wrong_login(any_node: Node) -> None:
    # On PostgreSQL the failed-login bookkeeping once sent the NUL to the database: a 500.
    anonymous = await any_node.anonymous()
    await anonymous.fetch_csrf()
    for username, password in (("chu\x00tri", "hoinghi-demo"), ("chutri", "hoinghi-demo\x00")):
        resp = await anonymous.client.post(
            "/login",
            data={"csrf_token": anonymous.csrf, "username": username, "password": password},
            allow_redirects=False,
        )
        assert resp.status == 401, await resp.text()
        assert "Sai tên đăng nhập hoặc mật khẩu." in await resp.text()


async def test_form_pages_show_the_error_at_the_field_in_vietnamese(node: Node) -> None:
    chair = await node.login("chutri")
    before = await _meeting_count(node)
    resp = await chair.client.post(
        "/meetings/new",
        data={
            "csrf_token": chair.csrf,
            "title": "Giao ban\x07",
            "starts_at": "2030-01-02T08:00",
            "duration_minutes": "60",
            "invited_units": "CM-NC",
        },
    )
    page = await resp.text()
    assert resp.status == 400
    assert "không được chứa ký tự xuống dòng, tab hay ký tự điều khiển" in page
    assert "field-error" in page
    assert await _meeting_count(node) == before

    admin = await node.login("quantri")
    resp = await admin.client.post(
        "/admin/units",
        data={
            "csrf_token": admin.csrf,
            "code": "CM-X",
            "name": "Xã\x1b Mới",
            "level": "commune",
            "parent": "CM-NC",
        },
    )
    page = await resp.text()
    assert resp.status == 400, page
    assert "không được chứa ký tự xuống dòng, tab hay ký tự điều khiển" in page


async def test_socket_event_with_a_control_character_is_bad_request(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await connect(chair_session)
    await chair.ok("join", {"meeting_id": mid})
    for event, payload in (
        ("give_floor", {"unit": "CM-NC-HR\x00"}),
        ("mute", {"unit": "CM-NC\x1b", "muted": True}),
        ("watch", {"unit": "\u202eCM-NC", "watch": True}),
    ):
        ack = await chair.refused(event, payload, "bad_request")
        assert list(ack["fields"]) == ["unit"], ack
        assert ack["fields"]["unit"] == LINE_MESSAGE


def test_cli_user_add_refuses_a_control_character(tmp_path: Path) -> None:
    assert hoinghi(tmp_path, "migrate").returncode == 0
    assert hoinghi(tmp_path, "demo").returncode == 0
    for args in (
        ["user", "add", "moi", "--role", "operator", "--unit", "CM-NC", "--full-name", "A\x1bB"],
        ["user", "add", "moi", "--role", "operator", "--unit", "CM-NC", "--full-name", "A\nB"],
        ["user", "add", "moi", "--role", "operator", "--unit", "CM-NC\x07"],
    ):
        done = hoinghi(tmp_path, *args, stdin="mat-khau-dai\n")
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("hoinghi: "), done.stderr
        assert "Traceback" not in done.stderr
        assert "control characters" in lines[0]
    done = hoinghi(
        tmp_path,
        "user",
        "add",
        "moi",
        "--role",
        "operator",
        "--unit",
        "CM-NC",
        stdin="mat-khau\x01dai\n",
    )
    assert done.returncode == 2, done
    assert "password" in done.stderr, done
    with sqlite3.connect(tmp_path / "var" / "hoinghi.sqlite3") as conn:
        assert conn.execute("SELECT count(*) FROM users WHERE username = 'moi'").fetchone() == (0,)


def test_cli_node_add_refuses_a_control_character(tmp_path: Path) -> None:
    assert hoinghi(tmp_path, "migrate").returncode == 0
    assert hoinghi(tmp_path, "demo").returncode == 0
    for args in (
        ["node", "add", "CM-NC", "--units", "CM-NC\x1b"],
        ["node", "add", "CM-NC", "--units", "CM-NC", "--url", "http://a\x1bb"],
    ):
        done = hoinghi(tmp_path, *args)
        assert done.returncode == 2, done
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("hoinghi: "), done.stderr
        assert "Traceback" not in done.stderr
    assert "no nodes registered" in hoinghi(tmp_path, "node", "list").stdout
