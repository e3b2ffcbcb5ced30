"""Parallel requests for one unique name (a username, a unit code, a node code) on SQLite and
PostgreSQL: one is created, every other answers 409 ``duplicate`` (or, for a node, replaces
it as a later run would), never a 500."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from server.app import node_context
from server.cascade.nodes import NodeError, issue_credential, list_nodes, verify_credential
from server.cli import _user_add
from server.db import migrate
from server.demo.tree import DEMO_PASSWORD, DEMO_UNITS
from server.state import NodeContext
from server.units import load_units, parse_unit_file
from tests.conftest import FAST_HASHER, Node, make_settings


def one_created_rest_duplicate(answers: list[tuple[int, Any]], created: int = 201) -> None:
    statuses = sorted(status for status, _ in answers)
    assert statuses == [created] + [409] * (len(answers) - 1), answers
    for status, body in answers:
        if status == 409:
            assert body["error"] == "duplicate", body


async def test_parallel_new_users_with_one_username_create_one_and_refuse_the_rest(
    any_node: Node,
) -> None:
    admin = await any_node.login("quantri")
    body = {
        "username": "kt.trung-ten",
        "full_name": "Kỹ thuật trùng tên",
        "role": "operator",
        "unit": "CM-NC-HR",
        "password": DEMO_PASSWORD,
    }
    answers = await asyncio.gather(*(admin.call("POST", "/api/users", body) for _ in range(10)))
    one_created_rest_duplicate(answers)
    status, listed = await admin.call("GET", "/api/users")
    assert status == 200
    assert [u["username"] for u in listed["users"]].count("kt.trung-ten") == 1


async def test_parallel_new_units_with_one_code_create_one_and_refuse_the_rest(
    any_node: Node,
) -> None:
    admin = await any_node.login("quantri")
    body = {"code": "CM-NC-MOI", "name": "Xã Mới", "level": "commune", "parent": "CM-NC"}
    answers = await asyncio.gather(*(admin.call("POST", "/api/units", body) for _ in range(10)))
    one_created_rest_duplicate(answers)
    status, listed = await admin.call("GET", "/api/units")
    assert status == 200
    assert [u["code"] for u in listed["units"]].count("CM-NC-MOI") == 1


async def test_parallel_user_forms_with_one_username_show_the_form_again_not_an_error(
    any_node: Node,
) -> None:
    admin = await any_node.login("quantri")

    async def submit() -> tuple[int, str]:
        resp = await admin.client.post(
            "/admin/users",
            data={
                "csrf_token": admin.csrf,
                "username": "thuky.trung-ten",
                "full_name": "Thư ký trùng tên",
                "role": "secretary",
                "unit": "CM-NC",
                "password": DEMO_PASSWORD,
            },
            allow_redirects=False,
        )
        return resp.status, await resp.text()

    answers = await asyncio.gather(*(submit() for _ in range(8)))
    statuses = sorted(status for status, _ in answers)
    assert statuses == [303] + [409] * 7, [(s, t[:300]) for s, t in answers]


@pytest.fixture
async def ctx(tmp_path: Path, any_db_url: str) -> AsyncIterator[NodeContext]:
    """A migrated node context with the demo unit tree (no HTTP), on each backend in turn."""
    node = node_context(make_settings(tmp_path, any_db_url))
    node.hasher = FAST_HASHER
    await migrate(node.engine)
    async with node.sessionmaker() as db, db.begin():
        await load_units(db, parse_unit_file(DEMO_UNITS))
    await node.reload_units()
    yield node
    await node.engine.dispose()


async def test_parallel_node_add_for_one_new_code_registers_it_once(ctx: NodeContext) -> None:
    # Two administrators running `hoinghi node add CM-NC` at once: as if one ran after the
    # other (the later credential replaces the earlier), never a database error.
    credentials = await asyncio.gather(
        *(issue_credential(ctx, "CM-NC", ["CM-NC", "CM-NH"][: 1 + i % 2]) for i in range(6))
    )
    nodes = await list_nodes(ctx)
    assert [n.code for n in nodes] == ["CM-NC"]
    valid, refused = [], []
    for credential in credentials:
        try:
            valid.append((await verify_credential(ctx, credential)).code)
        except NodeError as err:
            refused.append(err.code)
    assert valid == ["CM-NC"]
    assert refused == ["bad_credential"] * 5


async def test_parallel_cli_user_add_with_one_username_adds_it_once(
    tmp_path: Path, any_db_url: str
) -> None:
    # `hoinghi user add` run twice at once (or racing the admin page): one adds the account,
    # the other says the name is taken, never a database traceback.
    settings = make_settings(tmp_path, any_db_url)
    node = node_context(settings)
    await migrate(node.engine)
    async with node.sessionmaker() as db, db.begin():
        await load_units(db, parse_unit_file(DEMO_UNITS))
    await node.engine.dispose()
    args = argparse.Namespace(username="kt.cli", full_name="", role="operator", unit="CM-NC")
    results = await asyncio.gather(
        *(_user_add(settings, args, DEMO_PASSWORD) for _ in range(6)), return_exceptions=True
    )
    assert sum(r is None for r in results) == 1, results
    for r in results:
        if r is not None:
            assert isinstance(r, ValueError), repr(r)
            assert str(r) == "username 'kt.cli' is taken"
