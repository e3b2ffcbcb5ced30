"""The cascade as officials see it in chromium: a province node and a district node.

The province chair's console lists the commune of the district under that district's node,
online; the district's uplink is then cut for real (a TcpGate in front of the province): the
commune's page says the level above is lost while its own meeting goes on, and the chair's
console shows the district node and its commune offline. When the link returns, both pages
say so by themselves. Last, the commune leaves: the console keeps it listed, offline.
Screenshots go to test-output/cascade-*.png.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright

from tests.live_helpers import (
    ClientFactory,
    district_behind_gate,
    local_meeting_id,
    schedule,
)
from tests.tcp_gate import TcpGate
from tests.test_browser_live import (
    CHROMIUM_ARGS,
    OUT,
    WAIT_MS,
    frames_rise,
    open_live,
    until,
    wait_video,
)

TITLE = "Hội nghị giao ban qua điểm cầu huyện"
NODE = '#sites li.node-group[data-node="CM-NC"]'
SITE = f'{NODE} li.site[data-unit="CM-NC-HR"]'
# Whether the level-above banner is up and says `kind` ("lost" or "back").
BANNER_SAYS = """(kind) => {
  const banner = document.getElementById("upper-banner");
  return !banner.hidden && banner.dataset.kind === kind;
}"""


async def text(page: Page, selector: str) -> str:
    return (await page.text_content(selector) or "").strip()


@pytest.mark.timeout(240)
async def test_chair_sees_commune_under_its_district_node_and_both_pages_show_a_lost_uplink(
    chromium: str,
    aiohttp_client: ClientFactory,
    tmp_path: Path,
) -> None:
    province, district, gate = await district_behind_gate(aiohttp_client, tmp_path)
    try:
        chair_session = await province.login("chutri")
        meeting_id = await schedule(chair_session, title=TITLE, invited_subtrees=["CM-NC"])
        local_id = await local_meeting_id(district, "kt.cm-nc-hr", TITLE)
        log: list[str] = []
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=chromium, headless=True, args=CHROMIUM_ARGS
            )
            try:
                await run_cascade(
                    browser,
                    gate,
                    f"http://127.0.0.1:{province.client.server.port}",
                    meeting_id,
                    f"http://127.0.0.1:{district.client.server.port}",
                    local_id,
                    log,
                )
            finally:
                (OUT / "cascade-console.log").write_text("\n".join(log), encoding="utf-8")
                with contextlib.suppress(TimeoutError):  # playwright kills it on exit anyway
                    await asyncio.wait_for(browser.close(), 60)
    finally:
        await gate.close()


async def run_cascade(
    browser: Browser,
    gate: TcpGate,
    province: str,
    meeting_id: int,
    district: str,
    local_id: int,
    log: list[str],
) -> None:
    began = time.monotonic()

    def mark(step: str) -> None:
        log.append(f"{time.monotonic():.1f} --- {time.monotonic() - began:6.1f} s  {step}")

    chair = await open_live(browser, province, "chutri", meeting_id, log)
    site = await open_live(browser, district, "kt.cm-nc-hr", local_id, log)
    for page in (chair, site):
        await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    # On the node hosting the meeting there is no level above to show.
    assert await chair.is_hidden("#upper")
    await chair.click("#btn-start")
    await wait_video(site, "chair-video")  # the program arrives through the district node
    mark("program at the commune")

    # The chair sees the commune under its district's node, online.
    await chair.wait_for_selector(f'{SITE}[data-state="online"]', timeout=WAIT_MS)
    assert await text(chair, f"{NODE} .node-name") == "Huyện Năm Căn"
    assert await text(chair, f"{NODE} .node-head .state-pill") == "Đường truyền tốt"
    assert await text(chair, f"{SITE} .state-pill") == "Trực tuyến"
    assert "Xã Hàm Rồng" in await text(chair, f"{SITE} .site-name")
    assert await text(chair, f"{NODE} .node-count") == "1/1 điểm cầu trực tuyến"
    assert await text(chair, "#sites-title") == "Điểm cầu đã kết nối (1)"
    # The commune's page: the level above is connected, no banner.
    await site.wait_for_selector("#upper.conn-connected", timeout=WAIT_MS)
    assert await text(site, "#upper") == "Cấp trên: đã kết nối"
    assert await site.is_hidden("#upper-banner")
    await chair.screenshot(path=str(OUT / "cascade-chair.png"), full_page=True)
    await site.screenshot(path=str(OUT / "cascade-site.png"), full_page=True)
    mark("online everywhere")

    gate.block()
    # The commune: a banner that the level above is lost, while its own node still answers.
    await site.wait_for_selector("#upper-banner:not([hidden])", timeout=WAIT_MS)
    assert await text(site, "#upper-banner-title") == "Mất kết nối với cấp trên (Tỉnh Cà Mau)"
    assert "Hội nghị tại đơn vị vẫn tiếp tục" in await text(site, "#upper-banner-text")
    assert await text(site, "#upper") == "Cấp trên: mất kết nối"
    assert await text(site, "#conn") == "Đã kết nối"
    assert await text(site, "#live-status") == "Cuộc họp đang diễn ra"
    await until(site, "() => window.hoinghi.state.chair_present === false")
    assert await text(site, "#chair-empty") == "Đang chờ tín hiệu hình ảnh từ cấp trên…"
    mark("commune shows the level above lost")
    # The chair: the district node and its commune offline, in words.
    await chair.wait_for_selector(f'{NODE}[data-link="offline"]', timeout=WAIT_MS)
    await chair.wait_for_selector(f'{SITE}[data-state="offline"]', timeout=WAIT_MS)
    assert await text(chair, f"{NODE} .node-head .state-pill") == "Mất đường truyền"
    assert await text(chair, f"{SITE} .state-pill") == "Mất kết nối"
    assert "Huyện Năm Căn" in await text(chair, f"{NODE} .node-note")
    assert await text(chair, "#sites-title") == "Điểm cầu đã kết nối (0) · 1 mất kết nối"
    assert await chair.locator(f"{SITE} .btn-floor").count() == 0  # nothing to give it
    await chair.screenshot(path=str(OUT / "cascade-chair-node-offline.png"), full_page=True)
    await site.screenshot(path=str(OUT / "cascade-site-upper-lost.png"), full_page=True)
    mark("chair shows the district offline")

    await asyncio.sleep(3.0)  # a cut that lasts: the banner stays up all along
    assert await site.evaluate(BANNER_SAYS, "lost")
    assert await chair.is_visible(f'{SITE}[data-state="offline"]')

    gate.unblock()
    await until(site, BANNER_SAYS, "back", timeout_ms=45_000)
    assert await text(site, "#upper-banner-title") == "Đã kết nối lại với cấp trên"
    await site.screenshot(path=str(OUT / "cascade-site-upper-back.png"), full_page=True)
    await site.wait_for_selector("#upper-banner", state="hidden", timeout=WAIT_MS)
    assert await text(site, "#upper") == "Cấp trên: đã kết nối"
    mark("commune shows the level above back")
    await chair.wait_for_selector(f'{NODE}[data-link="online"]', timeout=45_000)
    await chair.wait_for_selector(f'{SITE}[data-state="online"]', timeout=WAIT_MS)
    assert await text(chair, "#sites-title") == "Điểm cầu đã kết nối (1)"
    await wait_video(site, "chair-video")
    first, second = await frames_rise(site, "chair.video")
    assert first is not None
    assert second > first, f"the program did not come back ({first} → {second})"
    await chair.screenshot(path=str(OUT / "cascade-chair-recovered.png"), full_page=True)
    mark("recovered")

    # The commune leaves: the node reports no site any more, and the console lists it offline
    # instead of forgetting it, under its node whose link is fine.
    await site.click("#btn-leave")
    await until(chair, "() => window.hoinghi.state.sites.length === 0")
    await chair.wait_for_selector(f'{SITE}[data-state="offline"]', timeout=WAIT_MS)
    assert await text(chair, f"{NODE} .node-head .state-pill") == "Đường truyền tốt"
    assert await text(chair, f"{NODE} .node-count") == "0/1 điểm cầu trực tuyến"
    assert await chair.locator(f"{SITE} .btn-watch").count() == 0
    mark("left: listed offline")

    problems = [line for line in log if "pageerror" in line or "Security Policy" in line]
    assert problems == []
    # Pages are closed with the browser (the caller's finally). Closing their contexts here
    # first once hung for minutes under load after everything above had passed.
