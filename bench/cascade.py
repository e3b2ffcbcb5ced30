"""What one cascade hop adds: latency per hop, and the bytes on a district's uplink.

Two real nodes run as ``hoinghi serve`` processes, set up as ``hoinghi demo --nodes 3``
sets them up (``server.demo.nodes``; the second district is not started): the province and
the district Năm Căn (CM-NC), linked by a node credential. This process plays everyone else,
through the same HTTP login and ``/meeting`` socket as the browser client:

* the **chair** on the province node publishes a video track of 640x480-sized frames at
  30 fps (a 20 kB keyframe every second, 4 kB frames between) and an audio track of 80-byte
  frames every 20 ms. The nodes never decode what they forward, so these frames need not be
  decodable: their bytes carry a sequence number and the send time (``CLOCK_MONOTONIC``, the
  same clock in every process of this machine), written just before aiortc packetizes them;
* **one site** on the province node (Khánh Bình, a commune of Trần Văn Thời, which the
  province serves itself): the program crosses one node;
* **ten sites** on the district node (Năm Căn's eight communes and two added for the run):
  the program crosses the province node, the link, and the district node.

Every site stamps each frame when its last packet completes it (``FrameAssembler``, no
jitter buffer, no decoding), so a frame's latency is that stamp minus the send time it
carries. What one hop adds is, frame by frame, the latency at a district site minus the
latency of the same frame at the province's site. The uplink's bytes come from the
district node's ``GET /api/links`` (its transport's SRTP and SRTCP bytes, both ways), over a
window with one district site and over one with ten.

Progress goes to stderr; the last line on stdout is one JSON object.

    .venv/bin/python bench/cascade.py          # about a minute
"""

from __future__ import annotations

import argparse
import asyncio
import fractions
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
import av  # noqa: E402
import socketio  # noqa: E402
from aiortc import (  # noqa: E402
    MediaStreamTrack,
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtp import RtcpPsfbPacket  # noqa: E402

from rooms.frames import EncodedFrame  # noqa: E402
from rooms.ice import close_peer_connection, enlarge_receive_buffers  # noqa: E402
from rooms.peer import Slot  # noqa: E402
from rooms.probe import ProbePeer, SlotStats  # noqa: E402
from server.config import load_settings  # noqa: E402
from server.demo.nodes import DemoNode, plan, prepare, start_process, wait_answering  # noqa: E402
from server.demo.tree import DEMO_PASSWORD, commune_operators  # noqa: E402

MAGIC = b"HNTS"
STAMP = struct.Struct("!4sIQ")  # magic, sequence number, send time (ns, CLOCK_MONOTONIC)
VIDEO_CLOCK = 90_000
AUDIO_CLOCK = 48_000
KEYFRAME_BYTES = 20_000
DELTA_BYTES = 4_000
AUDIO_BYTES = 80
FPS = 30
PROVINCE_SITE = "kt.cm-tvt-kb"
EXTRA_UNITS = [("CM-NC-X1", "Xã Thử Nghiệm 1"), ("CM-NC-X2", "Xã Thử Nghiệm 2")]
# Năm Căn's eight communes, and two more added on the district node for the run.
DISTRICT_SITES = [*commune_operators("CM-NC"), *("kt." + code.lower() for code, _ in EXTRA_UNITS)]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- the chair's stamped media -------------------------------------------------------------------


def vp8_like(seq: int, size: int, keyframe: bool) -> bytes:
    """A frame that the nodes take for VP8 (frame tag, and on a keyframe the start code and
    a 640x480 size), carrying the stamp; the rest is filler."""
    if keyframe:
        head = (
            b"\x10\x02\x00\x9d\x01\x2a" + (640).to_bytes(2, "little") + (480).to_bytes(2, "little")
        )
    else:
        head = b"\x31\x02\x00"
    stamp = STAMP.pack(MAGIC, seq, time.monotonic_ns())
    return head + stamp + bytes(size - len(head) - len(stamp))


def read_stamp(data: bytes) -> tuple[int, int] | None:
    """(sequence, send time ns) from a frame built here, or None."""
    at = data.find(MAGIC, 0, 16)
    if at < 0:
        return None
    _magic, seq, sent = STAMP.unpack_from(data, at)
    return seq, sent


class StampedTrack(MediaStreamTrack):
    """Encoded frames (``av.Packet``) at a steady rate; aiortc's sender only packetizes them."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.seq = 0
        self.keyframe_wanted = True
        self._start: float | None = None

    async def recv(self) -> Any:
        interval = 1 / FPS if self.kind == "video" else 0.02
        if self._start is None:
            self._start = time.monotonic()
        delay = self._start + self.seq * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        seq = self.seq
        self.seq += 1
        if self.kind == "video":
            keyframe = self.keyframe_wanted or seq % FPS == 0
            self.keyframe_wanted = False
            data = vp8_like(seq, KEYFRAME_BYTES if keyframe else DELTA_BYTES, keyframe)
            clock = VIDEO_CLOCK
            step = VIDEO_CLOCK // FPS
        else:
            data = b"\x78" + STAMP.pack(MAGIC, seq, time.monotonic_ns())
            data += bytes(AUDIO_BYTES - len(data))
            clock, step = AUDIO_CLOCK, AUDIO_CLOCK // 50
        packet = av.Packet(data)
        packet.pts = seq * step
        packet.time_base = fractions.Fraction(1, clock)
        return packet


class Chair:
    """The province chair's peer: stamped camera and microphone, nothing decoded."""

    def __init__(self, layout: tuple[Slot, ...]) -> None:
        self.layout = layout
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.video = StampedTrack("video")
        self.audio = StampedTrack("audio")

    async def offer(self) -> str:
        for slot in self.layout:
            if slot.publish:
                track = self.video if slot.kind == "video" else self.audio
                transceiver = self.pc.addTransceiver(track, direction="sendonly")
                if slot.kind == "video":
                    self._on_keyframe_request(transceiver.sender)
            else:
                self.pc.addTransceiver(slot.kind, direction="recvonly")
        await self.pc.setLocalDescription(await self.pc.createOffer())
        enlarge_receive_buffers(self.pc)
        return str(self.pc.localDescription.sdp)

    def _on_keyframe_request(self, sender: Any) -> None:
        handle = sender._handle_rtcp_packet

        async def handle_rtcp(packet: Any) -> None:
            if isinstance(packet, RtcpPsfbPacket):  # PLI or FIR: the next frame is a key
                self.video.keyframe_wanted = True
            await handle(packet)

        sender._handle_rtcp_packet = handle_rtcp

    async def close(self) -> None:
        await close_peer_connection(self.pc)


class StampedSite(ProbePeer):
    """A site that records, per receive slot, when each stamped frame completed."""

    def __init__(self, layout: tuple[Slot, ...]) -> None:
        super().__init__(layout, publish=False, decode=False)
        self.arrivals: dict[int, dict[int, int]] = {}  # id(stats) -> seq -> arrival ns

    def _count(self, stats: SlotStats, frame: EncodedFrame) -> None:  # type: ignore[override]
        now = time.monotonic_ns()
        ProbePeer._count(stats, frame)
        stamp = read_stamp(frame.data)
        if stamp is not None:
            self.arrivals.setdefault(id(stats), {})[stamp[0]] = now - stamp[1]

    def latencies(self, slot: str) -> dict[int, int]:
        """Sequence number -> latency (ns) of every stamped frame of that slot."""
        return self.arrivals.get(id(self.stats[slot]), {})


# -- talking to a node as a browser does ---------------------------------------------------------


class Client:
    """An HTTP session (login cookie, CSRF token) and a ``/meeting`` socket on one node."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = aiohttp.ClientSession(
            url, cookie_jar=aiohttp.CookieJar(unsafe=True), timeout=aiohttp.ClientTimeout(20)
        )
        self.csrf = ""
        self.sio = socketio.AsyncClient(reconnection=False)
        self.peer: Chair | StampedSite | None = None

    async def login(self, username: str) -> Client:
        async with self.http.get("/api/csrf") as resp:
            self.csrf = (await resp.json())["csrf_token"]
        body = await self.api(
            "POST", "/api/login", {"username": username, "password": DEMO_PASSWORD}
        )
        self.csrf = body.get("csrf_token", self.csrf)
        return self

    async def api(self, method: str, path: str, payload: Any = None) -> dict[str, Any]:
        async with self.http.request(
            method, path, json=payload, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            body: dict[str, Any] = await resp.json()
        if not body.get("ok"):
            raise RuntimeError(f"{method} {self.url}{path}: {body}")
        return body

    async def call(self, event: str, payload: Any = None) -> dict[str, Any]:
        ack: dict[str, Any] = await self.sio.call(
            event, payload if payload is not None else {}, namespace="/meeting", timeout=20
        )
        if not ack.get("ok"):
            raise RuntimeError(f"{event} on {self.url}: {ack}")
        return ack

    async def join(self, meeting_id: int, chair: bool) -> None:
        cookies = "; ".join(f"{c.key}={c.value}" for c in self.http.cookie_jar)
        await self.sio.connect(
            self.url,
            namespaces=["/meeting"],
            headers={"Cookie": cookies},
            transports=["websocket"],
            wait_timeout=10,
        )
        ack = await self.call("join", {"meeting_id": meeting_id})
        layout = tuple(
            Slot(s["slot"], s["kind"], s["direction"] == "sendonly") for s in ack["layout"]
        )
        self.peer = Chair(layout) if chair else StampedSite(layout)
        answer = await self.call("offer", {"sdp": await self.peer.offer()})
        await self.peer.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], "answer"))
        deadline = time.monotonic() + 20
        while self.peer.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.url}: the peer did not connect")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.sio.connected:
            await self.sio.disconnect()
        if self.peer is not None:
            await self.peer.close()
        await self.http.close()


# -- the run ------------------------------------------------------------------------------------


def start_nodes(data_dir: Path, base_port: int) -> tuple[list[DemoNode], list[Any]]:
    settings = load_settings(None, {}, data_dir=str(data_dir), log_level="WARNING")
    province, district, _other = plan(settings, base_port)
    nodes = [province, district]
    for n in (province, district, _other):
        n.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(prepare([province, district, _other]))
    procs = []
    for n in nodes:
        log_file = open(data_dir / f"{n.name}.log", "wb")  # noqa: SIM115 (kept for the run)
        procs.append(start_process(n, log_file))
        problem = wait_answering([(n, procs[-1])])  # the province first: the district links
        if problem:
            raise RuntimeError(f"{problem}; see {log_file.name}")
    return nodes, procs


async def mirrored_id(admin: Client, title: str, within: float = 20.0) -> int:
    """The local id under which a child node (``admin`` logged in there) mirrors a meeting."""
    deadline = time.monotonic() + within
    while True:
        mine = (await admin.api("GET", "/api/meetings"))["meetings"]
        found = next((int(m["id"]) for m in mine if m["title"] == title), 0)
        if found:
            return found
        if time.monotonic() > deadline:
            raise RuntimeError("the district never mirrored the meeting")
        await asyncio.sleep(0.2)


async def uplink(admin: Client, meeting_id: int) -> dict[str, Any]:
    links = await admin.api("GET", "/api/links")
    found = [m for m in links["meetings"] if m["meeting_id"] == meeting_id]
    if not found or found[0]["uplink"] is None:
        raise RuntimeError(f"no uplink for meeting {meeting_id}: {links}")
    return dict(found[0]["uplink"])


async def uplink_bytes(admin: Client, meeting_id: int, window: float) -> tuple[float, float]:
    """Bytes per second on the district's uplink (both ways), and packets per second."""
    a = await uplink(admin, meeting_id)
    t0 = time.monotonic()
    await asyncio.sleep(window)
    b = await uplink(admin, meeting_id)
    wall = time.monotonic() - t0
    octets = (b["bytes_sent"] + b["bytes_received"]) - (a["bytes_sent"] + a["bytes_received"])
    packets = (b["packets_sent"] + b["packets_received"]) - (
        a["packets_sent"] + a["packets_received"]
    )
    return octets / wall, packets / wall


def added_per_hop(near: StampedSite, far: StampedSite, slot: str, since: int) -> list[float]:
    """Per frame (seq >= since), the far site's latency minus the near site's, in ms."""
    a, b = near.latencies(slot), far.latencies(slot)
    return [(b[s] - a[s]) / 1e6 for s in a.keys() & b.keys() if s >= since]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(nodes: list[DemoNode], args: argparse.Namespace) -> dict[str, Any]:
    province, district = nodes
    clients: list[Client] = []

    async def client(url: str, user: str) -> Client:
        c = await Client(url).login(user)
        clients.append(c)
        return c

    try:
        admin_d = await client(district.url, "quantri")
        for code, name in EXTRA_UNITS:
            await admin_d.api(
                "POST",
                "/api/units",
                {"code": code, "name": name, "level": "commune", "parent": "CM-NC"},
            )
            await admin_d.api(
                "POST",
                "/api/users",
                {
                    "username": "kt." + code.lower(),
                    "full_name": f"Kỹ thuật {name}",
                    "role": "operator",
                    "unit": code,
                    "password": DEMO_PASSWORD,
                },
            )
        deadline = time.monotonic() + 30
        while (await admin_d.api("GET", "/api/links"))["parent"]["state"] != "connected":
            if time.monotonic() > deadline:
                raise RuntimeError("the district did not link to the province")
            await asyncio.sleep(0.2)

        chair = await client(province.url, "chutri")
        title = "Đo độ trễ mỗi chặng"
        created = await chair.api(
            "POST",
            "/api/meetings",
            {
                "title": title,
                "starts_at": time.strftime(
                    "%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600)
                ),
                "invited_subtrees": ["CM-NC"],
                "invited_units": ["CM-TVT-KB"],
            },
        )
        meeting_id = int(created["meeting"]["id"])
        await chair.join(meeting_id, chair=True)
        await chair.call("start")
        log(f"meeting {meeting_id} live on the province node")

        near = await client(province.url, PROVINCE_SITE)
        await near.join(meeting_id, chair=False)
        local_id = await mirrored_id(admin_d, title)
        far = [await client(district.url, DISTRICT_SITES[0])]
        await far[0].join(local_id, chair=False)
        log("one site on each node; warming up")
        await asyncio.sleep(args.warmup)
        one_bps, one_pps = await uplink_bytes(admin_d, local_id, args.window)

        for user in DISTRICT_SITES[1:]:
            site = await client(district.url, user)
            await site.join(local_id, chair=False)
            far.append(site)
        log(f"{len(far)} sites on the district node; warming up")
        await asyncio.sleep(args.warmup)
        assert isinstance(chair.peer, Chair)
        since_video, since_audio = chair.peer.video.seq, chair.peer.audio.seq
        ten_bps, ten_pps = await uplink_bytes(admin_d, local_id, args.window)

        near_peer = near.peer
        assert isinstance(near_peer, StampedSite)
        video: list[float] = []
        audio: list[float] = []
        lost = {"video": 0, "audio": 0}
        for site in far:
            assert isinstance(site.peer, StampedSite)
            video += added_per_hop(near_peer, site.peer, "chair.video", since_video)
            audio += added_per_hop(near_peer, site.peer, "chair.audio", since_audio)
        sent_video = chair.peer.video.seq - since_video
        sent_audio = chair.peer.audio.seq - since_audio
        for site in (near, *far):
            assert isinstance(site.peer, StampedSite)
            got_v = sum(1 for s in site.peer.latencies("chair.video") if s >= since_video)
            got_a = sum(1 for s in site.peer.latencies("chair.audio") if s >= since_audio)
            lost["video"] = max(lost["video"], sent_video - got_v)
            lost["audio"] = max(lost["audio"], sent_audio - got_a)
        near_video = [
            v / 1e6 for s, v in near_peer.latencies("chair.video").items() if s >= since_video
        ]
        near_audio = [
            v / 1e6 for s, v in near_peer.latencies("chair.audio").items() if s >= since_audio
        ]
        if not video or not audio:
            raise RuntimeError("no frame reached both a province site and a district site")
        return {
            "video_added_ms_per_hop_p50": round(statistics.median(video), 2),
            "video_added_ms_per_hop_p95": round(percentile(video, 0.95), 2),
            "audio_added_ms_per_hop_p50": round(statistics.median(audio), 2),
            "audio_added_ms_per_hop_p95": round(percentile(audio, 0.95), 2),
            "uplink_bytes_ratio": round(ten_bps / one_bps, 4),
            "uplink_bytes_per_s_one_site": round(one_bps),
            "uplink_bytes_per_s_ten_sites": round(ten_bps),
            "uplink_packets_per_s_one_site": round(one_pps, 1),
            "uplink_packets_per_s_ten_sites": round(ten_pps, 1),
            "first_hop_video_ms_p50": round(statistics.median(near_video), 2),
            "first_hop_audio_ms_p50": round(statistics.median(near_audio), 2),
            "frames_paired": {"video": len(video), "audio": len(audio)},
            "frames_sent_in_window": {"video": sent_video, "audio": sent_audio},
            "most_frames_missed_by_a_site": lost,
            "district_sites": len(far),
        }
    finally:
        for c in reversed(clients):
            await c.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=18180)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--window", type=float, default=8.0)
    args = parser.parse_args()
    os.environ.setdefault("HOINGHI_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hoinghi-cascade-") as tmp:
        nodes, procs = start_nodes(Path(tmp), args.base_port)
        log(f"province {nodes[0].url}, district {nodes[1].url}")
        try:
            result = asyncio.run(measure(nodes, args))
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in procs:
                try:
                    p.wait(10)
                except Exception:
                    p.kill()
    result["window_s"] = args.window
    result["run_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
