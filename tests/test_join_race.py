"""A join racing its socket's disconnect: the site must not stay listed as a ghost.

The node handles a socket's events concurrently with its disconnect, so a ``join`` still
awaiting the database when the socket closes used to add the participant after the
disconnect had found nothing to remove: the chair then listed the site online for good.
"""

from __future__ import annotations

import asyncio

import socketio

from server.auth import SESSION_COOKIE
from server.demo.tree import commune_operators
from server.sockets.signaling import REGISTRY, SIO
from tests.conftest import Node
from tests.live_helpers import wait_for
from tests.test_signaling import (  # noqa: F401  (connect is a fixture)
    NS,
    WAIT,
    Connect,
    connect,
    schedule,
    session_cookie,
)

ROUNDS = 12


async def test_sites_whose_socket_closed_during_join_are_not_listed_to_the_chair(
    node: Node,
    connect: Connect,  # noqa: F811  (the fixture imported above)
) -> None:
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await connect(chair_session)
    await chair.ok("join", {"meeting_id": mid})
    operators = commune_operators("CM-NC")
    assert len(operators) >= 6
    cookies = [session_cookie(await node.login(name)) for name in operators]
    url = f"http://127.0.0.1:{node.client.server.port}"
    live = node.app[REGISTRY].get(mid)
    assert live is not None
    sio = node.app[SIO]
    chair_sid = chair.sio.get_sid(NS)

    async def join_and_vanish(cookie: str, abrupt: bool, delay: float) -> None:
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(
            url,
            headers={"Cookie": f"{SESSION_COOKIE}={cookie}"},
            namespaces=[NS],
            transports=["websocket"],
            wait_timeout=WAIT,
        )
        # No waiting for the acknowledgement: the socket goes while the join is handled.
        await client.emit("join", {"meeting_id": mid}, namespace=NS)
        await asyncio.sleep(delay)  # from at once to about a join's time: hit every window
        if abrupt:  # the transport just closes (a killed tab), no disconnect packet
            await client.eio.disconnect(abort=True)
        await client.disconnect()

    # Each round is a fresh trial: every commune once (a later join of the same commune would
    # replace an earlier ghost and hide it), then the room must empty.
    for round_ in range(ROUNDS):
        await asyncio.gather(
            *(
                join_and_vanish(c, abrupt=(round_ + i) % 2 == 1, delay=i * 0.002)
                for i, c in enumerate(cookies)
            ),
        )
        await wait_for(
            lambda: [s for s, _ in sio.manager.get_participants(NS, None)] == [chair_sid],
            WAIT,
            "only the chair's socket left on /meeting",
        )
        await wait_for(lambda: not live.sites, WAIT, f"no site left in the room (round {round_})")
    # The chair was told: it lists none.
    await chair.state_where(lambda s: s["sites"] == [], "no site listed")
    await asyncio.sleep(0.5)  # a join still finishing would show up now
    assert not live.sites
    assert chair.states[-1]["sites"] == []
