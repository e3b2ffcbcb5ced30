"""What docs/protocol.md section 1 tells a python-socketio client, checked against the
installed library: a Cookie in a headers dict is lost on reconnect (and the reconnect loop
keeps retrying the refused namespace), a headers function keeps it. If a new python-socketio
changes either, this fails: update the document."""

from __future__ import annotations

from typing import Any

import socketio

from tests.conftest import Node
from tests.live_helpers import wait_for


async def cookie_of(node: Node) -> str:
    session = await node.login("kt.cm-nc-hr")
    return "; ".join(f"{c.key}={c.value}" for c in session.client.session.cookie_jar)


async def reconnect(node: Node, headers: Any) -> tuple[socketio.AsyncClient, list[Any]]:
    """Connect, then drop the websocket under the client so that it reconnects by itself."""
    sio = socketio.AsyncClient(reconnection_delay=0.2, reconnection_delay_max=0.5)
    refusals: list[Any] = []
    sio.on("connect_error", refusals.append, namespace="/meeting")
    url = f"http://127.0.0.1:{node.client.server.port}"
    await sio.connect(url, namespaces=["/meeting"], headers=headers, wait_timeout=10)
    first_sid = sio.get_sid("/meeting")
    await sio.eio.ws.close()
    await wait_for(lambda: not sio.connected or sio.get_sid("/meeting") != first_sid, 15)
    return sio, refusals


async def test_a_cookie_in_a_headers_dict_is_lost_and_the_refusal_retried(node: Node) -> None:
    headers = {"Cookie": await cookie_of(node)}
    sio, refusals = await reconnect(node, headers)
    try:
        assert "Cookie" not in headers  # the library took it out of the caller's dict
        await wait_for(lambda: len(refusals) >= 2, 20, "two refused reconnects")
        assert all(r["data"]["error"] == "not_authenticated" for r in refusals), refusals
        assert not sio.connected
    finally:
        await sio.disconnect()


async def test_a_headers_function_keeps_the_cookie_across_reconnects(node: Node) -> None:
    cookie = await cookie_of(node)
    sio, refusals = await reconnect(node, lambda: {"Cookie": cookie})
    try:
        await wait_for(lambda: sio.connected and "/meeting" in sio.namespaces, 20, "reconnect")
        assert refusals == []
        ack = await sio.call("leave", {}, namespace="/meeting", timeout=10)
        assert ack["ok"], ack
    finally:
        await sio.disconnect()
