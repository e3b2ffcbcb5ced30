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

log = logging.getLogger(__name__)

KEYFRAME_INTERVAL = 0.5  # at most one PLI upstream per producer per half second
VIDEO_QUEUE = 30
AUDIO_QUEUE = 50
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
        self.assembler = FrameAssembler(kind, self.deliver, self.request_keyframe)
        self._send_pli = send_pli
        self._last_pli = 0.0
        self._pli_task: asyncio.Task[None] | None = None
        self.listeners: list[Callable[[EncodedFrame], None]] = []

    def deliver(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
        self.frames += 1
        self.bytes += len(frame.data)
        self.last_frame_at = frame.received_at
        for consumer in tuple(self.consumers):
            consumer.push(frame)
        for listener in self.listeners:
            listener(frame)

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
            consumer.attach(None)
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
        self.queue: asyncio.Queue[tuple[EncodedFrame, int] | None] = asyncio.Queue(
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
    """

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer

    def pack(self, item: tuple[EncodedFrame, int]) -> tuple[list[bytes], int]:
        frame, pts = item
        payloads = frame.payloads()
        self.consumer.frames_sent += 1
        self.consumer.bytes_sent += len(frame.data)
        return payloads, pts

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        raise RuntimeError("a forwarding sender never encodes")


class Consumer:
    """One outbound copy: a slot of a subscriber that shows one producer at a time."""

    def __init__(self, kind: str, app_data: dict[str, Any] | None = None) -> None:
        self.id = f"c{next(_ids)}"
        self.kind = kind
        self.app_data = app_data or {}
        self.track = ForwardedTrack(kind)
        self.producer: Producer | None = None
        self.closed = False
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_dropped = 0
        self._waiting_key = kind == "video"
        self._offset: int | None = None
        self._last_pts: int | None = None
        self._last_at = 0.0
        self._clock = VIDEO_CLOCK if kind == "video" else AUDIO_CLOCK

    def attach(self, producer: Producer | None) -> None:
        """Show ``producer`` in this slot (None empties it). Video switches at a keyframe."""
        if producer is self.producer:
            return
        if self.producer is not None:
            self.producer.consumers.discard(self)
        self.producer = producer
        self._offset = None
        self._waiting_key = self.kind == "video"
        self._drain()
        if producer is not None and not self.closed:
            producer.consumers.add(self)
            producer.request_keyframe()

    def push(self, frame: EncodedFrame) -> None:
        if self.closed:
            return
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
            self.track.queue.put_nowait((frame, pts))
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

    def request_keyframe(self) -> None:
        """A subscriber's PLI/FIR: pass it up to the producer (rate-limited there)."""
        if self.producer is not None:
            self.producer.request_keyframe()

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
