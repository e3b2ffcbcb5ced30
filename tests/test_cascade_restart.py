"""A district node killed (SIGKILL) during a live meeting, then started again.

The province is an app in this process; the district is a real ``hoinghi serve`` process
with its own SQLite database (server/demo/nodes.py starts it); its two commune sites are
Chromium pages with the fake camera. The province must show the district and its communes
offline within 3 s of the kill. After the restart, on the same port and database, the
district relinks and the pages rejoin and decode the chair again by themselves: nothing here
touches a page after the kill except to read it.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Page, async_playwright
from sqlalchemy import select

from rooms.meeting import LiveMeeting
from server.cascade.nodes import issue_credential
from server.db import create_engine, make_sessionmaker
from server.demo.nodes import DemoNode, node_settings, prepare, start_process, wait_answering
from server.models import Meeting
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.conftest import CHROMIUM, Node, start_node
from tests.live_helpers import (
    Participant,
    schedule,
    start_as_chair,
    wait_for,
)
from tests.test_attendance_cascade import events_at
from tests.test_browser_live import (
    CHROMIUM_ARGS,
    FRAMES_DECODED,
    OUT,
    frames_rise,
    open_live,
    until,
    wait_video,
)
from tests.test_demo_nodes import free_base_port

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
COMMUNES = {"kt.cm-nc-hr": "CM-NC-HR", "kt.cm-nc-tt": "CM-NC-TT"}
OFFLINE_WITHIN = 3.0  # the issue's figure, asserted as is
BACK_WITHIN = 5.0  # the issue's figure for the program to reach the sites again...
BACK_SLACK = 5.0  # ...plus room for a busy 2-core machine; the figure seen is reported
# A node is down this long at least (a restart by hand or by a service manager takes
# seconds): long enough for the pages' reconnection backoff to have grown.
DOWN_FOR = 12.0

# The page's current link is a new one (not the one marked before the kill) with the
# chair's slot negotiated.
NEW_LINK = """
(slot) => {
  const h = window.hoinghi;
  return Boolean(h.pc && h.pc !== window.linkBeforeKill && h.midOf(slot) !== undefined);
}
"""


class District:
    """The district node as a process: started, killed and started again."""

    def __init__(self, node: DemoNode, log: Path) -> None:
        self.node = node
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> float:
        """Start ``hoinghi serve``; the monotonic time it first answered HTTP."""
        with self.log.open("ab") as out:
            self.proc = start_process(self.node, out)
        problem = await asyncio.to_thread(wait_answering, [(self.node, self.proc)])
        assert not problem, f"{problem}:\n{self.tail()}"
        return time.monotonic()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-4000:]


async def _district(province: Node, tmp_path: Path) -> District:
    """A district node for CM-NC: migrated and demo-seeded, its credential from the province."""
    port = free_base_port()
    node = DemoNode(
        "cm-nc",
        port,
        "127.0.0.1",
        tmp_path / "cm-nc",
        parent_url=f"http://127.0.0.1:{province.client.server.port}",
        served_units=["CM-NC"],
    )
    node.credential = await issue_credential(province.app[CTX], "CM-NC", ["CM-NC"], node.url)
    node.data_dir.mkdir()
    await prepare([node])
    return District(node, tmp_path / "district.log")


async def _mirrored_id(district: District, parent_id: int) -> int:
    """The id under which the district stored the province's meeting (in its own database)."""
    engine = create_engine(node_settings(district.node).effective_database_url)
    try:
        deadline = time.monotonic() + 20
        while True:
            async with make_sessionmaker(engine)() as db:
                found = (
                    await db.execute(
                        select(Meeting.id).where(Meeting.origin_meeting_id == parent_id)
                    )
                ).scalar_one_or_none()
            if found is not None:
                return int(found)
            assert time.monotonic() < deadline, f"never mirrored:\n{district.tail()}"
            await asyncio.sleep(0.2)
    finally:
        await engine.dispose()


def _shown(live: LiveMeeting, online: bool) -> bool:
    """The province shows CM-NC and both its communes online (or all three offline)."""
    relay = live.relays.get("CM-NC")
    sites = [live.remote_sites.get(unit) for unit in COMMUNES.values()]
    return (
        relay is not None
        and relay.online is online
        and all(s is not None and s["online"] is online for s in sites)
    )


def _chair_sees(state: dict[str, Any], online: bool) -> bool:
    nodes = [n for n in state.get("nodes", []) if n["node"] == "CM-NC"]
    sites = {s["unit"]: s for s in state.get("sites", [])}
    return (
        len(nodes) == 1
        and nodes[0]["online"] is online
        and all(u in sites and sites[u]["online"] is online for u in COMMUNES.values())
    )


async def _decodes_again(page: Page) -> int:
    """framesDecoded of the chair's video on the page's new link (0 until it decodes)."""
    if not await page.evaluate(NEW_LINK, "chair.video"):
        return 0
    try:
        frames = await page.evaluate(FRAMES_DECODED, "chair.video")
    except PlaywrightError:  # the link can be replaced between the two reads
        return 0
    return int(frames or 0)


async def _attendance_shows_the_crash(province: Node, meeting_id: int, killed: float) -> None:
    """The crash reads, at the province, as a drop of each commune at the kill and a rejoin
    (not as presence throughout): the district recorded each drop at its last second alive
    when it started again, and sent it up with the rest."""
    deadline = time.monotonic() + 20
    while True:
        rows = await events_at(province, meeting_id)
        by_unit = {
            unit: [r for r in rows if r.unit_code == unit and r.kind in ("join", "drop")]
            for unit in COMMUNES.values()
        }
        if all(len(kinds) >= 3 for kinds in by_unit.values()):
            break
        assert time.monotonic() < deadline, f"attendance at the province: {by_unit}"
        await asyncio.sleep(0.2)
    for unit, events in by_unit.items():
        assert [(e.kind, e.reason) for e in events[:3]] == [
            ("join", "join"),
            ("drop", "node_restart"),
            ("join", "join"),
        ], unit
        dropped = events[1].at.timestamp() + events[1].offset_ms / 1000
        # The node notes it is alive every second: the drop is at most that before the kill.
        assert killed - 1.5 <= dropped <= killed + 0.5, (unit, dropped - killed)
    own = [r.kind for r in rows if r.origin_node == "root" and r.node == "CM-NC"]
    assert own[-2:] == ["node_down", "node_up"], own


@pytest.mark.timeout(240)
@pytest.mark.usefixtures("chromium")
async def test_killed_district_shows_offline_and_after_restart_its_sites_rejoin_by_themselves(
    aiohttp_client: ClientFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The district process offers media on loopback only, like every peer in the tests.
    monkeypatch.setenv("HOINGHI_MEDIA_ADDRESSES", "127.0.0.1")
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    district = await _district(province, tmp_path)
    log: list[str] = []
    figures: list[str] = []
    chair: Participant | None = None
    began = time.monotonic()

    def mark(step: str) -> None:  # where the time goes, in test-output/restart-console.log
        log.append(f"{time.monotonic():.1f} --- {time.monotonic() - began:6.1f} s  {step}")

    try:
        await district.start()
        mark("district process answers")
        chair_session = await province.login("chutri")
        meeting_id = await schedule(
            chair_session, title="Huyện khởi động lại", invited_subtrees=["CM-NC"]
        )
        local_id = await _mirrored_id(district, meeting_id)
        chair = await start_as_chair(province, chair_session, meeting_id)
        live = province.app[REGISTRY].get(meeting_id)
        assert live is not None
        mark("meeting mirrored, chair live")

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            mark("chromium launched")
            try:
                pages = [
                    await open_live(browser, district.node.url, user, local_id, log)
                    for user in COMMUNES
                ]
                for page in pages:
                    await page.wait_for_selector("#conn.conn-connected", timeout=30_000)
                    await wait_video(page, "chair-video")
                    first, second = await frames_rise(page, "chair.video")
                    assert second > first, f"no chair video before the kill ({first} → {second})"
                    mark("a page decodes the chair")
                await chair.wait_state(lambda s: _chair_sees(s, online=True), 20)

                # Kill the district node outright.
                for page in pages:
                    await page.evaluate("() => { window.linkBeforeKill = window.hoinghi.pc; }")
                district.kill()
                killed = time.monotonic()
                killed_wall = time.time()
                log.append(f"{killed:.1f} --- district killed")
                await wait_for(lambda: _shown(live, online=False), 10, "CM-NC shown offline")
                offline_after = time.monotonic() - killed
                # The chair's console is told in the same breath (a state push; 10 s for a
                # starved machine).
                await chair.wait_state(lambda s: _chair_sees(s, online=False), 10)
                figures.append(f"offline shown {offline_after:.2f} s after SIGKILL")
                assert offline_after < OFFLINE_WITHIN, figures
                for page in pages:
                    await until(page, "() => document.body.dataset.connection !== 'connected'")
                mark("pages say the node is lost")

                # Start it again on the same port and database; nobody touches the pages.
                await asyncio.sleep(killed + DOWN_FOR - time.monotonic())
                answering = await district.start()
                log.append(f"{answering:.1f} --- district answers HTTP")
                figures.append(f"answered HTTP {answering - killed:.2f} s after the kill")
                decoded: dict[int, float] = {}
                relinked = back = 0.0
                deadline = answering + 40
                while len(decoded) < len(pages) or not relinked or not back:
                    now = time.monotonic()
                    assert now < deadline, f"{figures}, decoded {decoded}:\n{district.tail()}"
                    relay = live.relays.get("CM-NC")
                    if not relinked and relay is not None and relay.peer is not None:
                        relinked = now
                    if not back and _shown(live, online=True):
                        back = now
                    for i, page in enumerate(pages):
                        if i not in decoded and await _decodes_again(page) > 0:
                            decoded[i] = time.monotonic()
                    await asyncio.sleep(0.1)
                figures.append(f"relinked {relinked - answering:.2f} s after answering")
                figures.append(f"communes online at the province {back - answering:.2f} s after")
                for i, user in enumerate(COMMUNES):
                    figures.append(f"{user} decodes the chair {decoded[i] - answering:.2f} s after")
                log.append("figures: " + "; ".join(figures))
                assert max(decoded.values()) - answering < BACK_WITHIN + BACK_SLACK, figures
                for page in pages:
                    first, second = await frames_rise(page, "chair.video")
                    assert second > first, f"chair frames not rising after the restart: {figures}"
                    await page.wait_for_selector("#conn.conn-connected", timeout=10_000)
                await chair.wait_state(lambda s: _chair_sees(s, online=True), 5)
                mark("all back")
                await _attendance_shows_the_crash(province, meeting_id, killed_wall)
            finally:
                OUT.mkdir(exist_ok=True)
                (OUT / "restart-console.log").write_text("\n".join(log), encoding="utf-8")
                await browser.close()
    finally:
        if chair is not None:
            await chair.close()
        district.stop()
        if district.log.exists():  # the node's own log, for whoever reads test-output/
            (OUT / "restart-district.log").write_bytes(district.log.read_bytes())
        await province.close()
