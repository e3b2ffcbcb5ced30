"""A headless participant built on aiortc: it offers in a layout's order, publishes synthetic
media, and measures what each receive slot brings (decoded, so it can read the counter).
Used by tests and benchmarks; it speaks to a LiveMeeting directly or through signaling.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError
from aiortc.rtp import RTCP_PSFB_APP, RtcpPsfbPacket

from rooms.frames import EncodedFrame, FrameAssembler
from rooms.ice import close_peer_connection, enlarge_receive_buffers
from rooms.peer import Slot
from rooms.synthetic import CounterVideoTrack, ToneAudioTrack, read_bits, read_counter


@dataclass
class SlotStats:
    frames: int = 0
    counters: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    audio_packets: int = 0
    unreadable: int = 0  # decoded pictures that showed no counter clearly
    size: tuple[int, int] | None = None  # width and height of the latest decoded picture

    def counters_since(self, t: float) -> list[int]:
        return [c for c, at in zip(self.counters, self.times, strict=True) if at >= t]


class ProbePeer:
    def __init__(
        self,
        layout: Sequence[Slot],
        publish: bool = True,
        decode: bool = True,
        stamp_time: bool = False,
        fps: int = 30,
        read_stamps: bool = False,
        size: tuple[int, int] = (640, 480),
        pin_bitrate: bool = False,
        low: tuple[int, int] | None = None,
        low_fps: int = 15,
    ) -> None:
        self.layout = tuple(layout)
        # One transport for every section, as browsers do (max-bundle).
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.video = (
            CounterVideoTrack(width=size[0], height=size[1], fps=fps, stamp_time=stamp_time)
            if publish
            else None
        )
        # The low tier (``camera.low``, rooms/tiers.py): a second, smaller picture, or nothing
        # (then the node serves every receiver the high tier).
        self.video_low = (
            CounterVideoTrack(width=low[0], height=low[1], fps=low_fps, stamp_time=stamp_time)
            if publish and low is not None
            else None
        )
        self.audio = ToneAudioTrack() if publish else None
        self.decode = decode
        self.read_stamps = read_stamps
        self.stats: dict[str, SlotStats] = {s.name: SlotStats() for s in self.layout}
        # Ignore bandwidth estimates (REMB), so the encoder keeps its starting bitrate: a
        # test that compares byte counts over time needs a source that does not ramp up.
        self.pin_bitrate = pin_bitrate
        self._tasks: list[asyncio.Task[None]] = []
        self._mid_slot: dict[str, Slot] = {}
        self.pc.on("track", self._on_track)

    async def offer(self) -> str:
        for slot in self.layout:
            if slot.publish:
                track = self.video if slot.kind == "video" else self.audio
                if slot.name.endswith(".low"):
                    track = self.video_low
                self.pc.addTransceiver(
                    track if track is not None else slot.kind, direction="sendonly"
                )
            else:
                self.pc.addTransceiver(slot.kind, direction="recvonly")
        if self.pin_bitrate:
            for transceiver in self.pc.getTransceivers():
                if transceiver.sender.track is not None:
                    _ignore_remb(transceiver.sender)
        await self.pc.setLocalDescription(await self.pc.createOffer())
        enlarge_receive_buffers(self.pc)
        for transceiver, slot in zip(self.pc.getTransceivers(), self.layout, strict=True):
            assert transceiver.mid is not None
            self._mid_slot[transceiver.mid] = slot
        return str(self.pc.localDescription.sdp)

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))

    def _on_track(self, track: Any) -> None:
        for transceiver in self.pc.getTransceivers():
            if transceiver.receiver.track is track and transceiver.mid in self._mid_slot:
                slot = self._mid_slot[transceiver.mid]
                if slot.kind == "audio" or not self.decode:
                    # Count encoded frames as they arrive, without decoding them.
                    stats = self.stats[slot.name]

                    def count(frame: EncodedFrame, st: SlotStats = stats) -> None:
                        self._count(st, frame)

                    assembler = FrameAssembler(slot.kind, count, lambda: None)
                    receiver: Any = transceiver.receiver
                    receiver._RTCRtpReceiver__jitter_buffer = assembler
                    continue
                task = asyncio.get_running_loop().create_task(self._read(slot, track))
                self._tasks.append(task)

    @staticmethod
    def _count(stats: SlotStats, frame: EncodedFrame) -> None:
        now = time.monotonic()
        if frame.kind == "audio":
            stats.audio_packets += 1
        else:
            stats.frames += 1
        stats.times.append(now)
        stats.counters.append(stats.audio_packets or stats.frames)

    async def _read(self, slot: Slot, track: Any) -> None:
        stats = self.stats[slot.name]
        try:
            while True:
                frame = await track.recv()
                now = time.monotonic()
                stats.frames += 1
                stats.size = (frame.width, frame.height)
                if self.decode:
                    # A picture the decoder could not reconstruct carries no counter (or one
                    # its check row contradicts): it is counted as a frame, not read.
                    counter = read_counter(frame)
                    if counter is None:
                        stats.unreadable += 1
                        continue
                    stats.counters.append(counter)
                    stats.times.append(now)
                    sent = read_bits(frame, 1) if self.read_stamps else None
                    if sent is not None:
                        now_ms = int(time.time() * 1000) & 0xFFFFFF
                        lat = (now_ms - sent) & 0xFFFFFF
                        if lat < 10000:
                            stats.latencies_ms.append(float(lat))
        except (MediaStreamError, asyncio.CancelledError):
            return

    async def wait_connected(self, within: float = 15.0) -> None:
        deadline = time.monotonic() + within
        while self.pc.connectionState != "connected":
            if time.monotonic() > deadline:
                raise TimeoutError(f"probe did not connect: {self.pc.connectionState}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await close_peer_connection(self.pc)


def _ignore_remb(sender: Any) -> None:
    handle = sender._handle_rtcp_packet

    async def without_remb(packet: Any) -> None:
        if isinstance(packet, RtcpPsfbPacket) and packet.fmt == RTCP_PSFB_APP:
            return
        await handle(packet)

    sender._handle_rtcp_packet = without_remb


def max_gap(counters: list[int]) -> int:
    """The largest jump between consecutive counter values (1 means no frame missing)."""
    return max((b - a for a, b in itertools.pairwise(counters)), default=0)


def rate(stats: SlotStats, since: float, until: float) -> float:
    n = sum(1 for t in stats.times if since <= t <= until)
    return n / max(1e-9, until - since)
