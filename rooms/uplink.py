"""A child node's media link to its parent's meeting: one WebRTC link per live meeting.

The child offers in ``RELAY_LAYOUT`` order. Its receivers are hooked like any publisher's
(``attach_producer``), so the program (chair and floor holder) arrives once as Producers in
the child's own Router and ``LiveMeeting.route()`` forwards it to every site below, without
decoding. What goes up (``up.video``, ``up.audio``, and ``watch.N`` for a site the parent
asked to watch) leaves through Consumers like any slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)

from rooms.hooks import AUDIO_MIME, VIDEO_MIME, attach_consumer, attach_producer
from rooms.ice import close_peer_connection, enlarge_receive_buffers
from rooms.liveness import TICK, PacketWatch
from rooms.meeting import LiveMeeting
from rooms.peer import RELAY_LAYOUT, Slot
from rooms.router import Consumer, Producer

log = logging.getLogger(__name__)


def _preferences(kind: str) -> list[Any]:
    """VP8 and its RTX, or Opus: one codec per kind on every leg."""
    capabilities = RTCRtpSender.getCapabilities(kind)
    assert capabilities is not None
    wanted = VIDEO_MIME if kind == "video" else AUDIO_MIME
    main = [c for c in capabilities.codecs if c.mimeType.lower() == wanted.lower()]
    rtx = [c for c in capabilities.codecs if c.mimeType.lower() == "video/rtx"]
    return main + rtx


class UplinkLink:
    """The child's side of the relay link for one meeting."""

    def __init__(self, live: LiveMeeting, node_code: str) -> None:
        self.live = live
        self.node_code = node_code
        self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        self.producers: dict[str, Producer] = {}
        self.consumers: dict[str, Consumer] = {}
        self._mid_slot: dict[str, Slot] = {}
        self.closed = False
        self.pc.on("track", self._on_track)
        # What arrives from the parent, so GET /api/links tells a silent link from a live one.
        self.watch = PacketWatch(self.pc)
        self._liveness: asyncio.Task[None] | None = None

    async def offer(self) -> str:
        app_data = {"meeting": self.live.meeting_id, "unit": self.node_code, "role": "uplink"}
        for slot in RELAY_LAYOUT:
            if slot.publish:
                consumer = self.live.router.create_consumer(
                    slot.kind, {**app_data, "slot": slot.name}
                )
                transceiver = self.pc.addTransceiver(consumer.track, direction="sendonly")
                attach_consumer(transceiver.sender, consumer)
                self.consumers[slot.name] = consumer
            else:
                transceiver = self.pc.addTransceiver(slot.kind, direction="recvonly")
            transceiver.setCodecPreferences(_preferences(slot.kind))
        await self.pc.setLocalDescription(await self.pc.createOffer())
        enlarge_receive_buffers(self.pc)
        for transceiver, slot in zip(self.pc.getTransceivers(), RELAY_LAYOUT, strict=True):
            assert transceiver.mid is not None
            self._mid_slot[transceiver.mid] = slot
        return str(self.pc.localDescription.sdp)

    def _on_track(self, track: Any) -> None:
        for transceiver in self.pc.getTransceivers():
            slot = self._mid_slot.get(transceiver.mid or "")
            if transceiver.receiver.track is not track or slot is None or slot.publish:
                continue
            receiver = transceiver.receiver
            producer = self.live.router.create_producer(
                slot.kind,
                receiver._send_rtcp_pli,
                {"meeting": self.live.meeting_id, "unit": "parent", "slot": slot.name},
            )
            attach_producer(receiver, producer)
            self.producers[slot.name] = producer

    async def accept(self, answer_sdp: str) -> None:
        await self.pc.setRemoteDescription(RTCSessionDescription(answer_sdp, "answer"))
        self.live.upstream = dict(self.producers)
        self.live.up_slots = dict(self.consumers)
        self.live.route()
        if self._liveness is None:
            self._liveness = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        while not self.closed:
            await asyncio.sleep(TICK)
            self.watch.sample()

    @property
    def connected(self) -> bool:
        return self.pc.connectionState == "connected"

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._liveness is not None:
            self._liveness.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._liveness
        if not self.live.upstream or all(
            self.live.upstream.get(k) is p for k, p in self.producers.items()
        ):
            self.live.upstream = {}
            self.live.up_slots = {}
            # No link up, no watch orders: the parent sends them again when this node relinks.
            watched = any(self.live.up_watched)
            self.live.up_watched = [None] * len(self.live.up_watched)
            self.live.route()
            if watched:
                self.live.changed()  # the relays below stop sending them up
        for consumer in self.consumers.values():
            self.live.router.close_consumer(consumer)
        for producer in self.producers.values():
            await self.live.router.close_producer(producer)
        await close_peer_connection(self.pc)
