"""Asking a link whether it carries more, before a receiver is moved up a tier.

Switching a receiver up to a tier its link cannot carry freezes it: a high-tier keyframe
alone takes over a second on a 256 kbit/s line. So before ``auto`` tries a tier, the node
sends extra packets at the rate the tier would add, for ``PROBE_SECONDS``: copies of what it
has just sent, as retransmissions (RTX) stamped with a fresh abs-send-time. The receiver
drops them as duplicates, but its bandwidth estimate and its receiver reports see them: on a
line that is full, the queue grows, the round trip rises and REMB falls within a second,
and the estimate (rooms/linkrate.py) keeps the tier; on a line with room, nothing moves.
What it costs is the extra bits for that second and a half, never a frozen picture.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiortc.rtp import HeaderExtensions, wrap_rtx

from rooms.roundtrip import send_report_now

log = logging.getLogger(__name__)

PROBE_SECONDS = 0.8
PACE = 0.02  # seconds between bursts of probe packets


def can_probe(sender: Any) -> bool:
    """The sender negotiated RTX (so copies are not taken for new media)."""
    return (
        sender is not None and getattr(sender, "_RTCRtpSender__rtx_payload_type", None) is not None
    )


async def probe(sender: Any, kbit: float, seconds: float = PROBE_SECONDS) -> int:
    """Send about ``kbit`` kbit/s of RTX copies of recent packets for ``seconds``; returns
    the bytes sent (0 when the sender cannot probe or its link is not up)."""
    if not can_probe(sender) or kbit <= 0:
        return 0
    # Deferred: rooms.hooks imports the router, which this module must not pull in early.
    from rooms.hooks import _drive, _ntp_now

    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    per_burst = kbit * 1000 / 8 * PACE
    sent = 0
    # Carried from burst to burst: a packet is often bigger than one burst's share (at 70
    # kbit/s a burst is 175 bytes), and one packet per burst regardless would be 440 kbit/s.
    credit = 0.0
    while loop.time() < end:
        history: dict[int, Any] = sender._RTCRtpSender__rtp_history
        transport = sender.transport
        if not history or transport is None:
            await asyncio.sleep(PACE)
            continue
        ext_map = sender._RTCRtpSender__rtp_header_extensions_map
        payload_type = sender._RTCRtpSender__rtx_payload_type
        ast = (_ntp_now() >> 14) & 0x00FFFFFF
        credit = min(credit + per_burst, 4 * per_burst + 1500)
        # The newest packets first: the receiver still holds them, nothing is decoded twice.
        for packet in sorted(history.values(), key=lambda p: p.sequence_number, reverse=True):
            if credit <= 0:
                break
            seq = sender._RTCRtpSender__rtx_sequence_number
            rtx = wrap_rtx(packet, payload_type, seq, sender._rtx_ssrc)
            sender._RTCRtpSender__rtx_sequence_number = (seq + 1) & 0xFFFF
            rtx.extensions = HeaderExtensions(abs_send_time=ast, mid=packet.extensions.mid)
            data = rtx.serialize(ext_map)
            try:
                _drive(transport._send_rtp(data))
            except ConnectionError:
                return sent
            credit -= len(data)
            sent += len(data)
        await asyncio.sleep(PACE)
    # Right behind the probe: the answer to this report says how long its packets queued.
    with contextlib.suppress(ConnectionError):
        await send_report_now(sender)
    return sent
