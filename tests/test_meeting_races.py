"""Parallel changes of one meeting, through the API and the forms, on SQLite and PostgreSQL:
each change applies whole or is refused with 409 ``conflict``; never a merge, never a 500."""

from __future__ import annotations

import asyncio
import sqlite3
from typing import Any

from sqlalchemy.engine import make_url

from server.state import CTX
from tests.conftest import Node, Session
from tests.live_helpers import Participant, schedule

# Communes of Huyện Năm Căn and Huyện Ngọc Hiển in the demo tree, under the province chair.
COMMUNES = ["CM-NC-HR", "CM-NC-TT", "CM-NC-HV", "CM-NH-DMU", "CM-NH-TA", "CM-NH-VA"]


def invite_lists(count: int) -> list[list[str]]:
    """``count`` different lists of invited units, none a subset of another."""
    return [[COMMUNES[i % len(COMMUNES)], COMMUNES[(i + 1) % len(COMMUNES)]] for i in range(count)]


def refused_as_conflict(status: int, body: Any) -> bool:
    return status == 409 and body["error"] in ("conflict", "meeting_not_editable")


async def stored(chair: Session, mid: int) -> dict[str, Any]:
    status, body = await chair.call("GET", f"/api/meetings/{mid}")
    assert status == 200, body
    return dict(body["meeting"])


async def test_parallel_edits_of_one_meeting_store_exactly_one_of_the_lists(
    any_node: Node,
) -> None:
    chair = await any_node.login("chutri")
    for _round in range(3):
        mid = await schedule(chair, invited_units=["CM-NC"])
        lists = invite_lists(8)
        answers = await asyncio.gather(
            *(
                chair.call("PATCH", f"/api/meetings/{mid}", {"invited_units": units})
                for units in lists
            )
        )
        for status, body in answers:
            assert status == 200 or refused_as_conflict(status, body), (status, body)
        won = [sorted(units) for units, (status, _) in zip(lists, answers, strict=True)]
        won = [units for units, (status, _) in zip(won, answers, strict=True) if status == 200]
        assert won, answers
        final = await stored(chair, mid)
        assert final["invited_units"] in won, (final["invited_units"], won)


async def test_parallel_edits_over_five_meetings_give_no_server_error(any_node: Node) -> None:
    chair = await any_node.login("chutri")
    mids = [await schedule(chair, invited_units=["CM-NC"]) for _ in range(5)]
    lists = invite_lists(20)
    requests = [(mids[i % 5], units) for i, units in enumerate(lists)]
    answers = await asyncio.gather(
        *(
            chair.call(
                "PATCH",
                f"/api/meetings/{mid}",
                {"invited_units": units, "title": f"Giao ban {'-'.join(units)}"},
            )
            for mid, units in requests
        )
    )
    for status, body in answers:
        assert status == 200 or refused_as_conflict(status, body), (status, body)
    for mid in mids:
        applied = [
            sorted(units)
            for (m, units), (status, _) in zip(requests, answers, strict=True)
            if m == mid and status == 200
        ]
        final = await stored(chair, mid)
        assert final["invited_units"] in applied, (mid, final, applied)
        # Title and invitations of one request, never a mix of two.
        assert final["title"] == f"Giao ban {'-'.join(final['invited_units'])}" or (
            final["title"] == f"Giao ban {'-'.join(reversed(final['invited_units']))}"
        )


async def test_a_cancelled_meeting_is_never_changed_by_an_edit_racing_the_cancel(
    any_node: Node,
) -> None:
    chair = await any_node.login("chutri")
    for _round in range(4):
        mid = await schedule(chair, title="Trước khi sửa", invited_units=["CM-NC"])
        lists = invite_lists(6)
        edits = [
            chair.call("PATCH", f"/api/meetings/{mid}", {"title": f"Sửa {i}", "invited_units": u})
            for i, u in enumerate(lists)
        ]
        cancel_at = _round % len(edits)  # the cancel goes out among the edits, not first
        calls = [
            *edits[:cancel_at],
            chair.call("POST", f"/api/meetings/{mid}/cancel"),
            *edits[cancel_at:],
        ]
        answers = await asyncio.gather(*calls)
        for status, body in answers:
            assert status == 200 or refused_as_conflict(status, body), (status, body)
        cancel_status, cancel_body = answers[cancel_at]
        final = await stored(chair, mid)
        if cancel_status == 200:
            # What the cancel answered is what is stored: nothing changed it afterwards.
            assert final["status"] == "cancelled"
            assert final == {**cancel_body["meeting"], "can_manage": False}, (final, cancel_body)
        else:
            assert final["status"] == "scheduled"
        assert final["title"] == "Trước khi sửa" or final["title"].startswith("Sửa ")
        if final["title"] != "Trước khi sửa":
            index = int(final["title"].removeprefix("Sửa "))
            assert final["invited_units"] == sorted(lists[index])


async def test_parallel_form_edits_of_one_meeting_apply_one_whole_form(any_node: Node) -> None:
    chair = await any_node.login("chutri")
    mid = await schedule(chair, invited_units=["CM-NC"])
    lists = invite_lists(6)

    async def submit(i: int, units: list[str]) -> tuple[int, str]:
        resp = await chair.client.post(
            f"/meetings/{mid}/edit",
            data=[
                ("csrf_token", chair.csrf),
                ("title", f"Biểu mẫu {i}"),
                ("description", ""),
                ("starts_at", "2099-01-01T08:00"),
                ("duration_minutes", "90"),
                *(("invited_units", u) for u in units),
            ],
            allow_redirects=False,
        )
        return resp.status, await resp.text()

    answers = await asyncio.gather(*(submit(i, u) for i, u in enumerate(lists)))
    for status, text in answers:
        assert status in (303, 409), (status, text[:500])
    assert any(status == 303 for status, _ in answers)
    final = await stored(chair, mid)
    index = int(final["title"].removeprefix("Biểu mẫu "))
    assert answers[index][0] == 303
    assert final["invited_units"] == sorted(lists[index])


async def test_a_start_racing_a_cancel_never_reopens_the_cancelled_meeting(
    any_node: Node,
) -> None:
    chair = await any_node.login("chutri")
    for _round in range(4):
        mid = await schedule(chair, title="Giao ban", invited_units=["CM-NC"])
        console = Participant(any_node, chair)
        await console.connect()
        try:
            joined = await console.call("join", {"meeting_id": mid})
            assert joined["ok"], joined
            cancel, started = await asyncio.gather(
                chair.call("POST", f"/api/meetings/{mid}/cancel"), console.call("start")
            )
        finally:
            await console.close()
        status, body = cancel
        assert status == 200 or refused_as_conflict(status, body), cancel
        final = await stored(chair, mid)
        # Exactly one of the two took effect, and what is stored says which.
        assert (status == 200) != bool(started["ok"]), (cancel, started)
        assert final["status"] == ("cancelled" if status == 200 else "live"), (final, cancel)


async def test_a_change_waiting_too_long_for_the_sqlite_lock_answers_409_not_500(
    node: Node,
) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_units=["CM-NC"])
    path = make_url(str(node.app[CTX].settings.effective_database_url)).database
    assert path is not None
    # Another process holds SQLite's write lock past the node's busy timeout (5 s).
    blocker = sqlite3.connect(path, timeout=1, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        status, body = await chair.call("PATCH", f"/api/meetings/{mid}", {"title": "Chờ khoá"})
        assert (status, body["error"]) == (409, "conflict"), body
        status, body = await chair.call("POST", f"/api/meetings/{mid}/cancel")
        assert (status, body["error"]) == (409, "conflict"), body
        guest = await node.anonymous()
        await guest.fetch_csrf()
        status, body = await guest.call(
            "POST", "/api/login", {"username": "thuky", "password": "sai-mat-khau"}
        )
        assert (status, body["error"]) == (409, "conflict"), body
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    status, body = await chair.call("PATCH", f"/api/meetings/{mid}", {"title": "Sau khi chờ"})
    assert status == 200, body
    assert body["meeting"]["title"] == "Sau khi chờ"
