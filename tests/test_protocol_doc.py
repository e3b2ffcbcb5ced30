"""docs/protocol.md keeps up with the code: every event the namespace handles, every event the
node sends, every payload field with its limits, every error code, every layout slot and
every key of the state object must be in it (and nothing it lists may be stale)."""

from __future__ import annotations

import ast
import inspect
import re
import textwrap
import typing
from functools import cache
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from aiohttp import web
from pydantic import BaseModel

from rooms.meeting import CHAIR, SITE, LiveMeeting, Participant
from rooms.peer import CHAIR_LAYOUT, SITE_LAYOUT
from rooms.rollcall import RollCall
from rooms.roster import Happening, InvitedSite
from server.auth import SESSION_COOKIE
from server.sockets.protocol import ERROR_CODES, EVENTS, SERVER_EVENTS, Event
from server.sockets.signaling import NAMESPACE, MeetingNamespace

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


@cache
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def sections() -> dict[str, str]:
    """Text under each ``### `name``` heading, up to the next heading."""
    out: dict[str, str] = {}
    name: str | None = None
    for line in doc().splitlines():
        heading = re.match(r"^#{1,6} ", line)
        if heading:
            match = re.match(r"^### `([^`]+)`\s*$", line)
            name = match.group(1) if match else None
            if name is not None:
                out[name] = ""
            continue
        if name is not None:
            out[name] += line + "\n"
    return out


def handled_events() -> set[str]:
    """The events the namespace dispatches, read from a real (unattached) namespace."""
    return set(MeetingNamespace(web.Application()).handlers)


CLIENT_EVENTS = sorted(set(EVENTS) | handled_events())


def test_the_doc_names_the_namespace_and_the_cookie() -> None:
    assert f"`{NAMESPACE}`" in doc()
    assert f"`{SESSION_COOKIE}`" in doc()
    assert "/socket.io/" in doc()


@pytest.mark.parametrize("event", CLIENT_EVENTS)
def test_every_client_event_has_its_section(event: str) -> None:
    assert event in sections(), f"docs/protocol.md has no '### `{event}`' section"
    assert sections()[event].strip(), f"the section of `{event}` is empty"


@pytest.mark.parametrize("event", SERVER_EVENTS)
def test_every_node_event_has_its_section(event: str) -> None:
    assert event in sections(), f"docs/protocol.md has no '### `{event}`' section"
    assert sections()[event].strip(), f"the section of `{event}` is empty"


def test_no_section_documents_an_event_that_does_not_exist() -> None:
    assert set(sections()) <= set(CLIENT_EVENTS) | set(SERVER_EVENTS)


def _fields(model: Any) -> dict[str, Any]:
    """A payload model's fields, with those of the objects listed in it (``link_stats``'s
    slot reports)."""
    fields = dict(model.model_fields)
    for info in model.model_fields.values():
        for arg in typing.get_args(info.annotation):
            if isinstance(arg, type) and issubclass(arg, Event):
                fields.update(_fields(arg))
    return fields


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_payload_field_is_in_its_event_section(event: str) -> None:
    text = sections().get(event, "")
    model = EVENTS[event]
    fields = _fields(model)
    for name in fields:
        assert f"`{name}`" in text, f"field `{name}` of `{event}` is not in its section"
    # Field tables list only real fields (of the payload, or of a list of objects in it).
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert rows <= set(fields), f"`{event}` documents unknown fields {rows - set(fields)}"
    if not model.model_fields:
        assert "`{}`" in text, f"`{event}` takes no fields: say its payload is {{}}"


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_field_limit_is_in_its_event_section(event: str) -> None:
    text = sections().get(event, "")
    for name, info in _fields(EVENTS[event]).items():
        for rule in info.metadata:
            for attr in ("min_length", "max_length", "ge", "le", "gt", "lt"):
                value = getattr(rule, attr, None)
                if value is not None:
                    assert re.search(rf"\b{value}\b", text), (
                        f"limit {attr}={value} of `{event}`.`{name}` is not in its section"
                    )


def test_the_field_limits_are_read_at_all() -> None:
    # The limit test above must see the limits, or it would pass on anything.
    rules = [r for r in EVENTS["offer"].model_fields["sdp"].metadata]
    assert any(isinstance(r, annotated_types.MaxLen) for r in rules)


def test_every_error_code_is_in_the_table() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| .+\|$", doc(), flags=re.MULTILINE)
    for code in ERROR_CODES:
        assert code in rows, f"error code `{code}` has no row in the error table"


def test_the_error_table_lists_only_real_codes() -> None:
    table = doc().split("## 8. Error codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert rows, "no error table under '## 8. Error codes'"
    assert set(rows) == set(ERROR_CODES)


def test_every_error_code_named_in_an_event_section_is_real() -> None:
    for event in EVENTS:
        text = sections().get(event, "")
        paragraph = text.split("Errors:", 1)[1].split("\n\n", 1)[0] if "Errors:" in text else ""
        for code in re.findall(r"`([a-z_]+)`", paragraph):
            assert code in ERROR_CODES, f"`{event}` names an unknown error code `{code}`"


@pytest.mark.parametrize(("role", "layout"), [("site", SITE_LAYOUT), ("chair", CHAIR_LAYOUT)])
def test_every_layout_slot_is_in_its_table_in_order(role: str, layout: Any) -> None:
    for index, slot in enumerate(layout):
        public = slot.public()
        row = (
            rf"^\| {index} \| `{re.escape(public['slot'])}` \| {public['kind']} \| "
            rf"`{public['direction']}` \|"
        )
        assert re.search(row, doc(), flags=re.MULTILINE), f"{role} slot {index}: {public}"


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


async def test_every_state_key_is_in_the_state_section() -> None:
    # A real live meeting with a chair and a site holding the floor and a raised hand,
    # so every optional part of the state is present.
    live = LiveMeeting(1, "Họp thử", "CM", lambda _live: None)
    chair = Participant("CM", CHAIR, "Tỉnh Cà Mau", ["Tỉnh Cà Mau"], 1, "sid-chair")
    site = Participant(
        "CM-NC-HR", SITE, "Xã Hàm Rồng", ["Tỉnh Cà Mau", "Huyện Năm Căn", "Xã Hàm Rồng"], 2, "s"
    )
    other = Participant("CM-NC", SITE, "Huyện Năm Căn", ["Tỉnh Cà Mau", "Huyện Năm Căn"], 3, "o")
    try:
        for p in (chair, site, other):
            await live.join(p)
        live.give_floor("CM-NC-HR")
        live.raise_hand(other, True)
        # Invited sites, one present with a head count, and an open roll call it answered.
        path = ("CM", "CM-NC", "CM-NC-HR")
        live.roster.invite(
            [InvitedSite("CM-NC-HR", "Xã Hàm Rồng", "commune", path, "CM-NC", "Năm Căn", "")]
        )
        live.roll_call = RollCall(number=1)
        for seq, (kind, count) in enumerate((("join", None), ("roll_answer", 20)), 1):
            live.roster.apply(
                Happening(
                    "root",
                    seq,
                    "CM-NC-HR",
                    kind,
                    1.0,
                    head_count=count,
                    roll_call=live.roll_call.id,
                )
            )
        chair_state, site_state = live.state_for(chair), live.state_for(site)
    finally:
        await live.close()
    assert chair_state["queue"]
    assert chair_state["floor"] is not None
    assert chair_state["roster"]["sites"]
    assert chair_state["roll_call"]["tally"]["answers"] == {"CM-NC-HR": 20}
    assert site_state["you"]["head_count"] == 20
    text = sections().get("state", "")
    # ``tally.answers`` is keyed by unit code, not by a name of the protocol.
    for key in sorted((keys_of(chair_state) | keys_of(site_state)) - {"CM-NC-HR"}):
        assert f"`{key}`" in text, f"state key `{key}` is not in the `state` section"
    for status in ("waiting", "live", "ended"):
        assert f'`"{status}"`' in text, f"state status {status!r} is not in the `state` section"


# -- the JSON API (section 11) -----------------------------------------------------------------

API_SECTION = "## 11. The HTTP JSON API"
ROW = re.compile(
    r"^\| `(GET|POST|PATCH|PUT|DELETE) (/api/[^` ]*)`(?: `\{([^}]*)\}`)?", flags=re.MULTILINE
)


def api_text() -> str:
    return doc().split(API_SECTION, 1)[1].split("\n## ", 1)[0]


def template(path: str) -> str:
    """A route's path with its placeholders unnamed: /api/users/{user_id} -> /api/users/{}."""
    return re.sub(r"\{[^}]*\}", "{}", path)


@cache
def api_routes() -> dict[tuple[str, str], Any]:
    """Every (method, path) under /api/ in a real app's route table, with its handler."""
    from server.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(Path("/nonexistent"), "sqlite+aiosqlite:///:memory:"))
    out: dict[tuple[str, str], Any] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter") or ""
        if path.startswith("/api/") and route.method != "HEAD":
            out[(route.method, template(path))] = route.handler
    return out


def resolve(expr: ast.expr, names: dict[str, Any]) -> Any:
    """The object a name or dotted name (``meetings.MeetingIn``) refers to in a module."""
    if isinstance(expr, ast.Name):
        return names[expr.id]
    assert isinstance(expr, ast.Attribute), ast.dump(expr)
    return getattr(resolve(expr.value, names), expr.attr)


def body_model(handler: Any) -> type[BaseModel] | None:
    """The pydantic model the handler reads its body with (``read_json(request, Model)``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(handler)))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and (node.func.id if isinstance(node.func, ast.Name) else node.func.attr) == "read_json"
        ):
            model = resolve(node.args[1], handler.__globals__)
            assert isinstance(model, type), model
            assert issubclass(model, BaseModel), model
            return model
    return None


def doc_rows() -> dict[tuple[str, str], set[str] | None]:
    rows: dict[tuple[str, str], set[str] | None] = {}
    for method, path, fields in ROW.findall(api_text()):
        names = {f.strip() for f in fields.split(",") if f.strip()} if fields else None
        rows[(method, template(path))] = names
    return rows


def test_the_api_routes_are_read_at_all() -> None:
    assert ("POST", "/api/login") in api_routes()
    assert body_model(api_routes()[("POST", "/api/meetings")]) is not None
    assert body_model(api_routes()[("GET", "/api/me")]) is None


def test_every_api_route_has_its_row_and_every_row_is_a_route() -> None:
    routes, rows = set(api_routes()), set(doc_rows())
    assert not routes - rows, f"routes missing from section 11's table: {sorted(routes - rows)}"
    assert not rows - routes, f"section 11 lists routes that do not exist: {sorted(rows - routes)}"


@pytest.mark.parametrize("route", sorted(api_routes()), ids=" ".join)
def test_every_request_field_is_in_its_route_row_and_described(route: tuple[str, str]) -> None:
    model = body_model(api_routes()[route])
    listed = doc_rows().get(route)
    if model is None:
        assert listed is None, f"{route} takes no body but its row lists {listed}"
        return
    assert listed == set(model.model_fields), (
        f"the row of {route} lists {listed}, the body has {sorted(model.model_fields)}"
    )
    # Each field's type and limits are described after the table.
    described = api_text().split("**Bodies.**", 1)[1]
    for name in model.model_fields:
        assert f"`{name}`" in described, f"field `{name}` of {route} is not described"


# One request per route, in an order that works on a fresh demo node: (user, method, path,
# body). A new route needs one here, or the next test fails.
SAMPLES: list[tuple[str, str, str, Any]] = [
    ("chutri", "GET", "/api/csrf", None),
    ("chutri", "GET", "/api/me", None),
    ("chutri", "POST", "/api/meetings", "MEETING"),
    ("chutri", "GET", "/api/meetings", None),
    ("chutri", "GET", "/api/meetings/{meeting}", None),
    ("chutri", "GET", "/api/meetings/{meeting}/attendance", None),
    ("chutri", "GET", "/api/meetings/{meeting}/monitor", "LIVE"),
    ("chutri", "GET", "/api/reports/attendance", None),
    ("chutri", "PATCH", "/api/meetings/{meeting}", {"title": "Họp đã đổi tên"}),
    ("chutri", "POST", "/api/meetings/{meeting}/cancel", None),
    ("quantri", "GET", "/api/units", None),
    (
        "quantri",
        "POST",
        "/api/units",
        {"code": "CM-X", "name": "Xã Thử", "level": "commune", "parent": "CM-NC"},
    ),
    ("quantri", "PATCH", "/api/units/{unit}", {"name": "Xã Thử Lại"}),
    ("quantri", "GET", "/api/users", None),
    (
        "quantri",
        "POST",
        "/api/users",
        {
            "username": "kt.thu",
            "full_name": "Kỹ thuật thử",
            "role": "operator",
            "unit": "CM-X",
            "password": "mat-khau-thu",
        },
    ),
    ("quantri", "PATCH", "/api/users/{user}", {"full_name": "Kỹ thuật thử lại"}),
    ("quantri", "POST", "/api/users/{user}/unlock", None),
    ("quantri", "GET", "/api/links", None),
    ("chutri", "POST", "/api/logout", None),
]


async def test_every_answer_key_of_every_api_route_is_in_section_11(node: Any) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.live_helpers import Participant

    sessions = {name: await node.login(name) for name in ("chutri", "quantri")}
    # Login itself answers too: with a fresh session.
    anonymous = await node.anonymous()
    answers = [("POST", "/api/login", await anonymous.login("thuky", "hoinghi-demo"))]
    ids: dict[str, Any] = {"unit": "CM-X"}
    for user, method, path, body in SAMPLES:
        if body == "MEETING":
            body = {
                "title": "Họp kiểm tra tài liệu",
                "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                "invited_subtrees": ["CM-NC"],
            }
        concrete = path.format(**ids)
        if body == "LIVE":  # the route reads a meeting open on the node: its chair joins it
            chair = Participant(node, sessions[user])
            await chair.connect()
            assert (await chair.call("join", {"meeting_id": ids["meeting"]}))["ok"]
            status, answer = await sessions[user].call(method, concrete)
            await chair.close()
        else:
            status, answer = await sessions[user].call(method, concrete, body)
        assert status in (200, 201), (method, concrete, answer)
        if "meeting" in answer:
            ids["meeting"] = answer["meeting"]["id"]
        if "user" in answer and method == "POST" and path == "/api/users":
            ids["user"] = answer["user"]["id"]
        answers.append((method, template(path), answer))
    covered = {(m, p) for m, p, _ in answers}
    missing = set(api_routes()) - covered
    assert not missing, f"routes without a sample request here: {sorted(missing)}"
    text = api_text()
    for method, path, answer in answers:
        for key in sorted(keys_of(answer) - {"ok"}):
            assert f"`{key}`" in text or f'"{key}"' in text, (
                f"key `{key}` of the answer of {method} {path} is not in section 11"
            )


# Modules that serve HTML pages only: their errors are shown as pages, not API answers.
PAGE_MODULES = {"pages.py", "live_pages.py", "rendering.py", "redirects.py"}


def raised_api_codes() -> set[str]:
    """Every error code the HTTP side raises by name: ``AppError(status, "code", ...)``,
    ``not_found("what")`` (``what_not_found``), ``forbidden()``, ``invalid()``, and the codes
    the error middleware gives aiohttp's own errors."""
    codes = {"not_found", "method_not_allowed", "too_large"}
    helpers = {"forbidden": "forbidden", "invalid": "invalid_field"}
    root = Path(__file__).resolve().parent.parent / "server"
    for path in sorted(root.rglob("*.py")):
        if path.name in PAGE_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call) or not isinstance(
                node.func, ast.Name | ast.Attribute
            ):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            args = node.args
            if name == "AppError" and len(args) > 1 and isinstance(args[1], ast.Constant):
                codes.add(str(args[1].value))
            elif name == "not_found" and args and isinstance(args[0], ast.Constant):
                codes.add(f"{args[0].value}_not_found")
            elif name in helpers:
                codes.add(helpers[name])
    return codes


def test_every_http_error_code_is_in_section_11() -> None:
    codes = raised_api_codes()
    assert {"bad_json", "meeting_not_found", "forbidden", "csrf_failed"} <= codes
    text = api_text()
    missing = sorted(c for c in codes if not re.search(rf"[`\s]{c}`", text))
    assert not missing, f"error codes the HTTP side raises but section 11 does not name: {missing}"
