"""Tiers in the browser: the chair's Chromium publishes its camera in two tiers (the low one
with VP8 temporal layers), one site on ``auto`` climbs to the high tier on a clean line,
another picked "Thấp nhất" and decodes the base layer alone, and "Chỉ nghe tiếng" stops all
video across the site's link and is still chosen after a reload (rooms/tiers.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from rooms.meeting import LiveMeeting
from server.sockets.signaling import REGISTRY
from tests.conftest import TEST_OUTPUT, make_settings, serve_node
from tests.test_browser_live import CHROMIUM_ARGS, open_live, record, schedule_meeting, until

# The inbound video of a slot: its decoded frames, frame width and the page's frame rate.
INBOUND = """
async (slot) => {
  const h = window.hoinghi;
  const mid = h.midOf(slot);
  const stats = await h.pc.getStats();
  let found = null;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video" && s.mid === mid) {
      found = { frames: s.framesDecoded || 0, width: s.frameWidth || 0,
                fps: s.framesPerSecond || 0, bytes: s.bytesReceived || 0 };
    }
  });
  return found;
}
"""


AUDIO = """
async (slot) => {
  const h = window.hoinghi;
  const mid = h.midOf(slot);
  let found = null;
  (await h.pc.getStats()).forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "audio" && s.mid === mid) {
      found = { samples: s.totalSamplesReceived || 0, concealed: s.concealedSamples || 0 };
    }
  });
  return found;
}
"""


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'tiers.sqlite3'}")
    app, runner, url = await serve_node(settings)
    try:
        yield app, url
    finally:
        await runner.cleanup()


async def _inbound(page: Any, slot: str) -> dict[str, float]:
    found = await page.evaluate(INBOUND, slot)
    assert found is not None, f"no inbound video on {slot}"
    return dict(found)


@pytest.mark.timeout(180)
async def test_two_tiers_from_chromium_lowest_from_its_base_layer_and_audio_only(
    chromium: str, served: tuple[web.Application, str]
) -> None:
    app, base = served
    mid = await schedule_meeting(base, title="Hội nghị thử các mức hình")
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            chair = await open_live(browser, base, "chutri", mid, log)
            hr = await open_live(browser, base, "kt.cm-nc-hr", mid, log)
            tt = await open_live(browser, base, "kt.cm-nc-tt", mid, log)
            for page in (chair, hr, tt):
                await page.wait_for_selector("#conn.conn-connected", timeout=30_000)
            await chair.click("#btn-start")
            live: LiveMeeting | None = app[REGISTRY].get(mid)
            assert live is not None

            # The chair's browser sends both tiers; the low one in temporal layers.
            def chair_low() -> Any:
                peer = live.chair.peer if live.chair else None
                return peer.producers.get("camera.low") if peer else None

            for _ in range(60):
                low = chair_low()
                if low is not None and low.layered and low.frames > 20:
                    break
                await asyncio.sleep(0.5)
            low = chair_low()
            assert low is not None, "the chair has no low tier"
            assert low.frames > 20, "the chair's low tier does not arrive"
            assert low.layered, "Chromium sent no temporal layers on camera.low"

            # Xã Tam Giang picks "Thấp nhất": the base layer alone, still decoded.
            await tt.select_option("#rx-mode", "lowest")
            await until(tt, "() => window.hoinghi.state.you.receive.tier === 'lowest'")
            consumer = live.sites["CM-NC-TT"].peer.consumers["chair.video"]  # type: ignore[union-attr]
            for _ in range(40):
                if consumer.base_only:
                    break
                await asyncio.sleep(0.25)
            assert consumer.base_only, "the lowest tier is not the base layer"
            before = await _inbound(tt, "chair.video")
            await asyncio.sleep(3)
            after = await _inbound(tt, "chair.video")
            assert after["frames"] > before["frames"] + 5, (before, after)
            status = await tt.text_content("#rx-status") or ""
            assert "chất lượng thấp nhất" in status, status

            # Chromium offered RED for the audio it receives: with redundancy on (as the node
            # turns it on for a lossy line) the chair is still heard, every packet in RED.
            audio = live.sites["CM-NC-TT"].peer.consumers["chair.audio"]  # type: ignore[union-attr]
            assert audio.red_payload_type is not None, "no RED in the answer"
            live.sites["CM-NC-TT"].estimate._lossy_at = 1e12  # keep it on for this check
            live.sites["CM-NC-TT"].estimate.redundant = True
            before = await tt.evaluate(AUDIO, "chair.audio")
            await asyncio.sleep(3)
            after = await tt.evaluate(AUDIO, "chair.audio")
            assert audio.redundant_frames > 50, audio.redundant_frames
            received = after["samples"] - before["samples"]
            concealed = after["concealed"] - before["concealed"]
            assert received > 48_000, (before, after)  # more than a second of sound played
            assert concealed < 0.05 * received, (before, after)

            # Xã Hàm Rồng stays on "Tự động": a clean line proves the high tier within seconds.
            await until(
                hr, "() => window.hoinghi.state.you.receive.tier === 'high'", timeout_ms=40_000
            )
            await until(
                hr,
                """async () => {
                  const h = window.hoinghi; const mid = h.midOf("chair.video");
                  let w = 0; (await h.pc.getStats()).forEach((s) => {
                    if (s.type === "inbound-rtp" && s.mid === mid) w = s.frameWidth || 0; });
                  return w >= 480; }""",
                timeout_ms=30_000,
            )
            # The page told the node what it decodes (link_stats, every 2 s).
            for _ in range(40):
                if live.sites["CM-NC-HR"].estimate.client.fps > 0:
                    break
                await asyncio.sleep(0.5)
            assert live.sites["CM-NC-HR"].estimate.client.fps > 0

            # "Chỉ nghe tiếng": no video crosses Hàm Rồng's link; the chair is still heard.
            await hr.select_option("#rx-mode", "audio")
            site = live.sites["CM-NC-HR"]
            assert site.peer is not None
            slots = site.peer.consumers
            for _ in range(20):
                if slots["chair.video"].producer is None:
                    break
                await asyncio.sleep(0.25)
            assert slots["chair.video"].producer is None
            assert slots["chair.audio"].producer is not None
            video_bytes = slots["chair.video"].bytes_sent
            audio_bytes = slots["chair.audio"].bytes_sent
            await asyncio.sleep(2)
            assert slots["chair.video"].bytes_sent == video_bytes
            assert slots["chair.audio"].bytes_sent > audio_bytes
            await hr.screenshot(path=str(TEST_OUTPUT / "tiers-site-audio-only.png"), full_page=True)

            # A reload keeps the choice (the node keeps it for the unit, the browser too).
            await hr.reload()
            record(hr, "kt.cm-nc-hr (reloaded)", log)
            await hr.wait_for_selector("#conn.conn-connected", timeout=30_000)
            await until(hr, "() => window.hoinghi.state.you.receive.mode === 'audio'")
            assert await hr.eval_on_selector("#rx-mode", "el => el.value") == "audio"
            await tt.screenshot(path=str(TEST_OUTPUT / "tiers-site-lowest.png"), full_page=True)
        finally:
            (TEST_OUTPUT / "tiers-console.log").write_text("\n".join(log), encoding="utf-8")
            await browser.close()
