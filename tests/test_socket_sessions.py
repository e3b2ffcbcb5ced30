"""A /meeting socket lives no longer than its login session (server/sockets/guard.py).

Each test opens real sockets on a real served node, ends the session the way a user or an
administrator would (or lets it expire), and checks the socket is told ``session_ended``
with the reason, is disconnected, and its participant has left the meeting.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import socketio
from aiohttp import web
from sqlalchemy import delete, select, update

from server.auth import SESSION_COOKIE, _token_hash
from server.cascade.nodes import ended_links, issue_credential, list_nodes, revoke
from server.models import Meeting, MeetingStatus, Session, User, utcnow
from server.sockets import sessions as socket_sessions
from server.state import CTX
from tests.conftest import Node, migrated_app
from tests.live_helpers import wait_for
from tests.test_auth import page_csrf
from tests.test_signaling import (  # noqa: F401  (connect is a fixture)
    NS,
    WAIT,
    Connect,
    Link,
    connect,
    schedule,
    session_cookie,
)

SITE = "kt.cm-nc-hr"


async def user_id(node: Node, username: str) -> int:
    async with node.app[CTX].sessionmaker() as db:
        found = await db.scalar(select(User.id).where(User.username == username))
    assert found is not None
    return int(found)


def watch_session_end(link: Link) -> list[Any]:
    told: list[Any] = []
    link.sio.on("session_ended", told.append, namespace=NS)
    return told


async def told_and_closed(link: Link, told: list[Any], reason: str) -> None:
    await wait_for(lambda: bool(told), WAIT, f"session_ended ({reason})")
    assert told == [{"reason": reason}]
    await wait_for(lambda: not link.sio.connected, WAIT, "the socket closed by the node")


async def admin_patch(node: Node, username: str, patch: dict[str, Any]) -> None:
    admin = await node.login("quantri")
    status, body = await admin.call("PATCH", f"/api/users/{await user_id(node, username)}", patch)
    assert status == 200, body


Ending = Callable[[Node, Any], Awaitable[None]]


async def api_logout(node: Node, session: Any) -> None:
    status, body = await session.call("POST", "/api/logout")
    assert status == 200, body


async def page_logout(node: Node, session: Any) -> None:
    page = await session.client.get("/meetings")
    csrf = page_csrf(await page.text())
    resp = await session.client.post("/logout", data={"csrf_token": csrf}, allow_redirects=False)
    assert resp.status == 303


async def expire(node: Node, session: Any) -> None:
    token_hash = _token_hash(session_cookie(session))
    async with node.app[CTX].sessionmaker() as db, db.begin():
        await db.execute(
            update(Session)
            .where(Session.token_hash == token_hash)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )


ENDINGS: dict[str, tuple[Ending, str]] = {
    "api_logout": (api_logout, "logged_out"),
    "logout_page": (page_logout, "logged_out"),
    "disabled": (lambda n, _s: admin_patch(n, SITE, {"active": False}), "disabled"),
    "password_reset": (
        lambda n, _s: admin_patch(n, SITE, {"password": "a-new-password-1"}),
        "password_changed",
    ),
    "role_changed": (lambda n, _s: admin_patch(n, SITE, {"role": "secretary"}), "role_changed"),
    "unit_changed": (lambda n, _s: admin_patch(n, SITE, {"unit": "CM-NC-TT"}), "unit_changed"),
    "expired": (expire, "expired"),
}


@pytest.mark.parametrize("how", list(ENDINGS))
async def test_site_socket_is_told_session_ended_and_closed_and_leaves_the_meeting(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
    how: str,
) -> None:
    end, reason = ENDINGS[how]
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await connect(chair_session)
    await chair.ok("join", {"meeting_id": mid})
    session = await node.login(SITE)
    site = await connect(session)
    idle = await connect(session)  # a second socket of the same session, not in a meeting
    told, told_idle = watch_session_end(site), watch_session_end(idle)
    await site.ok("join", {"meeting_id": mid})
    await chair.state_where(lambda s: [x["unit"] for x in s["sites"]] == ["CM-NC-HR"], "joined")
    await end(node, session)
    await told_and_closed(site, told, reason)
    await told_and_closed(idle, told_idle, reason)
    await chair.state_where(lambda s: s["sites"] == [], "the site gone from the chair's list")
    # The chair's own session is untouched.
    assert chair.sio.connected
    await chair.ok("start")


async def test_disabled_chair_can_no_longer_end_or_join(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await connect(chair_session)
    await chair.ok("join", {"meeting_id": mid})
    site = await connect(await node.login(SITE))
    await site.ok("join", {"meeting_id": mid})
    await chair.ok("start")
    told = watch_session_end(chair)
    # Disabled behind this process's back (as another node process would), then `end` at
    # once: the chair's socket re-checks its session before ending a meeting.
    async with node.app[CTX].sessionmaker() as db, db.begin():
        await db.execute(update(User).where(User.username == "chutri").values(active=False))
    try:
        ack: Any = await chair.sio.call("end", {}, namespace=NS, timeout=WAIT)
    except (TimeoutError, socketio.exceptions.SocketIOError):
        ack = None  # closed before the refusal reached it: refused all the same
    assert ack is None or ack["error"] == "not_authenticated", ack
    await told_and_closed(chair, told, "disabled")
    await site.state_where(lambda s: s["chair_present"] is False, "the chair gone")
    async with node.app[CTX].sessionmaker() as db:
        meeting = await db.get(Meeting, mid)
    assert meeting is not None
    assert meeting.status is MeetingStatus.LIVE  # not ended by the disabled chair
    assert site.ended == []
    # Its cookie opens no new socket, so it cannot join again either.
    await connect(chair_session, refused=True)


async def test_session_ended_on_another_node_process_closes_the_socket_here(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    """Two node processes on one database: a logout through the other one (which cannot
    reach this process's sockets) still closes the socket here, from the database alone."""
    other = await migrated_app(node.app[CTX].settings)
    runner = web.AppRunner(other)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        session = await node.login(SITE)
        link = await connect(session)
        told = watch_session_end(link)
        port = runner.addresses[0][1]
        sio = socketio.AsyncClient(reconnection=False)  # this user on the other process too
        told_there: list[Any] = []
        sio.on("session_ended", told_there.append, namespace=NS)
        await sio.connect(
            f"http://127.0.0.1:{port}",
            headers={"Cookie": f"{SESSION_COOKIE}={session_cookie(session)}"},
            namespaces=[NS],
            transports=["websocket"],
            wait_timeout=WAIT,
        )
        # Log out through the other process: the node under test hears of it only from the
        # database.
        async with other[CTX].sessionmaker() as db, db.begin():
            await db.execute(
                delete(Session).where(Session.token_hash == _token_hash(session_cookie(session)))
            )
        other[CTX].sessions_changed()
        await told_and_closed(link, told, "logged_out")
        await wait_for(lambda: not sio.connected, WAIT, "the other process's socket closed")
        assert told_there == [{"reason": "logged_out"}]
    finally:
        await runner.cleanup()


async def test_the_guards_one_query_reads_sessions_and_credentials_on_each_backend(
    any_node: Node,
) -> None:
    """The guards' queries themselves, on SQLite and PostgreSQL: a held session and a
    current credential end nothing; a logout, a disabled account and a revoked or replaced
    credential are named."""
    ctx = any_node.app[CTX]
    held = await any_node.login("chutri")
    gone = await any_node.login(SITE)
    disabled = await any_node.login("kt.cm-nc-tt")
    tickets = {}
    for sid, session in (("held", held), ("gone", gone), ("disabled", disabled)):
        found = await socket_sessions.open_ticket(ctx, session_cookie(session))
        assert found is not None
        tickets[sid] = found[1]
    await api_logout(any_node, gone)
    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(update(User).where(User.username == "kt.cm-nc-tt").values(active=False))
    assert await socket_sessions.ended(ctx, tickets) == {
        "gone": "logged_out",
        "disabled": "disabled",
    }

    await issue_credential(ctx, "CM-NC", ["CM-NC"], "")
    await issue_credential(ctx, "CM-NH", ["CM-NH"], "")
    links = {info.code: info for info in await list_nodes(ctx)}
    assert await ended_links(ctx, links) == {}
    await revoke(ctx, "CM-NC")
    await issue_credential(ctx, "CM-NH", ["CM-NH"], "")
    assert await ended_links(ctx, links) == {"CM-NC": "revoked", "CM-NH": "credential_replaced"}
