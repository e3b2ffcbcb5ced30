"""Closing a peer connection without leaving ICE work behind.

aioice 0.13 races: when a connection is closed while ``connect()`` has just seen its check
list complete, ``connect()`` resumes after ``close()`` and starts consent-freshness checks on
the closed connection. They then run for about 30 s (until six checks fail). A node where
tabs open and close all day would carry hundreds of them, so ``close_peer_connection``
cancels any such late task.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiortc import RTCPeerConnection

# How long an interrupted connect() may take to return after close (it is woken at once,
# or within one 20 ms check period).
CONNECT_SETTLE = 2.0


def _ice_transports(pc: RTCPeerConnection) -> list[Any]:
    transports: list[Any] = []
    for transceiver in pc.getTransceivers():
        ice = transceiver.receiver.transport.transport
        if ice not in transports:
            transports.append(ice)
    return transports


async def _cancel_consent(connections: list[Any]) -> None:
    for connection in connections:
        task = getattr(connection, "_query_consent_task", None) if connection else None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def close_peer_connection(pc: RTCPeerConnection) -> None:
    transports = _ice_transports(pc)
    await pc.close()
    for ice in transports:
        # aiortc's RTCIceTransport.start() sets this event when connect() has returned.
        started = getattr(ice, "_RTCIceTransport__start", None)
        if started is not None and not started.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(started.wait(), CONNECT_SETTLE)
    await _cancel_consent([getattr(ice, "_connection", None) for ice in transports])


def offer_host_addresses(addresses: list[str]) -> None:
    """Gather ICE host candidates only on ``addresses`` (all interfaces when empty).

    aioice offers every interface address except loopback; a node on a server with several
    networks, and the tests (which must keep their traffic on 127.0.0.1), choose instead.
    Applies to the whole process, as aioice's gathering does.
    """
    import aioice.ice

    original = getattr(aioice.ice, "_hoinghi_original_hosts", aioice.ice.get_host_addresses)
    aioice.ice._hoinghi_original_hosts = original  # type: ignore[attr-defined]
    if not addresses:
        aioice.ice.get_host_addresses = original
        return
    chosen = list(addresses)

    def configured(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [a for a in chosen if (":" in a and use_ipv6) or (":" not in a and use_ipv4)]

    aioice.ice.get_host_addresses = configured


# aiortc sends a frame's packets back to back, unpaced: a keyframe can be 50-150 datagrams.
# Linux's default receive buffer (about 208 KB) holds about 90, so a burst arriving while the
# event loop is busy overflows it, and the loss costs a gap give-up and another keyframe.
RECEIVE_BUFFER = 1 << 18  # the kernel doubles it (capped by net.core.rmem_max)


def enlarge_receive_buffers(pc: RTCPeerConnection, size: int = RECEIVE_BUFFER) -> int:
    """Raise SO_RCVBUF on a peer connection's ICE sockets (after gathering); returns count."""
    import socket

    if size <= 0:
        return 0
    changed = 0
    for ice in _ice_transports(pc):
        connection = getattr(ice, "_connection", None)
        for protocol in getattr(connection, "_protocols", []):
            sock = protocol.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
                changed += 1
    return changed
