"""What keeps a poor line from being filled by the node's own traffic: the budget for NACK
repairs (rooms/retransmit.py), each report's own round trip (rooms/roundtrip.py), a probe
paced to the rate it asks (rooms/linkprobe.py), and the measured cap on a child node's link
(rooms/budget.py), with a tier that does not arrive priced at its ceiling (rooms/tiers.py)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from aiortc.rtp import (
    RTP_HISTORY_SIZE,
    HeaderExtensions,
    HeaderExtensionsMap,
    RtcpSenderInfo,
    RtcpSrPacket,
    RtpPacket,
)

from rooms.budget import plan, relay_costs
from rooms.frames import EncodedFrame
from rooms.linkprobe import probe
from rooms.retransmit import FLOOR_KBIT, MAX_AGE, SHARE, RepairBudget, age_of
from rooms.roundtrip import RoundTrips, lsr_of, record_reports, send_report_now
from rooms.router import Producer
from rooms.tiers import CEILING_KBIT, HIGH, LOW, LOWEST, Tiers


def test_a_repair_is_not_sent_twice_within_a_round_trip_nor_when_it_is_too_old() -> None:
    budget = RepairBudget(0.0)
    sent = 0
    assert budget.allow(7, 1200, 0.1, sent, rtt=0.3, age=0.1)
    # Asked again while the first copy may still be on the way: no.
    assert not budget.allow(7, 1200, 0.2, sent, rtt=0.3, age=0.2)
    # A round trip later, if it is still missing: yes.
    assert budget.allow(7, 1200, 0.45, sent, rtt=0.3, age=0.45)
    # A packet first sent over MAX_AGE s ago is past any jitter buffer: no.
    assert not budget.allow(8, 1200, 0.5, sent, rtt=0.3, age=MAX_AGE + 0.1)
    assert budget.answered == 2
    assert budget.refused == 2


def test_repairs_stay_within_a_share_of_what_the_sender_carries() -> None:
    # A storm: the receiver asks for every packet again and again, 10 s long, while the
    # sender carries 130 kbit/s of media.
    budget = RepairBudget(0.0)
    media_bytes_per_s = 130_000 / 8
    resent = 0
    sent_total = 0
    t = 0.0
    seq = 0
    while t < 10.0:
        t += 0.02
        sent_total = int(media_bytes_per_s * t)
        for _ in range(5):  # 250 NACKed packets a second, all fresh
            seq += 1
            if budget.allow(seq, 1000, t, sent_total, rtt=0.05, age=0.05):
                resent += 1000
    allowed = max(FLOOR_KBIT * 1000 / 8, SHARE * media_bytes_per_s)
    assert resent <= allowed * 10.0 + allowed  # the share, and one bucket at most
    assert resent >= 0.8 * allowed * 10.0  # and the share is used: a lossy line is repaired


def test_an_abs_send_time_gives_the_age_across_its_wrap() -> None:
    units = 1 << 18
    assert age_of(None, 5 * units) == 0.0
    assert age_of(3 * units, 5 * units) == pytest.approx(2.0)
    assert age_of(63 * units, units // 2) == pytest.approx(1.5)  # wrapped at 64 s


def test_each_report_gives_its_own_round_trip() -> None:
    trips = RoundTrips()
    ntp_first, ntp_second = 0x1234_5678_0000_0000, 0x1234_5679_8000_0000
    trips.sent(lsr_of(ntp_first), 100.0)
    trips.sent(lsr_of(ntp_second), 101.0)
    # Answers to both reports, the older one after the newer one went out (aiortc, which
    # keeps only the last, measures nothing from it).
    assert trips.answered(lsr_of(ntp_first), 65536 // 2, 101.2) == pytest.approx(0.7)
    assert trips.answered(lsr_of(ntp_second), 65536 // 10, 101.45) == pytest.approx(0.35, abs=1e-4)
    assert trips.answered(0, 0, 102.0) is None  # no report received yet
    assert trips.answered(lsr_of(ntp_second), 65536 * 3, 101.5) is None  # inconsistent


class _Transport:
    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_rtp(self, data: bytes) -> None:
        self.sent.append(data)


class _Sender:
    """What linkprobe.probe reads of an aiortc RTCRtpSender (its name-mangled fields)."""

    def __init__(self) -> None:
        self.transport = _Transport()
        self.reports: list[Any] = []
        self._ssrc = 1111
        self._rtx_ssrc = 2222
        history = {}
        for seq in range(100):
            packet = RtpPacket(payload_type=96, sequence_number=seq, timestamp=seq * 3000)
            packet.ssrc = self._ssrc
            packet.payload = bytes(1100)
            packet.extensions = HeaderExtensions(mid="0")
            history[seq % RTP_HISTORY_SIZE] = packet
        fields = {
            "rtx_payload_type": 97,
            "rtp_history": history,
            "rtp_header_extensions_map": HeaderExtensionsMap(),
            "rtx_sequence_number": 0,
            "ntp_timestamp": 0x1234_5678_9ABC_0000,
            "rtp_timestamp": 0,
            "packet_count": 100,
            "octet_count": 110_000,
            "lsr": None,
            "lsr_time": None,
        }
        for name, value in fields.items():
            setattr(self, f"_RTCRtpSender__{name}", value)

    async def _send_rtcp(self, packets: list[Any]) -> None:
        self.reports.extend(packets)


async def test_a_probe_sends_about_the_rate_it_asks_and_a_report_behind_it() -> None:
    for kbit in (70.0, 400.0):
        sender = _Sender()
        started = time.monotonic()
        sent = await probe(sender, kbit, 0.8)
        seconds = time.monotonic() - started
        # Packets of 1100 bytes at 70 kbit/s are far bigger than one 20 ms burst's share:
        # the share carries over, so the rate is the one asked, not a packet per burst.
        rate = sent * 8 / 1000 / seconds
        assert 0.6 * kbit <= rate <= 1.4 * kbit + 12, (kbit, rate)
        assert len(sender.transport.sent) == sent // len(sender.transport.sent[0])
        # A sender report right behind it, remembered as aiortc's last.
        assert len(sender.reports) == 1
        assert sender._RTCRtpSender__lsr == lsr_of(0x1234_5678_9ABC_0000)  # type: ignore[attr-defined]


async def _flowing(producer: Producer, kbit: float, now: float, layered: bool = False) -> None:
    """Frames for the last two seconds at ``kbit`` (half in layer 0 when ``layered``)."""
    size = int(kbit * 1000 / 8 / 15)
    for i in range(30):
        at = now - 2 + i / 15
        layer = (i % 2) if layered else None
        producer.deliver(EncodedFrame("video", bytes(size), i * 6000, i == 0, i, at, layer=layer))


async def _pli(ssrc: int) -> None:
    return None


async def test_a_child_links_measured_cap_limits_what_crosses_it_and_prices_missing_tiers() -> None:
    now = time.monotonic()
    high, low, audio = Producer("video", _pli), Producer("video", _pli), Producer("audio", _pli)
    await _flowing(low, 120, now, layered=True)
    await _flowing(audio, 30, now)
    video = Tiers(high, low)
    # The high tier does not arrive here (a child node before any site below needs it):
    # priced at its ceiling, not at nothing, so a probe for it asks enough.
    assert video.kbit(HIGH, now) == CEILING_KBIT[HIGH]
    costs = relay_costs([video], now)
    assert costs[LOW] == pytest.approx(low.rate.kbit(now))
    assert costs[LOWEST] < costs[LOW] < costs[HIGH]
    assert costs[HIGH] == pytest.approx(costs[LOW] + CEILING_KBIT[HIGH])
    await _flowing(high, 600, now)
    assert video.kbit(HIGH, now) == pytest.approx(high.rate.kbit(now))
    everything = frozenset({HIGH, LOW})
    (full,) = plan(everything, [video], [audio], None, now)
    assert (full.high, full.low, full.low_base_only) == (high, low, False)
    # The link measured to carry the low tier only: no high tier, whatever is needed.
    (capped,) = plan(everything, [video], [audio], None, now, cap=LOW)
    assert (capped.high, capped.low, capped.low_base_only) == (None, low, False)
    # Only the lowest: the low tier's base layer alone.
    (lowest,) = plan(everything, [video], [audio], None, now, cap=LOWEST)
    assert (lowest.high, lowest.low, lowest.low_base_only) == (None, low, True)
    # The configured budget still counts beside the cap.
    (tight,) = plan(everything, [video], [audio], 100.0, now)
    assert (tight.high, tight.low_base_only) == (None, True)
    for producer in (high, low, audio):
        await producer.close()


async def test_a_routine_report_waits_while_the_one_behind_a_probe_is_unanswered() -> None:
    sender = _Sender()
    trips = RoundTrips()
    record_reports(sender, trips)
    await send_report_now(sender)  # behind a probe
    probe_lsr = lsr_of(0x1234_5678_9ABC_0000)
    assert trips.behind_probe == probe_lsr
    # aiortc's own report a moment later would take the answer: it is held back.
    sender._RTCRtpSender__ntp_timestamp = 0x1235_8765_4321_0000  # type: ignore[attr-defined]
    routine = RtcpSrPacket(
        ssrc=sender._ssrc, sender_info=RtcpSenderInfo(0x1235_8765_4321_0000, 0, 0, 0)
    )
    await sender._send_rtcp([routine])
    assert [isinstance(p, RtcpSrPacket) for p in sender.reports] == [True]
    # The answer to the probe's report: its own round trip, and routine reports go again.
    rtt = trips.answered(probe_lsr, 0, time.time() + 0.2)
    assert rtt is not None
    assert rtt == pytest.approx(0.2, abs=0.05)
    assert trips.probe_answer == rtt
    assert trips.behind_probe is None
    await sender._send_rtcp([routine])
    assert len(sender.reports) == 2
