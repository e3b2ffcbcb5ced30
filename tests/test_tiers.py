"""Video tiers: what each receiver gets (rooms/tiers.py), the lowest tier made from a base
temporal layer, switching at keyframes, and the link estimate that drives ``auto``
(rooms/linkrate.py). Media tests use real aiortc peers through the node's signaling."""

from __future__ import annotations

import asyncio
import itertools
import time
from types import SimpleNamespace
from typing import Any

import pytest

from rooms.frames import EncodedFrame, vp8_temporal
from rooms.linkrate import (
    HOLD_FIRST,
    PROBE_FAILED_HOLD,
    PROBE_FIRST_SHARE,
    PROBE_GROWTH,
    PROBE_MARGIN,
    TICK,
    LinkEstimate,
)
from rooms.router import Consumer, Feedback, Packer, Producer
from rooms.tiers import HIGH, LOW, LOWEST, Tiers
from server.sockets.signaling import REGISTRY
from tests.conftest import Node
from tests.live_helpers import join_site, schedule, start_as_chair, wait_for

HIGH_SIZE = (640, 360)
LOW_SIZE = (320, 180)


def vp8_temporal_id(payload: bytes) -> int | None:
    found = vp8_temporal(payload)
    return None if found is None else found[0]


def _key() -> bytes:
    # a VP8 key frame header (RFC 6386 9.1): frame tag, start code, 320x180
    return b"\x10\x02\x00\x9d\x01\x2a\x40\x01\xb4\x00" + b"\x00" * 40


def _delta() -> bytes:
    return b"\x31\x02\x00" + b"\x00" * 40


def _frames(consumer: Consumer) -> list[tuple[EncodedFrame, int, bool]]:
    items = []
    while not consumer.track.queue.empty():
        item = consumer.track.queue.get_nowait()
        assert item is not None
        items.append(item)
    return items


def test_the_temporal_layer_is_read_from_the_vp8_payload_descriptor() -> None:
    # X=1, S=1; I, L, T set; 15-bit picture id; TL0PICIDX; TID=2 (bits 7-6 of the T/K byte)
    assert vp8_temporal_id(bytes([0x90, 0xE0, 0x80, 0x05, 0x07, 0x80]) + b"frame") == 2
    assert vp8_temporal_id(bytes([0x90, 0xA0, 0x05, 0x00]) + b"frame") == 0  # 7-bit id, no L
    assert vp8_temporal_id(bytes([0x90, 0x80, 0x85, 0x01]) + b"frame") is None  # no T bit
    assert vp8_temporal_id(bytes([0x10]) + b"frame") is None  # no extension at all
    assert vp8_temporal_id(bytes([0x90, 0xE0, 0x80])) is None  # cut short: not a layer


async def test_the_lowest_tier_forwards_the_base_layer_numbered_without_gaps() -> None:
    async def send_pli(ssrc: int) -> None:
        return None

    producer = Producer("video", send_pli)
    lowest, full = Consumer("video"), Consumer("video")
    lowest.attach(producer, base_only=True)
    full.attach(producer)
    for i in range(12):
        layer = 0 if i % 2 == 0 else 1  # L1T2: the base layer every other frame
        data = _key() if i == 0 else _delta()
        producer.deliver(EncodedFrame("video", data, i * 6000, i == 0, i, layer=layer))
    assert producer.layered
    got = _frames(lowest)
    assert [f.index for f, _, _ in got] == [0, 2, 4, 6, 8, 10]
    assert all(base for _, _, base in got)
    # Its pictures are numbered 0, 1, 2... (a receiver waits for a missing picture id), the
    # full tier's keep the producer's own count.
    picture_ids = [int.from_bytes(f.payloads(base)[0][2:4], "big") & 0x7FFF for f, _, base in got]
    assert picture_ids == [0, 1, 2, 3, 4, 5]
    assert [f.index for f, _, _ in _frames(full)] == list(range(12))
    await producer.close()


async def test_a_switch_keeps_the_old_source_until_the_new_one_sends_a_keyframe() -> None:
    async def send_pli(ssrc: int) -> None:
        return None

    high, low = Producer("video", send_pli), Producer("video", send_pli)
    consumer = Consumer("video")
    consumer.attach(high)
    high.deliver(EncodedFrame("video", _key(), 0, True, 0))
    high.deliver(EncodedFrame("video", _delta(), 3000, False, 1))
    consumer.attach(low)  # high is flowing: it goes on until low's keyframe
    low.deliver(EncodedFrame("video", _delta(), 100, False, 0))  # not yet
    high.deliver(EncodedFrame("video", _delta(), 6000, False, 2))
    low.deliver(EncodedFrame("video", _key(), 200, True, 1))
    high.deliver(EncodedFrame("video", _delta(), 9000, False, 3))  # after the switch: not sent
    low.deliver(EncodedFrame("video", _delta(), 3200, False, 2))
    sent = _frames(consumer)
    assert [(f.index, f.keyframe) for f, _, _ in sent] == [
        (0, True),
        (1, False),
        (2, False),  # the old source, while the new one had no keyframe
        (1, True),  # the new one from its keyframe on
        (2, False),
    ]
    stamps = [pts for _, pts, _ in sent]
    assert stamps == sorted(stamps)
    assert len(set(stamps)) == len(stamps)
    assert consumer.producer is low
    assert consumer not in high.consumers
    assert consumer.switches == 1
    await high.close()
    await low.close()


async def test_a_tier_that_is_not_arriving_gives_way_to_the_one_that_is() -> None:
    async def send_pli(ssrc: int) -> None:
        return None

    high, low = Producer("video", send_pli), Producer("video", send_pli)
    tiers = Tiers(high, low)
    assert tiers.pick(LOW) == (low, False)  # nothing arrives yet: wait on the one asked for
    high.deliver(EncodedFrame("video", _key(), 0, True, 0))
    assert tiers.pick(LOW) == (high, False)  # low sends nothing: high stands in
    assert tiers.pick(LOWEST) == (high, False)  # no temporal layers: all of it
    low.deliver(EncodedFrame("video", _key(), 0, True, 0, layer=0))
    low.deliver(EncodedFrame("video", _delta(), 3000, False, 1, layer=1))
    assert tiers.pick(LOWEST) == (low, True)
    assert tiers.pick(HIGH) == (high, False)
    assert tiers.pick(None) == (None, False)
    await high.close()
    await low.close()


def _feedback(
    at: float, loss: float = 0.0, rtt: float = 0.05, remb: float | None = None
) -> Feedback:
    now = at
    feedback = Feedback()
    feedback.report(int(loss * 256), 0, rtt, now)
    if remb is not None:
        feedback.remb(int(remb * 1000), now)
    return feedback


def test_the_estimate_moves_down_within_two_ticks_and_up_only_after_holding() -> None:
    now = time.monotonic()
    estimate = LinkEstimate(now)
    assert estimate.tier == LOW
    sent = 0
    # A good link: after HOLD_FIRST seconds of calm, it tries high.
    t = now
    while t < now + HOLD_FIRST + 1 and estimate.tier != HIGH:
        t += TICK
        sent += 40_000
        estimate.update([_feedback(t)], sent, t)
    assert estimate.tier == HIGH
    assert estimate.quality == "good"
    # Loss of 15% alone is the line's own (a radio link's random loss): it stays.
    t += 2
    for _ in range(4):
        t += TICK
        estimate.update([_feedback(t, loss=0.15)], sent, t)
    assert estimate.tier == HIGH
    # With the round trip rising too (a queue filling), two ticks in a row move it down,
    # and the failed try doubles the wait before the next one.
    estimate.update([_feedback(t, loss=0.15, rtt=0.2)], sent, t)
    assert estimate.tier == HIGH
    estimate.update([_feedback(t + TICK, loss=0.15, rtt=0.2)], sent, t + TICK)
    assert estimate.tier == LOW
    assert estimate.hold == 2 * HOLD_FIRST
    assert estimate.quality == "poor"
    # A freeze the page reports is severe: one tick is enough.
    t += 3
    estimate.client_report(
        SimpleNamespace(
            slots=[
                SimpleNamespace(
                    frames_decoded=10,
                    frames_per_second=15.0,
                    freeze_count=0,
                    total_freezes_duration=0.0,
                    concealed_samples=0,
                    total_samples_received=0,
                )
            ]
        ),
        t,
    )
    estimate.client_report(
        SimpleNamespace(
            slots=[
                SimpleNamespace(
                    frames_decoded=40,
                    frames_per_second=4.0,
                    freeze_count=1,
                    total_freezes_duration=1.2,
                    concealed_samples=0,
                    total_samples_received=0,
                )
            ]
        ),
        t + 2,
    )
    estimate.update([_feedback(t + 2)], sent, t + 2)
    assert estimate.tier == LOWEST
    # It stays there while the link is calm for less than its hold.
    for i in range(int(estimate.hold / TICK) - 1):
        at = t + 2 + (i + 1) * TICK
        estimate.update([_feedback(at)], sent, at)
    assert estimate.tier == LOWEST


def test_the_estimate_follows_remb_below_what_is_sent() -> None:
    now = time.monotonic()
    estimate = LinkEstimate(now)
    sent = 0
    for i in range(1, 4):
        sent += 50_000  # 800 kbit/s over each half second
        estimate.update([_feedback(now + i * TICK, remb=300)], sent, now + i * TICK)
    assert estimate.tier == LOWEST
    assert "estimate" in estimate.reason


@pytest.mark.timeout(120)
async def test_receive_modes_pick_tiers_and_survive_a_rejoin(node: Node) -> None:
    chair_session = await node.login("chutri")
    meeting_id = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(node, chair_session, meeting_id, size=HIGH_SIZE, low=LOW_SIZE)
    site = await join_site(node, "kt.cm-nc-hr", meeting_id)
    live = node.app[REGISTRY].get(meeting_id)
    assert live is not None
    assert site.probe is not None
    stats = site.probe.stats

    def size() -> Any:
        return stats["chair.video"].size

    # A new link starts on the low tier (auto proves the tiers above first).
    await wait_for(lambda: size() == LOW_SIZE, 20, "the low tier")
    ack = await site.call("receive_mode", {"mode": "high"})
    assert ack["ok"], ack
    assert ack["receive"]["mode"] == "high", ack
    await wait_for(lambda: size() == HIGH_SIZE, 20, "the high tier")
    # Audio only: no video reaches the site, the chair's voice still does.
    assert (await site.call("receive_mode", {"mode": "audio"}))["ok"]
    consumers = live.sites["CM-NC-HR"].peer.consumers  # type: ignore[union-attr]
    await wait_for(lambda: consumers["chair.video"].producer is None, 5, "video to stop")
    frames, packets = stats["chair.video"].frames, stats["chair.audio"].audio_packets
    await asyncio.sleep(1.5)
    assert stats["chair.video"].frames - frames <= 1  # one frame may have been under way
    assert stats["chair.audio"].audio_packets - packets > 20
    state = await site.wait_state(lambda s: s["you"]["receive"]["mode"] == "audio", 5)
    assert state["you"]["receive"]["tier"] is None
    # Nothing: the audio stops too.
    assert (await site.call("receive_mode", {"mode": "none"}))["ok"]
    await wait_for(lambda: consumers["chair.audio"].producer is None, 5, "audio to stop")
    # A bad mode is refused with the payload's code.
    refused = await site.call("receive_mode", {"mode": "best"})
    assert refused["error"] == "bad_request"
    # The mode is kept for the unit: the site leaves, rejoins, and receives the same.
    assert (await site.call("receive_mode", {"mode": "lowest"}))["ok"]
    await site.close()
    again = await join_site(node, "kt.cm-nc-hr", meeting_id)
    state = await again.wait_state(lambda s: s["you"]["receive"]["mode"] == "lowest", 10)
    assert state["you"]["receive"]["tier"] == LOWEST
    # The chair's state says which tiers the meeting needs from whom.
    chair_state = await chair.wait_state(lambda s: "publish" in s["you"], 5)
    assert chair_state["you"]["publish"] == {"high": True, "low": True}
    assert state["you"]["publish"] == {"high": False, "low": False}
    await again.close()
    await chair.close()


async def test_a_layered_frame_goes_out_with_its_layer_so_a_node_below_can_drop_it() -> None:
    async def send_pli(ssrc: int) -> None:
        return None

    producer = Producer("video", send_pli)
    frames = []
    for i in range(4):
        layer = i % 2
        tk = 0x20 if layer else 0x00  # TID in bits 7-6 is set below; Y=1 on the upper layer
        frame = EncodedFrame(
            "video", (_key() if i == 0 else _delta()) * 40, i * 6000, i == 0, i, layer=layer
        )
        frame.tk = (layer << 6) | tk
        producer.deliver(frame)
        frames.append(frame)
    for frame in frames:
        payloads = frame.payloads()
        assert len(payloads) > 1  # long enough to take two packets
        for n, payload in enumerate(payloads):
            assert vp8_temporal_id(payload) == frame.layer
            assert bool(payload[0] & 0x10) == (n == 0)  # S: the frame's first packet only
            assert len(payload) <= 1300
            assert int.from_bytes(payload[2:4], "big") & 0x7FFF == frame.index
            assert payload[4] == frame.tl0  # TL0PICIDX: the base frame's count
        assert b"".join(p[6:] for p in payloads) == frame.data
    assert [f.tl0 for f in frames] == [0, 0, 1, 1]
    await producer.close()


def test_a_tier_above_is_probed_first_and_a_full_line_keeps_the_tier() -> None:
    now = time.monotonic()
    estimate = LinkEstimate(now)
    costs = {HIGH: 700.0, LOW: 120.0, LOWEST: 70.0}
    t, sent = now, 0
    while estimate.probe_request is None:
        t += TICK
        sent += 10_000
        estimate.update([_feedback(t)], sent, t, costs, can_probe=True)
        assert t < now + HOLD_FIRST + 2, "no probe asked for"
    assert estimate.tier == LOW  # not moved yet: the link is asked first
    # First a step of half what is sent now, then bigger ones.
    assert estimate.probe_request == pytest.approx(PROBE_FIRST_SHARE * estimate.sent_kbit)
    assert estimate.probe_request < (700 - 120) * 1.2
    # The probe fills the line: the round trip jumps, the tier stays and the wait grows.
    t += TICK
    estimate.update([_feedback(t, rtt=0.05)], sent, t, costs, can_probe=True)
    t += TICK
    estimate.update([_feedback(t, rtt=0.6)], sent, t, costs, can_probe=True)
    assert estimate.tier == LOW
    assert estimate.hold == PROBE_FAILED_HOLD * HOLD_FIRST
    # On a line with room the next probe climbs, each step at most PROBE_GROWTH times the
    # one before, until a step carries the tier's whole cost; then the tier goes up.
    estimate.probe_request = None
    steps = []
    while estimate.tier != HIGH:
        t += TICK
        estimate.update([_feedback(t, rtt=0.05)], sent, t, costs, can_probe=True)
        if estimate.probe_request is not None:
            steps.append(estimate.probe_request)
        estimate.probe_request = None
        assert t < now + 60, "never moved up"
    assert steps[-1] * PROBE_MARGIN >= (700 - 120) * 1.2, steps
    assert len(steps) >= 2
    for smaller, bigger in itertools.pairwise(steps):
        assert smaller < bigger <= PROBE_GROWTH * smaller + 1e-9
    assert estimate.probes == 1 + len(steps)  # the failed one, then the climb that passed


def test_audio_goes_with_the_frame_before_it_as_red_while_the_link_loses() -> None:
    consumer = Consumer("audio")
    consumer.red_payload_type, consumer.opus_payload_type = 63, 111
    packer = Packer(consumer)
    first = (EncodedFrame("audio", b"A" * 80, 0, True, 0), 960, False)
    second = (EncodedFrame("audio", b"B" * 90, 960, True, 1), 1920, False)
    third = (EncodedFrame("audio", b"C" * 70, 1920, True, 2), 2880 + 20000, False)
    # A clean line: plain Opus.
    assert packer.pack_forwarded(first) == ([b"A" * 80], 960, None)
    consumer.redundancy = True
    payloads, pts, payload_type = packer.pack_forwarded(second)
    assert (pts, payload_type) == (1920, 63)
    red = payloads[0]
    # RFC 2198: F=1 and the block's payload type, a 14-bit timestamp offset, a 10-bit
    # length; then the primary's one-byte header; then the blocks, oldest first.
    assert red[0] == 0x80 | 111
    offset = (red[1] << 6) | (red[2] >> 2)
    length = ((red[2] & 0x03) << 8) | red[3]
    assert (offset, length) == (960, 80)
    assert red[4] == 111
    assert red[5:] == b"A" * 80 + b"B" * 90
    # After a pause longer than the offset can say (DTX), the frame goes alone.
    assert packer.pack_forwarded(third) == ([b"C" * 70], 2880 + 20000, None)
    assert consumer.redundant_frames == 1


def test_a_line_that_drops_is_left_at_its_first_report_of_heavy_loss() -> None:
    """A modem falling back from 2 Mbit/s to 256 kbit/s drops most of the high tier at once:
    the last interval's loss moves the tier down, without waiting for the window."""
    now = time.monotonic()
    estimate = LinkEstimate(now)
    estimate.tier = HIGH
    feedback = Feedback()
    t, seq, lost = now + 10, 0, 0
    for _ in range(4):  # a clean line, a report a second
        t, seq = t + 1.0, seq + 100
        feedback.report(0, 0, 0.02, t, lost, seq)
        estimate.update([feedback], 0, t)
    assert estimate.tier == HIGH
    t, seq, lost = t + 1.0, seq + 100, lost + 60  # then 60 of the next 100 lost
    feedback.report(153, 0, 0.02, t, lost, seq)
    estimate.update([feedback], 0, t)
    assert estimate.tier == LOW
    assert "last report" in estimate.reason
