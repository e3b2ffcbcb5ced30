"""Live meetings on one node with real aiortc peers over real signaling, on loopback.

The test process also runs the peers, so their video is kept small (the forwarding cost
at 640x480 is measured by bench/forwarding.py, in separate processes).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from typing import Any

import pytest

from rooms.frames import FrameAssembler
from rooms.hooks import encoder_of
from rooms.router import Packer
from server.sockets.signaling import PING_INTERVAL, REGISTRY
from server.state import CTX
from tests.conftest import Node
from tests.live_helpers import Participant, follow, hear, schedule, stops, wait_for

CHAIR_SIZE = (320, 240)
SITE_SIZE = (256, 144)


def _task_name(task: asyncio.Task[Any]) -> str:
    coro = task.get_coro()
    return getattr(coro, "__qualname__", repr(coro))


def _diagnostics(live: Any) -> str:
    """Node-side counters, to tell a forwarding fault from a starved test machine."""
    producers = [
        f"{p.app_data.get('unit')}/{p.kind}: in={p.frames} dropped={p.assembler.frames_dropped} "
        f"pli={p.keyframe_requests_sent}"
        for p in live.router.producers.values()
    ]
    consumers = [
        f"{c.app_data.get('unit')}/{c.app_data.get('slot')}: out={c.frames_sent} "
        f"dropped={c.frames_dropped}"
        for c in live.router.consumers.values()
        if c.producer is not None
    ]
    return f"producers {producers}; consumers {consumers}"


async def _chair_and_meeting(node: Node) -> tuple[Participant, int]:
    session = await node.login("chutri")
    meeting_id = await schedule(session, invited_subtrees=["CM-NC"])
    chair = Participant(node, session)
    await chair.connect()
    return chair, meeting_id


@pytest.mark.timeout(240)
async def test_three_sites_see_the_chair_counter_as_sent_and_hear_tone_without_node_decoding(
    node: Node,
) -> None:
    chair, meeting_id = await _chair_and_meeting(node)
    await chair.join(meeting_id, size=CHAIR_SIZE)
    sites = []
    for username in ("kt.cm-nc-hr", "kt.cm-nc-tt", "kt.cm-nc-hv"):
        site = Participant(node, await node.login(username))
        await site.connect()
        await site.join(meeting_id, publish=False)
        sites.append(site)
    assert (await chair.call("start"))["ok"]

    await wait_for(
        lambda: all(
            s.probe is not None and len(s.probe.stats["chair.video"].counters) > 30 for s in sites
        ),
        60,
        "the program at every site",
    )
    live = node.app[REGISTRY].get(meeting_id)
    assert live is not None
    # Five seconds of the chair's frames and packets, against what the chair produced (the
    # test process runs the chair too: on a busy machine both slow down together).
    assert chair.probe is not None
    assert chair.probe.video is not None
    assert chair.probe.audio is not None
    probes = {f"site {i}": s.probe for i, s in enumerate(sites)}
    followed, _ = await asyncio.gather(
        follow(chair.probe.video, {n: p.stats["chair.video"] for n, p in probes.items()}, 150),
        hear(chair.probe.audio, {n: p.stats["chair.audio"] for n, p in probes.items()}, 250),
    )
    for f in followed:
        f.check(detail=_diagnostics(live))
    for site in sites:
        assert site.probe is not None
        assert site.probe.stats["chair.video"].size == CHAIR_SIZE  # the chair's own picture
        # Nobody holds the floor: nothing arrives in the floor slots.
        assert site.probe.stats["floor.video"].frames == 0
        assert site.probe.stats["floor.audio"].audio_packets == 0

    # The node forwarded frames but decoded and encoded none: every receiver feeds a
    # FrameAssembler instead of its decoder, and every sender packs instead of encoding.
    forwarded = 0
    for participant in (live.chair, *live.sites.values()):
        assert participant is not None
        assert participant.peer is not None
        pc = participant.peer.pc
        assert pc is not None
        for transceiver in pc.getTransceivers():
            receiver = transceiver.receiver
            if transceiver.direction == "recvonly":
                assert isinstance(receiver._RTCRtpReceiver__jitter_buffer, FrameAssembler)
                assert receiver._RTCRtpReceiver__decoder_queue.qsize() == 0
            else:
                encoder = encoder_of(transceiver.sender)
                assert encoder is None or isinstance(encoder, Packer)
        forwarded += sum(c.frames_sent for c in participant.peer.consumers.values())
    assert forwarded > 3 * 250

    for p in (chair, *sites):
        await p.close()


@pytest.mark.timeout(240)
async def test_floor_holder_is_seen_and_heard_by_all_and_stops_when_floor_taken_back(
    node: Node,
) -> None:
    chair, meeting_id = await _chair_and_meeting(node)
    await chair.join(meeting_id, size=CHAIR_SIZE)
    speaker = Participant(node, await node.login("kt.cm-nc-hr"))
    listener = Participant(node, await node.login("kt.cm-nc-tt"))
    for site in (speaker, listener):
        await site.connect()
        await site.join(meeting_id, size=SITE_SIZE)
    assert (await chair.call("start"))["ok"]
    assert chair.probe is not None
    assert speaker.probe is not None
    assert listener.probe is not None

    # Before anyone has the floor, no site is seen or heard by anyone.
    await asyncio.sleep(2.0)
    assert chair.probe.stats["floor.video"].frames == 0
    assert chair.probe.stats["floor.audio"].audio_packets == 0
    assert listener.probe.stats["floor.audio"].audio_packets == 0

    # The site raises its hand; the chair's queue shows it with its unit path.
    assert (await speaker.call("raise_hand", {"raised": True}))["ok"]
    state = await chair.wait_state(lambda s: bool(s.get("queue")))
    assert state["queue"][0]["unit"] == "CM-NC-HR"
    assert state["queue"][0]["path"] == ["Tỉnh Cà Mau", "Huyện Năm Căn", "Xã Hàm Rồng"]

    assert (await chair.call("give_floor", {"unit": "CM-NC-HR"}))["ok"]
    await speaker.wait_state(lambda s: s["you"]["has_floor"])
    await wait_for(
        lambda: (
            listener.probe is not None and len(listener.probe.stats["floor.video"].counters) > 30
        ),
        60,
        "the listener to receive the speaker's video",
    )
    live = node.app[REGISTRY].get(meeting_id)
    # The speaker's own counter arrives at both, in order, and comes back after every loss;
    # its picture size tells it from the chair's.
    assert speaker.probe.video is not None
    assert speaker.probe.audio is not None
    probes = {"listener": listener.probe, "chair": chair.probe}
    followed, _ = await asyncio.gather(
        follow(speaker.probe.video, {n: p.stats["floor.video"] for n, p in probes.items()}, 60),
        hear(speaker.probe.audio, {n: p.stats["floor.audio"] for n, p in probes.items()}, 250),
    )
    for f in followed:
        f.check(detail=_diagnostics(live))
    for p in probes.values():
        assert p.stats["floor.video"].size == SITE_SIZE
    # The floor holder does not get itself back.
    assert speaker.probe.stats["floor.video"].frames == 0

    # Muted by the chair: still seen, no longer heard.
    assert (await chair.call("mute", {"unit": "CM-NC-HR", "muted": True}))["ok"]
    floor = listener.probe.stats
    await stops(lambda: floor["floor.audio"].audio_packets, "the muted speaker's audio")
    seen = floor["floor.video"].frames
    await wait_for(lambda: floor["floor.video"].frames > seen + 30, 20, "the muted speaker's video")

    # Floor taken back: the speaker's video stops reaching the others...
    assert (await chair.call("take_floor"))["ok"]
    for name, p in probes.items():
        await stops(lambda p=p: p.stats["floor.video"].frames, f"the speaker's video at {name}")
    # ...while the program (the chair) goes on.
    program = floor["chair.video"].frames
    await wait_for(lambda: floor["chair.video"].frames > program + 30, 20, "the program")

    for p in (chair, speaker, listener):
        await p.close()


def _db_thread(t: threading.Thread) -> bool:
    """aiosqlite runs each database connection in a thread of its own; SQLAlchemy's pool keeps
    up to its size of them open, so they come and stay as a busy moment needs more
    connections (the attendance writer and the alive mark beside the requests)."""
    return "_connection_worker_thread" in t.name


def _threads() -> int:
    """Threads that could leak: all but the workers of the event loop's default executor, a
    pool that starts threads on demand up to a fixed bound and keeps them, and the pooled
    database connections' threads (bounded by the pool, checked apart)."""
    return sum(
        1 for t in threading.enumerate() if not t.name.startswith("asyncio_") and not _db_thread(t)
    )


@pytest.mark.timeout(240)
async def test_hundred_join_leave_cycles_leave_no_tasks_threads_producers_or_consumers(
    node: Node,
) -> None:
    chair, meeting_id = await _chair_and_meeting(node)
    await chair.join(meeting_id, size=CHAIR_SIZE)
    assert (await chair.call("start"))["ok"]
    live = node.app[REGISTRY].get(meeting_id)
    assert live is not None
    session = await node.login("kt.cm-nc-hr")

    async def cycle(i: int) -> None:
        site = Participant(node, session)
        await site.connect()
        ack = await site.call("join", {"meeting_id": meeting_id})
        assert ack["ok"], ack
        from rooms.peer import SITE_LAYOUT
        from rooms.probe import ProbePeer

        probe = ProbePeer(SITE_LAYOUT, publish=False)
        answer = await site.call("offer", {"sdp": await probe.offer()})
        assert answer["ok"], answer
        await probe.accept(answer["sdp"])
        if i % 10 == 0:
            await probe.wait_connected()  # some cycles carry media before leaving
        if i % 2 == 0:
            assert (await site.call("leave"))["ok"]  # leaves the meeting
        await site.sio.disconnect()  # closing the tab
        await probe.close()

    await cycle(0)  # let one-time lazy state settle before counting
    await wait_for(lambda: "CM-NC-HR" not in live.sites, 10, "the site to leave")
    await asyncio.sleep(0.5)
    tasks_before = len(asyncio.all_tasks())
    threads_before = _threads()
    producers_before = len(live.router.producers)
    consumers_before = len(live.router.consumers)
    assert producers_before == 3  # the chair's camera (two tiers) and microphone
    assert consumers_before == 6  # the chair's floor and wall slots

    for i in range(1, 101):
        await cycle(i)

    await wait_for(lambda: "CM-NC-HR" not in live.sites, 10, "the last site to leave")
    try:
        # A closed socket's ping task ends at its next ping (PING_INTERVAL); nothing else lingers.
        await wait_for(
            lambda: len(asyncio.all_tasks()) <= tasks_before + 3, PING_INTERVAL + 5, "tasks"
        )
    except AssertionError:
        names = Counter(_task_name(t) for t in asyncio.all_tasks())
        raise AssertionError(
            f"{len(asyncio.all_tasks())} tasks (before: {tasks_before}): {names.most_common(8)}"
        ) from None
    try:
        await wait_for(lambda: _threads() <= threads_before + 1, 15, "threads")
    except AssertionError:
        names = Counter(t.name.split("_")[0] for t in threading.enumerate())
        raise AssertionError(f"{_threads()} threads (before: {threads_before}): {names}") from None
    # The loop's default executor (DNS lookups, password hashing) keeps up to its bound.
    pool = [t for t in threading.enumerate() if t.name.startswith("asyncio_")]
    assert len(pool) <= min(32, (os.cpu_count() or 1) + 4)
    # The database's pooled connections: at most the pool's size stay (overflow ones close).
    pool_size = node.app[CTX].engine.pool.size()
    assert sum(_db_thread(t) for t in threading.enumerate()) <= pool_size
    assert len(live.router.producers) == producers_before
    assert len(live.router.consumers) == consumers_before
    # The chair is still served.
    assert chair.probe is not None
    assert chair.probe.pc.connectionState == "connected"
    await chair.close()
