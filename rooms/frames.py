"""Encoded frames and their reassembly from RTP, without decoding.

aiortc's own ``JitterBuffer`` releases a video frame only when the first packet of the *next*
frame arrives (one frame interval of added delay per hop) and holds audio for four packets
(about 80 ms). A forwarding node does not need that: in the VP8 and H.264 payload formats
the RTP marker bit ends a video frame, and every Opus packet is a whole frame. The
``FrameAssembler`` below takes the jitter buffer's place on a forwarded receiver and hands
each frame to its ``Producer`` the moment the frame is complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from aiortc.codecs.vpx import Vp8Encoder

VIDEO_CLOCK = 90000
AUDIO_CLOCK = 48000
VIDEO_TIME_BASE = Fraction(1, VIDEO_CLOCK)
AUDIO_TIME_BASE = Fraction(1, AUDIO_CLOCK)

# A gap that NACK has not filled in this long is given up: the frames around it are dropped,
# a keyframe is requested, and forwarding resumes at the next keyframe. Without this, one lost
# packet stalls the stream until a 512-packet buffer overflows (several seconds of freeze).
GAP_TIMEOUT = 0.4
MAX_PENDING = 1024


def vp8_is_keyframe(data: bytes) -> bool:
    # RFC 6386 9.1: bit 0 of the frame tag is 0 for a key frame, followed by a start code.
    return len(data) >= 10 and (data[0] & 0x01) == 0 and data[3:6] == b"\x9d\x01\x2a"


def vp8_size(data: bytes) -> tuple[int, int] | None:
    if not vp8_is_keyframe(data):
        return None
    width = int.from_bytes(data[6:8], "little") & 0x3FFF
    height = int.from_bytes(data[8:10], "little") & 0x3FFF
    return width, height


def vp8_temporal(payload: bytes) -> tuple[int, int] | None:
    """The temporal layer (TID) in a VP8 payload descriptor (RFC 7741 4.2) and the whole
    T/TID/Y/KEYIDX byte, or None when the publisher sends no temporal layers. A malformed
    descriptor reads as None."""
    if len(payload) < 2 or not payload[0] & 0x80:
        return None
    ext = payload[1]
    if not ext & 0x20:  # T bit
        return None
    pos = 2
    if ext & 0x80:  # I: picture id, one or two bytes
        if len(payload) <= pos:
            return None
        pos += 2 if payload[pos] & 0x80 else 1
    if ext & 0x40:  # L: TL0PICIDX
        pos += 1
    if len(payload) <= pos:
        return None
    return payload[pos] >> 6, payload[pos]


VP8_PACKET_MAX = 1300  # payload bytes per packet, as aiortc's own packetizer


def vp8_layered_payloads(data: bytes, picture_id: int, tl0picidx: int, tk: int) -> list[bytes]:
    """A layered frame's RTP payloads: the descriptor carries our picture id, the base
    layer's index (TL0PICIDX) and the publisher's TID/Y/KEYIDX byte, so a node below can
    make the lowest tier too, and a browser knows each frame's layer."""
    pid = picture_id & 0x7FFF
    rest = bytes((0xE0, 0x80 | (pid >> 8), pid & 0xFF, tl0picidx & 0xFF, tk))
    first, others = bytes((0x90,)) + rest, bytes((0x80,)) + rest
    size = VP8_PACKET_MAX - len(first)
    return [
        (first if pos == 0 else others) + data[pos : pos + size]
        for pos in range(0, max(1, len(data)), size)
    ]


def vp8_starts_frame(payload: bytes) -> bool:
    """The S bit with partition index 0 in the VP8 payload descriptor (RFC 7741 4.2)."""
    return bool(payload) and (payload[0] & 0x10) != 0 and (payload[0] & 0x0F) == 0


@dataclass(eq=False)
class EncodedFrame:
    """One whole encoded frame, shared by every consumer that forwards it."""

    kind: str
    data: bytes
    pts: int  # in the codec clock (90 kHz video, 48 kHz Opus), from 0 at the first frame
    keyframe: bool
    index: int  # frame counter of its producer; gives VP8 picture ids shared by all consumers
    received_at: float = field(default_factory=time.monotonic)
    # VP8 temporal layer (0 = base), None when the publisher sends none (rooms/tiers.py)
    layer: int | None = None
    # Counter of its producer's base-layer frames: the picture ids of the ``lowest`` tier,
    # which forwards only layer 0 and must number its pictures without gaps; and for every
    # layered frame the count at its base frame (TL0PICIDX) and the publisher's T/K byte.
    base_index: int | None = None
    tl0: int = 0
    tk: int = 0
    _payloads: list[bytes] | None = None
    _base_payloads: list[bytes] | None = None

    @property
    def time_base(self) -> Fraction:
        return VIDEO_TIME_BASE if self.kind == "video" else AUDIO_TIME_BASE

    def payloads(self, base: bool = False) -> list[bytes]:
        """RTP payloads, computed once per frame however many consumers send it; ``base``:
        numbered in the base layer's own picture-id sequence (a ``lowest`` consumer)."""
        if base and self.base_index is not None:
            if self._base_payloads is None:
                self._base_payloads = Vp8Encoder._packetize(self.data, self.base_index % (1 << 15))
            return self._base_payloads
        if self._payloads is None:
            if self.kind == "video" and self.layer is not None:
                self._payloads = vp8_layered_payloads(self.data, self.index, self.tl0, self.tk)
            elif self.kind == "video":
                self._payloads = Vp8Encoder._packetize(self.data, self.index % (1 << 15))
            else:
                self._payloads = [self.data]
        return self._payloads


def _seq_delta(a: int, b: int) -> int:
    """Signed distance from b to a in 16-bit sequence space."""
    d = (a - b) & 0xFFFF
    return d - 0x10000 if d >= 0x8000 else d


class TimestampUnwrapper:
    """RTP timestamps (32-bit, random origin) to a pts that starts at 0 and never wraps."""

    def __init__(self) -> None:
        self._first: int | None = None
        self._last_raw = 0
        self._cycles = 0

    def __call__(self, ts: int) -> int:
        if self._first is None:
            self._first = ts
            self._last_raw = ts
        elif ts < self._last_raw and self._last_raw - ts > 0x80000000:
            self._cycles += 1
            self._last_raw = ts
        elif ts > self._last_raw and ts - self._last_raw > 0x80000000:
            # A late packet from before the last wrap: it belongs to the previous cycle.
            return ts + ((self._cycles - 1) << 32) - self._first
        else:
            self._last_raw = ts
        return ts + (self._cycles << 32) - self._first


class FrameAssembler:
    """Stands in for aiortc's ``JitterBuffer`` on a forwarded receiver.

    ``add(packet)`` has the jitter buffer's signature: it returns ``(pli_flag, None)``, so the
    receiver's decoder thread never gets a frame. Whole frames go to ``on_frame``.
    """

    def __init__(
        self,
        kind: str,
        on_frame: Callable[[EncodedFrame], None],
        on_keyframe_needed: Callable[[], None],
    ) -> None:
        self.kind = kind
        self.on_frame = on_frame
        self.on_keyframe_needed = on_keyframe_needed
        self.media_ssrc: int | None = None
        self.frames_out = 0
        self.frames_dropped = 0
        self._pending: dict[int, Any] = {}  # seq -> RtpPacket (depayloaded, in _data)
        self._next: int | None = None  # sequence number the next frame starts at
        self._gap_since: float | None = None
        self._resync = kind == "video"  # start at a frame boundary
        self._need_keyframe = kind == "video"
        self._pts = TimestampUnwrapper()

    # -- jitter buffer interface -----------------------------------------------------------

    def add(self, packet: Any) -> tuple[bool, None]:
        # Called after RTX unwrapping, so this is the media SSRC (a PLI must name it).
        self.media_ssrc = packet.ssrc
        if self.kind == "audio":
            self._add_audio(packet)
        else:
            self._add_video(packet)
        return False, None

    @property
    def capacity(self) -> int:
        return MAX_PENDING

    # -- audio: every Opus packet is a frame ------------------------------------------------

    def _add_audio(self, packet: Any) -> None:
        seq = packet.sequence_number
        if self._next is not None and _seq_delta(seq, self._next) < 0:
            return  # late or duplicate: the receiver's decoder conceals it, we drop it
        self._next = (seq + 1) & 0xFFFF
        data: bytes = packet._data
        if not data:
            return
        self._emit(data, packet.timestamp, keyframe=True)

    # -- video: release at the marker bit ------------------------------------------------------

    def _add_video(self, packet: Any) -> None:
        seq = packet.sequence_number
        if self._next is None:
            self._next = seq
        delta = _seq_delta(seq, self._next)
        if delta < 0:
            return  # already released or given up
        if delta >= MAX_PENDING:
            # The stream jumped far ahead (a restart, or a long outage): start over.
            self._pending.clear()
            self._next = seq
            self._resync = True
        self._pending[seq] = packet
        self._release()
        if self._has_gap():
            # A packet is missing while later ones wait behind it. A frame that is merely
            # still arriving is not a gap, however slowly its packets come.
            now = time.monotonic()
            if self._gap_since is None:
                self._gap_since = now
            elif now - self._gap_since > GAP_TIMEOUT or len(self._pending) > MAX_PENDING // 2:
                self._give_up_gap()
                self.on_keyframe_needed()
                self._release()
        else:
            self._gap_since = None

    def _has_gap(self) -> bool:
        if not self._pending or self._next is None:
            return False
        span = max(_seq_delta(s, self._next) for s in self._pending) + 1
        return span > len(self._pending)

    def _release(self) -> None:
        """Emit every complete frame that starts at ``_next``."""
        while self._next is not None:
            if self._resync:
                # Skip to the first packet that starts a frame.
                first = self._pending.get(self._next)
                if first is None:
                    return
                if not vp8_starts_frame(first.payload):
                    del self._pending[self._next]
                    self._next = (self._next + 1) & 0xFFFF
                    continue
                self._resync = False
            seq = self._next
            parts: list[bytes] = []
            timestamp: int | None = None
            temporal: tuple[int, int] | None = None
            while True:
                pkt = self._pending.get(seq)
                if pkt is None:
                    return  # incomplete: wait for the missing packet (NACK may bring it)
                if timestamp is None:
                    timestamp = pkt.timestamp
                    temporal = vp8_temporal(pkt.payload)
                elif pkt.timestamp != timestamp:
                    # A new frame began without a marker on the last one: end it here.
                    break
                parts.append(pkt._data)
                if pkt.marker:
                    seq = (seq + 1) & 0xFFFF
                    break
                seq = (seq + 1) & 0xFFFF
            for s in range(_seq_delta(seq, self._next)):
                self._pending.pop((self._next + s) & 0xFFFF, None)
            self._next = seq
            self._gap_since = None
            assert timestamp is not None
            data = b"".join(parts)
            keyframe = vp8_is_keyframe(data)
            if self._need_keyframe and not keyframe:
                self.frames_dropped += 1
                self.on_keyframe_needed()
                continue
            self._need_keyframe = False
            self._emit(data, timestamp, keyframe, temporal)

    def _give_up_gap(self) -> None:
        """Drop what is stuck behind the first missing packet and wait for a keyframe."""
        if not self._pending or self._next is None:
            return
        hole = self._next
        while hole in self._pending:
            hole = (hole + 1) & 0xFFFF
        for seq in [s for s in self._pending if _seq_delta(s, hole) < 0]:
            del self._pending[seq]
        self.frames_dropped += 1
        self._next = (
            min(self._pending, key=lambda s: _seq_delta(s, hole)) if self._pending else hole
        )
        self._resync = True
        self._need_keyframe = True
        self._gap_since = None

    def _emit(
        self,
        data: bytes,
        rtp_timestamp: int,
        keyframe: bool,
        temporal: tuple[int, int] | None = None,
    ) -> None:
        frame = EncodedFrame(
            kind=self.kind,
            data=data,
            pts=self._pts(rtp_timestamp),
            keyframe=keyframe,
            index=self.frames_out,
            layer=None if temporal is None else temporal[0],
            tk=0 if temporal is None else temporal[1],
        )
        self.frames_out += 1
        self.on_frame(frame)
