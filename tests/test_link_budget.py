"""Link budgets across the cascade (rooms/budget.py): the province chair publishes from
Chromium in two tiers; the district link of Năm Căn has a budget of 300 kbit/s and carries
only the low tier and audio, measured in bytes on the link, while a commune on the province
node itself receives the high tier. Raising the budget (``node set``) lets the high tier
cross as soon as a site below wants it; a child that needs only the lowest tier gets the
base layer alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import async_playwright

from rooms.meeting import LiveMeeting
from server.cascade.nodes import set_budget
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.busy_video import write_busy_video
from tests.conftest import TEST_OUTPUT, Tree
from tests.live_helpers import join_site, local_meeting_id, schedule, wait_for
from tests.test_browser_live import CHROMIUM_ARGS, open_live

TITLE = "Hội nghị thử ngân sách đường truyền"
BUDGET = 300


def _link_bytes(peer: Any) -> int:
    """What the province sent on a relay link: the DTLS transport's byte counter (SRTP and
    SRTCP, every slot), i.e. the link's own bytes bar the UDP and IP headers."""
    assert peer.pc is not None
    dtls = peer.pc.getTransceivers()[0].sender.transport
    return int(dtls._RTCDtlsTransport__tx_bytes)


async def _rate(read: Any, seconds: float) -> float:
    before, start = read(), time.monotonic()
    await asyncio.sleep(seconds)
    return (read() - before) * 8 / 1000 / (time.monotonic() - start)


@pytest.mark.timeout(240)
async def test_a_300_kbit_district_link_carries_only_the_low_tier_and_audio(
    chromium: str, tree: Tree, tmp_path: Path
) -> None:
    video = write_busy_video(tmp_path / "busy.y4m")
    province = tree.province
    await set_budget(province.app[CTX], "CM-NC", BUDGET)
    chair_session = await province.login("chutri")
    meeting_id = await schedule(
        chair_session, title=TITLE, invited_subtrees=["CM-NC"], invited_units=["CM-TVT-TT"]
    )
    district = tree.districts["CM-NC"]
    local = await local_meeting_id(district, "kt.cm-nc-hr", TITLE)
    base = f"http://127.0.0.1:{province.client.server.port}"
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[*CHROMIUM_ARGS, f"--use-file-for-fake-video-capture={video}"],
        )
        try:
            chair = await open_live(browser, base, "chutri", meeting_id, log)
            await chair.wait_for_selector("#conn.conn-connected", timeout=30_000)
            await chair.click("#btn-start")
            # Both sites want the high tier: one below the district, one on the province.
            below = await join_site(district, "kt.cm-nc-hr", local, decode=False)
            here = await join_site(province, "kt.cm-tvt-tt", meeting_id, decode=False)
            for site in (below, here):
                assert (await site.call("receive_mode", {"mode": "high"}))["ok"]
            live: LiveMeeting | None = province.app[REGISTRY].get(meeting_id)
            assert live is not None
            await wait_for(lambda: "CM-NC" in live.relays, 30, "the district's relay")
            await wait_for(
                lambda: below.probe is not None and below.probe.stats["chair.video"].frames > 60,
                40,
                "the commune below the district to receive the program",
            )
            relay = live.relays["CM-NC"]
            assert relay.peer is not None
            assert relay.budget_kbit == BUDGET
            assert relay.needs == frozenset({"high"})
            slots = relay.peer.consumers
            assert live.chair is not None
            assert live.chair.peer is not None
            camera = live.chair.peer.producers["camera"]
            camera_low = live.chair.peer.producers["camera.low"]
            # The link: no high tier, the low one and the audio, within the budget.
            await wait_for(
                lambda: camera.rate.kbit(time.monotonic()) > BUDGET, 30, "the high tier to fill"
            )
            high_before = slots["chair.video"].bytes_sent
            link_kbit = await _rate(lambda: _link_bytes(relay.peer), 8.0)
            assert slots["chair.video"].producer is None
            assert slots["chair.video"].bytes_sent == high_before
            assert slots["chair.video.low"].producer is camera_low
            assert slots["chair.audio"].producer is not None
            high_kbit = camera.rate.kbit(time.monotonic())
            figures = f"link {link_kbit:.0f} kbit/s, the chair's high tier {high_kbit:.0f}"
            (TEST_OUTPUT / "link-budget.txt").write_text(figures + "\n", encoding="utf-8")
            assert 20 < link_kbit <= BUDGET, figures
            assert high_kbit > BUDGET, figures  # the high tier would not have fitted
            # The commune on the province itself gets the high tier.
            here_slots = live.sites["CM-TVT-TT"].peer.consumers  # type: ignore[union-attr]
            assert here_slots["chair.video"].producer is camera
            # The site below receives the low tier, the best its link carries.
            assert below.probe is not None
            frames = below.probe.stats["chair.video"].frames
            await asyncio.sleep(2)
            assert below.probe.stats["chair.video"].frames > frames + 10

            # A bigger budget, from the command line's function: the high tier crosses too.
            await set_budget(province.app[CTX], "CM-NC", 5000)
            await wait_for(lambda: slots["chair.video"].producer is camera, 15, "the high tier")

            # The sites below need only the lowest tier: the base layer alone crosses.
            assert (await below.call("receive_mode", {"mode": "lowest"}))["ok"]
            await wait_for(lambda: relay.needs == frozenset({"lowest"}), 15, "the district's needs")
            await wait_for(
                lambda: (
                    slots["chair.video"].producer is None and slots["chair.video.low"].base_only
                ),
                15,
                "the lowest tier alone",
            )
            await below.close()
            await here.close()
        finally:
            await browser.close()
