"""The right door: users whose unit another node serves are shown a link to that node."""

from __future__ import annotations

import asyncio
import html
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient
from sqlalchemy import select

from server import auth
from server.cascade.nodes import issue_credential, revoke
from server.cascade.parent_link import PARENT_LINK
from server.models import Role, Unit, User
from server.state import CTX
from tests.conftest import Node, Session, start_node
from tests.test_auth import page_csrf

ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]
DISTRICT_URL = "http://district.example:8443"  # only a string: never contacted
NC_MESSAGE = "Điểm cầu của bạn (Xã Hàm Rồng) được phục vụ bởi nút Huyện Năm Căn. Vui lòng mở:"


async def form_login(session: Session, username: str, next_path: str) -> str:
    """Log in through the page; the Location the login answer sends the browser to."""
    page = await session.client.get("/login")
    resp = await session.client.post(
        "/login",
        data={
            "csrf_token": page_csrf(await page.text()),
            "username": username,
            "password": "hoinghi-demo",
            "next": next_path,
        },
        allow_redirects=False,
    )
    assert resp.status == 303, await resp.text()
    return resp.headers["Location"]


async def served_by(session: Session) -> Any:
    status, body = await session.call("GET", "/api/me")
    assert status == 200, body
    return body["served_by"]


async def meeting_list(session: Session) -> str:
    status, page = await session.call("GET", "/meetings")
    assert status == 200
    assert isinstance(page, str)
    return html.unescape(page)


async def register_nc(node: Node) -> None:
    await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], DISTRICT_URL)


async def add_user(node: Node, username: str, role: Role, unit_code: str) -> None:
    ctx = node.app[CTX]
    async with ctx.sessionmaker() as db, db.begin():
        unit = (await db.execute(select(Unit).where(Unit.code == unit_code))).scalar_one()
        db.add(
            User(
                username=username,
                full_name=username,
                role=role,
                unit_id=unit.id,
                password_hash=await auth.hash_password(ctx, "hoinghi-demo"),
                active=True,
            )
        )


async def test_commune_operator_is_sent_to_the_registered_district_node(node: Node) -> None:
    await register_nc(node)
    session = await node.anonymous()
    # After login the operator lands on the page naming their node, whatever "next" said.
    assert await form_login(session, "kt.cm-nc-hr", "/meetings/1") == "/meetings"
    page = await meeting_list(session)
    assert NC_MESSAGE in page
    assert f'class="btn btn-primary btn-big door-link" href="{DISTRICT_URL}/"' in page
    assert "Lên lịch cuộc họp" not in page
    assert 'class="meetings"' not in page
    assert await served_by(session) == {"node": "CM-NC", "url": DISTRICT_URL}

    # The district's chair too; English through the language switch.
    chair = await node.login("chutri.cm-nc")
    assert await served_by(chair) == {"node": "CM-NC", "url": DISTRICT_URL}
    chair.client.session.cookie_jar.update_cookies({"hoinghi_lang": "en"})
    page = await meeting_list(chair)
    assert "Your site (Huyện Năm Căn) is served by the node of Huyện Năm Căn. Please open:" in page
    assert f'href="{DISTRICT_URL}/"' in page


async def test_units_without_a_child_node_and_admins_stay(node: Node) -> None:
    await register_nc(node)
    await add_user(node, "quantri.cm-nc-hr", Role.ADMIN, "CM-NC-HR")
    for username in ("kt.cm-tvt-kb", "quantri", "quantri.cm-nc-hr", "chutri"):
        session = await node.anonymous()
        assert await form_login(session, username, "/meetings/1") == "/meetings/1", username
        assert await served_by(session) is None, username
        page = await meeting_list(session)
        assert "<h1>Cuộc họp</h1>" in page, username
        assert "door-link" not in page, username
        assert DISTRICT_URL not in page, username


async def test_revoked_or_url_less_node_sends_nobody(node: Node) -> None:
    await register_nc(node)
    session = await node.login("kt.cm-nc-hr")
    assert await served_by(session) is not None
    await revoke(node.app[CTX], "CM-NC")
    assert await served_by(session) is None
    assert "<h1>Cuộc họp</h1>" in await meeting_list(session)
    # Re-registered without a URL: there is nowhere to send them.
    await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], "")
    assert await served_by(session) is None


async def test_child_node_sends_users_outside_its_units_to_the_parent(
    aiohttp_client: ClientFactory, tmp_path: Path, node: Node
) -> None:
    province = node
    province_url = f"http://127.0.0.1:{province.client.server.port}"
    credential = await issue_credential(province.app[CTX], "CM-NC", ["CM-NC"], "")
    path = tmp_path / "cm-nc"
    path.mkdir()
    child = await start_node(
        aiohttp_client,
        path,
        f"sqlite+aiosqlite:///{path / 'node.sqlite3'}",
        parent_url=province_url,
        parent_credential=credential,
        served_units=["CM-NC"],
    )
    try:
        await asyncio.wait_for(child.app[PARENT_LINK].connected.wait(), 15)
        outsider = await child.anonymous()
        assert await form_login(outsider, "kt.cm-nh-dmu", "/") == "/meetings"
        assert await served_by(outsider) == {"node": "parent", "url": province_url}
        page = await meeting_list(outsider)
        assert "Điểm cầu của bạn (Xã Đất Mũi) được phục vụ bởi nút cấp trên. Vui lòng mở:" in page
        assert f'class="btn btn-primary btn-big door-link" href="{province_url}/"' in page
        # The province's chair is outside too; its own operators and the admin stay.
        chair = await child.login("chutri")
        assert await served_by(chair) == {"node": "parent", "url": province_url}
        for username in ("kt.cm-nc-hr", "chutri.cm-nc", "quantri"):
            session = await child.login(username)
            assert await served_by(session) is None, username
            assert "<h1>Cuộc họp</h1>" in await meeting_list(session), username
    finally:
        await child.close()
