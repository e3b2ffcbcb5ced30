"""The shaped-link kit (tests/netshape.py) with real traffic through real namespaces.

UDP goes from a socket on the host to one opened at the site (or back), paced by a thread;
the figures each test measured are logged (``--log-cli-level=INFO`` shows them). Bands are
generous: the machine may be busy, and a few seconds of traffic is a small sample.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import async_playwright

from tests import netshape
from tests.netshape import Direction, ShapedLink, Snapshot, Traffic, cleanup_stale

log = logging.getLogger(__name__)
MakeLink = Callable[..., ShapedLink]
HEADER = struct.Struct("!Id")  # sequence number, time.monotonic() at sending
FRAME_OVERHEAD = 42  # Ethernet 14 + IPv4 20 + UDP 8: what the link counts beyond the payload
SO_RCVBUFFORCE = 33  # Linux; root may grow the buffer past rmem_max


@dataclass
class Arrival:
    at: float
    seq: int
    sent: float
    size: int


@dataclass
class Receiver:
    """A UDP socket draining into a list from a thread, so a busy test never overflows it."""

    sock: socket.socket
    arrivals: list[Arrival] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        self.sock.settimeout(0.1)
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            seq, sent = HEADER.unpack_from(data)
            self.arrivals.append(Arrival(time.monotonic(), seq, sent, len(data)))

    def settle(self, quiet: float = 0.7, limit: float = 10.0) -> None:
        """Waits until nothing has arrived for ``quiet`` seconds (queues drained)."""
        deadline = time.monotonic() + limit
        seen = -1
        while time.monotonic() < deadline and len(self.arrivals) != seen:
            seen = len(self.arrivals)
            time.sleep(quiet)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sock.close()

    def kbit_s(self, start: float, end: float) -> float:
        """Payload kbit/s that arrived between two instants."""
        got = sum(a.size for a in self.arrivals if start <= a.at < end)
        return got * 8 / 1000 / (end - start)


@dataclass
class Pair:
    link: ShapedLink
    direction: Direction
    sender: socket.socket
    receiver: Receiver
    sent: int = 0
    marks: dict[str, Snapshot] = field(default_factory=dict)

    @property
    def dest(self) -> tuple[str, int]:
        host, port = self.receiver.sock.getsockname()[:2]
        return str(host), int(port)

    def send(
        self,
        kbit: float,
        seconds: float,
        size: int = 1200,
        at: dict[float, Callable[[], None]] | None = None,
    ) -> float:
        """Sends ``size``-byte datagrams at ``kbit`` for ``seconds``, catching up after any
        stall; runs each ``at`` action once its offset (seconds) is reached. Returns the
        start time."""
        interval = size * 8 / (kbit * 1000)
        actions = sorted((at or {}).items())
        start = time.monotonic()
        first = self.sent
        while (elapsed := time.monotonic() - start) < seconds:
            while actions and actions[0][0] <= elapsed:
                actions.pop(0)[1]()
            while self.sent - first < int(elapsed / interval) + 1:
                payload = HEADER.pack(self.sent, time.monotonic()).ljust(size, b"\0")
                self.sender.sendto(payload, self.dest)
                self.sent += 1
            time.sleep(0.002)
        for _, action in actions:
            action()
        return start

    def mark(self, name: str) -> Callable[[], None]:
        def take() -> None:
            self.marks[name] = self.link.snapshot()

        return take

    def traffic(self, first: str, second: str) -> Traffic:
        return self.marks[second].since(self.marks[first])


@pytest.fixture
def udp(shaped_link: MakeLink) -> Iterator[Callable[..., Pair]]:
    """``udp(direction, **link_options)``: a link and a UDP sender/receiver across it."""
    pairs: list[Pair] = []

    def make(direction: Direction, **options: object) -> Pair:
        link = shaped_link(**options)
        if direction == "down":
            rx, tx = link.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind((link.site_address, 0))
        else:
            rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), link.socket()
            rx.bind((link.host_address, 0))
        receiver = Receiver(rx)
        receiver.start()
        pair = Pair(link, direction, tx, receiver)
        pairs.append(pair)
        return pair

    yield make
    for pair in pairs:
        pair.receiver.stop()
        pair.sender.close()


def flow(traffic: Traffic, direction: Direction) -> tuple[int, int, int]:
    f = traffic.down if direction == "down" else traffic.up
    return f.delivered_packets, f.lost_packets, f.shaper_drops


# -- bandwidth ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("direction", ["down", "up"])
def test_a_1_mbit_stream_arrives_at_about_256_kbit(
    udp: Callable[..., Pair], direction: Direction
) -> None:
    rates = {"down_kbit": 256} if direction == "down" else {"up_kbit": 256}
    pair = udp(direction, **rates)
    start = pair.send(1000, 4.0, at={1.0: pair.mark("steady"), 4.0: pair.mark("end")})
    pair.receiver.settle()
    payload = pair.receiver.kbit_s(start + 1.0, start + 4.0)
    traffic = pair.traffic("steady", "end")
    link_kbit = traffic.kbit_s(direction)
    delays = sorted(a.at - a.sent for a in pair.receiver.arrivals)
    _, lost, shaper_drops = flow(traffic, direction)
    log.info(
        "%s 256 kbit: sent 1000 kbit/s, payload %.0f kbit/s, link %.0f kbit/s, "
        "queueing delay median %.0f ms max %.0f ms, tbf dropped %d of %d",
        direction, payload, link_kbit, delays[len(delays) // 2] * 1000, delays[-1] * 1000,
        shaper_drops, pair.sent,
    )  # fmt: skip
    assert 150 <= payload <= 320
    assert 150 <= link_kbit <= 330
    assert lost == 0
    assert shaper_drops > 0  # the excess was dropped at the queue, not delivered late
    # A sender four times too fast fills tbf's queue: about 400 ms of it at 256 kbit/s.
    assert delays[-1] > 0.2
    # The other way carried nothing but the odd ARP frame.
    other = traffic.up if direction == "down" else traffic.down
    assert other.delivered_packets <= 4


@pytest.mark.timeout(60)
def test_set_rate_changes_the_rate_while_traffic_flows(udp: Callable[..., Pair]) -> None:
    pair = udp("down", down_kbit=512)
    link = pair.link
    start = pair.send(1000, 5.5, at={2.5: lambda: link.set_rate(128)})
    pair.receiver.settle()
    before = pair.receiver.kbit_s(start + 1.0, start + 2.5)
    after = pair.receiver.kbit_s(start + 3.5, start + 5.5)
    log.info("set_rate 512 -> 128 kbit: payload %.0f then %.0f kbit/s", before, after)
    assert 350 <= before <= 560
    assert 70 <= after <= 165
    assert link.shape.down_kbit == 128
    assert link.shape.up_kbit is None

    link.set_rate(None)  # unshaped: the whole megabit gets through
    start = pair.send(1000, 2.0)
    pair.receiver.settle()
    unshaped = pair.receiver.kbit_s(start + 0.5, start + 2.0)
    log.info("set_rate None: payload %.0f kbit/s of 1000 sent", unshaped)
    assert unshaped > 700


# -- loss -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_loss_drops_about_the_share_set_each_way(shaped_link: MakeLink) -> None:
    link = shaped_link(down_loss_pct=5, up_loss_pct=20)
    measured = {}
    for direction in ("down", "up"):
        if direction == "down":
            rx, tx = link.socket(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind((link.site_address, 0))
        else:
            rx, tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), link.socket()
            rx.bind((link.host_address, 0))
        receiver = Receiver(rx)
        receiver.start()
        pair = Pair(link, direction, tx, receiver)
        before = link.snapshot()
        pair.send(4000, 1.5, size=200)  # 3750 datagrams, unshaped
        receiver.settle()
        traffic = link.snapshot().since(before)
        receiver.stop()
        tx.close()
        delivered, lost, _ = flow(traffic, direction)
        got = len(receiver.arrivals)
        measured[direction] = 100 * (pair.sent - got) / pair.sent
        log.info(
            "%s loss set %s%%: sent %d, received %d (%.2f%% lost); nft dropped %d",
            direction, link.shape.down_loss_pct if direction == "down" else
            link.shape.up_loss_pct, pair.sent, got, measured[direction], lost,
        )  # fmt: skip
        # Every datagram the rule did not drop arrived: the counters and the receiver agree.
        assert got + lost == pair.sent
        assert got <= delivered <= got + 4  # + ARP
    assert 2.5 <= measured["down"] <= 8
    assert 15 <= measured["up"] <= 25

    link.set_loss(0)
    assert (link.shape.down_loss_pct, link.shape.up_loss_pct) == (0, 0)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("direction", ["down", "up"])
def test_blackout_drops_every_datagram_then_the_link_recovers(
    udp: Callable[..., Pair], direction: Direction
) -> None:
    pair = udp(direction, down_kbit=1000, up_kbit=1000)
    link = pair.link
    start = pair.send(200, 3.5, size=500, at={1.0: lambda: link.blackout(direction, 1.5)})
    pair.receiver.settle()
    arrivals = pair.receiver.arrivals
    gaps = [b.sent - a.sent for a, b in itertools.pairwise(arrivals)]
    during = [a for a in arrivals if start + 1.1 <= a.sent < start + 2.4]
    after = [a for a in arrivals if a.sent >= start + 2.7]
    log.info(
        "%s blackout 1.5 s: %d sent, %d received, longest gap %.2f s, %d after it",
        direction, pair.sent, len(arrivals), max(gaps), len(after),
    )  # fmt: skip
    assert during == []
    assert max(gaps) >= 1.2
    assert len(after) > 20  # recovered by itself, no call needed
    assert getattr(link.shape, f"{direction}_drop_all") is False

    # The switch form, both ways at once, for a test that holds a blackout as long as it likes.
    link.set_drop_all("both", True)
    before, sent = link.snapshot(), pair.sent
    pair.send(200, 0.5, size=500)
    pair.receiver.settle(quiet=0.3)
    _, lost, _ = flow(link.snapshot().since(before), direction)
    assert lost == pair.sent - sent > 0
    assert len(pair.receiver.arrivals) == len(arrivals)
    link.set_drop_all("both", False)
    assert link.shape.down_drop_all is link.shape.up_drop_all is False


# -- counters -------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_byte_counters_agree_with_what_was_sent(udp: Callable[..., Pair]) -> None:
    pair = udp("down", down_kbit=512, up_kbit=512)
    before = pair.link.snapshot()
    pair.send(400, 1.0, size=700)
    pair.receiver.settle()
    traffic = pair.link.snapshot().since(before)
    got = len(pair.receiver.arrivals)
    log.info("counters: %d datagrams of 700 bytes, link counted %s", got, traffic.down)
    assert got == pair.sent  # under the rate: nothing queued out
    frames = got * (700 + FRAME_OVERHEAD)
    assert got <= traffic.down.delivered_packets <= got + 4
    assert frames <= traffic.down.delivered_bytes <= frames + 4 * 64
    assert traffic.down.lost_packets == traffic.down.shaper_drops == 0
    assert traffic.up.delivered_packets <= 4
    assert traffic.seconds > 1.0


# -- TCP through a lossy link ---------------------------------------------------------------

FETCH = """
import hashlib, sys, urllib.request
body = urllib.request.urlopen(sys.argv[1], timeout=40).read()
print(len(body), hashlib.sha256(body).hexdigest())
"""


async def serve(
    host: str, body: bytes, callers: list[str] | None = None
) -> tuple[web.AppRunner, int]:
    async def handler(request: web.Request) -> web.Response:
        if callers is not None:
            callers.append(str(request.remote))
        return web.Response(body=body, content_type="text/plain")  # a page, not a download

    app = web.Application()
    app.router.add_get("/", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def fetch_from_site(link: ShapedLink, url: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *link.command([sys.executable, "-c", FETCH, url]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    size, digest = out.decode().split()
    return int(size), digest


@pytest.mark.timeout(90)
async def test_http_over_tcp_crosses_a_link_losing_a_fifth_of_its_udp(
    shaped_link: MakeLink,
) -> None:
    link = shaped_link(down_kbit=256, up_kbit=128, down_loss_pct=20, up_loss_pct=20)
    body = bytes(range(256)) * 256  # 64 KiB: about 2 s at 256 kbit/s
    runner, port = await serve(link.host_address, body)
    try:
        before = link.snapshot()
        began = time.monotonic()
        size, digest = await fetch_from_site(link, f"http://{link.host_address}:{port}/")
        took = time.monotonic() - began
        traffic = link.snapshot().since(before)
    finally:
        await runner.cleanup()
    log.info(
        "TCP 64 KiB at 256/128 kbit with 20%% UDP loss: %.1f s, down %d bytes, lost %d/%d",
        took, traffic.down.delivered_bytes, traffic.down.lost_packets, traffic.up.lost_packets,
    )  # fmt: skip
    assert (size, digest) == (len(body), hashlib.sha256(body).hexdigest())
    assert traffic.down.lost_packets == traffic.up.lost_packets == 0
    assert traffic.down.delivered_bytes >= len(body)
    assert took >= 0.7 * len(body) * 8 / 256_000  # it was shaped: physics, not speed


@pytest.mark.timeout(90)
async def test_loss_tcp_drops_tcp_too_and_tcp_recovers(shaped_link: MakeLink) -> None:
    link = shaped_link(down_loss_pct=5, up_loss_pct=5, loss_tcp=True)
    body = bytes(range(256)) * 1024  # 256 KiB, unshaped
    runner, port = await serve(link.host_address, body)
    try:
        before = link.snapshot()
        size, digest = await fetch_from_site(link, f"http://{link.host_address}:{port}/")
        traffic = link.snapshot().since(before)
    finally:
        await runner.cleanup()
    log.info(
        "TCP 256 KiB with 5%% TCP loss: dropped %d down, %d up",
        traffic.down.lost_packets, traffic.up.lost_packets,
    )  # fmt: skip
    assert (size, digest) == (len(body), hashlib.sha256(body).hexdigest())
    assert traffic.down.lost_packets + traffic.up.lost_packets > 0


# -- Chromium at the site -------------------------------------------------------------------


@pytest.mark.timeout(120)
async def test_chromium_at_the_site_reaches_the_host_end_but_not_host_loopback(
    shaped_link: MakeLink, chromium: str
) -> None:
    link = shaped_link(down_kbit=1000, up_kbit=512)
    callers: list[str] = []
    site_runner, site_port = await serve(link.host_address, b"reached the host end", callers)
    loop_runner, loop_port = await serve("127.0.0.1", b"host loopback")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=link.chromium_executable(chromium),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                      "--disable-component-update", "--disable-sync", "--no-first-run"],
            )  # fmt: skip
            try:
                page = await browser.new_page()
                await page.goto(f"http://{link.host_address}:{site_port}/", timeout=30_000)
                assert "reached the host end" in await page.content()
                assert set(callers) == {link.site_address}  # the browser is at the site
                with pytest.raises(PlaywrightError, match="ERR_CONNECTION_REFUSED"):
                    await page.goto(f"http://127.0.0.1:{loop_port}/", timeout=30_000)
            finally:
                await browser.close()
    finally:
        await site_runner.cleanup()
        await loop_runner.cleanup()


# -- clean-up -------------------------------------------------------------------------------


def leftovers(name: str) -> list[str]:
    found = []
    if name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        found.append(f"namespace {name}")
    if Path(f"/sys/class/net/{name}").exists():
        found.append(f"veth {name}")
    return found


STALE_CHILD = """
import sys, time
sys.path.insert(0, sys.argv[1])
from tests.netshape import ShapedLink
link = ShapedLink(256, 256, down_loss_pct=5).open()
print(link.name, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(60)
def test_close_and_cleanup_stale_leave_no_namespace_or_veth(shaped_link: MakeLink) -> None:
    link = shaped_link(down_kbit=256, up_loss_pct=3)
    sleeper = link.popen(["sleep", "60"])
    name = link.name
    assert leftovers(name) == [f"namespace {name}", f"veth {name}"]
    link.close()
    assert leftovers(name) == []
    assert sleeper.wait(timeout=10) != 0  # killed with its namespace
    link.close()  # idempotent

    # A run killed outright leaves its link; cleanup_stale removes it, and only it.
    live = shaped_link()
    root = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen(
        [sys.executable, "-c", STALE_CHILD, root], stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        stale = child.stdout.readline().strip()
        assert leftovers(stale) == [f"namespace {stale}", f"veth {stale}"]
    finally:
        child.kill()
        child.wait(timeout=10)
    assert stale in cleanup_stale()
    assert leftovers(stale) == []
    assert leftovers(live.name) == [f"namespace {live.name}", f"veth {live.name}"]


@pytest.mark.timeout(30)
def test_bad_settings_are_refused_with_a_clear_error(shaped_link: MakeLink) -> None:
    link = shaped_link()
    with pytest.raises(ValueError, match="rate must be positive"):
        link.set_rate(0)
    with pytest.raises(ValueError, match="between 0 and 100"):
        link.set_loss(150)
    assert link.shape.down_kbit is None
    assert link.shape.down_loss_pct == 0


@pytest.mark.timeout(30)
@pytest.mark.parametrize("required", [False, True])
def test_where_links_cannot_be_built_tests_skip_unless_services_are_required(
    monkeypatch: pytest.MonkeyPatch, required: bool
) -> None:
    monkeypatch.setattr(netshape, "available", lambda: (False, "shaped links need root"))
    monkeypatch.setenv("HOINGHI_REQUIRE_SERVICES", "1" if required else "0")
    outcome = pytest.fail.Exception if required else pytest.skip.Exception
    with pytest.raises(outcome, match="shaped links need root"):
        netshape.require()
