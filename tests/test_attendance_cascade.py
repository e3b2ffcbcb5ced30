"""Attendance across three nodes: a province and two district nodes (real apps, each with its
own SQLite database), commune sites as real aiortc peers on their district's node.

What the sites do (joins, a killed peer connection, a rejoin, head counts, a roll call, a
leave) is stored on their district as events and reaches the province exactly once, with
the times it happened; the chair's console shows it live.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.attendance.report import minutes_of
from server.attendance.service import ATTENDANCE
from server.cascade.parent_link import PARENT_LINK
from server.models import AttendanceEvent
from server.state import CTX
from tests.conftest import Node, Tree, start_node
from tests.live_helpers import (
    ClientFactory,
    Participant,
    district_behind_gate,
    join_site,
    local_meeting_id,
    schedule,
    start_as_chair,
    wait_for,
)

SITES = {"kt.cm-nc-hr": "CM-NC", "kt.cm-nc-tt": "CM-NC", "kt.cm-nh-dmu": "CM-NH"}


async def events_at(node: Node, meeting_id: int | None = None) -> list[AttendanceEvent]:
    async with node.app[CTX].sessionmaker() as db:
        query = select(AttendanceEvent).order_by(AttendanceEvent.id)
        if meeting_id is not None:
            query = query.where(AttendanceEvent.meeting_id == meeting_id)
        return list((await db.execute(query)).scalars().all())


def roster_site(state: dict[str, Any], unit: str) -> dict[str, Any]:
    return next(s for s in state["roster"]["sites"] if s["unit"] == unit)


def unbroken(seqs: list[int]) -> bool:
    """A node's sequence numbers with none missing and none twice."""
    return sorted(seqs) == list(range(min(seqs), min(seqs) + len(seqs)))


@pytest.mark.timeout(240)
async def test_site_events_on_district_nodes_reach_the_province_once_with_their_times(
    tree: Tree,
) -> None:
    title = "Giao ban điểm danh ba nút"
    chair_session = await tree.province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC", "CM-NH"])
    chair = await start_as_chair(tree.province, chair_session, meeting_id)
    state = await chair.wait_state(lambda s: s.get("roster", {}).get("expected", 0) > 0)
    expected = state["roster"]["expected"]
    assert roster_site(state, "CM-NC-HR")["state"] == "never"

    did: dict[str, list[tuple[str, float]]] = {u: [] for u in SITES}
    sites: dict[str, Participant] = {}
    for operator, district in SITES.items():
        node = tree.districts[district]
        local = await local_meeting_id(node, operator, title)
        sites[operator] = await join_site(node, operator, local)
        did[operator].append(("join", time.time()))
    for operator, count in (("kt.cm-nc-hr", 25), ("kt.cm-nc-tt", 12), ("kt.cm-nh-dmu", 30)):
        ack = await sites[operator].call("head_count", {"count": count})
        assert ack == {"ok": True, "count": count}
        did[operator].append(("head_count", time.time()))
    await chair.wait_state(
        lambda s: s["roster"]["present"] == 3 and s["roster"]["head_count"] == 67, 20
    )

    # Hàm Rồng's peer connection dies (its socket stays): a drop, seen by the province.
    hr = sites["kt.cm-nc-hr"]
    assert hr.probe is not None
    await hr.probe.close()
    killed = time.time()
    state = await chair.wait_state(lambda s: roster_site(s, "CM-NC-HR")["state"] == "lost", 20)
    assert state["roster"]["present"] == 2
    did["kt.cm-nc-hr"].append(("drop", killed))
    # ...and it joins again, with more people in the hall.
    await hr.join(await local_meeting_id(tree.districts["CM-NC"], "kt.cm-nc-hr", title))
    did["kt.cm-nc-hr"].append(("join", time.time()))
    assert (await hr.call("head_count", {"count": 27}))["ok"]
    did["kt.cm-nc-hr"].append(("head_count", time.time()))
    await chair.wait_state(
        lambda s: (
            roster_site(s, "CM-NC-HR")["state"] == "online" and s["roster"]["head_count"] == 69
        ),
        20,
    )

    # A roll call across both districts: every site is asked on its own node.
    started = await chair.call("roll_call_start")
    assert started["ok"], started
    roll_id = started["roll_call"]["id"]
    for operator, count in (("kt.cm-nc-hr", 27), ("kt.cm-nh-dmu", 29)):
        site = sites[operator]
        prompt = await site.wait_state(
            lambda s: bool(s["roll_call"]) and s["roll_call"]["open"], 15
        )
        assert prompt["roll_call"]["id"] == roll_id
        assert prompt["roll_call"]["answered"] is False
        assert (await site.call("roll_call_answer", {"roll_call": roll_id, "count": count}))["ok"]
        did[operator].append(("roll_answer", time.time()))
        await site.wait_state(lambda s: bool(s["roll_call"]) and s["roll_call"]["answered"])
    state = await chair.wait_state(
        lambda s: bool(s["roll_call"]) and s["roll_call"]["tally"]["answered"] == 2, 20
    )
    tally = state["roll_call"]["tally"]
    assert tally["answers"] == {"CM-NC-HR": 27, "CM-NH-DMU": 29}
    assert (tally["waiting"], tally["offline"]) == (1, expected - 3)
    assert tally["head_count"] == 56
    by_group = {g["group"]: g for g in tally["groups"] if g["level"] == "commune"}
    assert (by_group["CM-NC"]["answered"], by_group["CM-NC"]["waiting"]) == (1, 1)
    assert (by_group["CM-NH"]["answered"], by_group["CM-NH"]["waiting"]) == (1, 0)
    ended = await chair.call("roll_call_end")
    assert ended["ok"]
    assert ended["roll_call"]["open"] is False
    # An answer after the close is refused.
    late = await sites["kt.cm-nc-tt"].call("roll_call_answer", {"roll_call": roll_id, "count": 1})
    assert late["error"] == "roll_call_closed"

    # Tân Tiến leaves; then the chair ends the meeting for everyone else.
    assert (await sites["kt.cm-nc-tt"].call("leave"))["ok"]
    did["kt.cm-nc-tt"].append(("leave", time.time()))
    state = await chair.wait_state(lambda s: roster_site(s, "CM-NC-TT")["state"] == "left", 20)
    assert (await chair.call("end"))["ok"]
    for operator in ("kt.cm-nc-hr", "kt.cm-nh-dmu"):
        did[operator].append(("leave", time.time()))

    # At the province: every site's events, in order, each within a second of the moment
    # the test did it (the drop: of the kill, detected within the 2 s silence rule).
    province = tree.province
    unit_of = {op: f"{SITES[op]}-{op.rsplit('-', 1)[1].upper()}" for op in SITES}

    async def arrived() -> bool:
        rows = await events_at(province, meeting_id)
        return sum(r.unit_code == unit_of["kt.cm-nh-dmu"] for r in rows) >= 4

    await wait_for_async(arrived, 20, "the last events to reach the province")
    rows = await events_at(province, meeting_id)
    for operator, actions in did.items():
        mine = [r for r in rows if r.unit_code == unit_of[operator]]
        assert [r.kind for r in mine] == [kind for kind, _ in actions], operator
        assert {r.origin_node for r in mine} == {SITES[operator]}
        for row, (kind, when) in zip(mine, actions, strict=True):
            at = row.at.timestamp() + row.offset_ms / 1000
            # A killed link is known by its silence: 2 s of it, checked every 0.25 s.
            late = 3.0 if kind == "drop" else 1.0
            assert -1.0 <= at - when <= late, (operator, kind, at - when)
    # Each district's events arrived once and none is missing.
    for code, district in tree.districts.items():
        theirs = [r for r in await events_at(district) if r.origin_node == code]
        here = [r.origin_seq for r in await events_at(province) if r.origin_node == code]
        assert sorted(here) == sorted(r.origin_seq for r in theirs)
        assert unbroken(here)
    assert province.app[ATTENDANCE].store.code == "root"

    # The province's report: every row as the sites did it.
    secretary = await province.login("thuky")
    status, report = await secretary.call("GET", f"/api/meetings/{meeting_id}/attendance")
    assert status == 200, report
    span = (
        datetime.fromisoformat(report["meeting"]["started_at"]).timestamp(),
        datetime.fromisoformat(report["meeting"]["ended_at"]).timestamp(),
    )
    rows_by_unit = {r["unit"]: r for r in report["sites"]}
    assert len(rows_by_unit) == expected
    drop_at = next(
        r.at.timestamp() + r.offset_ms / 1000
        for r in await events_at(province, meeting_id)
        if r.kind == "drop"
    )
    plans = {
        # unit: (presence intervals as the test did them, drops, peak, last, answers, node)
        "CM-NC-HR": (
            [(did["kt.cm-nc-hr"][0][1], drop_at), (did["kt.cm-nc-hr"][3][1], span[1])],
            1,
            27,
            27,
            [27],
            "CM-NC",
        ),
        "CM-NC-TT": (
            [(did["kt.cm-nc-tt"][0][1], did["kt.cm-nc-tt"][-1][1])],
            0,
            12,
            12,
            [None],
            "CM-NC",
        ),
        "CM-NH-DMU": ([(did["kt.cm-nh-dmu"][0][1], span[1])], 0, 30, 29, [29], "CM-NH"),
    }
    for unit, (spans, drops, peak, last, answers, via) in plans.items():
        row = rows_by_unit[unit]
        first = datetime.fromisoformat(row["first_join"]).timestamp()
        assert abs(first - spans[0][0]) < 1.0, unit
        if unit == "CM-NC-TT":
            leave = datetime.fromisoformat(row["last_leave"]).timestamp()
            assert abs(leave - spans[-1][1]) < 1.0, unit
        seconds = sum(end - start for start, end in spans)
        assert abs(row["seconds"] - seconds) <= 2, (unit, row["seconds"], seconds)
        assert row["minutes"] == minutes_of(row["seconds"])
        assert (row["drops"], row["head_count_peak"], row["head_count_last"]) == (
            drops,
            peak,
            last,
        ), unit
        assert row["roll_answers"] == answers, unit
        assert row["node"] == via, unit
    for unit, row in rows_by_unit.items():
        if unit not in plans:  # invited, never came
            assert (row["first_join"], row["seconds"], row["drops"], row["node"]) == (
                None,
                0,
                0,
                None,
            ), unit
            assert row["roll_answers"] == [None]
    assert report["roll_calls"] == [{"id": roll_id, "number": 1}]
    assert report["clock_notes"] == []
    for s in (chair, *sites.values()):
        await s.close()


async def wait_for_async(check: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, f"waited {within} s for {what}"
        await asyncio.sleep(0.2)


async def restart(aiohttp_client: ClientFactory, old: Node, path: Path) -> Node:
    """The same child node stopped and started again: same directory, database, parent."""
    settings = old.app[CTX].settings
    await old.close()
    await old.client.close()
    return await start_node(
        aiohttp_client,
        path,
        settings.database_url,
        parent_url=settings.parent_url,
        parent_credential=settings.parent_credential.get_secret_value(),
        served_units=list(settings.served_units),
    )


@pytest.mark.timeout(240)
async def test_events_made_while_the_uplink_is_cut_and_the_district_restarted_arrive_once(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    province, district, gate = await district_behind_gate(aiohttp_client, tmp_path)
    title = "Điểm danh khi mất đường lên"
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(province, chair_session, meeting_id)
    local = await local_meeting_id(district, "kt.cm-nc-hr", title)
    hr = await join_site(district, "kt.cm-nc-hr", local)
    tt = await join_site(district, "kt.cm-nc-tt", local)
    assert (await hr.call("head_count", {"count": 18}))["ok"]
    await chair.wait_state(lambda s: s["roster"]["present"] == 2, 20)

    # The uplink is cut: the district goes on, its events wait in its database.
    gate.block()
    link = district.app[PARENT_LINK]
    await wait_for(lambda: not link.connected.is_set(), 20, "the district to see the cut")
    assert (await tt.call("head_count", {"count": 9}))["ok"]
    assert (await hr.call("leave"))["ok"]
    assert await link.outbox.pending() >= 2

    # ...and the district is restarted while still cut (its sites' sockets closed by the
    # stop): the outbox is in its database.
    district = await restart(aiohttp_client, district, tmp_path / "CM-NC")
    for site in (hr, tt):
        await site.close()
    link = district.app[PARENT_LINK]
    hr = await join_site(district, "kt.cm-nc-hr", local)
    assert (await hr.call("head_count", {"count": 20}))["ok"]
    waiting = await link.outbox.pending()
    assert waiting >= 6  # the two before the restart, the stop's drop, a join, a head count

    async def district_rows() -> list[AttendanceEvent]:
        return [r for r in await events_at(district) if r.origin_node == "CM-NC"]

    assert unbroken([r.origin_seq for r in await district_rows()])

    # The link returns: every event of the district reaches the province, once.
    gate.unblock()
    await asyncio.wait_for(link.connected.wait(), 40)

    async def all_up() -> bool:
        return await link.outbox.pending() == 0

    await wait_for_async(all_up, 30, "the outbox to empty")
    mine = await district_rows()
    up = [r for r in await events_at(province) if r.origin_node == "CM-NC"]
    assert sorted(r.origin_seq for r in up) == sorted(r.origin_seq for r in mine)
    assert unbroken([r.origin_seq for r in up])
    # What happened below, in order, as the province now knows it: Tân Tiến's count while
    # cut, Hàm Rồng's leave, the restart's drop of Tân Tiến, Hàm Rồng back with 20.
    tt_kinds = [(r.kind, r.head_count, r.reason) for r in up if r.unit_code == "CM-NC-TT"]
    assert tt_kinds == [
        ("join", None, "join"),
        ("head_count", 9, ""),
        ("drop", None, "node_stopped"),
    ]
    hr_kinds = [(r.kind, r.head_count) for r in up if r.unit_code == "CM-NC-HR"]
    assert hr_kinds == [
        ("join", None),
        ("head_count", 18),
        ("leave", None),
        ("join", None),
        ("head_count", 20),
    ]
    # The province recorded the district's link down during the cut, and up again.
    own = [r for r in await events_at(province, meeting_id) if r.origin_node == "root"]
    assert [r.kind for r in own if r.node == "CM-NC"][:2] == ["node_up", "node_down"]
    assert [r.kind for r in own if r.node == "CM-NC"][-1] == "node_up"
    state = await chair.wait_state(
        lambda s: (
            roster_site(s, "CM-NC-HR")["state"] == "online"
            and roster_site(s, "CM-NC-TT")["state"] == "lost"
            and roster_site(s, "CM-NC-HR")["head_count"] == 20
        ),
        20,
    )
    assert state["roster"]["present"] == 1
    for p in (chair, hr):
        await p.close()
    await district.close()
    await province.close()
    await gate.close()


@pytest.mark.timeout(120)
async def test_a_district_with_a_wrong_clock_is_measured_and_its_times_corrected(
    tree: Tree,
) -> None:
    district = tree.districts["CM-NC"]
    # The district's clock runs 30 s behind the province's.
    district.app[CTX].clock = lambda: time.time() - 30
    link = district.app[PARENT_LINK]
    await wait_for(
        lambda: link.clock_offset_ms is not None and abs(link.clock_offset_ms - 30_000) < 500,
        20,
        "the offset to be measured from the heartbeats",
    )
    admin = await district.login("quantri")
    status, body = await admin.call("GET", "/api/links")
    assert status == 200
    assert body["parent"]["clock_off"] is True
    assert abs(body["parent"]["clock_offset_ms"] - 30_000) < 500

    title = "Giờ của huyện sai"
    chair_session = await tree.province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(tree.province, chair_session, meeting_id)
    local = await local_meeting_id(district, "kt.cm-nc-hr", title)
    joined = time.time()
    site = await join_site(district, "kt.cm-nc-hr", local)

    async def arrived() -> bool:
        return any(r.unit_code == "CM-NC-HR" for r in await events_at(tree.province, meeting_id))

    await wait_for_async(arrived, 20, "the join to reach the province")
    row = next(r for r in await events_at(tree.province, meeting_id) if r.unit_code == "CM-NC-HR")
    assert abs(row.at.timestamp() - (joined - 30)) < 1.0  # as the district's clock said
    assert abs(row.offset_ms - 30_000) < 500
    assert abs(row.at.timestamp() + row.offset_ms / 1000 - joined) < 1.0  # corrected
    for p in (chair, site):
        await p.close()
