"""The media nouns: a Router per live meeting, a Producer per inbound track, a Consumer per
outbound copy. Encoded frames pass from a publisher's receiver to subscribers' senders; nothing
is decoded or re-encoded (see docs/architecture.md, "Media plane").
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc import MediaStreamTrack
from aiortc.mediastreams import MediaStreamError

from rooms.frames import AUDIO_CLOCK, VIDEO_CLOCK, EncodedFrame, FrameAssembler
from rooms.meter import RateMeter

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 0.5  # at most one PLI upstream per producer per half second
VIDEO_QUEUE = 30
AUDIO_QUEUE = 50
# A consumer moving to another producer (a tier or a speaker) keeps sending the old one until
# the new one's keyframe arrives; past this, it stops the old one and waits (rooms/tiers.py).
SWITCH_TIMEOUT = 2.0
# A producer that delivered nothing for this long is not offered to a consumer as a tier.
FLOWING = 1.5
_ids = itertools.count(1)


class Producer:
    """One inbound track. Frames come from its ``FrameAssembler``; consumers fan them out."""

    def __init__(
        self,
        kind: str,
        send_pli: Callable[[int], Awaitable[None]] | None,
        app_data: dict[str, Any] | None = None,
    ) -> None:
        self.id = f"p{next(_ids)}"
        self.kind = kind
        self.app_data = app_data or {}
        self.consumers: set[Consumer] = set()
        self.closed = False
        self.frames = 0
        self.bytes = 0
        self.last_frame_at: float | None = None
        self.keyframe_requests_sent = 0
        # What it carries (all layers) and, when the publisher sends temporal layers, its
        # base layer alone: the cost of the ``lowest`` tier.
        self.rate = RateMeter()
        self.base_rate = RateMeter()
        self.base_frames = 0
        self.layered = False  # frames above layer 0 have been seen
        self.assembler = FrameAssembler(kind, self.deliver, self.request_keyframe)
        self._send_pli = send_pli
        self._last_pli = 0.0
        self._pli_task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[EncodedFrame], None]] = []

    def deliver(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        self.frames += 1
        size = len(frame.data)
        self.bytes += size
        now = self.last_frame_at = frame.received_at
        self.rate.add(size, now)
        if frame.layer is not None:
            if frame.layer == 0:
                frame.base_index = self.base_frames
                self.base_frames += 1
                self.base_rate.add(size, now)
            else:
                self.layered = True
            frame.tl0 = (self.base_frames - 1) & 0xFF
        for consumer in tuple(self.consumers):
            consumer.push(frame, self)
        for listener in self.listeners:
            listener(frame)

    def kbit(self, now: float, base: bool = False) -> float:
        """kbit/s it carries now; ``base``: its base layer alone (all of it if unlayered)."""
        return (self.base_rate if base and self.layered else self.rate).kbit(now)

    def flowing(self, now: float | None = None) -> bool:
        """Frames arrived lately: the producer can stand for its tier."""
        if self.closed or self.last_frame_at is None:
            return False
        return (now if now is not None else time.monotonic()) - self.last_frame_at < FLOWING

    def request_keyframe(self) -> None:
        """Ask the publisher for a keyframe, at most every KEYFRAME_INTERVAL (then once more)."""
        if self.kind != "video" or self.closed or self._send_pli is None:
            return
        if self._pli_task is not None and not self._pli_task.done():
            return  # a trailing request is already scheduled
        wait = self._last_pli + KEYFRAME_INTERVAL - time.monotonic()
        self._pli_task = asyncio.get_running_loop().create_task(self._pli_after(max(0.0, wait)))

    async def _pli_after(self, delay: float) -> None:
        if delay:
            await asyncio.sleep(delay)
        ssrc = self.assembler.media_ssrc
        if ssrc is None or self._send_pli is None or self.closed:
            return
        self._last_pli = time.monotonic()
        self.keyframe_requests_sent += 1
        with contextlib.suppress(ConnectionError):
            await self._send_pli(ssrc)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for consumer in tuple(self.consumers):
            consumer.producer_closed(self)
        if self._pli_task is not None:
            self._pli_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pli_task
            self._pli_task = None
        self.listeners.clear()


class ForwardedTrack(MediaStreamTrack):
    """The track an aiortc sender reads: yields ``(frame, pts)`` pairs, never decoded frames."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.queue: asyncio.Queue[tuple[EncodedFrame, int, bool] | None] = asyncio.Queue(
            VIDEO_QUEUE if kind == "video" else AUDIO_QUEUE
        )

    async def recv(self) -> Any:
        item = await self.queue.get()
        if item is None or self.readyState != "live":
            raise MediaStreamError
        return item


class Packer:
    """Takes the place of aiortc's encoder on a consumer's sender: packs, never encodes.

    aiortc's ``RTCRtpSender`` calls ``encoder.pack(data)`` for anything that is not a decoded
    frame; the payloads come from the shared ``EncodedFrame`` (computed once per frame).
    The sender hands a receiver's REMB to ``target_bitrate``: it is kept as the link's
    estimate (the packer cannot change a forwarded frame's bitrate).
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self._previous: tuple[bytes, int] | None = None

    @property
    def target_bitrate(self) -> int:
        return int(self.consumer.feedback.remb_kbit * 1000)

    @target_bitrate.setter
    def target_bitrate(self, bps: int) -> None:
        self.consumer.feedback.remb(bps, time.monotonic())

    def pack_forwarded(
        self, item: tuple[EncodedFrame, int, bool]
    ) -> tuple[list[bytes], int, int | None]:
        """``pack`` for the forwarding sender (rooms/hooks.py), which can also send another
        payload type: an audio frame with the one before it as redundancy (RFC 2198 RED)
        while the consumer's link loses packets. Returns the payload type, or None for the
        negotiated codec's."""
        payloads, pts = self.pack(item)
        consumer = self.consumer
        red = consumer.red_payload_type
        if red is None or consumer.kind != "audio" or len(payloads) != 1:
            return payloads, pts, None
        previous, self._previous = self._previous, (payloads[0], pts)
        if not consumer.redundancy or previous is None:
            return payloads, pts, None
        block, block_pts = previous
        offset = pts - block_pts
        if not 0 < offset < 1 << 14 or len(block) >= 1 << 10 or consumer.opus_payload_type is None:
            return payloads, pts, None  # too far back (a DTX pause) or too big: send it plain
        opus = consumer.opus_payload_type
        header = bytes(
            (
                0x80 | opus,  # F: another block follows; its payload type
                (offset >> 6) & 0xFF,
                ((offset & 0x3F) << 2) | (len(block) >> 8),
                len(block) & 0xFF,
                opus,  # the primary block's header: F=0, payload type
            )
        )
        consumer.redundant_frames += 1
        return [header + block + payloads[0]], pts, red

    def pack(self, item: tuple[EncodedFrame, int, bool]) -> tuple[list[bytes], int]:
        frame, pts, base = item
        payloads = frame.payloads(base)
        self.consumer.frames_sent += 1
        self.consumer.bytes_sent += len(frame.data)
        return payloads, pts

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("a forwarding sender never encodes")


LOSS_WINDOW = 3.0  # seconds of receiver reports a loss figure is taken over


class Feedback:
    """What the receiver of one consumer says of its link in RTCP: its receiver reports
    (the loss over the last ``LOSS_WINDOW`` s from their cumulative counters, jitter, the
    round trip aiortc measured from them) and REMB."""

    __slots__ = (
        "_history",
        "jitter",
        "loss",
        "probe_rtt",
        "probe_rtt_at",
        "remb_at",
        "remb_kbit",
        "report_at",
        "reports",
        "rtt",
        "rtt_raw",
        "rtt_raw_at",
    )

    def __init__(self) -> None:
        self.loss = 0.0  # fraction lost over the window, 0 to 1
        self.jitter = 0  # in the codec clock's units
        self.rtt: float | None = None  # seconds, aiortc's smoothed figure
        # The latest report's own round trip (rooms/roundtrip.py) and when it came.
        self.rtt_raw: float | None = None
        self.rtt_raw_at = 0.0
        # The answer to the report sent behind a probe (rooms/linkprobe.py), when it came.
        self.probe_rtt: float | None = None
        self.probe_rtt_at = 0.0
        self.report_at = 0.0
        self.reports = 0
        self.remb_kbit = 0.0
        self.remb_at = 0.0
        self._history: list[tuple[float, int, int]] = []  # (at, packets lost, highest seq)

    def report(
        self,
        fraction_lost: int,
        jitter: int,
        rtt: float | None,
        now: float,
        packets_lost: int | None = None,
        highest_sequence: int | None = None,
        rtt_raw: float | None = None,
        probe_rtt: float | None = None,
    ) -> None:
        self.jitter = jitter
        self.rtt = rtt
        if rtt_raw is not None:
            self.rtt_raw, self.rtt_raw_at = rtt_raw, now
        if probe_rtt is not None:
            self.probe_rtt, self.probe_rtt_at = probe_rtt, now
        self.report_at = now
        self.reports += 1
        if packets_lost is None or highest_sequence is None:
            self.loss = fraction_lost / 256  # one interval's figure: all there is
            return
        # One report's fraction is noisy (a few packets between reports at a low rate):
        # the cumulative counters give the loss over the last few seconds instead.
        history = self._history
        history.append((now, packets_lost, highest_sequence))
        while len(history) > 2 and now - history[1][0] >= LOSS_WINDOW:
            history.pop(0)
        lost, expected = self.window()
        self.loss = min(1.0, max(0.0, lost / expected)) if expected > 0 else fraction_lost / 256

    def window(self) -> tuple[int, int]:
        """Packets lost and packets expected over the last ``LOSS_WINDOW`` s of reports:
        a link's loss is best pooled over all its streams (a slow one has few packets)."""
        if len(self._history) < 2:
            return 0, 0
        _, lost0, seq0 = self._history[0]
        _, lost1, seq1 = self._history[-1]
        return max(0, lost1 - lost0), max(0, seq1 - seq0)

    def last_interval(self) -> tuple[int, int]:
        """Packets lost and expected between the last two reports alone: what the link
        did in the last second or so, before the window smooths it."""
        if len(self._history) < 2:
            return 0, 0
        _, lost0, seq0 = self._history[-2]
        _, lost1, seq1 = self._history[-1]
        return max(0, lost1 - lost0), max(0, seq1 - seq0)

    def remb(self, bps: int, now: float) -> None:
        self.remb_kbit = bps / 1000
        self.remb_at = now


class Consumer:
    """One outbound copy: a slot of a subscriber that shows one producer at a time.

    ``base_only`` forwards only a layered producer's base layer (the ``lowest`` tier), each
    frame numbered in the base layer's own picture-id sequence. Moving to another producer, or
    in or out of ``base_only``, happens at a keyframe of what comes next: until it arrives the
    slot goes on with what it had (no blank picture), for at most ``SWITCH_TIMEOUT``.
    """

    def __init__(self, kind: str, app_data: dict[str, Any] | None = None) -> None:
        self.id = f"c{next(_ids)}"
        self.kind = kind
        self.app_data = app_data or {}
        self.track = ForwardedTrack(kind)
        self.producer: Producer | None = None
        self.base_only = False
        self.closed = False
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self.switches = 0
        self.feedback = Feedback()
        self.sender: Any = None  # the RTCRtpSender that sends it (rooms/hooks.py)
        # Audio: the receiver's RED and Opus payload types (when it offered RED), and whether
        # each frame goes with the one before it (rooms/linkrate.py turns it on for loss).
        self.red_payload_type: int | None = None
        self.opus_payload_type: int | None = None
        self.redundancy = False
        self.redundant_frames = 0
        self._next: tuple[Producer, bool] | None = None  # waiting for its keyframe
        self._next_since = 0.0
        self._waiting_key = kind == "video"
        self._offset: int | None = None
        self._last_pts: int | None = None
        self._last_at = 0.0
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK

    @property
    def target(self) -> tuple[Producer | None, bool]:
        """What this slot shows once any switch under way is done."""
        if self._next is not None:
            return self._next
        return self.producer, self.base_only

    def attach(self, producer: Producer | None, base_only: bool = False) -> None:
        """Show ``producer`` in this slot (None empties it at once). Video switches at a
        keyframe; while video flows, the old source goes on until then."""
        base_only = base_only and self.kind == "video"
        if (producer, base_only) == self.target:
            return
        flowing = (
            self.kind == "video"
            and self.producer is not None
            and not self._waiting_key
            and self.producer.flowing()
        )
        if producer is not None and flowing and not self.closed:
            self._set_next(producer, base_only)
            return
        self._set_next(None, False)
        if self.producer is not None:
            self.producer.consumers.discard(self)
        self.producer = producer
        self.base_only = base_only
        self._offset = None
        self._waiting_key = self.kind == "video"
        self._drain()
        if producer is not None and not self.closed:
            producer.consumers.add(self)
            producer.request_keyframe()

    def _set_next(self, producer: Producer | None, base_only: bool) -> None:
        old = self._next[0] if self._next is not None else None
        if old is not None and old is not producer and old is not self.producer:
            old.consumers.discard(self)
        if producer is None or (producer is self.producer and base_only == self.base_only):
            self._next = None
            return
        self._next = (producer, base_only)
        self._next_since = time.monotonic()
        producer.consumers.add(self)
        producer.request_keyframe()

    def push(self, frame: EncodedFrame, source: Producer | None = None) -> None:
        if self.closed:
            return
        pending = self._next
        if pending is not None and source is pending[0]:
            if not frame.keyframe:
                if source is not self.producer:
                    source.request_keyframe()  # rate-limited there
                    return
            else:
                self._switch(pending)
        elif source is not None and source is not self.producer:
            return  # a producer this slot left (a delivery already under way)
        elif pending is not None and frame.received_at - self._next_since > SWITCH_TIMEOUT:
            # The next source sent no keyframe in time: stop the old one and wait for it.
            producer, base_only = pending
            self._next = None
            self.attach(None)
            self.attach(producer, base_only)
            return
        if self.base_only and frame.layer is not None and frame.layer > 0:
            return  # the lowest tier: the base layer only
        if self._waiting_key:
            if not frame.keyframe:
                self.frames_dropped += 1
                if self.producer is not None:
                    self.producer.request_keyframe()
                return
            self._waiting_key = False
        now = frame.received_at
        if self._offset is None:
            # Keep this slot's timestamps rising across source switches, spaced by real time.
            if self._last_pts is None:
                self._offset = -frame.pts
            else:
                gap = max(1, int((now - self._last_at) * self._clock))
                self._offset = self._last_pts + gap - frame.pts
        pts = frame.pts + self._offset
        if self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
        try:
            self.track.queue.put_nowait((frame, pts, self.base_only))
        except asyncio.QueueFull:
            # The subscriber's link cannot keep up: drop what is queued, resume at a keyframe.
            self.frames_dropped += self.track.queue.qsize() + 1
            self._drain()
            if self.kind == "video":
                self._waiting_key = True
                if self.producer is not None:
                    self.producer.request_keyframe()
            return
        self._last_pts = pts
        self._last_at = now

    def _switch(self, pending: tuple[Producer, bool]) -> None:
        """The next source's keyframe is here: it takes the slot from this frame on."""
        producer, base_only = pending
        self._next = None
        if self.producer is not None and self.producer is not producer:
            self.producer.consumers.discard(self)
        self.producer = producer
        self.base_only = base_only
        self._offset = None
        self._waiting_key = False
        self.switches += 1

    def producer_closed(self, producer: Producer) -> None:
        """``producer`` is gone: a switch to it is off; a slot showing it takes what it was
        switching to, else goes empty."""
        pending = self._next
        if pending is not None and pending[0] is producer:
            self._next = None
            pending = None
        if self.producer is producer:
            self.attach(None)
            if pending is not None:
                self.attach(*pending)

    def request_keyframe(self) -> None:
        """A subscriber's PLI/FIR: pass it up to the producer (rate-limited there)."""
        producer = self._next[0] if self._next is not None else self.producer
        if producer is not None:
            producer.request_keyframe()

    def _drain(self) -> None:
        while not self.track.queue.empty():
            self.track.queue.get_nowait()

    def close(self) -> None:
        if self.closed:
            return
        self.attach(None)
        self.closed = True
        self._drain()
        self.track.queue.put_nowait(None)
        self.track.stop()


class Router:
    """The media space of one live meeting on this node: its producers and consumers."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}

    def create_producer(
        self,
        kind: str,
        send_pli: Callable[[int], Awaitable[None]] | None,
        app_data: dict[str, Any] | None = None,
    ) -> Producer:
        producer = Producer(kind, send_pli, app_data)
        self.producers[producer.id] = producer
        return producer

    def create_consumer(self, kind: str, app_data: dict[str, Any] | None = None) -> Consumer:
        consumer = Consumer(kind, app_data)
        self.consumers[consumer.id] = consumer
        return consumer

    async def close_producer(self, producer: Producer) -> None:
        self.producers.pop(producer.id, None)
        await producer.close()

    def close_consumer(self, consumer: Consumer) -> None:
        self.consumers.pop(consumer.id, None)
        consumer.close()

    async def close(self) -> None:
        for consumer in tuple(self.consumers.values()):
            self.close_consumer(consumer)
        for producer in tuple(self.producers.values()):
            await self.close_producer(producer)
