"""The cascade at any depth, and the links a parent refuses.

Every node is a real app on its own port with its own SQLite database; sites are real aiortc
peers. Nothing assumes three levels: a chain of four nodes (province → district → commune →
hamlet) and a two-level tree (province → commune, as after the 2025 reform) both carry the
program down and the floor up and across.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

from server.cascade.nodes import issue_credential, revoke
from server.cascade.parent_link import BACKOFF_MIN, PARENT_LINK
from server.sockets.signaling import REGISTRY
from server.state import CTX
from tests.conftest import Node, start_node
from tests.live_helpers import (
    ClientFactory,
    Participant,
    add_unit,
    chair_and_site_live,
    join_site,
    local_meeting_id,
    schedule,
    start_as_chair,
    start_child,
    wait_for,
)
from tests.tcp_gate import TcpGate
from tests.test_attendance_cascade import events_at

HAMLET = "CM-NC-HR-A1"
HAMLET_NAME = "Ấp Xóm Mới"
HAMLET_OPERATOR = "kt.cm-nc-hr-a1"


async def _province(aiohttp_client: ClientFactory, tmp_path: Path) -> Node:
    root = tmp_path / "CM"
    root.mkdir()
    return await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'node.sqlite3'}")


async def _linked(*nodes: Node) -> None:
    for n in nodes:
        await asyncio.wait_for(n.app[PARENT_LINK].connected.wait(), 15)


async def _arrives(who: Participant, slot: str, what: str, frames: int = 60) -> list[int]:
    """Wait (generously) for ``frames`` more video frames and 100 more audio packets of a
    program slot ("chair" or "floor") at ``who``; return the picture counters that came, which
    must advance in order. Gaps are not judged: on a loaded machine a hop may drop frames."""
    assert who.probe is not None
    video, audio = who.probe.stats[f"{slot}.video"], who.probe.stats[f"{slot}.audio"]
    seen, heard = len(video.counters), audio.audio_packets
    await wait_for(
        lambda: len(video.counters) >= seen + frames and audio.audio_packets >= heard + 100,
        90,  # a loaded machine brings them slowly; none coming at all still fails
        what,
    )
    counters = video.counters[seen:]
    assert counters == sorted(counters), f"{what}: out of order: {counters}"
    assert len(set(counters)) > frames // 2, f"{what}: the picture does not advance"
    return counters


def _units_at(node: Node, meeting_id: int) -> tuple[list[str], list[str]]:
    """A node's live meeting: its relays (child nodes) and the sites reported below them."""
    live = node.app[REGISTRY].get(meeting_id)
    assert live is not None
    return sorted(live.relays), sorted(live.remote_sites)


@pytest.mark.timeout(300)
async def test_chain_of_four_nodes_carries_program_floor_hand_and_presence(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # Province → district → commune → hamlet, one node each; every node knows the hamlet.
    province = await _province(aiohttp_client, tmp_path)
    await add_unit(province, HAMLET, HAMLET_NAME, "hamlet", "CM-NC-HR")
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    await add_unit(district, HAMLET, HAMLET_NAME, "hamlet", "CM-NC-HR")
    commune = await start_child(aiohttp_client, tmp_path, district, "CM-NC-HR")
    await add_unit(commune, HAMLET, HAMLET_NAME, "hamlet", "CM-NC-HR")
    hamlet = await start_child(aiohttp_client, tmp_path, commune, HAMLET)
    await add_unit(hamlet, HAMLET, HAMLET_NAME, "hamlet", "CM-NC-HR", HAMLET_OPERATOR)
    nodes = (hamlet, commune, district, province)
    await _linked(district, commune, hamlet)

    title = "Hội nghị xuống tận ấp"
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=["CM-NC"])
    # Scheduled after every link was up: each level passes it on to the level below.
    deep_id = await local_meeting_id(hamlet, HAMLET_OPERATOR, title)
    mid_id = await local_meeting_id(district, "kt.cm-nc-tt", title)

    # Half the chair's frame rate, so its picture counter is told apart from the chair's.
    deep = await join_site(hamlet, HAMLET_OPERATOR, deep_id, publish=True, size=(320, 240), fps=15)
    mid = await join_site(district, "kt.cm-nc-tt", mid_id)
    chair = await start_as_chair(province, chair_session, meeting_id)
    assert chair.probe is not None
    assert deep.probe is not None
    assert mid.probe is not None

    # The chair's counter video and tone reach the hamlet, three hops down, in order.
    await _arrives(deep, "chair", "the program at the hamlet")
    # One relay per link, each level reporting the sites below it.
    assert _units_at(province, meeting_id)[0] == ["CM-NC"]
    assert _units_at(district, mid_id)[0] == ["CM-NC-HR"]
    live_commune = commune.app[REGISTRY].get(await local_meeting_id(commune, "kt.cm-nc-hr", title))
    assert live_commune is not None
    assert sorted(live_commune.relays) == [HAMLET]

    # Presence: the hamlet's site reaches the root with its full path, through the district.
    path = ["Tỉnh Cà Mau", "Huyện Năm Căn", "Xã Hàm Rồng", HAMLET_NAME]
    state = await chair.wait_state(
        lambda s: any(x["unit"] == HAMLET and x["media"] for x in s.get("sites", [])), 20
    )
    site = next(x for x in state["sites"] if x["unit"] == HAMLET)
    assert site["path"] == path
    assert site["via"] == "CM-NC"
    assert site["online"]

    # A raised hand at the hamlet reaches the chair's queue with its full unit path.
    assert (await deep.call("raise_hand", {"raised": True}))["ok"]
    state = await chair.wait_state(lambda s: any(q["unit"] == HAMLET for q in s["queue"]), 15)
    assert next(q for q in state["queue"] if q["unit"] == HAMLET)["path"] == path

    # The floor to the hamlet: the instruction goes down three levels, the media up three and
    # across to a commune on the district node; the chair sees it too.
    assert (await chair.call("give_floor", {"unit": HAMLET}))["ok"]
    await deep.wait_state(lambda s: s["you"]["has_floor"] and not s["you"]["hand_raised"], 15)
    await mid.wait_state(lambda s: (s.get("floor") or {}).get("unit") == HAMLET, 15)
    for who, what in ((mid, "the district's commune"), (chair, "the chair")):
        last = (await _arrives(who, "floor", f"{what} to see and hear the hamlet", 30))[-1]
        # The hamlet's own picture: nearer its counter than the chair's (twice as fast).
        assert deep.probe.video is not None
        assert chair.probe.video is not None
        assert abs(deep.probe.video.counter - last) < abs(chair.probe.video.counter - last)

    # Taking the floor back stops it at the district and at the chair.
    assert (await chair.call("take_floor"))["ok"]
    await mid.wait_latest(lambda s: s.get("floor") is None, 15)
    await asyncio.sleep(1.5)
    seen = [w.probe.stats["floor.video"].frames for w in (mid, chair) if w.probe is not None]
    await asyncio.sleep(1.5)
    assert [w.probe.stats["floor.video"].frames for w in (mid, chair) if w.probe] == seen

    # The hamlet's site leaves: every level above forgets it, the root included.
    await deep.close()
    await chair.wait_latest(lambda s: all(x["unit"] != HAMLET for x in s["sites"]), 30)
    assert HAMLET not in _units_at(province, meeting_id)[1]
    assert HAMLET not in _units_at(district, mid_id)[1]
    # Its attendance went up three links, stored once at each level with the hamlet node's
    # id; the chair's roster shows it lost (its socket closed without a leave).
    state = await chair.wait_state(
        lambda s: any(x["unit"] == HAMLET and x["state"] == "lost" for x in s["roster"]["sites"]),
        30,
    )
    for level in (commune, district, province):
        rows = [r for r in await events_at(level) if r.unit_code == HAMLET]
        assert [(r.kind, r.origin_node) for r in rows] == [("join", HAMLET), ("drop", HAMLET)]
    for p in (chair, mid):
        await p.close()
    for n in nodes:
        await n.close()


@pytest.mark.timeout(240)
async def test_two_level_tree_province_to_communes_direct_and_behind_a_child_node(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # After the 2025 reform: communes directly under the province, no district between.
    province = await _province(aiohttp_client, tmp_path)
    communes = {"CM-XA": "Xã Tân Thử", "CM-XB": "Xã Phú Thử"}
    for code, name in communes.items():
        await add_unit(province, code, name, "commune", "CM", f"kt.{code.lower()}")
    child = await start_child(aiohttp_client, tmp_path, province, "CM-XB")
    await add_unit(child, "CM-XB", communes["CM-XB"], "commune", "CM", "kt.cm-xb")
    await _linked(child)

    title = "Hội nghị tỉnh với xã, không qua huyện"
    chair_session = await province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_units=list(communes))
    child_id = await local_meeting_id(child, "kt.cm-xb", title)
    direct = await join_site(province, "kt.cm-xa", meeting_id)
    # At half the chair's frame rate, so its picture is told apart from the chair's.
    behind = await join_site(child, "kt.cm-xb", child_id, publish=True, size=(320, 240), fps=15)
    chair = await start_as_chair(province, chair_session, meeting_id)
    assert direct.probe is not None
    assert behind.probe is not None

    # The program reaches the commune on the province node and the one behind its own node.
    for who, what in ((direct, "the direct commune"), (behind, "the commune behind its node")):
        await _arrives(who, "chair", f"the program at {what}")
    assert _units_at(province, meeting_id) == (["CM-XB"], ["CM-XB"])
    state = await chair.wait_state(lambda s: len(s.get("sites", [])) == 2, 15)
    paths = {x["unit"]: x["path"] for x in state["sites"]}
    assert paths == {code: ["Tỉnh Cà Mau", name] for code, name in communes.items()}

    # The floor to the commune behind the child node reaches the directly connected one.
    assert (await chair.call("give_floor", {"unit": "CM-XB"}))["ok"]
    await behind.wait_state(lambda s: s["you"]["has_floor"], 15)
    last = (await _arrives(direct, "floor", "the direct commune to see and hear the other", 30))[-1]
    assert behind.probe.video is not None
    assert chair.probe is not None
    assert chair.probe.video is not None
    assert abs(behind.probe.video.counter - last) < abs(chair.probe.video.counter - last)
    state = await direct.wait_state(lambda s: (s.get("floor") or {}).get("unit") == "CM-XB")
    assert state["floor"]["name"] == communes["CM-XB"]
    for p in (chair, direct, behind):
        await p.close()
    for n in (child, province):
        await n.close()


REFUSALS = {
    # case: (what the parent logs, the code the child is told)
    "wrong_secret": ("node credential refused (wrong secret)", "bad_credential"),
    "revoked": ("node credential refused (revoked)", "bad_credential"),
    "outside_subtree": ("claimed units outside its scope", "unit_out_of_scope"),
}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("case", sorted(REFUSALS))
async def test_parent_refuses_a_bad_link_child_backs_off_and_no_log_holds_the_secret(
    aiohttp_client: ClientFactory,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    province = await _province(aiohttp_client, tmp_path)
    issued = await issue_credential(province.app[CTX], "CM-NC", ["CM-NC"], "")
    secrets = [issued.rsplit(".", 1)[1]]
    served = ["CM-NC"]
    credential = issued
    if case == "wrong_secret":
        wrong = await issue_credential(province.app[CTX], "CM-NH", ["CM-NH"], "")
        secrets.append(wrong.rsplit(".", 1)[1])
        credential = "CM-NC." + secrets[1]  # a real secret, of another node
    elif case == "revoked":
        await revoke(province.app[CTX], "CM-NC")
    else:
        served = ["CM-NH"]  # registered for Năm Căn, claims Ngọc Hiển
    title = "Cuộc họp nút con không được thấy"
    await schedule(await province.login("chutri"), title=title, invited_subtrees=["CM-NC"])

    child = await start_child(
        aiohttp_client, tmp_path, province, "CM-NC", served, credential=credential
    )
    link = child.app[PARENT_LINK]
    logged, told = REFUSALS[case]

    def refusals() -> list[logging.LogRecord]:
        return [
            r
            for r in caplog.records
            if r.name == "server.cascade.nodes"
            and logged in r.getMessage()
            and "CM-NC" in r.getMessage()
        ]

    # The parent refuses and logs it, naming the node; the child says why, to its operator.
    await wait_for(lambda: bool(refusals()), 15, "the parent to refuse the link")
    await wait_for(lambda: link.state == "refused", 15, "the child to see the refusal")
    assert link.refusal == told
    assert any(
        r.name == "server.cascade.parent_link"
        and r.levelno >= logging.ERROR
        and told in r.getMessage()
        for r in caplog.records
    )

    # It keeps trying, with backoff: never faster than one attempt per BACKOFF_MIN.
    first = len(refusals())
    window = 6.0
    await asyncio.sleep(window)
    attempts = len(refusals()) - first
    assert 1 <= attempts <= window / BACKOFF_MIN + 1, attempts
    assert not link.connected.is_set()
    assert link.state == "refused"
    # Nothing crossed: the parent's meeting is not mirrored below.
    _status, body = await (await child.login("kt.cm-nc-hr")).call("GET", "/api/meetings")
    assert [m for m in body["meetings"] if m["title"] == title] == []

    # Neither node logged a secret: not in a message, its arguments, extras or a traceback.
    for record in caplog.records:
        text = f"{record.getMessage()} {record.__dict__!r} {record.exc_text or ''}"
        for secret in secrets:
            assert secret not in text, f"{record.name} logged a secret"
    assert not any(secret in caplog.text for secret in secrets)
    await child.close()
    await province.close()


@pytest.mark.timeout(240)
async def test_credential_revoked_while_the_link_was_down_shows_sites_the_level_above_refused(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    province = await _province(aiohttp_client, tmp_path)
    gate = TcpGate(province.client.server.port)
    gate_port = await gate.start()
    district = await start_child(
        aiohttp_client, tmp_path, province, "CM-NC", parent_url=f"http://127.0.0.1:{gate_port}"
    )
    await _linked(district)
    chair, site = await chair_and_site_live(
        province, district, "Thu hồi chứng thư khi đang họp", ["CM-NC"]
    )
    await site.wait_latest(lambda s: s["status"] == "live" and s["upper_level"] == "connected", 20)

    # The parent revokes the node while its link is down; the link comes back and is refused.
    await revoke(province.app[CTX], "CM-NC")
    gate.block()
    await site.wait_latest(lambda s: s["upper_level"] == "unreachable", 20)
    gate.unblock()
    state = await site.wait_latest(lambda s: s["upper_level"] == "refused", 45)
    assert state["status"] == "live"  # the meeting goes on below
    link = district.app[PARENT_LINK]
    assert (link.state, link.refusal) == ("refused", "bad_credential")
    assert not link.connected.is_set()
    for p in (chair, site):
        await p.close()
    await district.close()
    await province.close()
    await gate.close()


@pytest.mark.timeout(240)
async def test_a_silent_link_two_levels_down_shows_its_sites_offline_at_the_root(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    # Province → district → commune node; the commune node's uplink runs through a gate.
    province = await _province(aiohttp_client, tmp_path)
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    gate = TcpGate(district.client.server.port)
    gate_port = await gate.start()
    commune = await start_child(
        aiohttp_client, tmp_path, district, "CM-NC-HR", parent_url=f"http://127.0.0.1:{gate_port}"
    )
    await _linked(district, commune)
    chair, site = await chair_and_site_live(
        province, commune, "Mất tín hiệu hai cấp bên dưới", ["CM-NC"]
    )

    def hall(state: dict[str, Any]) -> dict[str, Any] | None:
        return next((s for s in state.get("sites", []) if s["unit"] == "CM-NC-HR"), None)

    def online(state: dict[str, Any]) -> bool | None:
        found = hall(state)
        return None if found is None else bool(found["online"])

    await chair.wait_latest(lambda s: online(s) is True, 30)
    # The commune node goes silent: the district sees its relay silent, and says so upward;
    # the chair sees the commune offline although its own link to the district is fine.
    gate.block()
    state = await chair.wait_latest(lambda s: online(s) is False, 15)
    assert [n["online"] for n in state["nodes"]] == [True]  # the district itself is linked
    found = hall(state)
    assert found is not None
    assert found["path"][-1] == "Xã Hàm Rồng"
    # The link comes back: so does the commune, at the root.
    gate.unblock()
    await chair.wait_latest(lambda s: online(s) is True, 30)
    for p in (chair, site):
        await p.close()
    for n in (commune, district, province):
        await n.close()
    await gate.close()
