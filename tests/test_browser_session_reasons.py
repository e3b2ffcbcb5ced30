"""A live page whose login session ends says why, in headless Chromium: logged out in another
window, the account disabled or its password reset by an administrator. It stops for good (no
reconnect with the dead cookie), and its big button leads to the login page and back here.
The node tells the socket with ``session_ended`` {reason} (docs/protocol.md section 7)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright

from server.demo.tree import DEMO_PASSWORD
from server.http.live_pages import LIVE_STRINGS
from server.i18n import translator
from tests.conftest import TEST_OUTPUT
from tests.test_browser_live import (  # noqa: F401  (base_url is a fixture)
    CHROMIUM_ARGS,
    WAIT_MS,
    api_login,
    base_url,
    open_live,
    schedule_meeting,
    until,
)

# What the overlay says once it shows the login button: [title, text, English line, href].
SHOWN = """() => {
  const overlay = document.getElementById("overlay");
  const login = document.getElementById("overlay-login");
  if (overlay.hidden || login.hidden) return null;
  const second = document.getElementById("overlay-second");
  return [
    document.getElementById("overlay-title").textContent,
    document.getElementById("overlay-text").textContent,
    second.hidden ? "" : second.textContent,
    login.getAttribute("href"),
    login.textContent.trim(),
  ];
}"""

# Operators of communes of Huyện Năm Căn (invited), one per way a session ends.
LOGGED_OUT = "kt.cm-nc-hr"
DISABLED = "kt.cm-nc-hv"
PASSWORD = "kt.cm-nc-tt"


async def admin_patch(base: str, username: str, patch: dict[str, Any]) -> None:
    """What an administrator does on the users page, through the JSON API."""
    async with api_login(base, "quantri") as (http, csrf):
        async with http.get("/api/users") as resp:
            users = (await resp.json())["users"]
        user_id = next(u["id"] for u in users if u["username"] == username)
        async with http.patch(
            f"/api/users/{user_id}", json=patch, headers={"X-CSRF-Token": csrf}
        ) as resp:
            assert resp.status == 200, await resp.text()


async def connected_count(page: Page) -> int:
    return int(await page.evaluate("() => window.hoinghi.connection.sig.connected ? 1 : 0"))


@pytest.mark.timeout(180)
async def test_live_pages_say_why_the_login_session_ended_and_stop(
    chromium: str,
    base_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    mid = await schedule_meeting(base_url)
    vi = translator("vi")
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            pages = {}
            for username in (LOGGED_OUT, DISABLED, PASSWORD):
                pages[username] = await open_live(browser, base_url, username, mid, log)
            for page in pages.values():
                await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)

            # Logged out in another tab of the same browser.
            other = await pages[LOGGED_OUT].context.new_page()
            await other.goto(f"{base_url}/meetings")
            await other.click('form[action="/logout"] button')
            await other.wait_for_url("**/login**")
            await admin_patch(base_url, DISABLED, {"active": False})
            await admin_patch(base_url, PASSWORD, {"password": "mat-khau-moi-2025"})

            expected = {
                LOGGED_OUT: "session_logged_out",
                DISABLED: "session_disabled",
                PASSWORD: "session_password_changed",
            }
            title = vi(LIVE_STRINGS["session_ended_title"])
            for username, key in expected.items():
                page = pages[username]
                shown = await until(page, SHOWN)
                assert shown == [
                    title,
                    vi(LIVE_STRINGS[key]),
                    LIVE_STRINGS[key],  # the English under it on a Vietnamese page
                    f"/login?next=/meetings/{mid}/live",
                    vi("Log in again"),
                ], username
                assert vi(LIVE_STRINGS[key]) != LIVE_STRINGS[key]
            assert vi(LIVE_STRINGS["session_logged_out"]) == "Bạn đã đăng xuất ở một cửa sổ khác."
            assert vi(LIVE_STRINGS["session_disabled"]) == "Tài khoản đã bị khoá bởi quản trị viên."

            # None of them tries again with the ended session: the overlay stays, the socket
            # stays closed.
            await asyncio.sleep(4)
            for username, page in pages.items():
                assert await page.evaluate(SHOWN) == await until(page, SHOWN), username
                assert await connected_count(page) == 0, username

            # The big button: the login page, and back to this meeting after logging in.
            page = pages[LOGGED_OUT]
            await page.click("#overlay-login")
            await page.wait_for_url(lambda url: "/login?next=" in url)
            await page.fill('input[name="username"]', LOGGED_OUT)
            await page.fill('input[name="password"]', DEMO_PASSWORD)
            await page.click('button[type="submit"]')
            await page.wait_for_url(f"**/meetings/{mid}/live")
            await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
        finally:
            (TEST_OUTPUT / "session-reasons-console.log").write_text(
                "\n".join(log), encoding="utf-8"
            )
            await browser.close()
