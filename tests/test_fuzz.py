"""Fuzzed input never gets a 5xx, a traceback or an undocumented code, on any surface.

Every route of the app's router, every event of ``/meeting`` (server/sockets/protocol.py EVENTS)
and ``/node`` (server/cascade/nodelink.py NODE_EVENTS), and mutated SDP offers (of a real aiortc
offer) go to a real served node, as each role. The answers must be documented: HTTP errors
as docs/protocol.md lists them for the route, socket codes as server/sockets/protocol.py
ERROR_CODES (and the /node section). Nothing logged at ERROR either. The generators are in
tests/fuzzing.py, the node and the judging in tests/fuzz_node.py; bench/fuzz.py runs the
same for tens of thousands of inputs. A few hundred inputs here: well under a minute.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from server.app import create_app
from server.cascade.nodelink import NODE_EVENTS
from server.sockets.protocol import EVENTS
from tests.conftest import fresh_pg_database, make_settings
from tests.fuzz_node import FuzzNode, http_doc
from tests.fuzzing import (
    MEETING_ROLES,
    Route,
    SdpCase,
    app_routes,
    event_cases,
    http_cases,
    sdp_cases,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

FUZZ = settings(
    max_examples=12,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time, the first input
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.function_scoped_fixture,
    ],
)


def _routes() -> list[Route]:
    here = Path(tempfile.gettempdir())
    return app_routes(create_app(make_settings(here, f"sqlite+aiosqlite:///{here / 'x.db'}")))


ROUTES = _routes()
MEETING_EVENTS: list[tuple[str | None, type[BaseModel] | None]] = [
    *sorted(EVENTS.items()),
    (None, None),
]
NODE_EVENT_LIST: list[tuple[str | None, type[BaseModel] | None]] = [
    *sorted(NODE_EVENTS.items()),
    (None, None),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["sqlite", "postgresql"])
async def http_node(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[FuzzNode]:
    """On both backends: PostgreSQL refuses what SQLite stores (a NUL in a text, say)."""
    url, drop = ("", None) if request.param == "sqlite" else await fresh_pg_database()
    node = await FuzzNode.start(tmp_path_factory.mktemp("fuzz-http"), url)
    await node.login_all()
    yield node
    await node.close()
    if drop is not None:
        await drop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def socket_node(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzNode]:
    node = await FuzzNode.start(tmp_path_factory.mktemp("fuzz-sockets"))
    await node.open_meeting()
    yield node
    await node.close()


async def test_the_fuzzer_knows_every_route_and_the_documented_answers() -> None:
    paths = {r.path for r in ROUTES}
    assert {"/api/meetings/{meeting_id}", "/login", "/static/{tail}", "/socket.io/"} <= paths
    doc = http_doc()
    assert doc.documents("PATCH", "/api/meetings/{meeting_id}")
    assert (403, "csrf_failed") in doc.everywhere
    assert (404, "meeting_not_found") in doc.allowed("GET", "/api/meetings/{meeting_id}")


@pytest.mark.parametrize("route", ROUTES, ids=[r.id for r in ROUTES])
@FUZZ
@given(data=st.data())
async def test_fuzzed_request_gets_a_documented_answer(
    http_node: FuzzNode, route: Route, data: st.DataObject
) -> None:
    case = data.draw(http_cases(route), label="request")
    answer = await http_node.http(case)
    event(answer.label)
    assert not answer.problems, answer.report()


@pytest.mark.parametrize(
    ("name", "model"), MEETING_EVENTS, ids=[n or "unknown-names" for n, _m in MEETING_EVENTS]
)
@FUZZ
@given(data=st.data())
async def test_fuzzed_meeting_event_gets_a_documented_acknowledgement(
    socket_node: FuzzNode,
    name: str | None,
    model: type[BaseModel] | None,
    data: st.DataObject,
) -> None:
    case = data.draw(event_cases(name, model, MEETING_ROLES), label="event")
    answer = await socket_node.event(case, "/meeting")
    event(answer.label)
    assert not answer.problems, answer.report()


@pytest.mark.parametrize(
    ("name", "model"), NODE_EVENT_LIST, ids=[n or "unknown-names" for n, _m in NODE_EVENT_LIST]
)
@FUZZ
@given(data=st.data())
async def test_fuzzed_node_event_gets_a_documented_acknowledgement(
    socket_node: FuzzNode,
    name: str | None,
    model: type[BaseModel] | None,
    data: st.DataObject,
) -> None:
    case = data.draw(event_cases(name, model, ("node",)), label="event")
    answer = await socket_node.event(case, "/node")
    event(answer.label)
    assert not answer.problems, answer.report()


@settings(FUZZ, max_examples=45)
@given(case=sdp_cases)
async def test_mutated_sdp_offer_gets_a_documented_acknowledgement(
    socket_node: FuzzNode, case: SdpCase
) -> None:
    answer = await socket_node.sdp(case)
    event(answer.label)
    assert not answer.problems, answer.report()
