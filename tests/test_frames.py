"""Frame reassembly, keyframe gating and keyframe-request limits, with real RTP packets."""

from __future__ import annotations

import asyncio

import pytest
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload
from aiortc.rtp import RtpPacket

import rooms.frames as frames_mod
from rooms.frames import EncodedFrame, FrameAssembler, TimestampUnwrapper, vp8_is_keyframe
from rooms.router import KEYFRAME_INTERVAL, Consumer, Producer

KEY_HEADER = bytes([0x10, 0x02, 0x00, 0x9D, 0x01, 0x2A, 0x80, 0x02, 0xE0, 0x01])  # 640x480
DELTA_HEADER = bytes([0x11, 0x02, 0x00])


def vp8_packets(frame: bytes, seq: int, ts: int, picture_id: int = 1) -> list[RtpPacket]:
    """Real VP8 RTP packets for one frame, as aiortc's receiver would hand them over."""
    out = []
    payloads = Vp8Encoder._packetize(frame, picture_id)
    for i, payload in enumerate(payloads):
        p = RtpPacket(
            payload_type=97,
            sequence_number=(seq + i) & 0xFFFF,
            timestamp=ts,
            marker=int(i == len(payloads) - 1),
            ssrc=1234,
            payload=payload,
        )
        p._data = vp8_depayload(payload)  # type: ignore[attr-defined]
        out.append(p)
    return out


def collect() -> tuple[list[EncodedFrame], list[int], FrameAssembler]:
    got: list[EncodedFrame] = []
    asks: list[int] = []
    assembler = FrameAssembler("video", got.append, lambda: asks.append(1))
    return got, asks, assembler


def key(size: int = 3000) -> bytes:
    return KEY_HEADER + bytes(size)


def delta(size: int = 2500) -> bytes:
    return DELTA_HEADER + bytes(size)


def test_video_frame_is_released_at_its_marker_packet_not_at_the_next_frame() -> None:
    got, _, assembler = collect()
    packets = vp8_packets(key(), seq=100, ts=9000)
    assert len(packets) > 1
    for p in packets[:-1]:
        assembler.add(p)
        assert got == []
    assembler.add(packets[-1])
    assert len(got) == 1
    assert got[0].keyframe
    assert got[0].data == key()
    assert got[0].pts == 0
    assert assembler.media_ssrc == 1234


def test_frames_wait_for_a_keyframe_then_flow_in_order_across_sequence_wrap() -> None:
    got, asks, assembler = collect()
    seq = 65530
    for p in vp8_packets(delta(), seq, 1000):  # a delta first: dropped, keyframe asked for
        assembler.add(p)
        seq += 1
    assert got == []
    assert asks
    ts = 4000
    for frame in (key(), delta(), delta()):
        for p in vp8_packets(frame, seq & 0xFFFF, ts):
            assembler.add(p)
            seq += 1
        ts += 3000
    assert [f.keyframe for f in got] == [True, False, False]
    assert [f.pts for f in got] == [0, 3000, 6000]


def test_reordered_packet_completes_the_frame_when_it_arrives() -> None:
    got, _, assembler = collect()
    packets = vp8_packets(key(), 10, 0)
    for p in [packets[0], *packets[2:]]:
        assembler.add(p)
    assert got == []
    assembler.add(packets[1])  # the retransmission arrives
    assert len(got) == 1
    assert got[0].data == key()


def test_slow_frame_without_a_gap_is_not_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(frames_mod.time, "monotonic", lambda: clock[0])
    got, asks, assembler = collect()
    packets = vp8_packets(key(), 10, 0)
    for p in packets:
        clock[0] += 1.0  # each packet a second apart: slow, but nothing is missing
        assembler.add(p)
    assert len(got) == 1
    assert asks == []


def test_lost_packet_is_given_up_after_the_gap_timeout_and_stream_resumes_at_keyframe(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [100.0]
    monkeypatch.setattr(frames_mod.time, "monotonic", lambda: clock[0])
    got, asks, assembler = collect()
    seq, ts = 0, 0
    for frame in (key(), delta()):
        for p in vp8_packets(frame, seq, ts):
            assembler.add(p)
            seq += 1
        ts += 3000
    assert len(got) == 2
    lost = vp8_packets(delta(), seq, ts)
    seq += len(lost)
    ts += 3000
    for p in [lost[0], *lost[2:]]:  # lost[1] never arrives
        assembler.add(p)
    following = vp8_packets(delta(), seq, ts)
    seq += len(following)
    ts += 3000
    for p in following:
        assembler.add(p)
    assert len(got) == 2
    assert asks == []
    clock[0] += frames_mod.GAP_TIMEOUT + 0.1
    for p in vp8_packets(delta(), seq, ts):  # the next packet finds the gap too old
        assembler.add(p)
        seq += 1
    ts += 3000
    assert asks, "a keyframe must be requested once the gap is given up"
    assert len(got) == 2  # deltas after a loss are not forwarded
    for p in vp8_packets(key(), seq, ts):
        assembler.add(p)
    assert len(got) == 3
    assert got[-1].keyframe


def test_every_opus_packet_is_a_frame_and_late_ones_are_dropped() -> None:
    got: list[EncodedFrame] = []
    assembler = FrameAssembler("audio", got.append, lambda: None)
    for seq, ts in ((5, 0), (6, 960), (8, 2880), (7, 1920), (9, 3840)):
        p = RtpPacket(payload_type=96, sequence_number=seq, timestamp=ts, ssrc=9, payload=b"opus")
        p._data = b"opus"  # type: ignore[attr-defined]
        assembler.add(p)
    assert [f.pts for f in got] == [0, 960, 2880, 3840]


def test_timestamps_unwrap_past_32_bits() -> None:
    unwrap = TimestampUnwrapper()
    assert unwrap(0xFFFFF000) == 0
    assert unwrap(0x00000800) == 0x1800
    assert unwrap(0xFFFFF800) == 0x800  # a late packet from before the wrap


def test_keyframe_header_detection() -> None:
    assert vp8_is_keyframe(key())
    assert not vp8_is_keyframe(delta())


async def test_keyframe_requests_upstream_are_rate_limited_with_one_trailing_request() -> None:
    sent: list[int] = []

    async def send_pli(ssrc: int) -> None:
        sent.append(ssrc)

    producer = Producer("video", send_pli)
    producer.assembler.media_ssrc = 4321
    for _ in range(20):
        producer.request_keyframe()
        await asyncio.sleep(0.01)
    assert sent == [4321]  # the first at once; the rest coalesce into one trailing request
    await asyncio.sleep(KEYFRAME_INTERVAL + 0.2)
    assert sent == [4321, 4321]
    await producer.close()


async def test_new_consumer_starts_at_keyframe_and_keeps_timestamps_rising_across_switch() -> None:
    async def send_pli(ssrc: int) -> None:
        return None

    a = Producer("video", send_pli)
    b = Producer("video", send_pli)
    consumer = Consumer("video")
    consumer.attach(a)

    def frame(pts: int, keyframe: bool, i: int) -> EncodedFrame:
        return EncodedFrame("video", key() if keyframe else delta(), pts, keyframe, i)

    def drain() -> list[tuple[EncodedFrame, int, bool]]:
        items = []
        while not consumer.track.queue.empty():
            item = consumer.track.queue.get_nowait()
            assert item is not None
            items.append(item)
        return items

    a.deliver(frame(90000, False, 0))  # a delta before any keyframe: not forwarded
    a.deliver(frame(93000, True, 1))
    a.deliver(frame(96000, False, 2))
    first = drain()
    assert [(f.keyframe, pts) for f, pts, _ in first] == [(True, 0), (False, 3000)]
    consumer.attach(b)
    b.deliver(frame(5000, False, 0))  # the switch waits for b's keyframe
    b.deliver(frame(8000, True, 1))
    b.deliver(frame(11000, False, 2))
    second = drain()
    assert [f.keyframe for f, _, _ in second] == [True, False]
    # Timestamps keep rising across the switch, whatever b's own clock says.
    assert 3000 < second[0][1] < second[1][1]
    assert second[1][1] - second[0][1] == 3000
    consumer.close()
    await a.close()
    await b.close()
