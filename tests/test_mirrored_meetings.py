"""A meeting mirrored from the parent node is run by the parent: nobody on the child edits or
cancels it (a change there would be undone by the next mirror, or differ from the parent).

A real province node and its district node: the province's chair also has an account on
the district (the demo tree is on both) and may manage province meetings by rank, yet the
district refuses with ``409 meeting_mirrored`` on the API and the pages, and its detail page
shows no edit or cancel button. The district's own meetings stay the district's to change.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from server.cascade.parent_link import PARENT_LINK
from server.i18n import ERRORS_VI
from tests.conftest import Node, Session, start_node
from tests.live_helpers import ClientFactory, local_meeting_id, schedule, start_child

MIRRORED = "meeting_mirrored"


async def province_and_district(aiohttp_client: ClientFactory, tmp_path: Path) -> tuple[Node, Node]:
    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    district = await start_child(aiohttp_client, tmp_path, province, "CM-NC")
    await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), 15)
    return province, district


async def form_post(session: Session, path: str, data: dict[str, str]) -> tuple[int, str]:
    resp = await session.client.post(
        path, data={"csrf_token": session.csrf, **data}, allow_redirects=False
    )
    return resp.status, await resp.text()


def error_code(html: str) -> str | None:
    found = re.search(r'data-error-code="([^"]+)"', html)
    return found.group(1) if found else None


async def meeting(session: Session, mid: int) -> dict[str, Any]:
    status, body = await session.call("GET", f"/api/meetings/{mid}")
    assert status == 200, body
    found: dict[str, Any] = body["meeting"]
    return found


async def test_nobody_on_the_child_edits_or_cancels_a_meeting_mirrored_from_the_parent(
    aiohttp_client: ClientFactory, tmp_path: Path
) -> None:
    province, district = await province_and_district(aiohttp_client, tmp_path)
    title = "Họp tỉnh, không sửa ở huyện"
    parent_id = await schedule(
        await province.login("chutri"), title=title, invited_subtrees=["CM-NC"]
    )
    local_id = await local_meeting_id(district, "kt.cm-nc-hr", title)

    # The province's chair, logged in on the district node: by rank a chair of the host unit.
    chair = await district.login("chutri")
    before = await meeting(chair, local_id)
    assert before["origin"] is not None
    status, body = await chair.call("PATCH", f"/api/meetings/{local_id}", {"title": "Đổi ở huyện"})
    assert (status, body["error"]) == (409, MIRRORED), body
    assert body["message"] == "This meeting is run by the node above; change it there."
    status, body = await chair.call("POST", f"/api/meetings/{local_id}/cancel")
    assert (status, body["error"]) == (409, MIRRORED), body

    # The pages: no button on the detail page; the edit form and both posts refused.
    detail = await chair.client.get(f"/meetings/{local_id}")
    html = await detail.text()
    assert detail.status == 200
    assert f'href="/meetings/{local_id}/edit"' not in html
    assert f'action="/meetings/{local_id}/cancel"' not in html
    assert 'id="mirrored-note"' in html
    edit = await chair.client.get(f"/meetings/{local_id}/edit", cookies={"hoinghi_lang": "vi"})
    html = await edit.text()
    assert (edit.status, error_code(html)) == (409, MIRRORED)
    assert ERRORS_VI[MIRRORED] in html
    status, html = await form_post(
        chair,
        f"/meetings/{local_id}/edit",
        {"title": "Đổi ở huyện", "starts_at": "2030-01-01T08:00", "duration_minutes": "60"},
    )
    assert (status, error_code(html)) == (409, MIRRORED)
    status, html = await form_post(chair, f"/meetings/{local_id}/cancel", {})
    assert (status, error_code(html)) == (409, MIRRORED)

    # Nothing changed, here or above.
    after = await meeting(chair, local_id)
    assert (after["title"], after["status"]) == (title, "scheduled")
    above = await meeting(await province.login("chutri"), parent_id)
    assert (above["title"], above["status"]) == (title, "scheduled")

    # The district's own meeting is still the district's to change.
    own_chair = await district.login("chutri.cm-nc")
    own_id = await schedule(own_chair, title="Họp huyện", invited_subtrees=["CM-NC-HR"])
    detail = await own_chair.client.get(f"/meetings/{own_id}")
    html = await detail.text()
    assert f'href="/meetings/{own_id}/edit"' in html
    assert 'id="mirrored-note"' not in html
    status, body = await own_chair.call(
        "PATCH", f"/api/meetings/{own_id}", {"title": "Họp huyện 2"}
    )
    assert status == 200, body
    status, body = await own_chair.call("POST", f"/api/meetings/{own_id}/cancel")
    assert status == 200, body
