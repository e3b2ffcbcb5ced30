"""The CSRF check refuses any token that is not the caller's, whatever its bytes: a token
with non-ASCII characters (or bytes that are not UTF-8 at all) answers ``403 csrf_failed``
on every state-changing route of the route table, never a 500."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import ClientResponse, web

from tests.conftest import Node, Session
from tests.raw_http import raw_exchange, status_of

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
BAD_TOKENS = ["é", "ñ" * 64, "токен", "\u4e2d\u6587", "tôi-là-token-hợp-lệ"]


def unsafe_routes(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path) of the route table that changes state, ids filled with 1."""
    found = set()
    for route in app.router.routes():
        if route.method not in UNSAFE_METHODS:
            continue
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        if not isinstance(path, str) or path.startswith("/socket.io/"):
            continue  # the sockets authenticate with the session cookie, not a CSRF token
        found.add((route.method, re.sub(r"\{[^}]+\}", "1", path)))
    return sorted(found)


async def error_code(resp: ClientResponse) -> str:
    if resp.content_type == "application/json":
        body: dict[str, Any] = await resp.json()
        return str(body["error"])
    html = await resp.text()
    found = re.search(r'data-error-code="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def _callers(node: Node) -> dict[str, Session]:
    anon = await node.anonymous()
    await anon.fetch_csrf()  # the pre-login cookie is set: there is a token to compare with
    return {"anon": anon, "chair": await node.login("chutri"), "admin": await node.login("quantri")}


def test_route_table_has_the_state_changing_routes_we_expect(node: Node) -> None:
    routes = unsafe_routes(node.app)
    assert ("POST", "/api/login") in routes
    assert ("POST", "/login") in routes
    assert ("PATCH", "/api/meetings/1") in routes
    assert len(routes) >= 10, routes


async def test_non_ascii_csrf_header_is_refused_on_every_unsafe_route(node: Node) -> None:
    callers = await _callers(node)
    for method, path in unsafe_routes(node.app):
        for who, session in callers.items():
            for token in BAD_TOKENS:
                resp = await session.client.request(
                    method, path, headers={"X-CSRF-Token": token}, allow_redirects=False
                )
                answer = (resp.status, await error_code(resp))
                assert answer == (403, "csrf_failed"), (method, path, who, token)


async def test_non_ascii_csrf_form_field_is_refused_on_every_unsafe_route(node: Node) -> None:
    callers = await _callers(node)
    for method, path in unsafe_routes(node.app):
        for who, session in callers.items():
            resp = await session.client.request(
                method, path, data={"csrf_token": "é", "title": "x"}, allow_redirects=False
            )
            answer = (resp.status, await error_code(resp))
            assert answer == (403, "csrf_failed"), (method, path, who)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(b"X-CSRF-Token: \xff\xfe", id="token-not-utf8"),
        pytest.param(b"X-CSRF-Token: \xc3\xa9", id="token-utf8-e-acute"),
        pytest.param(b"X-CSRF-Token: x\r\nCookie: hoinghi_pre=\xff\xfe", id="prelogin-not-utf8"),
        pytest.param(b"X-CSRF-Token: x\r\nCookie: hoinghi_session=\xff", id="session-not-utf8"),
    ],
)
async def test_token_or_cookie_that_is_not_text_is_refused_with_403(
    node: Node, header: bytes
) -> None:
    anon = await node.anonymous()
    await anon.fetch_csrf()
    cookie = anon.client.session.cookie_jar.filter_cookies(anon.client.make_url("/"))
    pre = cookie["hoinghi_pre"].value.encode()
    server = node.client.server
    request = (
        b"POST /api/logout HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n"
        + (b"" if b"Cookie" in header else b"Cookie: hoinghi_pre=" + pre + b"\r\n")
        + header
        + b"\r\n\r\n"
    )
    answer = await raw_exchange(str(server.host), int(server.port or 0), request)
    assert status_of(answer) == 403, answer
    assert b'"csrf_failed"' in answer, answer


@pytest.mark.parametrize("cookie", [b"hoinghi_session=\xff\xfe", b"hoinghi_pre=\xff\xfe"])
async def test_page_with_a_cookie_that_is_not_text_is_served(node: Node, cookie: bytes) -> None:
    server = node.client.server
    request = b"GET /login HTTP/1.1\r\nHost: x\r\nConnection: close\r\nCookie: " + cookie
    answer = await raw_exchange(str(server.host), int(server.port or 0), request + b"\r\n\r\n")
    assert status_of(answer) == 200, answer[:300]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # aiohttp decodes percent-escapes with replacement characters: just a wrong password
        pytest.param(b"username=chutri&password=%ff%fe", (401, "bad_credentials"), id="escaped"),
        pytest.param(b"username=chu\xff&password=\xfe", (400, "invalid_field"), id="raw-bytes"),
    ],
)
async def test_form_that_is_not_utf8_is_refused_not_500(
    node: Node, body: bytes, expected: tuple[int, str]
) -> None:
    anon = await node.anonymous()
    await anon.fetch_csrf()
    for token_in in ("form", "header"):
        data = body + (b"&csrf_token=" + anon.csrf.encode() if token_in == "form" else b"")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if token_in == "header":
            headers["X-CSRF-Token"] = anon.csrf
        resp = await anon.client.post("/login", data=data, headers=headers, allow_redirects=False)
        html = await resp.text()
        if expected[0] == 401:  # the login page again, with the error
            assert resp.status == 401, html
        elif token_in == "form":  # the token cannot be read from such a form
            assert (resp.status, await error_code(resp)) == (403, "csrf_failed")
        else:
            assert (resp.status, await error_code(resp)) == expected
