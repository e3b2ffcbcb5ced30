"""Each round trip a receiver's report measures, as it is: for judging a link probe.

aiortc keeps one round trip per sender, smoothed (seven eighths the old value) and measured
only from a report on the *last* sender report it sent: a receiver that answers after the
next one went out gives nothing, and a queue that filled for half a second shows as a few
tens of milliseconds. That is right for a steady link (a keyframe's own burst is not
trouble), but a probe (rooms/linkprobe.py) is judged on the one report that answers the
sender report sent right behind it. So ``RoundTrips`` remembers when each recent sender
report left (by the middle 32 bits of its NTP time, which the receiver echoes as LSR) and
gives each report block's own round trip: now - sent - DLSR (RFC 3550 section 6.4.1).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtp import RtcpSenderInfo, RtcpSrPacket

KEPT = 16  # sender reports remembered: several seconds of them
HOLD = 2.5  # seconds a routine sender report may be held back for a probe's answer


class RoundTrips:
    """The send times of one sender's recent sender reports, and the round trips they give."""

    def __init__(self) -> None:
        self._sent: OrderedDict[int, float] = OrderedDict()
        # The report sent right behind a probe, and the round trip its answer gave.
        self.behind_probe: int | None = None
        self.behind_sent_at = 0.0
        self.probe_answer: float | None = None

    def holding(self, lsr: int, at: float) -> bool:
        """Whether a sender report ``lsr`` must wait: one went out behind a probe and is not
        answered yet. The receiver answers only the latest report it got, so a routine one
        sent meanwhile would take the answer the probe is judged on. At most HOLD s."""
        return (
            self.behind_probe is not None
            and lsr != self.behind_probe
            and at - self.behind_sent_at < HOLD
        )

    def sent(self, lsr: int, at: float) -> None:
        self._sent[lsr] = at
        self._sent.move_to_end(lsr)
        while len(self._sent) > KEPT:
            self._sent.popitem(last=False)

    def answered(self, lsr: int, dlsr: int, at: float) -> float | None:
        """The round trip of a report block echoing ``lsr`` after ``dlsr`` (1/65536 s)."""
        sent = self._sent.get(lsr)
        if not lsr or sent is None:
            return None
        rtt = at - sent - dlsr / 65536
        if rtt < 0 or rtt > 10:
            return None  # a clock step, or a stale echo
        if lsr == self.behind_probe:
            self.behind_probe, self.probe_answer = None, rtt
        return rtt


def lsr_of(ntp_timestamp: int) -> int:
    return (ntp_timestamp >> 16) & 0xFFFFFFFF


def record_reports(sender: Any, trips: RoundTrips) -> None:
    """Remember the send time of every sender report ``sender`` sends from now on."""
    send = sender._send_rtcp
    if getattr(send, "records_reports", False):
        return

    async def send_and_record(packets: list[Any]) -> None:
        now = time.time()
        kept = []
        for packet in packets:
            if isinstance(packet, RtcpSrPacket):
                lsr = lsr_of(packet.sender_info.ntp_timestamp)
                if trips.holding(lsr, now):
                    continue
                trips.sent(lsr, now)
            kept.append(packet)
        if kept:
            await send(kept)

    send_and_record.records_reports = True  # type: ignore[attr-defined]
    sender._send_rtcp = send_and_record
    sender.round_trips = trips


def send_report_now(sender: Any) -> Awaitable[None]:
    """A sender report out now, as aiortc's RTCP loop builds it (and remembered as its last,
    so aiortc measures the answer too): sent behind a probe, its answer says how long the
    probe's packets queued."""
    ntp = sender._RTCRtpSender__ntp_timestamp
    packet = RtcpSrPacket(
        ssrc=sender._ssrc,
        sender_info=RtcpSenderInfo(
            ntp_timestamp=ntp,
            rtp_timestamp=sender._RTCRtpSender__rtp_timestamp,
            packet_count=sender._RTCRtpSender__packet_count & 0xFFFFFFFF,
            octet_count=sender._RTCRtpSender__octet_count & 0xFFFFFFFF,
        ),
    )
    sender._RTCRtpSender__lsr = lsr_of(ntp)
    sender._RTCRtpSender__lsr_time = time.time()
    trips = getattr(sender, "round_trips", None)
    if isinstance(trips, RoundTrips):
        trips.behind_probe, trips.probe_answer = lsr_of(ntp), None
        trips.behind_sent_at = time.time()
    send: Callable[[list[Any]], Awaitable[None]] = sender._send_rtcp
    return send([packet])
