"""Logging in and out, through pages and the JSON API, and what keeps accounts safe:
the failed-login limits, cookie flags, CSRF, server-side sessions, and real HTTPS."""

from __future__ import annotations

import re
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from http.cookies import Morsel, SimpleCookie
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import update

from server.auth import PRELOGIN_COOKIE, SESSION_COOKIE
from server.demo.tree import DEMO_PASSWORD
from server.models import LoginFailure, User, utcnow
from server.models import Session as SessionRow
from server.state import CTX
from server.tls import self_signed
from tests.conftest import Node, Session, make_settings, serve_node, start_node

WRONG_PASSWORD_VI = "Sai tên đăng nhập hoặc mật khẩu."
CSRF_FAILED_VI = "Biểu mẫu đã hết hạn hoặc không đến từ trang này"

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]


# -- helpers -------------------------------------------------------------------------------------


def set_cookies(resp: aiohttp.ClientResponse) -> dict[str, Morsel[str]]:
    """The cookies a response sets, by name, with their attributes."""
    out: dict[str, Morsel[str]] = {}
    for header in resp.headers.getall("Set-Cookie", []):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        out.update(jar)
    return out


def page_csrf(html: str) -> str:
    """The CSRF token of a page: the form's hidden input, which must match the meta tag."""
    field = re.search(r'<input type="hidden" name="csrf_token" value="([^"]+)">', html)
    meta = re.search(r'<meta name="csrf-token" content="([^"]+)">', html)
    assert field is not None, "no csrf_token field on the page"
    assert meta is not None, "no csrf-token meta tag on the page"
    assert field.group(1) == meta.group(1)
    return field.group(1)


async def api_login_response(
    session: Session, username: str, password: str, **headers: str
) -> aiohttp.ClientResponse:
    """POST /api/login with a fresh pre-login token; the raw response, whatever its status."""
    await session.fetch_csrf()
    return await session.client.post(
        "/api/login",
        json={"username": username, "password": password},
        headers={"X-CSRF-Token": session.csrf, **headers},
    )


async def try_login(node: Node, username: str, password: str) -> tuple[int, Any]:
    session = await node.anonymous()
    resp = await api_login_response(session, username, password)
    return resp.status, await resp.json()


async def form_login(
    session: Session, username: str, password: str
) -> tuple[aiohttp.ClientResponse, str]:
    page = await session.client.get("/login")
    assert page.status == 200
    token = page_csrf(await page.text())
    resp = await session.client.post(
        "/login",
        data={"csrf_token": token, "username": username, "password": password, "next": "/"},
        allow_redirects=False,
    )
    return resp, await resp.text()


async def set_user_active(node: Node, username: str, active: bool) -> None:
    admin = await node.login("quantri")
    status, body = await admin.call("GET", "/api/users")
    assert status == 200, body
    user_id = next(u["id"] for u in body["users"] if u["username"] == username)
    status, body = await admin.call("PATCH", f"/api/users/{user_id}", {"active": active})
    assert status == 200, body
    assert body["user"]["active"] is active


@pytest.fixture
async def forwarded_node(
    aiohttp_client: AiohttpClient, tmp_path: Path, sqlite_url: str
) -> AsyncIterator[Node]:
    """A demo node that trusts X-Forwarded-* headers (it sits behind a reverse proxy)."""
    started = await start_node(aiohttp_client, tmp_path, sqlite_url, trust_forwarded=True)
    yield started
    await started.close()


# -- JSON API --------------------------------------------------------------------------------------


async def test_api_login_me_and_logout(node: Node) -> None:
    session = await node.anonymous()
    status, body = await session.call("GET", "/api/me")
    assert status == 401
    assert body["error"] == "not_authenticated"

    body = await session.login("ChuTri ", DEMO_PASSWORD)  # case and spaces do not matter
    assert body["user"]["username"] == "chutri"
    assert body["user"]["role"] == "chair"
    assert body["user"]["unit"] == "CM"
    login_csrf = body["csrf_token"]

    status, body = await session.call("GET", "/api/me")
    assert status == 200
    assert body["user"]["username"] == "chutri"
    assert body["user"]["unit_name"] == "Tỉnh Cà Mau"
    assert body["csrf_token"] == login_csrf
    status, body = await session.call("GET", "/api/csrf")
    assert body["csrf_token"] == login_csrf

    status, body = await session.call("POST", "/api/logout")
    assert status == 200
    assert body == {"ok": True}
    status, body = await session.call("GET", "/api/me")
    assert status == 401
    assert body["error"] == "not_authenticated"


async def test_api_wrong_password_is_refused(node: Node) -> None:
    status, body = await try_login(node, "chutri", "not-the-password")
    assert status == 401
    assert body["ok"] is False
    assert body["error"] == "bad_credentials"
    assert body["message"] == "Wrong username or password."


async def test_api_unknown_user_gets_the_same_answer_as_wrong_password(node: Node) -> None:
    unknown = await try_login(node, "khong.ton.tai", DEMO_PASSWORD)
    wrong = await try_login(node, "chutri", "not-the-password")
    assert unknown[0] == wrong[0] == 401
    assert unknown[1] == wrong[1]


async def test_api_login_with_malformed_body_is_a_field_error(node: Node) -> None:
    session = await node.anonymous()
    await session.fetch_csrf()
    status, body = await session.call("POST", "/api/login", {"username": "chutri"})
    assert status == 400
    assert body["error"] == "invalid_field"
    assert "password" in body["fields"]


async def test_disabled_user_cannot_log_in_and_open_session_ends(node: Node) -> None:
    operator = await node.login("kt.cm-nc-hr")
    assert (await operator.call("GET", "/api/me"))[0] == 200

    await set_user_active(node, "kt.cm-nc-hr", False)

    status, body = await operator.call("GET", "/api/me")
    assert status == 401
    assert body["error"] == "not_authenticated"
    status, body = await try_login(node, "kt.cm-nc-hr", DEMO_PASSWORD)
    assert status == 401
    assert body["error"] == "bad_credentials"

    await set_user_active(node, "kt.cm-nc-hr", True)
    status, body = await try_login(node, "kt.cm-nc-hr", DEMO_PASSWORD)
    assert status == 200, body


# -- HTML pages ------------------------------------------------------------------------------------


async def test_login_page_form_logs_in_and_logout_form_logs_out(node: Node) -> None:
    browser = await node.anonymous()
    resp, _ = await form_login(browser, "chutri", DEMO_PASSWORD)
    assert resp.status == 303
    assert resp.headers["Location"] == "/"
    assert SESSION_COOKIE in set_cookies(resp)

    page = await browser.client.get("/meetings", allow_redirects=False)
    assert page.status == 200
    html = await page.text()
    assert "Chủ trì UBND tỉnh Cà Mau" in html
    token = page_csrf(html)

    # A logged-in visitor of /login is sent on to the meetings.
    resp = await browser.client.get("/login", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/meetings"

    resp = await browser.client.post("/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?flash=logged_out"
    page = await browser.client.get("/login?flash=logged_out")
    assert "Bạn đã đăng xuất." in await page.text()

    resp = await browser.client.get("/meetings", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login")


async def test_login_form_sends_user_back_to_the_page_they_asked_for(node: Node) -> None:
    browser = await node.anonymous()
    resp = await browser.client.get("/meetings/new", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?next=/meetings/new"
    page = await browser.client.get("/login?next=/meetings/new")
    token = page_csrf(await page.text())
    resp = await browser.client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": "chutri",
            "password": DEMO_PASSWORD,
            "next": "/meetings/new",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/meetings/new"


async def test_login_form_never_redirects_to_another_site(node: Node) -> None:
    browser = await node.anonymous()
    page = await browser.client.get("/login")
    token = page_csrf(await page.text())
    resp = await browser.client.post(
        "/login",
        data={
            "csrf_token": token,
            "username": "chutri",
            "password": DEMO_PASSWORD,
            "next": "//evil.example/",
        },
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/meetings"


async def test_login_page_shows_vietnamese_message_for_wrong_password(node: Node) -> None:
    browser = await node.anonymous()
    resp, html = await form_login(browser, "chutri", "not-the-password")
    assert resp.status == 401
    assert WRONG_PASSWORD_VI in html
    assert SESSION_COOKIE not in set_cookies(resp)
    # The username stays filled in, the password does not, and the form can be sent again.
    assert 'value="chutri"' in html
    assert "not-the-password" not in html
    token = page_csrf(html)
    retry = await browser.client.post(
        "/login",
        data={"csrf_token": token, "username": "chutri", "password": DEMO_PASSWORD},
        allow_redirects=False,
    )
    assert retry.status == 303


async def test_login_page_shows_the_same_message_for_unknown_user(node: Node) -> None:
    browser = await node.anonymous()
    resp, html = await form_login(browser, "khong.ton.tai", DEMO_PASSWORD)
    assert resp.status == 401
    assert WRONG_PASSWORD_VI in html


async def test_login_page_in_english_after_switching_language(node: Node) -> None:
    browser = await node.anonymous()
    resp = await browser.client.get("/lang/en?next=/login", allow_redirects=False)
    assert resp.status == 303
    resp, html = await form_login(browser, "chutri", "not-the-password")
    assert resp.status == 401
    assert "Wrong username or password." in html
    assert WRONG_PASSWORD_VI not in html


# -- failed-login limits ---------------------------------------------------------------------------


async def test_account_is_locked_after_five_failures_even_for_right_password(node: Node) -> None:
    for attempt in range(5):
        # Another spelling of the same name counts against the same account.
        name = "CHUTRI" if attempt == 4 else "chutri"
        status, body = await try_login(node, name, f"wrong-{attempt}")
        assert (status, body["error"]) == (401, "bad_credentials"), attempt

    status, body = await try_login(node, "chutri", DEMO_PASSWORD)
    assert status == 429
    assert body["error"] == "too_many_failures"
    assert body["message"] == "Too many failed logins. Try again in 15 minute(s)."
    assert body["fields"]["retry_after_minutes"] == "15"
    assert 14 * 60 < int(body["fields"]["retry_after_seconds"]) <= 15 * 60

    # The page says it in Vietnamese, with the minutes.
    browser = await node.anonymous()
    resp, html = await form_login(browser, "chutri", DEMO_PASSWORD)
    assert resp.status == 429
    assert "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút." in html
    assert SESSION_COOKIE not in set_cookies(resp)

    # Only that account from that address: another user from the same address still logs in.
    status, body = await try_login(node, "thuky", DEMO_PASSWORD)
    assert status == 200, body


async def test_four_failures_do_not_lock_and_success_resets_the_count(node: Node) -> None:
    for _ in range(4):
        assert (await try_login(node, "chutri", "wrong"))[0] == 401
    assert (await try_login(node, "chutri", DEMO_PASSWORD))[0] == 200
    for _ in range(4):
        assert (await try_login(node, "chutri", "wrong"))[0] == 401
    status, body = await try_login(node, "chutri", DEMO_PASSWORD)
    assert status == 200, body


async def test_account_lock_lifts_when_failures_leave_the_window(node: Node) -> None:
    for _ in range(5):
        await try_login(node, "chutri", "wrong")
    assert (await try_login(node, "chutri", DEMO_PASSWORD))[0] == 429

    # Ten of the fifteen minutes have passed: still locked, five minutes to wait.
    async with node.app[CTX].sessionmaker() as db, db.begin():
        await db.execute(update(LoginFailure).values(at=utcnow() - timedelta(minutes=10)))
    status, body = await try_login(node, "chutri", DEMO_PASSWORD)
    assert status == 429
    assert body["fields"]["retry_after_minutes"] == "5"

    async with node.app[CTX].sessionmaker() as db, db.begin():
        await db.execute(update(LoginFailure).values(at=utcnow() - timedelta(minutes=16)))
    status, body = await try_login(node, "chutri", DEMO_PASSWORD)
    assert status == 200, body


async def test_failures_on_many_accounts_from_one_address_do_not_lock_out_a_colleague(
    node: Node,
) -> None:
    # A whole commune sits behind one NAT address: someone there mistyping (or guessing)
    # on several accounts locks none but those accounts from there.
    for name in ("chutri", "thuky", "khong.ton.tai"):
        for _ in range(5):
            status, body = await try_login(node, name, "wrong")
            assert (status, body["error"]) == (401, "bad_credentials"), name
        assert (await try_login(node, name, "wrong"))[0] == 429
    status, body = await try_login(node, "quantri", DEMO_PASSWORD)
    assert status == 200, body


# -- cookies ---------------------------------------------------------------------------------------


async def test_session_cookie_is_httponly_lax_root_path_and_not_secure_over_http(
    node: Node,
) -> None:
    session = await node.anonymous()
    csrf_resp = await session.client.get("/api/csrf")
    pre = set_cookies(csrf_resp)[PRELOGIN_COOKIE]
    assert pre["httponly"] is True
    assert pre["samesite"] == "Lax"
    assert pre["path"] == "/"
    assert not pre["secure"]

    resp = await api_login_response(session, "chutri", DEMO_PASSWORD)
    assert resp.status == 200
    cookies = set_cookies(resp)
    cookie = cookies[SESSION_COOKIE]
    assert len(cookie.value) >= 32
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert not cookie["secure"]
    assert cookie["max-age"] == str(12 * 3600)
    # The pre-login cookie is dropped once logged in.
    assert cookies[PRELOGIN_COOKIE].value == ""
    assert "Strict-Transport-Security" not in resp.headers


async def test_session_cookie_is_secure_behind_trusted_https_proxy(forwarded_node: Node) -> None:
    session = await forwarded_node.anonymous()
    resp = await api_login_response(
        session, "chutri", DEMO_PASSWORD, **{"X-Forwarded-Proto": "https"}
    )
    assert resp.status == 200
    cookie = set_cookies(resp)[SESSION_COOKIE]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"


async def test_trusted_proxy_saying_http_gives_no_secure_cookie(forwarded_node: Node) -> None:
    session = await forwarded_node.anonymous()
    resp = await api_login_response(
        session, "chutri", DEMO_PASSWORD, **{"X-Forwarded-Proto": "http"}
    )
    assert resp.status == 200
    assert not set_cookies(resp)[SESSION_COOKIE]["secure"]


async def test_forwarded_https_header_is_ignored_without_trust_forwarded(node: Node) -> None:
    session = await node.anonymous()
    resp = await api_login_response(
        session, "chutri", DEMO_PASSWORD, **{"X-Forwarded-Proto": "https"}
    )
    assert resp.status == 200
    assert not set_cookies(resp)[SESSION_COOKIE]["secure"]
    assert "Strict-Transport-Security" not in resp.headers


async def test_forwarded_client_address_counts_for_the_pair_limit_when_trusted(
    aiohttp_client: AiohttpClient, tmp_path: Path, sqlite_url: str
) -> None:
    proxied = await start_node(
        aiohttp_client,
        tmp_path,
        sqlite_url,
        trust_forwarded=True,
        login_max_failures_pair=2,
    )
    try:
        for _ in range(2):
            session = await proxied.anonymous()
            resp = await api_login_response(
                session, "quantri", "wrong", **{"X-Forwarded-For": "203.0.113.7"}
            )
            assert resp.status == 401
        # That client is refused for this account; another client behind the proxy is not.
        session = await proxied.anonymous()
        resp = await api_login_response(
            session, "quantri", DEMO_PASSWORD, **{"X-Forwarded-For": "203.0.113.7"}
        )
        assert resp.status == 429
        resp = await api_login_response(
            session, "quantri", DEMO_PASSWORD, **{"X-Forwarded-For": "203.0.113.8"}
        )
        assert resp.status == 200
    finally:
        await proxied.close()


# -- CSRF ------------------------------------------------------------------------------------------


async def test_api_login_without_csrf_header_is_refused(node: Node) -> None:
    session = await node.anonymous()
    await session.fetch_csrf()
    resp = await session.client.post(
        "/api/login", json={"username": "chutri", "password": DEMO_PASSWORD}
    )
    assert resp.status == 403
    body = await resp.json()
    assert body["error"] == "csrf_failed"
    assert SESSION_COOKIE not in set_cookies(resp)


async def test_api_post_with_wrong_csrf_header_is_refused(node: Node) -> None:
    session = await node.anonymous()
    await session.fetch_csrf()
    session.csrf = "0" * 64
    status, body = await session.call(
        "POST", "/api/login", {"username": "chutri", "password": DEMO_PASSWORD}
    )
    assert status == 403
    assert body["error"] == "csrf_failed"


async def test_logged_in_api_post_without_or_with_wrong_csrf_is_refused(node: Node) -> None:
    chair = await node.login("chutri")
    resp = await chair.client.post("/api/logout")
    assert resp.status == 403
    assert (await resp.json())["error"] == "csrf_failed"
    resp = await chair.client.post("/api/logout", headers={"X-CSRF-Token": chair.csrf + "x"})
    assert resp.status == 403
    # Nothing happened: still logged in.
    assert (await chair.call("GET", "/api/me"))[0] == 200


async def test_csrf_token_of_another_session_is_refused(node: Node) -> None:
    chair = await node.login("chutri")
    secretary = await node.login("thuky")
    assert chair.csrf != secretary.csrf
    status, body = await secretary.call("POST", "/api/logout", headers={"X-CSRF-Token": chair.csrf})
    assert status == 403
    assert body["error"] == "csrf_failed"
    assert (await secretary.call("GET", "/api/me"))[0] == 200


async def test_pre_login_csrf_token_of_another_browser_is_refused(node: Node) -> None:
    first = await node.anonymous()
    second = await node.anonymous()
    first_token = await first.fetch_csrf()
    second_token = await second.fetch_csrf()
    assert first_token != second_token
    second.csrf = first_token
    status, body = await second.call(
        "POST", "/api/login", {"username": "chutri", "password": DEMO_PASSWORD}
    )
    assert status == 403
    assert body["error"] == "csrf_failed"


async def test_login_form_without_csrf_field_is_refused_with_vietnamese_page(node: Node) -> None:
    browser = await node.anonymous()
    await browser.client.get("/login")  # has the pre-login cookie, but sends no token
    resp = await browser.client.post(
        "/login",
        data={"username": "chutri", "password": DEMO_PASSWORD},
        allow_redirects=False,
    )
    assert resp.status == 403
    html = await resp.text()
    assert CSRF_FAILED_VI in html
    assert 'data-error-code="csrf_failed"' in html
    assert SESSION_COOKIE not in set_cookies(resp)


async def test_logout_form_without_csrf_field_does_not_log_out(node: Node) -> None:
    browser = await node.anonymous()
    resp, _ = await form_login(browser, "chutri", DEMO_PASSWORD)
    assert resp.status == 303
    resp = await browser.client.post("/logout", data={}, allow_redirects=False)
    assert resp.status == 403
    assert (await browser.client.get("/meetings", allow_redirects=False)).status == 200


# -- server-side sessions --------------------------------------------------------------------------


async def test_logout_invalidates_the_session_cookie_on_the_server(node: Node) -> None:
    chair = await node.login("chutri")
    token = chair.client.session.cookie_jar.filter_cookies(chair.client.make_url("/"))[
        SESSION_COOKIE
    ].value

    # A copy of the cookie, as a thief would hold it, works before logout ...
    thief = await node.anonymous()
    resp = await thief.client.get("/api/me", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert resp.status == 200

    status, _ = await chair.call("POST", "/api/logout")
    assert status == 200

    # ... and not after: the server forgot the session.
    resp = await thief.client.get("/api/me", headers={"Cookie": f"{SESSION_COOKIE}={token}"})
    assert resp.status == 401
    assert (await resp.json())["error"] == "not_authenticated"
    async with node.app[CTX].sessionmaker() as db:
        rows = (await db.execute(SessionRow.__table__.select())).all()
    assert rows == []


async def test_logout_ends_only_that_session(node: Node) -> None:
    laptop = await node.login("chutri")
    phone = await node.login("chutri")
    assert (await laptop.call("POST", "/api/logout"))[0] == 200
    assert (await laptop.call("GET", "/api/me"))[0] == 401
    assert (await phone.call("GET", "/api/me"))[0] == 200


async def test_expired_session_is_refused(node: Node) -> None:
    chair = await node.login("chutri")
    browser = await node.anonymous()
    resp, _ = await form_login(browser, "chutri", DEMO_PASSWORD)
    assert resp.status == 303
    assert (await chair.call("GET", "/api/me"))[0] == 200

    async with node.app[CTX].sessionmaker() as db, db.begin():
        result = await db.execute(
            update(SessionRow).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        assert result.rowcount == 2

    status, body = await chair.call("GET", "/api/me")
    assert status == 401
    assert body["error"] == "not_authenticated"
    resp = await browser.client.get("/meetings", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == "/login?next=/meetings"


async def test_session_lasts_session_hours(
    aiohttp_client: AiohttpClient, tmp_path: Path, sqlite_url: str
) -> None:
    short = await start_node(aiohttp_client, tmp_path, sqlite_url, session_hours=0.5)
    try:
        session = await short.anonymous()
        before = utcnow()
        resp = await api_login_response(session, "chutri", DEMO_PASSWORD)
        assert resp.status == 200
        assert set_cookies(resp)[SESSION_COOKIE]["max-age"] == "1800"
        async with short.app[CTX].sessionmaker() as db:
            row = (await db.execute(SessionRow.__table__.select())).one()
        lifetime = row.expires_at - before
        assert timedelta(minutes=29) < lifetime <= timedelta(minutes=31)
    finally:
        await short.close()


async def test_session_of_disabled_user_row_is_refused(node: Node) -> None:
    """Even if a session row survives, a user made inactive in the database is refused."""
    chair = await node.login("chutri")
    async with node.app[CTX].sessionmaker() as db, db.begin():
        await db.execute(update(User).where(User.username == "chutri").values(active=False))
    status, body = await chair.call("GET", "/api/me")
    assert status == 401
    assert body["error"] == "not_authenticated"


# -- real HTTPS ------------------------------------------------------------------------------------


async def test_login_over_real_https_sets_secure_cookie(tmp_path: Path, sqlite_url: str) -> None:
    cert, key = self_signed(tmp_path / "tls", ["localhost", "127.0.0.1"])
    settings = make_settings(tmp_path, sqlite_url, tls_cert=cert, tls_key=key)
    _app, runner, base = await serve_node(settings)
    try:
        assert base.startswith("https://")
        trust = ssl.create_default_context(cafile=str(cert))
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=trust),
            cookie_jar=aiohttp.CookieJar(unsafe=True),
        ) as client:
            async with client.get(f"{base}/api/csrf") as resp:
                assert resp.status == 200
                assert set_cookies(resp)[PRELOGIN_COOKIE]["secure"] is True
                csrf = (await resp.json())["csrf_token"]
            async with client.post(
                f"{base}/api/login",
                json={"username": "chutri", "password": DEMO_PASSWORD},
                headers={"X-CSRF-Token": csrf},
            ) as resp:
                assert resp.status == 200, await resp.text()
                cookie = set_cookies(resp)[SESSION_COOKIE]
                assert cookie["secure"] is True
                assert cookie["httponly"] is True
                assert cookie["samesite"] == "Lax"
                assert resp.headers["Strict-Transport-Security"] == "max-age=31536000"
            async with client.get(f"{base}/api/me") as resp:
                assert resp.status == 200
                assert (await resp.json())["user"]["username"] == "chutri"

        # A client that does not trust the certificate cannot connect at all.
        async with aiohttp.ClientSession() as untrusting:
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await untrusting.get(f"{base}/api/csrf")
    finally:
        await runner.cleanup()
