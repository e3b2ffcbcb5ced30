"""Static file routes answer 404 for a path that names no file, however long or odd: a name
past the file system's limit, a deep path, NUL, traversal, encoded forms. Every static route
of the route table is tried (``/static/``, ``/vendor/socket.io/``); never a 500."""

from __future__ import annotations

import pytest
from aiohttp import web

from tests.conftest import Node
from tests.raw_http import raw_exchange, status_of

ODD_NAMES = {
    "name-300": "a" * 300,
    "name-300-css": "a" * 300 + ".css",
    "name-5000": "a" * 5000,
    "deep-path": "a/" * 3000 + "x",
    "long-in-subdir": "b/" + "c" * 300,
    "long-after-file": "app.css/" + "d" * 300,
    "under-a-file": "app.css/x",
    "nul": "%00",
    "nul-inside": "a%00b",
    "not-utf8": "%ff%fe",
    "overlong-slash": "%c0%af",
    "traversal": "../../etc/passwd",
    "traversal-encoded": "..%2f..%2fetc%2fpasswd",
    "traversal-dots-encoded": "%2e%2e/%2e%2e/etc/passwd",
    "backslashes": "\\..\\x",
    "absolute": "/etc/passwd",
    "home": "~root",
}


def static_prefixes(app: web.Application) -> list[str]:
    return sorted(
        str(resource.get_info()["prefix"])
        for resource in app.router.resources()
        if isinstance(resource, web.StaticResource)
    )


def test_static_routes_are_found_in_the_route_table(node: Node) -> None:
    assert "/static" in static_prefixes(node.app)


@pytest.mark.parametrize("name", list(ODD_NAMES.values()), ids=list(ODD_NAMES))
async def test_odd_static_path_is_404_on_every_static_route(node: Node, name: str) -> None:
    server = node.client.server
    for prefix in static_prefixes(node.app):
        request = f"GET {prefix}/{name} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        answer = await raw_exchange(str(server.host), int(server.port or 0), request.encode())
        assert status_of(answer) == 404, (prefix, answer[:200])


async def test_existing_static_file_is_still_served(node: Node) -> None:
    resp = await node.client.get("/static/app.css")
    assert resp.status == 200
    assert "text/css" in resp.headers["Content-Type"]


LONG_VALUES = {"long-300": "a" * 300, "long-5000": "9" * 5000, "nul": "%00", "not-utf8": "%ff"}


def routes_with_parameters(app: web.Application) -> list[tuple[str, str]]:
    """Every (method, path template) of the route table whose path takes a value."""
    found = set()
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("formatter")
        if isinstance(path, str) and "{" in path and route.method != "*":
            found.add((route.method, path))
    return sorted(found)


@pytest.mark.parametrize("value", list(LONG_VALUES.values()), ids=list(LONG_VALUES))
async def test_long_or_odd_path_value_is_never_a_server_error(node: Node, value: str) -> None:
    import re

    admin = await node.login("quantri")
    chair = await node.login("chutri")
    routes = routes_with_parameters(node.app)
    assert ("GET", "/lang/{lang}") in routes
    for method, template in routes:
        path = re.sub(r"\{[^}]+\}", value, template)
        for session in (admin, chair):
            status, body = await session.call(method, path, json={})
            assert status < 500, (method, path[:80], body)
