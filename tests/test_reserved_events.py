"""Event names socket.io reserves for itself (``connect``, ``disconnect``) sent by a client.

python-socketio hands the namespace a client's event and its own connection events through
the same door, so a client that emitted ``connect`` with a cookie in its payload could
re-identify its socket, and one that emitted ``disconnect`` could leave a meeting as if its
socket had closed. Both namespaces must answer them ``unknown_event`` and change nothing.
"""

from __future__ import annotations

from typing import Any

import socketio

from server.auth import SESSION_COOKIE
from server.cascade.nodes import issue_credential
from server.state import CTX
from tests.conftest import Node
from tests.test_signaling import (  # noqa: F401  (connect is a fixture)
    WAIT,
    Connect,
    connect,
    schedule,
    session_cookie,
)

RESERVED = ("connect", "disconnect")


def is_unknown_event(ack: Any) -> bool:
    return isinstance(ack, dict) and ack.get("ok") is False and ack["error"] == "unknown_event"


async def test_meeting_socket_cannot_become_another_user_or_fake_its_disconnect(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await connect(chair_session)
    await chair.ok("join", {"meeting_id": mid})
    operator = await connect(await node.login("kt.cm-nc-hr"))
    # The chair's cookie in a client-sent "connect", shaped like the handshake's environ.
    forged = {"HTTP_COOKIE": f"{SESSION_COOKIE}={session_cookie(chair_session)}"}
    for payload in (forged, {}, None, "x"):
        ack = await operator.sio.call("connect", payload, namespace="/meeting", timeout=WAIT)
        assert is_unknown_event(ack), (payload, ack)
        assert "connect" in ack["message"]
    # Still the operator: it joins as a site, never as the chair.
    ack = await operator.ok("join", {"meeting_id": mid})
    assert (ack["role"], ack["unit"]) == ("site", "CM-NC-HR")
    await chair.state_where(lambda s: [x["unit"] for x in s["sites"]] == ["CM-NC-HR"], "joined")
    for payload in ("client namespace disconnect", {}, None):
        ack = await operator.sio.call("disconnect", payload, namespace="/meeting", timeout=WAIT)
        assert is_unknown_event(ack), (payload, ack)
    # Nothing left: the site is still joined and its events still work.
    await operator.ok("devices", {"mic_on": False, "camera_on": True})
    state = await chair.state_where(
        lambda s: [(x["unit"], x["mic_on"]) for x in s["sites"]] == [("CM-NC-HR", False)],
        "the site still joined, microphone off",
    )
    assert state["chair_present"] is True
    await chair.ok("start")  # and the chair is still the chair


async def test_node_socket_answers_reserved_names_unknown_event_and_stays_linked(
    node: Node,
) -> None:
    credential = await issue_credential(node.app[CTX], "CM-NC", ["CM-NC"], "")
    other = await issue_credential(node.app[CTX], "CM-NH", ["CM-NH"], "")
    sio = socketio.AsyncClient(reconnection=False)
    url = f"http://127.0.0.1:{node.client.server.port}"
    await sio.connect(
        url,
        namespaces=["/node"],
        transports=["websocket"],
        auth={"credential": credential},
        wait_timeout=WAIT,
    )
    try:
        hello = await sio.call("hello", {"units": ["CM-NC"]}, namespace="/node", timeout=WAIT)
        assert hello["ok"] is True, hello
        for event in RESERVED:
            for args in (({}, {"credential": other}), ("client disconnect",), ()):
                ack = await sio.call(event, args or None, namespace="/node", timeout=WAIT)
                assert is_unknown_event(ack), (event, args, ack)
        # Still CM-NC, with its hello intact: a unit of CM-NH is still outside its scope.
        ack = await sio.call("hello", {"units": ["CM-NH-DMU"]}, namespace="/node", timeout=WAIT)
        assert ack["error"] == "unit_out_of_scope", ack
        beat = await sio.call("heartbeat", {}, namespace="/node", timeout=WAIT)
        assert beat["ok"] is True
        assert set(beat) == {"ok", "now"}  # the parent's clock, for the child's offset
        assert sio.connected
    finally:
        await sio.disconnect()
