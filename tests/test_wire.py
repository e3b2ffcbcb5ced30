"""The forwarding sender's wire: a frame's packets protected with SRTP and sent in one
``sendmsg`` (UDP segmentation) or one by one, over real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import os
import socket
import struct
from types import SimpleNamespace
from typing import Any

import pytest
from pylibsrtp import Policy, Session

import rooms.hooks
from rooms.hooks import _Wire

KEY = os.urandom(30)


def rtp(seq: int, size: int, marker: bool = False) -> bytes:
    header = struct.pack("!BBHLL", 0x80, (0x80 if marker else 0) | 96, seq, 90_000, 0x1234)
    return header + bytes([seq & 0xFF]) * (size - len(header))


def frame(first_seq: int, count: int, full: int = 1200, last: int = 333) -> list[bytes]:
    """A frame as the VP8 packetizer cuts it: full-size packets, then a shorter last one."""
    sizes = [full] * (count - 1) + [last]
    return [rtp(first_seq + i, size, i == count - 1) for i, size in enumerate(sizes)]


class Link:
    """A real UDP socket pair on loopback; the sending side is an asyncio transport, as
    aioice's is, with the SRTP sessions of both ends."""

    def __init__(self) -> None:
        self.received = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.received.bind(("127.0.0.1", 0))
        self.received.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        self.received.settimeout(5)
        self.rx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_INBOUND))
        self.dtls = SimpleNamespace(_RTCDtlsTransport__tx_bytes=0, _RTCDtlsTransport__tx_packets=0)
        self.transport: Any = None

    async def open(self) -> _Wire:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        tx = Session(Policy(key=KEY, ssrc_type=Policy.SSRC_ANY_OUTBOUND))
        addr = self.received.getsockname()
        return _Wire(self.dtls, tx, self.transport, self.transport._sock, addr)

    def receive(self, count: int) -> list[bytes]:
        return [self.rx.unprotect(self.received.recv(2048)) for _ in range(count)]

    def close(self) -> None:
        self.transport.close()
        self.received.close()


@pytest.fixture
def gso() -> Any:
    """Restore the process-wide segmentation flag after each test."""
    saved = dict(rooms.hooks._gso)
    yield rooms.hooks._gso
    rooms.hooks._gso.update(saved)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("segmented", [True, False])
async def test_a_frame_arrives_packet_by_packet_in_order_and_counted(
    gso: dict[str, bool], segmented: bool
) -> None:
    gso["usable"] = segmented and gso["usable"]
    link = Link()
    wire = await link.open()
    try:
        frames = [frame(100, 7), frame(107, 1, last=90), frame(108, 150)]  # 150: a keyframe
        sent: list[bytes] = []
        for packets in frames:
            wire.send(packets)
            sent += packets
        got = link.receive(len(sent))
        assert got == sent  # each packet its own datagram, unchanged, in order
        assert link.dtls._RTCDtlsTransport__tx_packets == len(sent)
        # SRTP adds its 10-byte authentication tag to every packet on the wire.
        assert link.dtls._RTCDtlsTransport__tx_bytes == sum(len(p) + 10 for p in sent)
        # Linux has had UDP segmentation since 4.18: here it must have been used, not refused.
        assert gso["usable"] is segmented
    finally:
        link.close()


@pytest.mark.timeout(30)
async def test_packets_of_unequal_size_are_sent_one_by_one(gso: dict[str, bool]) -> None:
    link = Link()
    wire = await link.open()
    try:
        # A shorter packet before the last cannot be cut from one buffer by the kernel.
        packets = [rtp(1, 1200), rtp(2, 800), rtp(3, 1200, True)]
        wire.send(packets)
        assert link.receive(3) == packets
    finally:
        link.close()


@pytest.mark.timeout(30)
async def test_a_kernel_refusing_segmentation_turns_it_off_and_loses_nothing(
    gso: dict[str, bool],
) -> None:
    link = Link()
    wire = await link.open()

    class NoSegmentation:
        """The socket of a machine whose route cannot segment: sendmsg fails with EIO."""

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

        def sendmsg(self, *_args: Any) -> int:
            raise OSError(5, "Input/output error")

        def sendto(self, data: bytes, addr: Any) -> int:
            return self.sock.sendto(data, addr)

    wire.sock = NoSegmentation(wire.sock)
    gso["usable"] = True
    try:
        packets = frame(10, 5)
        wire.send(packets)
        assert link.receive(5) == packets
        assert gso["usable"] is False
    finally:
        link.close()
