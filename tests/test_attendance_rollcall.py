"""A roll call over 30 sites across two district nodes (signaling-only sites: they join and
answer over ``/meeting``, without media), and calling sites one after another.

The province chair's tally per district must be right: who answered (with how many people),
who is connected and has not answered, who is not there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from server.demo.tree import commune_operators
from tests.conftest import Node, Session, Tree
from tests.live_helpers import (
    Participant,
    add_unit,
    local_meeting_id,
    schedule,
    start_as_chair,
)

# Communes added on both the province and the district node for the run (the demo tree has
# 8 in Năm Căn and 7 in Ngọc Hiển): with the two district halls, 30 sites.
EXTRA = {"CM-NC": 7, "CM-NH": 6}
ABSENT = {"CM-NH-X5", "CM-NH-X6"}  # never join
SILENT = {"CM-NC-X5", "CM-NC-X6", "CM-NC-X7"}  # join, do not answer


async def signaling_site(
    node: Node, operator: str, meeting_id: int, session: Session | None = None
) -> Participant:
    site = Participant(node, session or await node.login(operator))
    await site.connect()
    ack = await site.call("join", {"meeting_id": meeting_id})
    assert ack["ok"], (operator, ack)
    return site


@pytest.mark.timeout(240)
async def test_roll_call_over_thirty_sites_on_two_district_nodes_tallies_each_district(
    tree: Tree,
) -> None:
    operators: dict[str, tuple[str, str]] = {}  # unit -> (district, operator)
    for district, count in EXTRA.items():
        for n in range(1, count + 1):
            code = f"{district}-X{n}"
            for node in (tree.province, tree.districts[district]):
                await add_unit(
                    node, code, f"Xã Thử Nghiệm {n}", "commune", district, f"kt.{code.lower()}"
                )
            operators[code] = (district, f"kt.{code.lower()}")
        for op in commune_operators(district):
            operators[op.removeprefix("kt.").upper()] = (district, op)
        operators[district] = (district, f"kt.{district.lower()}")
    assert len(operators) == 30

    title = "Điểm danh ba mươi điểm cầu"
    chair_session = await tree.province.login("chutri")
    meeting_id = await schedule(chair_session, title=title, invited_subtrees=list(EXTRA))
    chair = await start_as_chair(tree.province, chair_session, meeting_id)
    await chair.wait_state(lambda s: s.get("roster", {}).get("expected") == 30, 20)

    local = {d: await local_meeting_id(tree.districts[d], f"kt.{d.lower()}", title) for d in EXTRA}
    present = {u: v for u, v in operators.items() if u not in ABSENT}
    sites: dict[str, Participant] = dict(
        zip(
            present,
            await asyncio.gather(
                *(signaling_site(tree.districts[d], op, local[d]) for d, op in present.values())
            ),
            strict=True,
        )
    )
    await chair.wait_state(lambda s: s["roster"]["present"] == 28, 30)

    started = await chair.call("roll_call_start")
    assert started["ok"], started
    roll_id = started["roll_call"]["id"]
    answers = {u: 10 + i for i, u in enumerate(sorted(present)) if u not in SILENT}

    async def answer(unit: str) -> None:
        site = sites[unit]
        await site.wait_state(lambda s: bool(s["roll_call"]) and s["roll_call"]["open"], 20)
        ack = await site.call("roll_call_answer", {"roll_call": roll_id, "count": answers[unit]})
        assert ack["ok"], (unit, ack)

    await asyncio.gather(*(answer(u) for u in answers))
    state = await chair.wait_state(
        lambda s: bool(s["roll_call"]) and s["roll_call"]["tally"]["answered"] == len(answers),
        30,
    )
    ended = await chair.call("roll_call_end")
    assert ended["ok"], ended
    tally: dict[str, Any] = ended["tally"]
    assert tally == state["roll_call"]["tally"]
    assert tally["answers"] == answers
    assert (tally["answered"], tally["waiting"], tally["offline"]) == (25, 3, 2)
    assert tally["head_count"] == sum(answers.values())
    for district in EXTRA:
        mine = {u for u, (d, _) in operators.items() if d == district and u != district}
        row = next(g for g in tally["groups"] if g["group"] == district and g["level"] == "commune")
        assert row["answered"] == len(mine & set(answers)), district
        assert row["waiting"] == len(mine & SILENT), district
        assert row["offline"] == len(mine & ABSENT), district
        assert row["head_count"] == sum(answers.get(u, 0) for u in mine), district
        hall = next(
            g for g in tally["groups"] if g["group"] == district and g["level"] == "district"
        )
        assert (hall["answered"], hall["head_count"]) == (1, answers[district])

    # Calling sites one after another, as on an MCU: the first connected site in the list
    # order, then the next; each is given the floor and every site hears it.
    order = [s["unit"] for s in state["roster"]["sites"] if s["state"] == "online"]
    first = await chair.call("call_site", {"step": "next"})
    assert first == {"ok": True, "unit": order[0]}
    second = await chair.call("call_site", {"step": "next"})
    assert second == {"ok": True, "unit": order[1]}
    await sites["CM-NC-X1"].wait_state(lambda s: (s["floor"] or {}).get("unit") == order[1], 20)
    back = await chair.call("call_site", {"step": "previous"})
    assert back == {"ok": True, "unit": order[0]}
    named = await chair.call("call_site", {"unit": "CM-NH-X1"})
    assert named == {"ok": True, "unit": "CM-NH-X1"}
    await sites["CM-NC-HR"].wait_state(lambda s: (s["floor"] or {}).get("unit") == "CM-NH-X1", 20)
    refused = await chair.call("call_site", {"unit": "CM-NH-X5"})
    assert refused["error"] == "unknown_site"
    both = await chair.call("call_site", {"unit": "CM-NH-X1", "step": "next"})
    assert both["error"] == "bad_request"
    for s in (chair, *sites.values()):
        await s.close()


@pytest.mark.timeout(60)
async def test_two_roll_call_starts_at_once_open_one(node: Node) -> None:
    chair_session = await node.login("chutri")
    meeting_id = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await signaling_site(node, "chutri", meeting_id)
    assert (await chair.call("start"))["ok"]
    answers = await asyncio.gather(*(chair.call("roll_call_start") for _ in range(4)))
    assert sorted(a.get("error", "ok") for a in answers) == ["ok"] + ["roll_call_open"] * 3
    ends = await asyncio.gather(*(chair.call("roll_call_end") for _ in range(3)))
    assert sorted(a.get("error", "ok") for a in ends) == ["no_roll_call"] * 2 + ["ok"]
    again = await chair.call("roll_call_start")
    assert again["roll_call"]["number"] == 2
    await chair.close()
