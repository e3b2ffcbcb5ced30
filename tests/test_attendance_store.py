"""The attendance store on each database backend: a node's sequence under parallel writes,
events from below stored once under parallel batches, the wire model's refusals, and what
a restart closes."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
import socketio
from pydantic import ValidationError
from sqlalchemy import select

from server import meetings
from server.attendance.service import ALIVE, ATTENDANCE
from server.attendance.store import EventIn
from server.cascade.nodes import issue_credential
from server.models import AttendanceEvent, MeetingStatus, NodeMark
from server.state import CTX
from tests.conftest import Node
from tests.live_helpers import schedule


async def live_meeting(node: Node) -> int:
    meeting_id = await schedule(await node.login("chutri"), invited_subtrees=["CM-NC"])
    async with node.app[CTX].sessionmaker() as db, db.begin():
        await meetings.set_status(db, meeting_id, MeetingStatus.LIVE)
    return meeting_id


async def rows(node: Node) -> list[AttendanceEvent]:
    async with node.app[CTX].sessionmaker() as db:
        found = await db.execute(select(AttendanceEvent).order_by(AttendanceEvent.id))
        return list(found.scalars().all())


@pytest.mark.timeout(60)
async def test_parallel_events_take_every_number_of_the_sequence_once(any_node: Node) -> None:
    meeting_id = await live_meeting(any_node)
    store = any_node.app[ATTENDANCE].store
    sites = [f"CM-NC-{n}" for n in range(40)]
    stored = await asyncio.gather(
        *(
            store.record(meeting_id, site, "head_count", head_count=n)
            for n, site in enumerate(sites)
        )
    )
    seqs = sorted(e.origin_seq for e in stored)
    assert seqs == list(range(seqs[0], seqs[0] + len(sites)))
    assert sorted(r.origin_seq for r in await rows(any_node)) == seqs


def below(seq: int, meeting: int, **extra: object) -> EventIn:
    return EventIn.model_validate(
        {
            "origin_node": "CM-NC",
            "origin_seq": seq,
            "meeting_id": meeting,
            "unit_code": "CM-NC-HR",
            "kind": "join",
            "at": 1_800_000_000.0 + seq,
            **extra,
        }
    )


@pytest.mark.timeout(60)
async def test_the_same_events_from_below_in_parallel_batches_are_stored_once(
    any_node: Node,
) -> None:
    meeting_id = await live_meeting(any_node)
    store = any_node.app[ATTENDANCE].store
    batch = [below(seq, meeting_id) for seq in range(1, 51)]
    results = await asyncio.gather(*(store.store_from_below(batch, 250) for _ in range(4)))
    assert sum(len(new) for new, _ in results) == 50
    assert sum(dup for _, dup in results) == 150
    stored = [r for r in await rows(any_node) if r.origin_node == "CM-NC"]
    assert sorted(r.origin_seq for r in stored) == list(range(1, 51))
    assert {r.offset_ms for r in stored} == {250}
    # A later batch overlapping the first: only the new ones are stored.
    new, duplicates = await store.store_from_below(
        [below(seq, meeting_id) for seq in range(45, 61)], 0
    )
    assert (len(new), duplicates) == (10, 6)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("origin_node", ""),
        ("origin_node", "CM\x00NC"),
        ("origin_seq", 0),
        ("kind", "teleport"),
        ("reason", "bad\nreason"),
        ("reason", "x" * 33),
        ("head_count", -1),
        ("head_count", 100_001),
        ("detail", "\x07"),
        ("at", "yesterday"),
        ("meeting_id", 2**31),
    ],
)
def test_an_event_from_below_with_a_bad_field_is_refused_naming_it(
    field: str, value: object
) -> None:
    with pytest.raises(ValidationError) as caught:
        below(1, 1, **{field: value})
    assert {e["loc"][0] for e in caught.value.errors()} == {field}


@pytest.mark.timeout(60)
async def test_a_restart_drops_the_sites_present_at_the_last_second_alive(
    any_node: Node,
) -> None:
    meeting_id = await live_meeting(any_node)
    attendance = any_node.app[ATTENDANCE]
    store = attendance.store
    start = datetime.now(UTC) - timedelta(minutes=5)
    await store.record(meeting_id, "CM-NC-HR", "join", at=start)
    await store.record(meeting_id, "CM-NC-TT", "join", at=start)
    await store.record(meeting_id, "CM-NC-TT", "leave", at=start + timedelta(minutes=1))
    # The node "crashed" two minutes ago: that is the last time it knew itself alive.
    crashed = start + timedelta(minutes=3)
    await attendance.close()  # its ticker would write a newer time
    async with any_node.app[CTX].sessionmaker() as db, db.begin():
        (await db.get(NodeMark, ALIVE)).at = crashed  # type: ignore[union-attr]
    await attendance.recover()
    mine = [
        (r.unit_code, r.kind, r.reason, r.node)
        for r in await rows(any_node)
        if r.meeting_id == meeting_id
    ]
    assert mine[3:] == [
        ("CM-NC-HR", "drop", "node_restart", ""),  # present: dropped at the crash
        ("", "node_down", "node_restart", "root"),
        ("", "node_up", "node_restart", "root"),
    ]
    drop = next(r for r in await rows(any_node) if r.kind == "drop")
    assert drop.at == crashed
    # A second start finds nobody present any more: nothing more is dropped.
    await attendance.recover()
    assert [r.kind for r in await rows(any_node)].count("drop") == 1


@pytest.mark.parametrize(
    ("kind", "detail", "node"),
    [
        ("node_down", "", "CM-NC"),  # no units: would cut every site off
        ("node_down", '{"units": []}', "CM-NC"),
        ("node_up", '{"units": ["bad code!"]}', "CM-NC"),
        ("node_down", '{"units": ["CM-NC"]}', ""),  # no node
        ("join", "[1, 2]", ""),  # detail not an object
        ("head_count", "not json", ""),
    ],
)
def test_an_event_from_below_with_a_bad_detail_is_refused(
    kind: str, detail: str, node: str
) -> None:
    with pytest.raises(ValidationError):
        below(1, 1, kind=kind, detail=detail, node=node)


@pytest.mark.timeout(60)
async def test_a_child_cannot_store_events_for_units_outside_its_own(node: Node) -> None:
    """A child registered for CM-NC may send events of sites and nodes under CM-NC only: a
    node_down naming CM-NH (or a site there) would cut the sites of another district off
    the province's record."""
    meeting_id = await schedule(await node.login("chutri"), invited_subtrees=["CM-NC", "CM-NH"])
    credential = await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], "")
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        f"http://127.0.0.1:{node.client.server.port}",
        namespaces=["/node"],
        auth={"credential": credential},
        transports=["websocket"],
        wait_timeout=10,
    )
    try:
        hello = await sio.call("hello", {"units": ["CM-NC"]}, namespace="/node", timeout=10)
        assert hello["ok"], hello
        events = [
            below(1, meeting_id, kind="node_down", node="CM-NC-HR", detail='{"units": ["CM-NH"]}'),
            below(2, meeting_id, unit_code="CM-NH-RG"),
            below(
                3, meeting_id, kind="node_down", node="CM-NC-HR", detail='{"units": ["CM-NC-HR"]}'
            ),
            below(4, meeting_id),
        ]
        ack = await sio.call(
            "attendance",
            {"events": [e.model_dump() for e in events], "offset_ms": 0},
            namespace="/node",
            timeout=10,
        )
    finally:
        await sio.disconnect()
    assert ack["ok"], ack
    assert (ack["stored"], ack["duplicates"]) == (2, 0)
    assert ack["rejected"] == [
        {"index": 0, "error": "unit_out_of_scope"},
        {"index": 1, "error": "unit_out_of_scope"},
    ]
    assert sorted(r.origin_seq for r in await rows(node) if r.origin_node == "CM-NC") == [3, 4]
