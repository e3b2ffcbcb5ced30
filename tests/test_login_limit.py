"""The failed-login limit under parallel guesses, on SQLite and PostgreSQL: per (account,
address) pair, a growing delay per account, and an administrator who can unlock an account."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from sqlalchemy import func, select

from server.demo.tree import DEMO_PASSWORD
from server.models import LoginFailure, utcnow
from server.state import CTX
from tests.conftest import Node, Session, start_node

AiohttpClient = Callable[..., Awaitable[TestClient[Any, Any]]]

GUESSER = "203.0.113.7"  # one address behind which someone guesses
COLLEAGUE = "203.0.113.8"  # another address: the account's owner, at another office


@pytest.fixture
async def proxied(
    aiohttp_client: AiohttpClient, tmp_path: Path, any_db_url: str
) -> AsyncIterator[Node]:
    """A demo node behind a trusted proxy, so a test can log in from several addresses."""
    started = await start_node(aiohttp_client, tmp_path, any_db_url, trust_forwarded=True)
    yield started
    await started.close()


async def login_from(
    session: Session, address: str, username: str, password: str
) -> tuple[int, Any]:
    resp = await session.client.post(
        "/api/login",
        json={"username": username, "password": password},
        headers={"X-CSRF-Token": session.csrf, "X-Forwarded-For": address},
    )
    return resp.status, await resp.json()


async def failures(node: Node, username: str) -> int:
    async with node.app[CTX].sessionmaker() as db:
        count = await db.scalar(
            select(func.count()).select_from(LoginFailure).where(LoginFailure.username == username)
        )
    return int(count or 0)


async def test_thirty_parallel_wrong_logins_check_at_most_the_limit(proxied: Node) -> None:
    guesser = await proxied.anonymous()
    await guesser.fetch_csrf()
    answers = await asyncio.gather(
        *(login_from(guesser, GUESSER, "chutri", f"sai-{i}") for i in range(30))
    )
    statuses = [status for status, _ in answers]
    limit = proxied.app[CTX].settings.login_max_failures_pair
    assert 1 <= statuses.count(401) <= limit, statuses
    assert statuses.count(429) == 30 - statuses.count(401), statuses
    for status, body in answers:
        if status == 429:
            assert body["error"] == "too_many_failures"
            assert int(body["fields"]["retry_after_seconds"]) >= 1
    assert await failures(proxied, "chutri") == statuses.count(401)

    # The right password from that address is refused too, for the rest of the window.
    status, body = await login_from(guesser, GUESSER, "chutri", DEMO_PASSWORD)
    assert status == 429, body
    window = proxied.app[CTX].settings.login_window_minutes * 60
    assert window - 120 < int(body["fields"]["retry_after_seconds"]) <= window


async def test_another_address_is_not_locked_out_but_waits_the_account_delay(
    proxied: Node,
) -> None:
    guesser = await proxied.anonymous()
    await guesser.fetch_csrf()
    await asyncio.gather(*(login_from(guesser, GUESSER, "chutri", "sai") for _ in range(10)))

    # The owner, elsewhere, is not locked out by the guesser's address: at most the short
    # per-account delay after the last failure (2^0 s after five failures), then in.
    owner = await proxied.anonymous()
    await owner.fetch_csrf()
    status, body = await login_from(owner, COLLEAGUE, "chutri", DEMO_PASSWORD)
    if status == 429:
        wait = int(body["fields"]["retry_after_seconds"])
        assert wait <= 1, body
        await asyncio.sleep(wait + 0.5)
        status, body = await login_from(owner, COLLEAGUE, "chutri", DEMO_PASSWORD)
    assert status == 200, body

    # Failures from many addresses make the delay grow: ten in the window (five more from
    # other places) mean 2^(10-5) = 32 s after the last, even with the right password.
    async with proxied.app[CTX].sessionmaker() as db, db.begin():
        db.add_all(
            LoginFailure(username="chutri", address=f"198.51.100.{i}", at=utcnow())
            for i in range(5)
        )
    later = await proxied.anonymous()
    await later.fetch_csrf()
    status, body = await login_from(later, COLLEAGUE, "chutri", DEMO_PASSWORD)
    assert status == 429, body
    assert body["error"] == "too_many_failures"
    assert 20 <= int(body["fields"]["retry_after_seconds"]) <= 32, body
    # Another account behind the guesser's address logs in at once.
    status, body = await login_from(later, GUESSER, "thuky", DEMO_PASSWORD)
    assert status == 200, body


async def test_admin_of_the_subtree_unlocks_an_account_others_cannot(proxied: Node) -> None:
    guesser = await proxied.anonymous()
    await guesser.fetch_csrf()
    for _ in range(5):
        await login_from(guesser, GUESSER, "kt.cm-nc-hr", "sai")
    status, _ = await login_from(guesser, GUESSER, "kt.cm-nc-hr", DEMO_PASSWORD)
    assert status == 429

    admin = await proxied.login("quantri")
    status, body = await admin.call("GET", "/api/users")
    operator = next(u for u in body["users"] if u["username"] == "kt.cm-nc-hr")
    assert operator["failed_logins"] == 5
    # An admin of another district, and a chair, may not unlock it.
    status, body = await admin.call(
        "POST",
        "/api/users",
        {
            "username": "quantri.cm-nh",
            "full_name": "Quản trị Huyện Ngọc Hiển",
            "role": "admin",
            "unit": "CM-NH",
            "password": DEMO_PASSWORD,
        },
    )
    assert status == 201, body
    other_admin = await proxied.login("quantri.cm-nh")
    status, body = await other_admin.call("POST", f"/api/users/{operator['id']}/unlock")
    assert (status, body["error"]) == (404, "user_not_found")
    chair = await proxied.login("chutri")
    status, body = await chair.call("POST", f"/api/users/{operator['id']}/unlock")
    assert (status, body["error"]) == (403, "forbidden")
    assert await failures(proxied, "kt.cm-nc-hr") == 5

    status, body = await admin.call("POST", f"/api/users/{operator['id']}/unlock")
    assert status == 200, body
    assert body["user"]["failed_logins"] == 0
    status, body = await login_from(guesser, GUESSER, "kt.cm-nc-hr", DEMO_PASSWORD)
    assert status == 200, body


async def test_users_page_shows_failed_logins_and_unlocks_with_a_button(proxied: Node) -> None:
    guesser = await proxied.anonymous()
    await guesser.fetch_csrf()
    for _ in range(5):
        await login_from(guesser, GUESSER, "thuky", "sai")
    admin = await proxied.login("quantri")
    resp = await admin.client.get("/admin/users")
    html = await resp.text()
    assert "Mở khoá đăng nhập" in html
    assert "5 lần đăng nhập sai" in html
    _status, body = await admin.call("GET", "/api/users")
    thuky = next(u for u in body["users"] if u["username"] == "thuky")

    resp = await admin.client.post(
        f"/admin/users/{thuky['id']}/unlock",
        data={"csrf_token": admin.csrf},
        allow_redirects=False,
    )
    assert resp.status == 303
    assert resp.headers["Location"] == "/admin/users?flash=user_unlocked"
    assert await failures(proxied, "thuky") == 0
    page = await (await admin.client.get("/admin/users?flash=user_unlocked")).text()
    assert "Đã mở khoá đăng nhập." in page
    assert "Mở khoá đăng nhập" not in page.replace("Đã mở khoá đăng nhập.", "")


async def test_parallel_right_logins_of_one_account_are_told_to_retry_in_a_second(
    proxied: Node,
) -> None:
    # Secretaries of one office sharing an account all log in as the meeting begins: those
    # whose attempt waits for others being checked retry in a second, not in 15 minutes.
    sessions = [await proxied.anonymous() for _ in range(20)]
    for session in sessions:
        await session.fetch_csrf()
    answers = await asyncio.gather(
        *(login_from(s, GUESSER, "thuky", DEMO_PASSWORD) for s in sessions)
    )
    assert any(status == 200 for status, _ in answers), answers
    for status, body in answers:
        assert status in (200, 429), body
        if status == 429:
            assert body["fields"]["retry_after_seconds"] == "1", body
    await asyncio.sleep(1.5)
    late = await proxied.anonymous()
    await late.fetch_csrf()
    status, body = await login_from(late, GUESSER, "thuky", DEMO_PASSWORD)
    assert status == 200, body
    assert await failures(proxied, "thuky") == 0
