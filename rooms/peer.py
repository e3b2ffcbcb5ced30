"""One participant's WebRTC link to this node: fixed slots, one offer/answer, no renegotiation.

The client offers transceivers in the order of its *layout* (``SITE_LAYOUT`` or
``CHAIR_LAYOUT``): first what it publishes (camera, microphone), then the slots it receives.
What a receive slot shows changes on the node (a Consumer switches producer at a keyframe),
so the browser never has to renegotiate when the floor or the watched sites change.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiortc import (
    RTCBundlePolicy,
    RTCConfiguration,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.sdp import SessionDescription

from rooms.hooks import (
    attach_consumer,
    attach_producer,
    offer_red,
    quiet_remb,
    restrict_codecs,
)
from rooms.ice import close_peer_connection, enlarge_receive_buffers
from rooms.liveness import TICK, PacketWatch, connection_state
from rooms.router import Consumer, Producer, Router
from rooms.sdp_checks import SdpError, check_sdp

log = logging.getLogger(__name__)

WALL_SLOTS = 4
ICE_GATHER_TIMEOUT = 10.0
CONNECT_TIMEOUT = 20.0


@dataclass(frozen=True)
class Slot:
    name: str
    kind: str
    publish: bool  # True: the client sends it; False: the node sends it

    def public(self) -> dict[str, str]:
        return {
            "slot": self.name,
            "kind": self.kind,
            "direction": "sendonly" if self.publish else "recvonly",
        }


# Video is published in two tiers from one camera (rooms/tiers.py): ``camera`` (high) and
# ``camera.low``; a program slot that carries video to another node has a ``.low`` twin.
SITE_LAYOUT: tuple[Slot, ...] = (
    Slot("camera", "video", True),
    Slot("camera.low", "video", True),
    Slot("microphone", "audio", True),
    Slot("chair.video", "video", False),
    Slot("chair.audio", "audio", False),
    Slot("floor.video", "video", False),
    Slot("floor.audio", "audio", False),
)
# A child node's link to its parent, seen from the parent: the child publishes what goes up
# (a floor holder or a watched site below it) and receives the program once for all its sites.
# ``watch.N`` carries the site the parent asked for with ``watch`` slot N (nodelink.py): on
# the chair's node it feeds ``wall.N``; on a node between, the same slot one link further up.
RELAY_LAYOUT: tuple[Slot, ...] = (
    Slot("up.video", "video", True),
    Slot("up.video.low", "video", True),
    Slot("up.audio", "audio", True),
    Slot("chair.video", "video", False),
    Slot("chair.video.low", "video", False),
    Slot("chair.audio", "audio", False),
    Slot("floor.video", "video", False),
    Slot("floor.video.low", "video", False),
    Slot("floor.audio", "audio", False),
    *(Slot(f"watch.{i}", "video", True) for i in range(WALL_SLOTS)),
)
CHAIR_LAYOUT: tuple[Slot, ...] = (
    Slot("camera", "video", True),
    Slot("camera.low", "video", True),
    Slot("microphone", "audio", True),
    Slot("floor.video", "video", False),
    Slot("floor.audio", "audio", False),
    *(Slot(f"wall.{i}", "video", False) for i in range(WALL_SLOTS)),
)


class MediaError(Exception):
    """A refused offer; ``code`` is the stable error code sent to the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def check_offer(sdp: str, layout: tuple[Slot, ...]) -> None:
    """Refuse an offer that is not well-formed SDP (``bad_sdp``, rooms/sdp_checks.py) or
    whose sections do not follow the layout (``bad_offer``), naming the first difference."""
    _check_layout(_parse(sdp, answer=False), layout, answer=False)


def check_answer(sdp: str, layout: tuple[Slot, ...]) -> None:
    """The same for the other node's answer to an offer made in ``layout`` (a child's relay
    link, server/cascade/parent_link.py): the answer's directions are the offer's reversed."""
    _check_layout(_parse(sdp, answer=True), layout, answer=True)


def _parse(sdp: str, *, answer: bool) -> SessionDescription:
    what = "answer" if answer else "offer"
    try:
        check_sdp(sdp, answer=answer)
    except SdpError as exc:
        raise MediaError("bad_sdp", f"the {what} is not well-formed SDP: {exc}") from exc
    try:
        return SessionDescription.parse(sdp)
    except Exception as exc:  # aiortc's parser raises many kinds on what it cannot read
        raise MediaError(
            "bad_sdp", f"the {what} is not valid SDP: {exc.__class__.__name__} {exc}".strip()
        ) from exc


def _check_layout(parsed: SessionDescription, layout: tuple[Slot, ...], *, answer: bool) -> None:
    media = [m for m in parsed.media if m.kind in ("audio", "video")]
    if len(media) != len(layout):
        raise MediaError(
            "bad_offer",
            f"expected {len(layout)} audio/video sections in layout order, got {len(media)}",
        )
    for index, (m, slot) in enumerate(zip(media, layout, strict=True)):
        sends = slot.publish != answer  # does the side that wrote this SDP send this slot?
        allowed = ("sendonly", "sendrecv") if sends else ("recvonly", "sendrecv")
        if m.kind != slot.kind or m.direction not in allowed:
            raise MediaError(
                "bad_offer",
                f"section {index} must be {slot.kind} {allowed[0]} for slot {slot.name!r}, "
                f"got {m.kind} {m.direction}",
            )
    bundle = next((g for g in parsed.group if g.semantic == "BUNDLE"), None)
    if bundle is None or any(m.rtp.muxId not in bundle.items for m in media):
        raise MediaError("bad_offer", "every section must be in one BUNDLE group")


class Peer:
    """A participant's peer connection with its producers (published) and consumers (slots)."""

    def __init__(
        self,
        router: Router,
        layout: tuple[Slot, ...],
        app_data: dict[str, Any],
        on_producer: Callable[[Peer, Slot, Producer], None],
        on_failed: Callable[[Peer], None],
        on_change: Callable[[Peer], None] | None = None,
    ) -> None:
        self.router = router
        self.layout = layout
        self.app_data = app_data
        self.pc: RTCPeerConnection | None = None
        self.producers: dict[str, Producer] = {}  # by slot name
        self.consumers: dict[str, Consumer] = {}  # by slot name
        self.closed = False
        self._on_producer = on_producer
        self._on_failed = on_failed
        self._on_change = on_change
        self._watchdog: asyncio.Task[None] | None = None
        self.watch: PacketWatch | None = None
        self._liveness: asyncio.Task[None] | None = None

    async def answer(self, sdp: str) -> str:
        if self.pc is not None:
            raise MediaError("already_negotiated", "this link is negotiated; rejoin to start over")
        check_offer(sdp, self.layout)
        # max-bundle: one transport for every section. With aiortc's default (balanced) an
        # answerer puts a second section of the same kind on a transport that never connects.
        pc = self.pc = RTCPeerConnection(RTCConfiguration(bundlePolicy=RTCBundlePolicy.MAX_BUNDLE))
        slots_by_mid: dict[str, Slot] = {}

        @pc.on("track")
        def _on_track(track: Any) -> None:
            for transceiver in pc.getTransceivers():
                if transceiver.receiver.track is track and transceiver.mid in slots_by_mid:
                    slot = slots_by_mid[transceiver.mid]
                    if slot.publish and slot.kind == track.kind:
                        receiver = transceiver.receiver
                        producer = self.router.create_producer(
                            slot.kind, receiver._send_rtcp_pli, {**self.app_data, "slot": slot.name}
                        )
                        attach_producer(receiver, producer)
                        quiet_remb(receiver)
                        self.producers[slot.name] = producer

        @pc.on("connectionstatechange")
        async def _on_state() -> None:
            if self.closed:
                return
            if pc.connectionState == "failed":
                self._on_failed(self)
            elif self._on_change is not None:
                self._on_change(self)  # connecting → connected: people are told

        # m-line order gives each mid its slot; check_offer already matched kinds.
        parsed = SessionDescription.parse(sdp)
        media = [m for m in parsed.media if m.kind in ("audio", "video")]
        for m, slot in zip(media, self.layout, strict=True):
            if m.rtp.muxId:
                slots_by_mid[m.rtp.muxId] = slot
        if len(slots_by_mid) != len(self.layout):
            raise MediaError("bad_sdp", "every section needs its own a=mid")
        offered = {m.rtp.muxId: list(m.rtp.codecs) for m in media if m.rtp.muxId}
        try:
            # Bounded: an mDNS candidate is resolved here (aioice waits 1 s per name).
            await asyncio.wait_for(
                pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer")),
                ICE_GATHER_TIMEOUT,
            )
        except TimeoutError as exc:
            raise MediaError("ice_timeout", "the offer's candidates took too long") from exc
        except Exception as exc:
            raise MediaError("bad_sdp", f"the offer was refused: {exc}") from exc

        for transceiver in pc.getTransceivers():
            found = slots_by_mid.get(transceiver.mid or "")
            if found is None:
                continue
            slot = found
            if not restrict_codecs(transceiver):
                want = "VP8" if slot.kind == "video" else "Opus"
                raise MediaError("unsupported_codec", f"slot {slot.name!r} must offer {want}")
            if slot.publish:
                transceiver.direction = "recvonly"
            else:
                transceiver.direction = "sendonly"
                consumer = self.router.create_consumer(
                    slot.kind, {**self.app_data, "slot": slot.name}
                )
                if slot.kind == "audio":
                    consumer.red_payload_type = offer_red(
                        transceiver, offered.get(transceiver.mid or "", [])
                    )
                    consumer.opus_payload_type = transceiver._codecs[0].payloadType
                attach_consumer(transceiver.sender, consumer)
                self.consumers[slot.name] = consumer

        answer = await pc.createAnswer()
        try:
            await asyncio.wait_for(pc.setLocalDescription(answer), ICE_GATHER_TIMEOUT)
        except TimeoutError as exc:
            raise MediaError("ice_timeout", "gathering ICE candidates took too long") from exc
        enlarge_receive_buffers(pc)
        for slot_name, producer in self.producers.items():
            slot = next(s for s in self.layout if s.name == slot_name)
            self._on_producer(self, slot, producer)
        loop = asyncio.get_running_loop()
        self._watchdog = loop.create_task(self._watch_connect())
        self.watch = PacketWatch(pc)
        self._liveness = loop.create_task(self._watch_packets(self.watch))
        return str(pc.localDescription.sdp)

    @property
    def link(self) -> str:
        """The link as people are told it: ``"connecting"``, ``"connected"``,
        ``"disconnected"`` (connected, but nothing arrived for ``liveness.SILENCE`` s),
        ``"failed"`` or ``"closed"``."""
        if self.closed:
            return "closed"
        state = connection_state(self.pc, self.watch)
        return "connecting" if state in ("none", "new") else state

    @property
    def flowing(self) -> bool:
        """Packets are arriving from the participant just now."""
        return self.link == "connected" and self.watch is not None and self.watch.flowed

    async def _watch_packets(self, watch: PacketWatch) -> None:
        """Tell the meeting when the link falls silent, and when packets flow again."""
        flowed = False
        while not self.closed:
            await asyncio.sleep(TICK)
            changed = watch.sample()
            if changed or watch.flowed is not flowed:
                flowed = watch.flowed
                if watch.silent:
                    log.info("peer %s: no packets for %.1f s", self.app_data, watch.silence)
                if self._on_change is not None:
                    self._on_change(self)

    async def _watch_connect(self) -> None:
        """A link that does not connect in time is failed, so the client rejoins."""
        await asyncio.sleep(CONNECT_TIMEOUT)
        if self.pc is not None and self.pc.connectionState != "connected" and not self.closed:
            log.info("peer %s did not connect in %.0f s", self.app_data, CONNECT_TIMEOUT)
            self._on_failed(self)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in (self._watchdog, self._liveness):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        for consumer in self.consumers.values():
            self.router.close_consumer(consumer)
        for producer in self.producers.values():
            await self.router.close_producer(producer)
        self.consumers.clear()
        self.producers.clear()
        if self.pc is not None:
            await close_peer_connection(self.pc)
