"""The live meeting pages: who gets the chair console, a site page, or nothing."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from server.app import WEB_DIR
from server.http.live_pages import LIVE_STRINGS
from server.i18n import VI
from tests.conftest import Node, Session


def in_an_hour() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0).isoformat()


async def schedule(chair: Session, **invites: list[str]) -> int:
    status, body = await chair.call(
        "POST",
        "/api/meetings",
        {"title": "Hội nghị trực tuyến giao ban tháng", "starts_at": in_an_hour(), **invites},
    )
    assert status == 201, body
    return int(body["meeting"]["id"])


def i18n_block(page: str) -> dict[str, str]:
    found = re.search(r'<script type="application/json" id="i18n">(.*?)</script>', page, re.S)
    assert found, "the page carries its strings in a JSON block"
    strings: dict[str, str] = json.loads(found.group(1))
    return strings


async def test_chair_gets_console_and_invited_operator_gets_site_page(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])

    status, page = await chair.call("GET", f"/meetings/{mid}/live")
    assert status == 200
    assert 'data-role="chair"' in page
    assert "Bắt đầu họp" in page
    assert "/static/live/chair.js" in page
    assert i18n_block(page)["end_confirm"] == "Kết thúc cuộc họp cho tất cả các điểm cầu?"

    site = await node.login("kt.cm-nc-hr")
    status, page = await site.call("GET", f"/meetings/{mid}/live")
    assert status == 200
    assert 'data-role="site"' in page
    assert "Giơ tay xin phát biểu" in page
    assert "/static/live/site.js" in page
    assert i18n_block(page)["reconnecting"] == "Mất kết nối — đang kết nối lại…"


async def test_operator_of_commune_not_invited_gets_404(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    outside = await node.login("kt.cm-tvt-kb")
    status, page = await outside.call("GET", f"/meetings/{mid}/live")
    assert status == 404
    assert "Không tìm thấy cuộc họp." in page


async def test_visible_but_not_invited_gets_not_invited_page(node: Node) -> None:
    """The district operator sees a meeting inviting one of its communes, but is no site."""
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_units=["CM-NC-HR"])
    district = await node.login("kt.cm-nc")
    status, page = await district.call("GET", f"/meetings/{mid}/live")
    assert status == 403
    assert 'data-error-code="not_invited"' in page
    assert "không được mời" in page
    status, page = await district.call("GET", f"/meetings/{mid}")
    assert status == 200
    assert f"/meetings/{mid}/live" not in page


async def test_anonymous_is_sent_to_login(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    anonymous = await node.anonymous()
    resp = await anonymous.client.get(f"/meetings/{mid}/live", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"] == f"/login?next=/meetings/{mid}/live"


async def test_detail_page_offers_join_to_who_may_join(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    for username, offered in (("chutri", True), ("kt.cm-nc-hr", True), ("thuky", False)):
        session = chair if username == "chutri" else await node.login(username)
        status, page = await session.call("GET", f"/meetings/{mid}")
        assert status == 200
        assert (f'href="/meetings/{mid}/live"' in page) is offered, username
        assert ("Vào phòng họp" in page) is offered, username
    await chair.call("POST", f"/api/meetings/{mid}/cancel")
    _, page = await chair.call("GET", f"/meetings/{mid}")
    assert f'href="/meetings/{mid}/live"' not in page


async def test_live_pages_have_no_inline_script_or_style(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC"])
    site = await node.login("kt.cm-nc-tt")
    for session in (chair, site):
        _, page = await session.call("GET", f"/meetings/{mid}/live")
        assert not re.search(r"<[^>]+\sstyle=", page)
        assert not re.search(r"<[^>]+\son[a-z]+=", page)
        for tag in re.findall(r"<script[^>]*>", page):
            assert "src=" in tag or 'type="application/json"' in tag, tag


def test_every_live_string_has_vietnamese() -> None:
    missing = [text for text in LIVE_STRINGS.values() if text not in VI]
    assert missing == []


def test_every_string_of_the_live_templates_has_vietnamese() -> None:
    names = ["live_chair.html", "live_site.html", "live_overlay.html", "meeting_detail.html"]
    used: set[str] = set()
    for name in names:
        text = (WEB_DIR / "templates" / name).read_text(encoding="utf-8")
        used |= set(re.findall(r"""_\(\s*"([^"]+)"\s*\)""", text))
        used |= set(re.findall(r"""_\(\s*'([^']+)'\s*\)""", text))
    assert "Join the meeting" in used
    missing = sorted(text for text in used if text not in VI)
    assert missing == []
