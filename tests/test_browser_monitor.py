"""The monitoring wall in the browser: a commune on a real poor line is marked on the chair's
console.

Xã Hàm Rồng's Chromium runs in a network namespace behind 200 kbit/s with 15% loss each way
(tests/netshape.py); Thị trấn Năm Căn's on the host, unshaped. The node listens on the
shaped link's host end and offers it as an ICE candidate, so Hàm Rồng's media crosses the
poor line. Within seconds the chair's "Giám sát đường truyền" shows both sites' figures,
and Hàm Rồng marked in colour and in words (poor line), with its kbit/s and its loss; the
JSON endpoint says the same. Screenshots at 1366x768 and 1920x1080 go to test-output/.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from rooms.ice import offer_host_addresses
from server.demo.tree import DEMO_PASSWORD, seed_demo
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.conftest import TEST_OUTPUT, make_settings, migrated_app
from tests.netshape import ShapedLink
from tests.test_browser_live import CHROMIUM_ARGS, api_login, record, schedule_meeting, until

SHAPED = "CM-NC-HR"  # Xã Hàm Rồng, behind the poor line
CLEAN = "CM-NC-TT"  # Thị trấn Năm Căn, on the host
DOWN_KBIT = UP_KBIT = 200
LOSS_PCT = 15
WAIT_MS = 90_000  # a shared machine with two cores, three Chromium pages and a node


@pytest.fixture
def media_on_the_link() -> Iterator[Callable[[str], None]]:
    """The node's aiortc offers the shaped link's host end too (the session offers only
    127.0.0.1, tests/conftest.py); back to 127.0.0.1 alone afterwards."""
    yield lambda address: offer_host_addresses(["127.0.0.1", address])
    offer_host_addresses(["127.0.0.1"])


async def serve_on(tmp_path: Path, host: str) -> tuple[web.Application, web.AppRunner, str]:
    """A demo node serving on ``host`` (the shaped link's host end), media there too."""
    settings = make_settings(
        tmp_path,
        f"sqlite+aiosqlite:///{tmp_path / 'monitor.sqlite3'}",
        media_addresses=["127.0.0.1", host],
    )
    app = await migrated_app(settings)  # create_app offers settings.media_addresses
    runner = web.AppRunner(app)
    await runner.setup()
    await seed_demo(app[CTX])
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return app, runner, f"http://{host}:{runner.addresses[0][1]}"


async def open_live(
    browser: Browser, base: str, username: str, mid: int, log: list[str], size: tuple[int, int]
) -> Page:
    """tests/test_browser_live.py ``open_live``, waiting for the page's DOM only: on an
    address other than 127.0.0.1 Chromium holds the live pages' load event (seen: never
    fired in 40 s, every request done), which the page does not need."""
    context = await browser.new_context(
        viewport={"width": size[0], "height": size[1]}, permissions=["camera", "microphone"]
    )
    page = await context.new_page()
    record(page, username, log)
    await page.goto(f"{base}/login?next=/meetings/{mid}/live", wait_until="domcontentloaded")
    await page.fill('input[name="username"]', username)
    await page.fill('input[name="password"]', DEMO_PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"**/meetings/{mid}/live", wait_until="domcontentloaded")
    return page


# The wall as the chair sees it, read at one instant (a state arriving between two reads
# would mix two moments): each row's marks, words and figures, the count at the top and the
# list of sites in trouble.
WALL = """
() => {
  const rows = {};
  for (const row of document.querySelectorAll("#monitor-table tr.mon-row")) {
    const cells = [...row.children].map((c) => c.textContent.trim());
    const why = row.querySelector(".mon-why");
    rows[row.dataset.unit] = {
      trouble: row.dataset.trouble, quality: row.dataset.quality, classes: row.className,
      name: row.querySelector(".mon-name").textContent, why: why ? why.textContent : "",
      receive: cells[1], kbit: cells[2], loss: cells[3], fps: cells[4], freezes: cells[5],
      line: row.querySelector(".mon-q").textContent,
      background: getComputedStyle(row.children[1]).backgroundColor,
    };
  }
  const alert = document.getElementById("monitor-alert");
  const first = document.querySelector("#monitor-table tr.mon-row");
  return {
    rows, alert: alert.textContent, alert_shown: !alert.hidden && alert.offsetParent !== null,
    summary: document.getElementById("monitor-summary").textContent,
    first: first ? first.dataset.unit : null,
  };
}
"""


def inside(app: web.Application, mid: int) -> dict[str, Any]:
    """What the node has of each site, for a failure message."""
    live = app[REGISTRY].get(mid)
    if live is None:
        return {}
    out: dict[str, Any] = {"live": live.live}
    if live.chair is not None and live.chair.peer is not None:
        peer = live.chair.peer
        out["chair"] = {
            "link": peer.link,
            "producers": {n: (p.frames, p.bytes) for n, p in peer.producers.items()},
        }
    for code, p in live.sites.items():
        consumers = p.peer.consumers if p.peer else {}
        out[code] = {
            "estimate": p.estimate.public(),
            "sent": {n: c.bytes_sent for n, c in consumers.items()},
            "producer": {n: c.producer is not None for n, c in consumers.items()},
        }
    return out


def number(text: str) -> float:
    """ "1.234", "15,2 %" (Vietnamese digits) -> 1234.0, 15.2; "—" -> 0."""
    found = re.search(r"[\d.,]+", text)
    if not found:
        return 0.0
    return float(found.group(0).replace(".", "").replace(",", "."))


async def wall(page: Page) -> dict[str, Any]:
    found: dict[str, Any] = await page.evaluate(WALL)
    return found


async def wall_until(
    page: Page, check: Callable[[dict[str, Any]], bool], began: float, what: str, extra: Any
) -> dict[str, Any]:
    """The wall once ``check`` holds, polled every 0.5 s for up to 2 x WAIT_MS."""
    while True:
        seen = await wall(page)
        if check(seen):
            return seen
        if time.monotonic() - began > 2 * WAIT_MS / 1000:
            raise AssertionError(f"{what}: the wall {seen['rows']}; the node: {extra()}")
        await asyncio.sleep(0.5)


async def monitor_json(base: str, meeting_id: int) -> dict[str, Any]:
    path = f"/api/meetings/{meeting_id}/monitor"
    async with api_login(base, "chutri") as (http, _csrf), http.get(path) as resp:
        body: dict[str, Any] = await resp.json()
        assert resp.status == 200, body
        return body


@pytest.mark.timeout(300)
async def test_the_chair_sees_a_commune_on_a_poor_line_marked(
    chromium: str,
    tmp_path: Path,
    shaped_link: Callable[..., ShapedLink],
    media_on_the_link: Callable[[str], None],
) -> None:
    link = shaped_link(
        down_kbit=DOWN_KBIT, up_kbit=UP_KBIT, down_loss_pct=LOSS_PCT, up_loss_pct=LOSS_PCT
    )
    media_on_the_link(link.host_address)
    app, runner, base = await serve_on(tmp_path, link.host_address)
    log: list[str] = []
    notes: list[str] = []
    try:
        mid = await schedule_meeting(base, title="Hội nghị thử giám sát đường truyền")
        # Only 127.0.0.1 is a secure origin by itself: elsewhere, plain http has no camera.
        args = [*CHROMIUM_ARGS, f"--unsafely-treat-insecure-origin-as-secure={base}"]
        async with async_playwright() as pw:
            host = await pw.chromium.launch(executable_path=chromium, headless=True, args=args)
            commune = await pw.chromium.launch(
                executable_path=link.chromium_executable(chromium), headless=True, args=args
            )
            try:
                chair = await open_live(host, base, "chutri", mid, log, (1366, 768))
                clean = await open_live(host, base, "kt.cm-nc-tt", mid, log, (1024, 640))
                shaped = await open_live(commune, base, "kt.cm-nc-hr", mid, log, (1024, 640))
                for page in (chair, clean, shaped):
                    await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
                await chair.click("#btn-start")
                began = time.monotonic()

                # Both sites' figures reach the wall: kbit/s above zero on each row.
                def figures(w: dict[str, Any]) -> bool:
                    rows = [w["rows"].get(unit) for unit in (SHAPED, CLEAN)]
                    return all(r is not None and number(r["kbit"]) > 0 for r in rows)

                def node() -> dict[str, Any]:
                    return inside(app, mid)

                await wall_until(chair, figures, began, "no figures", node)
                notes.append(f"figures on the wall {time.monotonic() - began:.1f} s after start")

                # The node judges the poor line poor; the wall marks it in colour and words.
                def marked(w: dict[str, Any]) -> bool:
                    r = w["rows"].get(SHAPED)
                    return bool(
                        r
                        and r["quality"] == "poor"
                        and number(r["loss"]) > 0
                        and number(r["kbit"]) > 0
                    )

                shown = await wall_until(chair, marked, began, "never marked poor", node)
                seen = shown["rows"][SHAPED]
                notes.append(f"marked poor {time.monotonic() - began:.1f} s after start: {seen}")
                assert seen["trouble"] == "1", seen
                assert "mon-trouble" in seen["classes"], seen
                assert "Sự cố" in seen["why"], seen
                assert "Đường truyền kém" in seen["why"], seen
                assert seen["line"] == "Kém", seen
                assert seen["name"] == "Xã Hàm Rồng"
                assert seen["background"] != "rgba(0, 0, 0, 0)", seen  # a coloured row
                # What it receives, in words: "Thấp nhất (tự động)" and the like.
                assert "(tự động)" in seen["receive"], seen
                # In words at the top too: the count, and the site with why, before the table.
                assert re.fullmatch(r"\d+ điểm cầu gặp sự cố", shown["alert"]), shown
                assert shown["alert_shown"], shown
                assert "Xã Hàm Rồng — Đường truyền kém" in shown["summary"], shown
                # Trouble first in its group (a clean line on the host may be marked too,
                # for its audio on a busy machine: then either comes first).
                assert shown["rows"][shown["first"]]["trouble"] == "1", shown

                # The pages' own reports (every 2 s) bring the frame rates they decode.
                def frame_rates(w: dict[str, Any]) -> bool:
                    rows = [w["rows"].get(unit) for unit in (SHAPED, CLEAN)]
                    return all(r is not None and number(r["fps"]) > 0 for r in rows)

                shown = await wall_until(chair, frame_rates, began, "no frame rates", node)
                notes.append(
                    f"frame rates {time.monotonic() - began:.1f} s after start: {shown['rows']}"
                )
                # The clean site is listed with its figures, its line in words as well.
                other = shown["rows"][CLEAN]
                assert other["line"] in ("Tốt", "Trung bình", "Kém", "Đang đo…"), other

                # The JSON endpoint gives the same figures, and judges the line the same.
                for _ in range(60):
                    body = await monitor_json(base, mid)
                    site = next(s for s in body["sites"] if s["unit"] == SHAPED)
                    if site["receive"]["quality"] == "poor":
                        break
                    await asyncio.sleep(1)
                notes.append(f"endpoint: {site}")
                assert site["online"] is True
                assert site["receive"]["quality"] == "poor", site
                assert site["receive"]["kbit"] > 0
                assert site["receive"]["loss_pct"] > 0

                # The wall in view, as after a click on the count at the top.
                into_view = """() => document.getElementById('monitor-panel')
                    .scrollIntoView({block: 'end'})"""
                await chair.evaluate(into_view)
                await chair.screenshot(path=str(TEST_OUTPUT / "monitor-1366x768.png"))
                await chair.screenshot(
                    path=str(TEST_OUTPUT / "monitor-1366x768-page.png"), full_page=True
                )
                await chair.set_viewport_size({"width": 1920, "height": 1080})
                await asyncio.sleep(0.5)
                await chair.evaluate(into_view)
                await chair.screenshot(path=str(TEST_OUTPUT / "monitor-1920x1080.png"))
                # The count at the top of the console leads to the wall.
                await chair.evaluate("() => window.scrollTo(0, 0)")
                await chair.click("#monitor-alert")
                # The wall folds away; the count stays at the top of the console.
                await chair.click("#monitor-panel > summary")
                assert await chair.evaluate("() => !document.getElementById('monitor-panel').open")
                await until(chair, "() => !document.getElementById('monitor-alert').hidden")
                problems = [
                    line for line in log if "pageerror" in line or "Security Policy" in line
                ]
                assert problems == []
            finally:
                (TEST_OUTPUT / "monitor-console.log").write_text("\n".join(log), encoding="utf-8")
                await commune.close()
                await host.close()
    finally:
        (TEST_OUTPUT / "monitor-figures.txt").write_text("\n".join(notes), encoding="utf-8")
        await runner.cleanup()
