"""Scheduling across the unit tree: who sees a meeting, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Node


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()


async def test_commune_under_invited_district_sees_meeting_third_district_does_not(
    any_node: Node,
) -> None:
    chair = await any_node.login("chutri")
    status, body = await chair.call(
        "POST",
        "/api/meetings",
        {
            "title": "Hội nghị triển khai nhiệm vụ năm 2027",
            "starts_at": tomorrow(),
            "invited_subtrees": ["CM-NC", "CM-NH"],
        },
    )
    assert status == 201, body
    meeting = body["meeting"]
    assert meeting["invited_subtrees"] == ["CM-NC", "CM-NH"]
    assert "CM-NC-HR" in meeting["sites"]
    assert "CM-NH-DMU" in meeting["sites"]
    assert "CM-TVT-KB" not in meeting["sites"]

    inside = await any_node.login("kt.cm-nc-hr")
    status, body = await inside.call("GET", "/api/meetings")
    assert status == 200
    assert [m["id"] for m in body["meetings"]] == [meeting["id"]]
    status, _ = await inside.call("GET", f"/api/meetings/{meeting['id']}")
    assert status == 200

    outside = await any_node.login("kt.cm-tvt-kb")
    status, body = await outside.call("GET", "/api/meetings")
    assert status == 200
    assert body["meetings"] == []
    status, body = await outside.call("GET", f"/api/meetings/{meeting['id']}")
    assert status == 404
    assert body["error"] == "meeting_not_found"


async def test_chair_edits_then_cancels_and_cancelled_meeting_cannot_change(any_node: Node) -> None:
    chair = await any_node.login("chutri")
    _, body = await chair.call(
        "POST",
        "/api/meetings",
        {"title": "Họp giao ban", "starts_at": tomorrow(), "invited_units": ["CM-NC-HR"]},
    )
    mid = body["meeting"]["id"]
    status, body = await chair.call(
        "PATCH",
        f"/api/meetings/{mid}",
        {"title": "Họp giao ban tháng 12", "invited_units": ["CM-NC-HR", "CM-TVT-KB"]},
    )
    assert status == 200, body
    assert body["meeting"]["title"] == "Họp giao ban tháng 12"
    assert body["meeting"]["sites"] == ["CM-NC-HR", "CM-TVT-KB"]

    # The newly invited commune now sees it; a sibling commune does not.
    kb = await any_node.login("kt.cm-tvt-kb")
    assert (await kb.call("GET", f"/api/meetings/{mid}"))[0] == 200
    khai = await any_node.login("kt.cm-tvt-kh")
    assert (await khai.call("GET", f"/api/meetings/{mid}"))[0] == 404

    status, body = await chair.call("POST", f"/api/meetings/{mid}/cancel")
    assert status == 200
    assert body["meeting"]["status"] == "cancelled"
    status, body = await chair.call("PATCH", f"/api/meetings/{mid}", {"title": "x"})
    assert status == 409
    assert body["error"] == "meeting_not_editable"
