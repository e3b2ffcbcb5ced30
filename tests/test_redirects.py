"""Where a page sends the browser next: only a path on this site, whatever ``next`` carries.

Every entry point that takes a ``next`` (``/lang/...``, ``/login`` when already logged in,
the login page's hidden field and the login form's submission) is tried with values a
browser would turn into another site: tabs, newlines and CRs (which a browser drops from a
URL), backslashes (which it reads as slashes), scheme-relative and absolute URLs, and their
percent-encoded forms. Each must fall back to ``/meetings``.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest

from server.http.redirects import FALLBACK, safe_next
from tests.conftest import DEMO_PASSWORD, Node

HOSTILE = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\x7f/evil.example",
    "/\x85/evil.example",
    "/\u2028/evil.example",
    "//evil.example",
    "///evil.example",
    "//evil.example/meetings",
    "/\\evil.example",
    "\\/evil.example",
    "\\\\evil.example",
    "/\\/evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%0d/evil.example",
    "/%5cevil.example",
    "/%5Cevil.example",
    "%2F%2Fevil.example",
    "/%2F/evil.example",
    "/%2f%2fevil.example",
    "%5C%5Cevil.example",
    "https://evil.example/",
    "http://evil.example",
    "HTTPS://evil.example",
    "http:/evil.example",
    "http:evil.example",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example",
    "meetings",
    "/" + "a" * 5000,
]

SAFE = ["/meetings", "/meetings/5/live", "/admin/users?flash=user_added", "/meetings?a=b%20c"]


@pytest.mark.parametrize("value", HOSTILE, ids=ascii)
def test_hostile_next_value_falls_back_to_meetings(value: str) -> None:
    assert safe_next(value) == FALLBACK == "/meetings"


@pytest.mark.parametrize("value", SAFE)
def test_same_site_path_is_kept(value: str) -> None:
    assert safe_next(value) == value


def _query(value: str) -> str:
    return "next=" + quote(value, safe="")


async def test_language_switch_never_redirects_off_site(node: Node) -> None:
    browser = await node.anonymous()
    for value in HOSTILE:
        resp = await browser.client.get(f"/lang/en?{_query(value)}", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (303, "/meetings"), repr(value)
    resp = await browser.client.get("/lang/en?next=/login", allow_redirects=False)
    assert resp.headers["Location"] == "/login"


async def test_login_page_when_logged_in_never_redirects_off_site(node: Node) -> None:
    chair = await node.login("chutri")
    for value in HOSTILE:
        resp = await chair.client.get(f"/login?{_query(value)}", allow_redirects=False)
        assert (resp.status, resp.headers["Location"]) == (303, "/meetings"), repr(value)


async def test_login_page_hidden_next_field_is_same_site(node: Node) -> None:
    browser = await node.anonymous()
    for value in HOSTILE:
        resp = await browser.client.get(f"/login?{_query(value)}")
        html = await resp.text()
        assert resp.status == 200, html
        field = re.search(r'name="next" value="([^"]*)"', html)
        assert field is not None, html
        assert field.group(1) == "/meetings", repr(value)


async def test_login_form_next_field_never_redirects_off_site(node: Node) -> None:
    for value in [*HOSTILE, "/meetings/new"]:
        browser = await node.anonymous()
        await browser.fetch_csrf()
        resp = await browser.client.post(
            "/login",
            data={
                "csrf_token": browser.csrf,
                "username": "chutri",
                "password": DEMO_PASSWORD,
                "next": value,
            },
            allow_redirects=False,
        )
        expected = "/meetings/new" if value == "/meetings/new" else "/meetings"
        assert (resp.status, resp.headers["Location"]) == (303, expected), repr(value)
