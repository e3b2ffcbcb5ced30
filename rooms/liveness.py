"""Is anything arriving on a peer connection? The node's own watch on each media link.

ICE and DTLS notice a dead link late: aioice's consent checks give up after about 30 s, and
a socket.io heartbeat says nothing about the media. But a live link never falls silent for
long: a browser that publishes sends RTP all the time, and every sender (Chromium's and
aiortc's) sends an RTCP report at least every 1.5 s. So a link that received packets and then
none for ``SILENCE`` seconds is dead or cut, and is shown so (docs/protocol.md, "Liveness").

The count read is the DTLS transport's own (every SRTP, SRTCP and DTLS datagram it took);
the links are max-bundle, so one transport carries a whole link.
"""

from __future__ import annotations

import time
from typing import Any

from aiortc import RTCPeerConnection

SILENCE = 2.0  # seconds without a packet after packets flowed: the link is lost
TICK = 0.25  # how often a watcher samples
_COUNTER = "_RTCDtlsTransport__rx_packets"  # aiortc 1.16 (checked by rooms/hooks.py)


def received_packets(pc: RTCPeerConnection) -> int:
    """Datagrams the peer connection's DTLS transports have received so far."""
    seen: list[Any] = []
    total = 0
    for transceiver in pc.getTransceivers():
        dtls = transceiver.receiver.transport
        if dtls is None or any(dtls is d for d in seen):
            continue
        seen.append(dtls)
        total += int(getattr(dtls, _COUNTER, 0))
    return total


class PacketWatch:
    """Samples a peer connection's receive counter; ``silent`` once it stopped rising for
    ``SILENCE`` seconds after it had risen. Sampled by its owner every ``TICK``; a stall of
    the event loop is not taken for silence (two samples in a row must find none)."""

    def __init__(self, pc: RTCPeerConnection, silence: float = SILENCE) -> None:
        self.pc = pc
        self.silence = silence
        self.count = 0
        self.flowed = False
        self.last_packet_at = 0.0
        self._quiet_samples = 0
        self.silent = False

    def sample(self, now: float | None = None) -> bool:
        """Read the counter; returns True when ``silent`` changed."""
        now = time.monotonic() if now is None else now
        count = received_packets(self.pc)
        if count != self.count:
            self.count = count
            self.flowed = True
            self.last_packet_at = now
            self._quiet_samples = 0
        else:
            self._quiet_samples += 1
        silent = (
            self.flowed and self._quiet_samples >= 2 and now - self.last_packet_at >= self.silence
        )
        changed = silent is not self.silent
        self.silent = silent
        return changed


def connection_state(pc: RTCPeerConnection | None, watch: PacketWatch | None) -> str:
    """The state to tell people: ``"none"`` without a peer connection, ``"disconnected"``
    while a connected link has gone silent, else aiortc's connection state."""
    if pc is None:
        return "none"
    state = str(pc.connectionState)
    if state == "connected" and watch is not None and watch.silent:
        return "disconnected"
    return state
