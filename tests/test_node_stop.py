"""A node stopped (SIGTERM) or killed (SIGKILL) under live pages, and a site whose media
stops while its socket stays open: people are told within seconds, in words.

The node is a real ``hoinghi serve`` process (server/demo/nodes.py starts it) with its own
SQLite database; the chair and a commune site are Chromium pages with the fake camera. Each
page must cover its picture with "Mất kết nối tới máy chủ — đang kết nối lại…" (and the
English second line) and its status bar must agree; a SIGTERM must end the process, exit
code 0, within seconds. The issue's target is 3 s; the bounds asserted here are generous for
a busy machine and the times seen are logged (test-output/node-stop.log).
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select

from server.db import create_engine, make_sessionmaker
from server.demo.nodes import DemoNode, node_settings, prepare, start_process, wait_answering
from server.models import Meeting, MeetingStatus
from tests.conftest import CHROMIUM
from tests.test_browser_live import (
    CHROMIUM_ARGS,
    OUT,
    frames_rise,
    open_live,
    schedule_meeting,
    until,
    wait_video,
)
from tests.test_demo_nodes import free_base_port

LOST_WORDS = "Mất kết nối tới máy chủ — đang kết nối lại…"
LOST_SECOND = "Lost the connection to the server — reconnecting…"
TOLD_WITHIN = 8.0  # the target is 3 s
STOP_WITHIN = 10.0  # the target is 3 s
SITE = "CM-NC-HR"

# The page says the node is out of reach: the words over the picture, the status bar and the
# status line agree.
SAYS_LOST = """
([words, second]) => {
  const cover = document.getElementById("lost");
  return Boolean(
    cover && !cover.hidden && cover.textContent.includes(words)
      && cover.textContent.includes(second)
      && document.getElementById("conn").classList.contains("conn-reconnecting")
      && document.getElementById("live-status").textContent === words
  );
}
"""
SITE_ROW_STATE = """
(unit) => {
  const row = document.querySelector(`#sites li[data-unit="${unit}"]`);
  return row ? row.dataset.state : null;
}
"""


@dataclass
class Served:
    """A root node as a process, with the pages and figures of one test."""

    node: DemoNode
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    figures: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    async def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = start_process(self.node, out)
        problem = await asyncio.to_thread(wait_answering, [(self.node, self.proc)])
        assert not problem, f"{problem}:\n{self.tail()}"

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


@pytest.fixture
async def served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chromium: str
) -> AsyncIterator[Served]:
    monkeypatch.setenv("HOINGHI_MEDIA_ADDRESSES", "127.0.0.1")
    node = DemoNode("node", free_base_port(), "127.0.0.1", tmp_path / "node")
    node.data_dir.mkdir()
    await prepare([node])
    served = Served(node, tmp_path / "node.log")
    await served.start()
    try:
        yield served
    finally:
        if served.proc is not None and served.proc.poll() is None:
            served.proc.kill()
            served.proc.wait()
        OUT.mkdir(exist_ok=True)
        with (OUT / "node-stop.log").open("a", encoding="utf-8") as fh:
            fh.write("\n".join([*served.console, "figures: " + "; ".join(served.figures), ""]))
        (OUT / "node-stop-node.log").write_bytes(served.log.read_bytes())


async def _meeting(served: Served, browser: Browser) -> tuple[int, Page, Page]:
    """The chair and Xã Hàm Rồng in a live meeting, each decoding the other."""
    mid = await schedule_meeting(served.node.url)
    chair = await open_live(browser, served.node.url, "chutri", mid, served.console)
    site = await open_live(browser, served.node.url, "kt.cm-nc-hr", mid, served.console)
    for page in (chair, site):
        await page.wait_for_selector("#conn.conn-connected", timeout=30_000)
    await chair.click("#btn-start")
    await wait_video(site, "chair-video")
    first, second = await frames_rise(site, "chair.video")
    assert second > first, f"no chair video at the site ({first} → {second})"
    assert await until(chair, SITE_ROW_STATE, SITE) == "online"
    return mid, chair, site


async def _told(pages: list[Page], since: float) -> float:
    """Seconds from ``since`` until every page says the node is out of reach."""
    waiting = list(pages)
    while waiting:
        for page in list(waiting):
            if await page.evaluate(SAYS_LOST, [LOST_WORDS, LOST_SECOND]):
                waiting.remove(page)
        assert time.monotonic() - since < TOLD_WITHIN, "a page still says nothing"
        await asyncio.sleep(0.1)
    return time.monotonic() - since


async def _browser(pw: object) -> Browser:
    return await pw.chromium.launch(  # type: ignore[attr-defined, no-any-return]
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )


@pytest.mark.timeout(150)
async def test_sigterm_with_live_pages_stops_in_seconds_and_the_pages_say_so(
    served: Served,
) -> None:
    async with async_playwright() as pw:
        browser = await _browser(pw)
        try:
            mid, chair, site = await _meeting(served, browser)
            assert served.proc is not None
            began = time.monotonic()
            served.proc.send_signal(signal.SIGTERM)
            told = asyncio.ensure_future(_told([chair, site], began))
            code = await asyncio.to_thread(served.proc.wait, STOP_WITHIN + 20)
            stopped = time.monotonic() - began
            served.figures.append(f"SIGTERM: exited {code} after {stopped:.2f} s")
            served.figures.append(f"SIGTERM: both pages told after {await told:.2f} s")
            assert code == 0, served.tail()
            assert stopped < STOP_WITHIN, served.figures
            await chair.screenshot(path=str(OUT / "node-stop-chair.png"))
            await site.screenshot(path=str(OUT / "node-stop-site.png"))
        finally:
            await browser.close()
    # Nothing was lost: the meeting is stored live, as the chair's start wrote it.
    engine = create_engine(node_settings(served.node).effective_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            status = (await db.execute(select(Meeting.status).where(Meeting.id == mid))).scalar()
        assert status is MeetingStatus.LIVE
    finally:
        await engine.dispose()


@pytest.mark.timeout(150)
async def test_killed_node_pages_cover_the_picture_with_words(served: Served) -> None:
    async with async_playwright() as pw:
        browser = await _browser(pw)
        try:
            _mid, chair, site = await _meeting(served, browser)
            assert served.proc is not None
            served.proc.send_signal(signal.SIGKILL)
            began = time.monotonic()
            served.proc.wait(10)
            served.figures.append(
                f"SIGKILL: both pages told after {await _told([chair, site], began):.2f} s"
            )
            # The chair's console no longer claims the site is online.
            assert await chair.evaluate(SITE_ROW_STATE, SITE) == "offline"
            await site.screenshot(path=str(OUT / "node-killed-site.png"))
        finally:
            await browser.close()


@pytest.mark.timeout(150)
async def test_a_site_whose_media_stops_is_shown_offline_and_comes_back(served: Served) -> None:
    async with async_playwright() as pw:
        browser = await _browser(pw)
        try:
            _mid, chair, site = await _meeting(served, browser)
            # The site's media link goes away; its socket stays open.
            await site.evaluate("() => { window.cutPc = window.hoinghi.pc; window.cutPc.close(); }")
            began = time.monotonic()
            while await chair.evaluate(SITE_ROW_STATE, SITE) == "online":
                assert time.monotonic() - began < TOLD_WITHIN, "the chair still shows it online"
                await asyncio.sleep(0.1)
            shown = time.monotonic() - began
            served.figures.append(f"media cut: chair shows the site not online after {shown:.2f} s")
            # The site's page tells its people too, then joins again by itself.
            await until(site, "() => window.hoinghi.lost || window.hoinghi.pc !== window.cutPc")
            await until(site, "() => window.hoinghi.pc && window.hoinghi.pc !== window.cutPc")
            await site.wait_for_selector("#conn.conn-connected", timeout=30_000)
            await until(
                chair,
                """(unit) => document.querySelector(`#sites li[data-unit="${unit}"]`)
                    ?.dataset.state === "online" || null""",
                SITE,
            )
            served.figures.append(f"media cut: online again after {time.monotonic() - began:.2f} s")
        finally:
            await browser.close()
