"""Server-rendered pages: each renders for the users who may see it, in Vietnamese first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.conftest import Node


def soon() -> str:
    return (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0).isoformat()


async def test_admin_sees_unit_tree_and_user_list_pages(node: Node) -> None:
    admin = await node.login("quantri")
    status, html = await admin.call("GET", "/admin/units")
    assert status == 200, html
    assert "Huyện Năm Căn" in html
    assert "Xã Đất Mũi" in html
    status, html = await admin.call("GET", "/admin/users")
    assert status == 200, html
    assert "kt.cm-nc-hr" in html
    assert "Kỹ thuật điểm cầu Xã Hàm Rồng" in html


async def test_admin_form_errors_are_shown_next_to_the_field(node: Node) -> None:
    admin = await node.login("quantri")
    status, html = await admin.call(
        "POST",
        "/admin/units",
        data={
            "csrf_token": admin.csrf,
            "code": "bad code!",
            "name": "X",
            "level": "commune",
            "parent": "CM-NC",
        },
    )
    assert status == 400
    assert 'class="field-error"' in html


async def test_province_chair_editing_a_district_meeting_sees_the_district_as_host(
    node: Node,
) -> None:
    district_chair = await node.login("chutri.cm-nh")
    status, body = await district_chair.call(
        "POST",
        "/api/meetings",
        {"title": "Họp huyện Ngọc Hiển", "starts_at": soon(), "invited_units": ["CM-NH-DMU"]},
    )
    assert status == 201, body
    mid = body["meeting"]["id"]
    province_chair = await node.login("chutri")
    status, html = await province_chair.call("GET", f"/meetings/{mid}/edit")
    assert status == 200
    assert "Huyện Ngọc Hiển" in html
    # Only units under the host are offered, not the province chair's whole tree.
    assert 'value="CM-NH-DMU"' in html
    assert 'value="CM-NC-HR"' not in html


async def test_invalid_invited_unit_in_form_is_shown_at_the_invites(node: Node) -> None:
    chair = await node.login("chutri")
    local = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    status, html = await chair.call(
        "POST",
        "/meetings/new",
        data={
            "csrf_token": chair.csrf,
            "title": "Họp",
            "starts_at": local,
            "duration_minutes": "60",
            "invited_units": "NO-SUCH-UNIT",
        },
    )
    assert status == 400
    assert "NO-SUCH-UNIT" in html
    assert 'class="field-error"' in html


async def test_language_switch_shows_english_and_back(node: Node) -> None:
    chair = await node.login("chutri")
    status, html = await chair.call("GET", "/meetings")
    assert "Lên lịch cuộc họp" in html
    await chair.client.get("/lang/en?next=/meetings")
    status, html = await chair.call("GET", "/meetings")
    assert status == 200
    assert "Schedule a meeting" in html
