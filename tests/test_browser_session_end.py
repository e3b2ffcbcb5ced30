"""A live page opened before its user logs out in another tab: the page stops and asks for a
login; it does not stay in the meeting with the ended session (server/sockets/guard.py)."""

from __future__ import annotations

import asyncio

import pytest
from playwright.async_api import async_playwright

from server.http.live_pages import LIVE_STRINGS
from server.i18n import translator
from tests.conftest import TEST_OUTPUT
from tests.test_browser_live import (  # noqa: F401  (base_url is a fixture)
    CHROMIUM_ARGS,
    WAIT_MS,
    base_url,
    open_live,
    schedule_meeting,
    until,
)

SHOWN_LOGIN = """() => !document.getElementById("overlay").hidden
  && !document.getElementById("overlay-login").hidden
  && document.getElementById("overlay-text").textContent"""


@pytest.mark.timeout(120)
async def test_live_page_of_a_user_who_logged_out_in_another_tab_stops_and_asks_for_login(
    chromium: str,
    base_url: str,  # noqa: F811  (the fixture imported above)
) -> None:
    mid = await schedule_meeting(base_url)
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            chair = await open_live(browser, base_url, "chutri", mid, log)
            site = await open_live(browser, base_url, "kt.cm-nc-hr", mid, log)
            for page in (chair, site):
                await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
            await until(chair, "() => window.hoinghi.state && window.hoinghi.state.sites.length")
            # The same browser, another tab: the meeting list's logout button.
            other = await site.context.new_page()
            await other.goto(f"{base_url}/meetings")
            await other.click('form[action="/logout"] button')
            await other.wait_for_url("**/login**")
            text = await until(site, SHOWN_LOGIN)
            # It says why (tests/test_browser_session_reasons.py covers the other reasons).
            assert text == translator("vi")(LIVE_STRINGS["session_logged_out"])
            # The chair no longer lists the site, and the page does not come back.
            await until(chair, "() => window.hoinghi.state.sites.length === 0")
            await asyncio.sleep(3)
            assert await site.evaluate(SHOWN_LOGIN) == text
            assert await chair.evaluate("() => window.hoinghi.state.sites.length") == 0
        finally:
            (TEST_OUTPUT / "session-end-console.log").write_text("\n".join(log), encoding="utf-8")
            await browser.close()
