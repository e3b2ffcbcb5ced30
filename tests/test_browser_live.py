"""The browser client end to end: a real node, Debian's chromium with fake camera and mic.

The chair and two commune sites log in, the chair starts the meeting, and each site must
decode the chair's video. Then a site raises its hand and gets the floor, the chair watches
the other site, one site loses its socket and another its media link (both join again by
themselves), a phone-sized window takes a site over, and the chair ends the meeting.
Screenshots go to test-output/ for people to look at. ``make test`` installs chromium;
without it this test fails (it never skips).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from playwright.async_api import Browser, Page, async_playwright

from server.demo.tree import DEMO_PASSWORD
from tests.conftest import TEST_OUTPUT, make_settings, serve_node

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]
OUT = TEST_OUTPUT
WAIT_MS = 30_000

# framesDecoded of the inbound video that feeds a slot, found through pc.getStats().
FRAMES_DECODED = """
async (slot) => {
  const h = window.hoinghi;
  const mid = h.midOf(slot);
  const transceiver = h.pc.getTransceivers().find((t) => t.mid === mid);
  const trackId = transceiver.receiver.track.id;
  const stats = await h.pc.getStats();
  let frames = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && s.trackIdentifier === trackId) {
      frames = s.framesDecoded;
    }
  });
  return frames;
}
"""

# Make the browser believe its link failed, as when ICE consent is lost.
FAIL_LINK = """
() => {
  const pc = (window.failedPc = window.hoinghi.pc);
  Object.defineProperty(pc, "connectionState", { get: () => "failed" });
  pc.dispatchEvent(new Event("connectionstatechange"));
}
"""


@pytest.fixture
async def base_url(tmp_path: Path) -> AsyncIterator[str]:
    """A migrated, demo-seeded node serving on 127.0.0.1 at a free port."""
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'live.sqlite3'}")
    _app, runner, url = await serve_node(settings)
    try:
        yield url
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def api_login(
    base: str, username: str, trust: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    """An HTTP session logged in as ``username`` (a demo account) through the JSON API, and
    its CSRF token. ``trust``: what to check an https node's certificate against."""
    jar = aiohttp.CookieJar(unsafe=True)  # cookies for an IP address host
    connector = aiohttp.TCPConnector(ssl=trust) if trust is not None else None
    async with aiohttp.ClientSession(base, cookie_jar=jar, connector=connector) as http:
        async with http.get("/api/csrf") as resp:
            csrf = (await resp.json())["csrf_token"]
        async with http.post(
            "/api/login",
            json={"username": username, "password": DEMO_PASSWORD},
            headers={"X-CSRF-Token": csrf},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        yield http, body["csrf_token"]


async def schedule_meeting(
    base: str,
    title: str = "Hội nghị trực tuyến triển khai nhiệm vụ quý III",
    trust: ssl.SSLContext | None = None,
) -> int:
    """As the province chair, through the JSON API: Huyện Năm Căn and all its communes.
    ``trust``: what to check an https node's certificate against."""
    async with api_login(base, "chutri", trust) as (http, csrf):
        starts = (datetime.now(UTC) + timedelta(minutes=5)).replace(microsecond=0)
        async with http.post(
            "/api/meetings",
            json={
                "title": title,
                "starts_at": starts.isoformat(),
                "invited_subtrees": ["CM-NC"],
            },
            headers={"X-CSRF-Token": csrf},
        ) as resp:
            body = await resp.json()
            assert resp.status == 201, body
            return int(body["meeting"]["id"])


def record(page: Page, name: str, log: list[str]) -> None:
    """Keep the page's console and errors for test-output/live-console.log."""
    page.on("console", lambda m: log.append(f"{time.monotonic():.1f} [{name}] {m.type}: {m.text}"))
    page.on("pageerror", lambda e: log.append(f"{time.monotonic():.1f} [{name}] pageerror: {e}"))


async def open_live(browser: Browser, base: str, username: str, mid: int, log: list[str]) -> Page:
    context = await browser.new_context(
        viewport={"width": 1366, "height": 800}, permissions=["camera", "microphone"]
    )
    page = await context.new_page()
    record(page, username, log)
    await page.goto(f"{base}/login?next=/meetings/{mid}/live")
    await page.fill('input[name="username"]', username)
    await page.fill('input[name="password"]', DEMO_PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"**/meetings/{mid}/live")
    return page


async def until(page: Page, script: str, arg: Any = None, timeout_ms: int = WAIT_MS) -> Any:
    """Poll a JS function until it returns something truthy.

    Not ``wait_for_function``: that evaluates a string in the page, which the node's CSP
    (no 'unsafe-eval') rightly refuses, and bypassing CSP would hide real violations.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_ms / 1000
    while True:
        value = await page.evaluate(script, arg)
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout_ms} ms waiting for {script}")
        await asyncio.sleep(0.2)


async def wait_video(page: Page, element_id: str) -> None:
    await until(page, "(id) => document.getElementById(id).videoWidth > 0", element_id)


async def frames_rise(page: Page, slot: str, within: float = 20.0) -> tuple[Any, Any]:
    """framesDecoded of ``slot`` now, and once it has risen (or after ``within`` seconds):
    the picture goes on being decoded, however slowly a busy machine gets to it."""
    first = await page.evaluate(FRAMES_DECODED, slot)
    deadline = time.monotonic() + within
    await asyncio.sleep(1.5)
    second = await page.evaluate(FRAMES_DECODED, slot)
    while first is not None and not (second is not None and second > first):
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
        second = await page.evaluate(FRAMES_DECODED, slot)
    return first, second


@pytest.mark.timeout(180)
async def test_chair_and_two_sites_meet_in_chromium(chromium: str, base_url: str) -> None:
    mid = await schedule_meeting(base_url)
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            await run_meeting(browser, base_url, mid, log)
        finally:
            (OUT / "live-console.log").write_text("\n".join(log), encoding="utf-8")
            await browser.close()


async def run_meeting(browser: Browser, base: str, mid: int, log: list[str]) -> None:
    began = time.monotonic()

    def mark(step: str) -> None:
        log.append(f"{time.monotonic():.1f} --- {time.monotonic() - began:6.1f} s  {step}")

    chair = await open_live(browser, base, "chutri", mid, log)
    hr = await open_live(browser, base, "kt.cm-nc-hr", mid, log)
    tt = await open_live(browser, base, "kt.cm-nc-tt", mid, log)
    pages = {"chair": chair, "hr": hr, "tt": tt}
    mark("logged in")
    for name, page in pages.items():
        await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
        assert await page.text_content("#conn") == "Đã kết nối", name
    await until(chair, "() => window.hoinghi.state && window.hoinghi.state.sites.length === 2")
    assert "Đang chờ chủ trì bắt đầu cuộc họp" in (await hr.text_content("#live-status") or "")
    mark("all connected")

    await chair.click("#btn-start")
    for name, site in (("hr", hr), ("tt", tt)):
        await wait_video(site, "chair-video")
        first, second = await frames_rise(site, "chair.video")
        assert first is not None, f"{name}: no inbound video stats for chair.video"
        assert second > first, f"{name}: chair video frames did not rise ({first} → {second})"
        assert await site.text_content("#live-status") == "Cuộc họp đang diễn ra"
        mark(f"{name} decodes the chair")

    # Xã Hàm Rồng raises its hand; the chair gives it the floor from the queue.
    await hr.click("#btn-hand")
    await chair.wait_for_selector('#queue li[data-unit="CM-NC-HR"]', timeout=WAIT_MS)
    assert "Xã Hàm Rồng" in (await chair.text_content("#queue") or "")
    await chair.click('#queue li[data-unit="CM-NC-HR"] button')
    await hr.wait_for_selector(".live-status-good", timeout=WAIT_MS)
    await wait_video(tt, "floor-video")
    await wait_video(chair, "floor-video")
    mark("floor video everywhere")
    # The chair watches Thị trấn Năm Căn on the wall.
    await chair.click('#sites li[data-unit="CM-NC-TT"] .btn-watch')
    await wait_video(chair, "wall-video-0")
    first, second = await frames_rise(chair, "wall.0")
    assert second > first, f"chair: wall video frames did not rise ({first} → {second})"
    mark("wall video")

    # The network drops under Xã Hàm Rồng: the page shows it, joins again by itself, and
    # the program and its floor come back.
    await hr.evaluate("() => window.hoinghi.connection.sig.socket.io.engine.close()")
    await until(hr, "() => document.body.dataset.connection !== 'connected'")
    assert await hr.text_content("#conn") in ("Mất kết nối — đang kết nối lại…", "Đang kết nối…")
    await hr.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    await wait_video(hr, "chair-video")
    first, second = await frames_rise(hr, "chair.video")
    assert second > first, f"hr after rejoin: chair frames did not rise ({first} → {second})"
    await until(chair, "() => window.hoinghi.state.sites.every((s) => s.media)")
    first, second = await frames_rise(chair, "floor.video")
    assert second > first, f"chair: floor frames did not come back ({first} → {second})"
    mark("hr rejoined")

    # Thị trấn Năm Căn's media link fails (the socket stays up): a new link replaces it.
    await tt.evaluate(FAIL_LINK)
    await until(tt, "() => window.hoinghi.pc && window.hoinghi.pc !== window.failedPc")
    await tt.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    await wait_video(tt, "chair-video")
    first, second = await frames_rise(tt, "chair.video")
    assert second > first, f"tt after a new link: chair frames did not rise ({first} → {second})"
    mark("tt has a new link")

    await asyncio.sleep(1.0)  # let every tile paint a few frames before the screenshots
    mark("before screenshots")
    await chair.screenshot(path=str(OUT / "live-chair.png"), full_page=True)
    mark("shot live-chair")
    await hr.screenshot(path=str(OUT / "live-site-hr.png"), full_page=True)
    mark("shot live-site-hr")
    await tt.screenshot(path=str(OUT / "live-site-tt.png"), full_page=True)
    mark("shot live-site-tt")
    phone = await tt.context.new_page()
    record(phone, "phone", log)
    await phone.set_viewport_size({"width": 390, "height": 844})
    await phone.goto(f"{base}/meetings/{mid}/live")
    await phone.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    mark("phone connected")
    await wait_video(phone, "chair-video")
    mark("phone decodes the chair")
    await phone.screenshot(path=str(OUT / "live-site-phone.png"), full_page=True)
    await tt.wait_for_selector("#overlay:not([hidden])", timeout=WAIT_MS)
    assert await tt.text_content("#overlay-title") == "Điểm cầu đã được mở ở cửa sổ khác"
    await tt.screenshot(path=str(OUT / "live-site-replaced.png"))
    await phone.close()  # it replaced tt's window; closing it leaves the meeting
    mark("screenshots")

    chair.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await chair.click("#btn-end")
    for name, page in pages.items():
        await page.wait_for_selector("#overlay:not([hidden])", timeout=WAIT_MS)
        title = await page.text_content("#overlay-title")
        if name == "tt":  # the phone window took its place before the end
            assert title in ("Cuộc họp đã kết thúc", "Điểm cầu đã được mở ở cửa sổ khác"), title
        else:
            assert title == "Cuộc họp đã kết thúc", (name, title)
    await hr.screenshot(path=str(OUT / "live-site-ended.png"))
    # No script error and nothing the Content-Security-Policy had to refuse.
    problems = [line for line in log if "pageerror" in line or "Security Policy" in line]
    assert problems == []
