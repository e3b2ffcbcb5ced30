"""A commune on a poor line, end to end, for tests/test_lowband.py and bench/lowband.py.

A province node (127.0.0.1) and a district node (listening on the shaped link's host end,
tests/netshape.py) run in this process; the province chair is a Chromium page publishing a
busy picture (tests/busy_video.py) and a steady tone, in two tiers; the commune of Hàm Rồng
is a Chromium page *inside the link's namespace*, joined through the district node. What the
commune receives is read from its own ``getStats()`` once a second: the chair's video frame
rate (``framesPerSecond``), its freezes (``freezeCount``, ``totalFreezesDuration``) and the
share of audio played (``concealedSamples`` against ``totalSamplesReceived``); the bytes
that crossed the link come from the link's counters.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import statistics
import struct
import time
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright

from rooms.ice import offer_host_addresses
from rooms.meeting import LiveMeeting
from server.cascade.nodes import issue_credential
from server.cascade.parent_link import PARENT_LINK
from server.demo.tree import DEMO_PASSWORD, seed_demo
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.busy_video import write_busy_video
from tests.conftest import make_settings, migrated_app
from tests.netshape import ShapedLink
from tests.test_browser_live import CHROMIUM_ARGS, schedule_meeting

TITLE = "Hội nghị thử đường truyền yếu"
SITE = "kt.cm-nc-hr"

# The commune's view of the chair's slots, cumulative, from its own getStats().
RECEIVED = """
async () => {
  const h = window.hoinghi;
  if (!h || !h.pc) return null;
  const video = h.midOf("chair.video"), audio = h.midOf("chair.audio");
  const out = { at: performance.now() / 1000 };
  (await h.pc.getStats()).forEach((s) => {
    if (s.type !== "inbound-rtp") return;
    if (s.mid === video) {
      out.frames = s.framesDecoded || 0; out.fps = s.framesPerSecond || 0;
      out.freezes = s.freezeCount || 0; out.freeze_s = s.totalFreezesDuration || 0;
      out.width = s.frameWidth || 0;
    } else if (s.mid === audio) {
      out.samples = s.totalSamplesReceived || 0; out.concealed = s.concealedSamples || 0;
    }
  });
  return out;
}
"""


def write_tone(path: Path, seconds: float = 4.0, hz: float = 440.0) -> Path:
    """A steady tone (no silence, so DTX sends every frame and every loss would be heard)."""
    rate = 48000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        frames = b"".join(
            struct.pack("<h", int(9000 * math.sin(2 * math.pi * hz * i / rate)))
            for i in range(int(rate * seconds))
        )
        out.writeframes(frames)
    return path


@dataclass
class Sample:
    at: float
    frames: int = 0
    fps: float = 0.0
    freezes: int = 0
    freeze_s: float = 0.0
    width: int = 0
    samples: int = 0
    concealed: int = 0


@dataclass
class Figures:
    """What the commune received over one window."""

    seconds: float
    fps_median: float
    freezes: int
    longest_freeze_s: float
    audio_played_pct: float
    kbit_received: float
    tier: str | None
    rejoined: int = 0  # times the commune's page had to join again meanwhile
    samples: list[Sample] = field(default_factory=list, repr=False)

    @property
    def freezes_per_min(self) -> float:
        return self.freezes * 60 / max(1e-9, self.seconds)

    def public(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "fps_median": round(self.fps_median, 1),
            "freezes_per_min": round(self.freezes_per_min, 2),
            "longest_freeze_s": round(self.longest_freeze_s, 2),
            "audio_played_pct": round(self.audio_played_pct, 2),
            "kbit_received": round(self.kbit_received, 1),
            "rejoined": self.rejoined,
        }


def _rise(before: float, after: float) -> float:
    """How much a cumulative counter rose; one that went down belongs to a new peer
    connection (the page joined again), counted from zero."""
    return after - before if after >= before else after


def figures(samples: list[Sample], kbit: float, tier: str | None) -> Figures:
    longest = 0.0
    freezes = 0
    heard = concealed = 0.0
    rejoined = 0
    for a, b in itertools.pairwise(samples):
        if b.frames < a.frames:
            rejoined += 1
        count = int(_rise(a.freezes, b.freezes))
        seconds = _rise(a.freeze_s, b.freeze_s)
        if count > 0:  # a freeze is added when it ends: its length, or the mean of several
            freezes += count
            longest = max(longest, seconds / count)
        heard += _rise(a.samples, b.samples)
        concealed += _rise(a.concealed, b.concealed)
    played = 100.0 * (1 - concealed / heard) if heard > 0 else 0.0
    return Figures(
        seconds=samples[-1].at - samples[0].at,
        fps_median=statistics.median(s.fps for s in samples[1:]) if len(samples) > 1 else 0.0,
        freezes=freezes,
        longest_freeze_s=longest,
        audio_played_pct=played,
        kbit_received=kbit,
        tier=tier,
        rejoined=rejoined,
        samples=samples,
    )


@dataclass
class Poorline:
    """The two nodes, the chair's page and the commune's page, all up and live."""

    link: ShapedLink
    province: web.Application
    district: web.Application
    chair: Page
    site: Page
    province_meeting: int
    local_meeting: int
    joined_at: float  # time.monotonic() when the commune's page had joined

    @property
    def district_live(self) -> LiveMeeting:
        live = self.district[REGISTRY].get(self.local_meeting)
        assert live is not None
        return live

    def tier(self) -> str | None:
        site = self.district_live.sites.get("CM-NC-HR")
        return site.wants_video if site is not None else None

    async def sample(self) -> Sample | None:
        got = await self.site.evaluate(RECEIVED)
        return Sample(**got) if got and "frames" in got else None

    async def first_frame(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            got = await self.sample()
            if got is not None and got.frames > 0:
                return
            await asyncio.sleep(0.25)
        raise AssertionError("the commune decoded no frame of the chair")

    async def measure(self, seconds: float) -> Figures:
        """Sample the commune once a second for ``seconds``; the link's bytes alongside."""
        samples: list[Sample] = []
        before = self.link.snapshot()
        started = time.monotonic()
        while True:
            got = await self.sample()
            if got is not None:
                samples.append(got)
            if time.monotonic() - started >= seconds:
                break
            await asyncio.sleep(1.0)
        traffic = self.link.snapshot().since(before)
        assert len(samples) >= 2, "the commune's page gave no stats"
        return figures(samples, traffic.kbit_s("down"), self.tier())

    async def set_mode(self, mode: str) -> None:
        await self.site.select_option("#rx-mode", mode)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            site = self.district_live.sites.get("CM-NC-HR")
            if site is not None and site.mode == mode:
                return
            await asyncio.sleep(0.1)
        raise AssertionError(f"the receive mode did not become {mode}")


async def _serve(app: web.Application, host: str) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await seed_demo(app[CTX])
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, f"http://{host}:{runner.addresses[0][1]}"


async def _login(page: Page, base: str, username: str, meeting_id: int) -> None:
    await page.goto(f"{base}/login?next=/meetings/{meeting_id}/live")
    await page.fill('input[name="username"]', username)
    await page.fill('input[name="password"]', DEMO_PASSWORD)
    await page.click('button[type="submit"]')
    try:
        await page.wait_for_url(f"**/meetings/{meeting_id}/live", wait_until="commit")
    except Exception as exc:
        text = (await page.text_content("main") or "").strip()[:300]
        raise AssertionError(f"{username} at {base}: {page.url}: {text}") from exc
    await page.wait_for_selector("#conn.conn-connected", timeout=45_000)


async def _local_meeting(district: web.Application, within: float = 30.0) -> int:
    from sqlalchemy import select

    from server.models import Meeting

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        async with district[CTX].sessionmaker() as db:
            found = (
                await db.execute(select(Meeting.id).where(Meeting.title == TITLE))
            ).scalar_one_or_none()
        if found is not None:
            return int(found)
        await asyncio.sleep(0.2)
    raise AssertionError("the district never mirrored the meeting")


@contextlib.asynccontextmanager
async def poor_line(
    link: ShapedLink, workdir: Path, chromium: str = "/usr/bin/chromium"
) -> AsyncIterator[Poorline]:
    """Everything up and live; the commune already decodes the chair."""
    addresses = ["127.0.0.1", link.host_address]
    runners: list[web.AppRunner] = []
    browsers: list[Browser] = []
    try:
        (workdir / "CM").mkdir(parents=True, exist_ok=True)
        (workdir / "CM-NC").mkdir(parents=True, exist_ok=True)
        province = await migrated_app(
            make_settings(
                workdir / "CM",
                f"sqlite+aiosqlite:///{workdir / 'CM' / 'node.sqlite3'}",
                media_addresses=addresses,
            )
        )
        runner, province_url = await _serve(province, "127.0.0.1")
        runners.append(runner)
        credential = await issue_credential(province[CTX], "CM-NC", ["CM-NC"], "")
        district = await migrated_app(
            make_settings(
                workdir / "CM-NC",
                f"sqlite+aiosqlite:///{workdir / 'CM-NC' / 'node.sqlite3'}",
                media_addresses=addresses,
                parent_url=province_url,
                parent_credential=credential,
                served_units=["CM-NC"],
            )
        )
        offer_host_addresses(addresses)  # create_app set the last node's list: the same
        runner, district_url = await _serve(district, link.host_address)
        runners.append(runner)
        await asyncio.wait_for(district[PARENT_LINK].connected.wait(), 30)
        meeting_id = await schedule_meeting(province_url, title=TITLE)
        local = await _local_meeting(district)

        video = write_busy_video(workdir / "busy.y4m")
        tone = write_tone(workdir / "tone.wav")
        pw = await async_playwright().start()
        try:
            chair_browser = await pw.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=[
                    *CHROMIUM_ARGS,
                    f"--use-file-for-fake-video-capture={video}",
                    f"--use-file-for-fake-audio-capture={tone}",
                ],
            )
            browsers.append(chair_browser)
            site_browser = await pw.chromium.launch(
                executable_path=link.chromium_executable(chromium),
                headless=True,
                args=CHROMIUM_ARGS,
            )
            browsers.append(site_browser)
            chair = await (
                await chair_browser.new_context(permissions=["camera", "microphone"])
            ).new_page()
            await _login(chair, province_url, "chutri", meeting_id)
            await chair.click("#btn-start")
            site = await (
                await site_browser.new_context(permissions=["camera", "microphone"])
            ).new_page()
            await _login(site, district_url, SITE, local)
            joined = time.monotonic()
            line = Poorline(link, province, district, chair, site, meeting_id, local, joined)
            await line.first_frame()
            yield line
        finally:
            for browser in browsers:
                with contextlib.suppress(Exception):
                    await browser.close()
            await pw.stop()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()
        offer_host_addresses(["127.0.0.1"])
