"""Server CPU per subscriber: encoded pass-through (rooms/) against aiortc's MediaRelay.

One run, three kinds of process, so that the CPU measured is the server's alone:

* the **server** (one process per mode): a ``rooms.meeting.LiveMeeting`` for pass-through,
  or plain aiortc peer connections with ``MediaRelay`` (decode once, re-encode per subscriber);
* the **publisher**: a ``ProbePeer`` sending the synthetic 640x480 30 fps VP8 counter video
  and an Opus tone (the chair, in ``CHAIR_LAYOUT``, for pass-through);
* the **subscribers**: ``ProbePeer``s that publish nothing and count the encoded frames they
  receive without decoding them (``decode=False``: a ``FrameAssembler`` per receive slot),
  spread over ``--sub-procs`` processes.

The parent process only relays SDP over ``multiprocessing`` pipes and keeps time. For each N
it connects subscribers until there are N, waits ``--warmup`` seconds, then reads the
server's ``getrusage(RUSAGE_SELF)`` (all its threads: event loop, decoder and encoder
threads) at the start and end of a ``--window`` second window, and asks each subscriber how
many video frames and audio packets it received inside that window. Before each window it
waits (``--max-wait``) for processes outside the benchmark to go quiet, and it reports what
they used. Points that did not deliver the full frame rate are left out of the slopes.
docs/performance.md has the method, the results and what they mean.

Progress goes to stderr; the last line on stdout is one JSON object.

    .venv/bin/python bench/forwarding.py            # about 1.5 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import resource
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiortc import (  # noqa: E402
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaRelay  # noqa: E402

from rooms.frames import FrameAssembler  # noqa: E402
from rooms.hooks import check_aiortc_hooks, restrict_codecs  # noqa: E402
from rooms.ice import enlarge_receive_buffers, offer_host_addresses  # noqa: E402
from rooms.meeting import CHAIR, SITE, LiveMeeting, Participant  # noqa: E402
from rooms.peer import CHAIR_LAYOUT, SITE_LAYOUT, Slot  # noqa: E402
from rooms.probe import ProbePeer, rate  # noqa: E402

# Benchmark traffic stays on loopback (this runs again in every spawned process).
offer_host_addresses(["127.0.0.1"])

# A publisher and a subscriber for the MediaRelay server, with the pass-through slot names.
RELAY_PUB_LAYOUT: tuple[Slot, ...] = (
    Slot("camera", "video", True),
    Slot("microphone", "audio", True),
)
RELAY_SUB_LAYOUT: tuple[Slot, ...] = (
    Slot("chair.video", "video", False),
    Slot("chair.audio", "audio", False),
)
LAYOUTS = {
    "chair": CHAIR_LAYOUT,
    "site": SITE_LAYOUT,
    "relay_pub": RELAY_PUB_LAYOUT,
    "relay_sub": RELAY_SUB_LAYOUT,
}
VIDEO_SLOT = "chair.video"
AUDIO_SLOT = "chair.audio"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# Every ICE socket of every process gets this receive buffer (the kernel caps it at
# net.core.rmem_max). See enlarge_buffers().
SOCKET_BUFFER = 1 << 18  # the kernel doubles it: about 220 full-size datagrams
_buffer_size = SOCKET_BUFFER


def enlarge_buffers(pc: RTCPeerConnection) -> int:
    """The node's own ``enlarge_receive_buffers``, with this run's --rcvbuf."""
    return enlarge_receive_buffers(pc, _buffer_size)


def max_bundle() -> RTCConfiguration:
    return RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE)


# -- the server process ------------------------------------------------------------------------


class ServerWorker:
    """Pass-through (a LiveMeeting) or MediaRelay, in its own process and event loop."""

    def __init__(self) -> None:
        self.meeting: LiveMeeting | None = None
        self.sites: list[Participant] = []
        self.relay: MediaRelay | None = None
        self.sources: dict[str, Any] = {}
        self.relay_pcs: list[RTCPeerConnection] = []

    async def cpu(self) -> tuple[float, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime, time.monotonic()

    async def cpu_system(self) -> float:
        """System (kernel) CPU seconds of this process so far."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_stime

    async def threads(self) -> int:
        return len(os.listdir(f"/proc/{os.getpid()}/task"))

    # pass-through

    async def start_meeting(self, sender: str = "forwarding") -> str:
        check_aiortc_hooks()
        if sender != "forwarding":
            _use_sender(sender)
        self.meeting = LiveMeeting(1, "bench", "T01", on_change=lambda _m: None)
        self.meeting.start()
        return "live"

    async def join(self, role: str, key: str, sdp: str) -> str:
        assert self.meeting is not None
        n = len(self.sites)
        p = Participant(
            key=key,
            role=role,
            unit_name=key,
            unit_path=[key],
            user_id=n + 1,
            sid=f"sid-{key}",
        )
        await self.meeting.join(p)
        answer = await self.meeting.connect(p, sdp)
        assert p.peer is not None
        assert p.peer.pc is not None
        enlarge_buffers(p.peer.pc)
        if role == SITE:
            self.sites.append(p)
        return answer

    async def join_sites(self, items: list[tuple[str, str]]) -> list[str]:
        return [await self.join(SITE, key, sdp) for key, sdp in items]

    async def passthrough_stats(self) -> dict[str, Any]:
        """Per-site consumer counters and sender packet counts (aiortc private)."""
        assert self.meeting is not None
        frames = dropped = packets = 0
        video_sent: dict[str, int] = {}
        for site in self.sites:
            if site.peer is None:
                continue
            for c in site.peer.consumers.values():
                frames += c.frames_sent
                dropped += c.frames_dropped
            video_sent[site.key] = site.peer.consumers["chair.video"].frames_sent
            assert site.peer.pc is not None
            for t in site.peer.pc.getTransceivers():
                packets += getattr(t.sender, "_RTCRtpSender__packet_count", 0)
        chair = self.meeting.chair
        prod = chair.producer("video") if chair else None
        links = [p.peer.pc for p in (chair, *self.sites) if p and p.peer and p.peer.pc]
        return {
            "links_down": sum(pc.connectionState != "connected" for pc in links),
            "video_frames_sent": video_sent,
            "frames_sent": frames,
            "frames_dropped": dropped,
            "packets_sent": packets,
            "producer_video_frames": prod.frames if prod else 0,
            "keyframe_requests_sent": prod.keyframe_requests_sent if prod else 0,
        }

    # MediaRelay

    async def relay_publisher(self, sdp: str) -> str:
        self.relay = MediaRelay()
        pc = RTCPeerConnection(max_bundle())
        self.relay_pcs.append(pc)

        @pc.on("track")
        def _on_track(track: Any) -> None:
            self.sources[track.kind] = track

        await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
        for t in pc.getTransceivers():
            restrict_codecs(t)
        await pc.setLocalDescription(await pc.createAnswer())
        enlarge_buffers(pc)
        return str(pc.localDescription.sdp)

    async def relay_subscribers(self, items: list[tuple[str, str]]) -> list[str]:
        answers = []
        for _key, sdp in items:
            assert self.relay is not None
            pc = RTCPeerConnection(max_bundle())
            self.relay_pcs.append(pc)
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            for t in pc.getTransceivers():
                restrict_codecs(t)
            pc.addTrack(self.relay.subscribe(self.sources["video"]))
            pc.addTrack(self.relay.subscribe(self.sources["audio"]))
            await pc.setLocalDescription(await pc.createAnswer())
            enlarge_buffers(pc)
            answers.append(str(pc.localDescription.sdp))
        return answers

    async def relay_stats(self) -> dict[str, Any]:
        packets = 0
        for pc in self.relay_pcs[1:]:
            for t in pc.getTransceivers():
                packets += getattr(t.sender, "_RTCRtpSender__packet_count", 0)
        down = sum(pc.connectionState != "connected" for pc in self.relay_pcs)
        return {"packets_sent": packets, "links_down": down}

    async def close(self) -> None:
        if self.meeting is not None:
            await self.meeting.close()
        for pc in self.relay_pcs:
            await pc.close()


# -- the publisher and subscriber processes ------------------------------------------------------


class ProbeWorker:
    """Holds ProbePeers: one publisher, or many subscribers that count encoded frames."""

    def __init__(self) -> None:
        self.peers: dict[str, ProbePeer] = {}

    async def offers(self, keys: list[str], layout: str, publish: bool) -> list[str]:
        sdps = []
        for key in keys:
            peer = ProbePeer(LAYOUTS[layout], publish=publish, decode=False)
            self.peers[key] = peer
            sdps.append(await peer.offer())
            enlarge_buffers(peer.pc)
        return sdps

    async def accept(self, pairs: list[tuple[str, str]]) -> None:
        for key, answer in pairs:
            peer = self.peers[key]
            await peer.accept(answer)  # ProbePeer's track handler installs its assemblers here
            for transceiver in peer.pc.getTransceivers():
                receiver: Any = transceiver.receiver
                assembler = getattr(receiver, "_RTCRtpReceiver__jitter_buffer", None)
                if isinstance(assembler, FrameAssembler) and assembler.kind == "video":
                    assembler.on_keyframe_needed = _pli_sender(receiver, assembler)

    async def wait_connected(self, keys: list[str]) -> None:
        await asyncio.gather(*(self.peers[k].wait_connected(20.0) for k in keys))
        for key in keys:
            for transceiver in self.peers[key].pc.getTransceivers():
                sender: Any = transceiver.sender
                task = getattr(sender, "_RTCRtpSender__rtp_task", None)
                if sender.track is None and task is not None:
                    # A publish slot with nothing to publish: aiortc's RTP loop polls for a
                    # track 50 times a second forever. It never sends a packet, so stopping
                    # it changes nothing the server sees; it only frees subscriber CPU.
                    task.cancel()

    async def rates(self, since: float, until: float) -> dict[str, tuple[float, float]]:
        out = {}
        for key, peer in self.peers.items():
            if VIDEO_SLOT in peer.stats:
                out[key] = (
                    rate(peer.stats[VIDEO_SLOT], since, until),
                    # audio: SlotStats.times holds every audio packet too
                    rate(peer.stats[AUDIO_SLOT], since, until),
                )
        return out

    async def cpu(self) -> tuple[float, float]:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime, time.monotonic()

    async def states(self) -> dict[str, str]:
        return {
            key: f"{peer.pc.connectionState}/{peer.pc.iceConnectionState}"
            for key, peer in self.peers.items()
        }

    async def close(self) -> None:
        for peer in self.peers.values():
            await peer.close()


def _use_sender(kind: str) -> None:
    """For comparisons only: attach consumers as before the forwarding sender existed."""
    import rooms.hooks
    import rooms.peer

    def attach(sender: Any, consumer: Any) -> None:
        if kind == "aiortc":  # aiortc's own RTP loop: a task per sender, RtpPacket per packet
            sender._RTCRtpSender__encoder = rooms.hooks.Packer(consumer)
            sender._send_keyframe = consumer.request_keyframe
            sender.replaceTrack(consumer.track)
        elif kind == "queued":  # the forwarding loop, but woken per frame through the queue
            rooms.hooks.attach_consumer(sender, consumer)
            track = consumer.track
            plain: asyncio.Queue[Any] = asyncio.Queue(track.queue.maxsize)
            while not track.queue.empty():
                plain.put_nowait(track.queue.get_nowait())
            track.queue = plain
        else:
            raise ValueError(kind)

    rooms.peer.attach_consumer = attach  # type: ignore[assignment]


def _pli_sender(receiver: Any, assembler: FrameAssembler) -> Callable[[], None]:
    """A subscriber asks for a keyframe when its assembler gives up a gap, as a browser
    does on a decode error (ProbePeer's own assemblers never ask). At most one per second."""
    last = [0.0]

    def request() -> None:
        now = time.monotonic()
        if assembler.media_ssrc is None or now - last[0] < 1.0:
            return
        last[0] = now
        task = asyncio.get_running_loop().create_task(receiver._send_rtcp_pli(assembler.media_ssrc))
        _background.add(task)
        task.add_done_callback(_background.discard)

    return request


_background: set[asyncio.Task[None]] = set()

WORKERS = {"server": ServerWorker, "probe": ProbeWorker}


def child_main(conn: Connection, kind: str, buffer_size: int) -> None:
    global _buffer_size
    _buffer_size = buffer_size
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve(conn, WORKERS[kind]()))


async def _serve(conn: Connection, worker: Any) -> None:
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[Any] = asyncio.Queue()
    loop.add_reader(conn.fileno(), lambda: inbox.put_nowait(conn.recv()))
    try:
        while True:
            cmd, args = await inbox.get()
            if cmd == "exit":
                break
            try:
                result = await getattr(worker, cmd)(*args)
                conn.send(("ok", result))
            except Exception:
                conn.send(("err", traceback.format_exc()))
    finally:
        loop.remove_reader(conn.fileno())
        try:
            await asyncio.wait_for(worker.close(), 10)
        except Exception as exc:
            log(f"close: {exc!r}")
        conn.send(("ok", None))


class Child:
    def __init__(self, ctx: Any, kind: str, name: str, buffer_size: int = SOCKET_BUFFER) -> None:
        self.name = name
        self.conn, child_conn = ctx.Pipe()
        self.proc = ctx.Process(
            target=child_main, args=(child_conn, kind, buffer_size), name=name, daemon=True
        )
        self.proc.start()

    def call(self, cmd: str, *args: Any, timeout: float = 120.0) -> Any:
        self.conn.send((cmd, args))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"{self.name}.{cmd} did not answer in {timeout:.0f} s")
        status, result = self.conn.recv()
        if status == "err":
            raise RuntimeError(f"{self.name}.{cmd} failed:\n{result}")
        return result

    def stop(self) -> None:
        try:
            self.conn.send(("exit", ()))
            if self.conn.poll(15):
                self.conn.recv()
        except (OSError, EOFError):
            pass
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)


def proc_cpu(pids: list[int]) -> float:
    """CPU seconds used so far by these processes (all their threads), from /proc."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def wait_quiet(pids: list[int], threshold: float, max_wait: float) -> tuple[float, float]:
    """Wait, up to max_wait seconds, for a second in which processes other than ours use
    less than ``threshold`` of a core. Returns (seconds waited, last other load)."""
    started = time.monotonic()
    other = 0.0
    while True:
        b0, p0, t0 = machine_busy(), proc_cpu(pids), time.monotonic()
        time.sleep(1.0)
        b1, p1, t1 = machine_busy(), proc_cpu(pids), time.monotonic()
        other = max(0.0, ((b1 - b0) - (p1 - p0)) / (t1 - t0))
        waited = time.monotonic() - started
        if other < threshold or waited >= max_wait:
            return waited, other


def machine_busy() -> float:
    """CPU seconds used by the whole machine since boot (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def fit(points: list[dict[str, Any]], full_rate_only: bool = True) -> tuple[Any, list[int]]:
    """Marginal server cores per subscriber: the least-squares slope of server_core over N.

    By default only points that delivered the full frame rate count (mean >= 27 fps, every
    link up): a point where frames were lost spent less CPU than the load asked for, which
    would pull the slope down. Returns (slope or None, the N values used)."""
    use = [
        p
        for p in points
        if not full_rate_only
        or (p["mean_fps"] >= 27 and not any("link" in x for x in p["problems"]))
    ]
    if len({p["n"] for p in use}) < 2:
        return None, [p["n"] for p in use]
    slope, _ = fit_slope([p["n"] for p in use], [p["server_core"] for p in use])
    return round(slope, 5), [p["n"] for p in use]


def fit_slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares line y = a + b x; returns (b, a)."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    b = sxy / sxx
    return b, my - b * mx


def run_mode(mode: str, ns: list[int], args: argparse.Namespace, ctx: Any) -> list[dict[str, Any]]:
    buf = args.rcvbuf
    server = Child(ctx, "server", f"{mode}-server", buf)
    publisher = Child(ctx, "probe", f"{mode}-publisher", buf)
    subs = [Child(ctx, "probe", f"{mode}-subs{i}", buf) for i in range(args.sub_procs)]
    children = [server, publisher, *subs]
    points: list[dict[str, Any]] = []
    try:
        # The publisher.
        if mode == "passthrough":
            server.call("start_meeting", args.sender)
            (offer,) = publisher.call("offers", ["chair"], "chair", True)
            answer = server.call("join", CHAIR, "T01", offer)
            sub_layout = "site"
        else:
            (offer,) = publisher.call("offers", ["chair"], "relay_pub", True)
            answer = server.call("relay_publisher", offer)
            sub_layout = "relay_sub"
        publisher.call("accept", [("chair", answer)])
        publisher.call("wait_connected", ["chair"])
        log(
            f"{mode}: publisher connected (pids: server {server.proc.pid}, "
            f"publisher {publisher.proc.pid}, subscribers {[c.proc.pid for c in subs]})"
        )

        placed: dict[str, Child] = {}
        for n in ns:
            # Add subscribers up to n, round robin over the subscriber processes.
            new = [f"S{i:02d}" for i in range(len(placed), n)]
            by_child: dict[int, list[str]] = {}
            for key in new:
                idx = int(key[1:]) % len(subs)
                by_child.setdefault(idx, []).append(key)
                placed[key] = subs[idx]
            for idx, keys in by_child.items():
                sub = subs[idx]
                offers = sub.call("offers", keys, sub_layout, False)
                items = list(zip(keys, offers, strict=True))
                if mode == "passthrough":
                    answers = server.call("join_sites", items)
                else:
                    answers = server.call("relay_subscribers", items)
                sub.call("accept", list(zip(keys, answers, strict=True)))
            for idx, keys in by_child.items():
                subs[idx].call("wait_connected", keys)
            log(f"{mode}: N={n} connected, warming up {args.warmup:.0f} s")
            time.sleep(args.warmup)
            pids = [os.getpid(), *(c.proc.pid for c in children)]
            waited, before = wait_quiet(pids, args.quiet, args.max_wait)
            if waited > 1.5:
                log(f"{mode}: waited {waited:.0f} s for other load to drop (now {before:.2f})")

            stats_call = "passthrough_stats" if mode == "passthrough" else "relay_stats"
            s0 = server.call(stats_call)
            cpu0, t0 = server.call("cpu")
            sys0 = server.call("cpu_system")
            pcpu0, _ = publisher.call("cpu")
            scpu0 = [s.call("cpu")[0] for s in subs]
            busy0, own0 = machine_busy(), proc_cpu(pids)
            time.sleep(args.window)
            busy1, own1 = machine_busy(), proc_cpu(pids)
            cpu1, t1 = server.call("cpu")
            sys1 = server.call("cpu_system")
            pcpu1, _ = publisher.call("cpu")
            scpu1 = [s.call("cpu")[0] for s in subs]
            s1 = server.call(stats_call)
            wall = t1 - t0
            rates: dict[str, tuple[float, float]] = {}
            for s in subs:
                rates.update(s.call("rates", t0, t1))
            fps = [v for v, _a in rates.values()]
            aps = [a for _v, a in rates.values()]
            core = (cpu1 - cpu0) / wall
            other = max(0.0, ((busy1 - busy0) - (own1 - own0)) / wall)
            pps = (s1["packets_sent"] - s0["packets_sent"]) / wall
            point = {
                "n": n,
                "server_core": round(core, 4),
                "server_system_core": round((sys1 - sys0) / wall, 4),
                "window_s": round(wall, 2),
                "packets_per_s": round(pps, 1),
                "us_per_packet": round(core / pps * 1e6, 1) if pps else None,
                "min_fps": round(min(fps), 2),
                "mean_fps": round(sum(fps) / len(fps), 2),
                "min_audio_pps": round(min(aps), 2),
                "publisher_core": round((pcpu1 - pcpu0) / wall, 3),
                "subscriber_procs_core": round(
                    sum(b - a for a, b in zip(scpu0, scpu1, strict=True)) / wall, 3
                ),
                # CPU used on this machine by processes outside this benchmark
                "other_load_core": round(other, 2),
                "quiet_wait_s": round(waited, 1),
            }
            if mode == "passthrough":
                # what the server sent, per subscriber: tells its own shortfall from the
                # subscribers' (they run in this machine's other processes)
                sent = [
                    (v - s0["video_frames_sent"].get(k, 0)) / wall
                    for k, v in s1["video_frames_sent"].items()
                ]
                point["server_min_video_fps"] = round(min(sent), 2) if sent else None
                point["frames_dropped"] = s1["frames_dropped"] - s0["frames_dropped"]
                point["keyframe_requests"] = (
                    s1["keyframe_requests_sent"] - s0["keyframe_requests_sent"]
                )
            problems = []
            if not publisher.call("states")["chair"].startswith("connected"):
                problems.append("the publisher's link closed")
            if s1["links_down"]:
                problems.append(f"{s1['links_down']} links down at the server")
            if point["mean_fps"] < 27:
                problems.append(f"frames not delivered in full (mean {point['mean_fps']} fps)")
            if other > 0.3:
                problems.append(f"other processes used {other:.2f} cores meanwhile")
            point["problems"] = problems
            points.append(point)
            log(f"{mode}: {json.dumps(point)}")
        if args.profile and mode == "passthrough":
            # An extra window, after the measured ones: sampling perturbs the process.
            out = Path(args.profile)
            log(f"{mode}: py-spy on the server at N={ns[-1]} for {args.window:.0f} s -> {out}")
            targets = [(server.proc.pid, out)]
            if args.profile_subscribers:
                targets.append((subs[0].proc.pid, Path(args.profile_subscribers)))
            spies = [
                subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "py-spy"),
                        "record",
                        "--nonblocking",
                        "--format",
                        "raw",
                        "--rate",
                        "250",
                        "--duration",
                        str(int(args.window)),
                        "--pid",
                        str(pid),
                        "--output",
                        str(path),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, path in targets
            ]
            for spy in spies:
                spy.wait()
    finally:
        for child in children:
            child.stop()
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ns", default="1,4,16,32", help="pass-through subscriber counts")
    ap.add_argument("--relay-ns", default="1,2,4", help="MediaRelay subscriber counts")
    ap.add_argument("--warmup", type=float, default=3.0)
    ap.add_argument("--window", type=float, default=8.0)
    ap.add_argument("--sub-procs", type=int, default=2)
    ap.add_argument("--skip-relay", action="store_true")
    ap.add_argument(
        "--quiet",
        type=float,
        default=0.15,
        help="before each window, wait for other processes to use less than this many cores",
    )
    ap.add_argument("--max-wait", type=float, default=20.0, help="longest such wait, seconds")
    ap.add_argument(
        "--sender",
        choices=["forwarding", "queued", "aiortc"],
        default="forwarding",
        help="pass-through send path (queued, aiortc: the slower ones, for comparison)",
    )
    ap.add_argument(
        "--rcvbuf",
        type=int,
        default=SOCKET_BUFFER,
        help="SO_RCVBUF for every ICE socket in every process (0: leave the OS default)",
    )
    ap.add_argument(
        "--profile",
        metavar="FILE",
        help="after the pass-through windows, py-spy the server (collapsed stacks to FILE)",
    )
    ap.add_argument(
        "--profile-subscribers",
        metavar="FILE",
        help="with --profile, also py-spy the first subscriber process (to FILE)",
    )
    args = ap.parse_args()
    ns = [int(x) for x in args.ns.split(",")]
    relay_ns = [int(x) for x in args.relay_ns.split(",")]
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    log(f"cores: {os.cpu_count()}, window {args.window} s after {args.warmup} s warm-up")

    pt = run_mode("passthrough", ns, args, ctx)
    result: dict[str, Any] = {}
    pt_slope, pt_ns = fit(pt)
    result["passthrough_core_per_sub"] = pt_slope
    result["passthrough_fit_ns"] = pt_ns
    result["passthrough_core_per_sub_all_points"] = fit(pt, full_rate_only=False)[0]
    rl: list[dict[str, Any]] = []
    if not args.skip_relay:
        rl = run_mode("mediarelay", relay_ns, args, ctx)
        rl_slope, rl_ns = fit(rl)
        result["mediarelay_core_per_sub"] = rl_slope
        result["mediarelay_fit_ns"] = rl_ns
        result["mediarelay_core_per_sub_all_points"] = fit(rl, full_rate_only=False)[0]
        result["ratio"] = (
            round(rl_slope / pt_slope, 1) if rl_slope is not None and pt_slope else None
        )
    last = max(pt, key=lambda p: p["n"])
    result["min_fps"] = last["min_fps"]
    result["min_fps_at_n"] = last["n"]
    result["problems"] = [
        f"{mode} N={p['n']}: {problem}"
        for mode, points in (("passthrough", pt), ("mediarelay", rl))
        for p in points
        for problem in p["problems"]
    ]
    result["passthrough"] = pt
    result["mediarelay"] = rl
    result["sender"] = args.sender
    result["socket_rcvbuf"] = args.rcvbuf
    result["cores"] = os.cpu_count()
    result["window_s"] = args.window
    result["warmup_s"] = args.warmup
    result["run_s"] = round(time.monotonic() - started, 1)
    log(f"done in {result['run_s']} s")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
