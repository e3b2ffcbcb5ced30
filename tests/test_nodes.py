"""Child-node credentials: issue, verify, revoke, unit scope, the ``hoinghi node`` commands.

Every test runs on SQLite and on PostgreSQL, on a migrated database holding the Cà Mau demo
tree (CM → districts CM-NC, CM-NH, CM-TVT → their communes).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import delete, select, text
from sqlalchemy.exc import IntegrityError

from server.app import node_context
from server.cascade.nodes import (
    NodeError,
    check_units,
    issue_credential,
    list_nodes,
    revoke,
    verify_credential,
)
from server.db import migrate
from server.demo.tree import DEMO_UNITS
from server.models import Node, Unit
from server.state import NodeContext
from server.units import load_units, parse_unit_file
from tests.conftest import make_settings
from tests.test_cli import COMMAND, environment

ADDRESS = "203.0.113.7"


class CountingHasher(PasswordHasher):
    """Real Argon2 with light parameters that counts its verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
async def ctx(tmp_path: Path, any_db_url: str) -> AsyncIterator[NodeContext]:
    """A migrated node context with the demo unit tree, on each backend in turn."""
    node = node_context(make_settings(tmp_path, any_db_url))
    node.hasher = CountingHasher()
    await migrate(node.engine)
    async with node.sessionmaker() as db, db.begin():
        await load_units(db, parse_unit_file(DEMO_UNITS))
    await node.reload_units()
    yield node
    await node.engine.dispose()


def split(credential: str) -> tuple[str, str]:
    code, secret = credential.rsplit(".", 1)
    return code, secret


def wrong(secret: str) -> str:
    """The secret with its last character changed."""
    return secret[:-1] + ("B" if secret[-1] != "B" else "C")


async def refused(node: NodeContext, credential: str) -> NodeError:
    with pytest.raises(NodeError) as caught:
        await verify_credential(node, credential, ADDRESS)
    return caught.value


# -- issue and verify ----------------------------------------------------------------------------


async def test_issued_credential_verifies_and_only_its_hash_is_stored(ctx: NodeContext) -> None:
    credential = await issue_credential(ctx, "CM-NC", ["CM-NH", "CM-NC"], "https://nc.vn/")
    code, secret = split(credential)
    assert code == "CM-NC"
    assert re.fullmatch(r"[A-Za-z0-9_-]{43,}", secret)

    info = await verify_credential(ctx, credential, ADDRESS)
    assert (info.code, info.units, info.url, info.revoked) == (
        "CM-NC",
        ("CM-NC", "CM-NH"),
        "https://nc.vn",
        False,
    )
    async with ctx.sessionmaker() as db:
        stored = (await db.execute(select(Node.secret_hash))).scalars().all()
    assert len(stored) == 1
    assert stored[0].startswith("$argon2id$")
    assert secret not in stored[0]


async def test_node_code_with_dots_is_split_at_the_last_dot(ctx: NodeContext) -> None:
    credential = await issue_credential(ctx, "cm.nam-can.2", ["CM-NC"], "")
    info = await verify_credential(ctx, credential, ADDRESS)
    assert (info.code, info.units, info.url) == ("cm.nam-can.2", ("CM-NC",), "")


BAD_CREDENTIALS: dict[str, Callable[[str, str], str]] = {
    "wrong-secret": lambda code, secret: f"{code}.{wrong(secret)}",
    "other-secret": lambda code, _secret: f"{code}.{'A' * 43}",
    "unknown-code": lambda _code, secret: f"CM-XX.{secret}",
    "code-only": lambda code, _secret: f"{code}.",
    "no-dot": lambda _code, secret: secret,
    "empty": lambda _code, _secret: "",
    "huge": lambda code, secret: f"{code}.{secret}{'A' * 100_000}",
    "non-ascii": lambda code, secret: f"{code}.{secret[:-1]}ệ",
    "non-ascii-code": lambda _code, secret: f"CM-NĆ.{secret}",
    "trailing-newline": lambda code, secret: f"{code}.{secret}\n",
    "spaces": lambda code, secret: f" {code}.{secret} ",
    "extra-part": lambda code, secret: f"{code}.{secret}.{secret}",
}


async def test_bad_credentials_are_refused_and_change_nothing(ctx: NodeContext) -> None:
    # One test walking the cases: a fresh PostgreSQL database per case would cost a minute.
    credential = await issue_credential(ctx, "CM-NC", ["CM-NC"])
    for name, make in BAD_CREDENTIALS.items():
        bad = make(*split(credential))
        assert bad != credential, name
        error = await refused(ctx, bad)
        assert (error.code, error.status, error.message) == (
            "bad_credential",
            401,
            "The node credential is not valid.",
        ), name
    # The right credential still works: the refusals changed nothing.
    assert (await verify_credential(ctx, credential, ADDRESS)).code == "CM-NC"


async def test_unknown_code_costs_one_verification_and_malformed_none(ctx: NodeContext) -> None:
    hasher = ctx.hasher
    assert isinstance(hasher, CountingHasher)
    credential = await issue_credential(ctx, "CM-NC", ["CM-NC"])
    _code, secret = split(credential)

    for known_or_not in (f"CM-XX.{secret}", f"CM-NC.{'A' * 43}", credential):
        before = hasher.verifications
        with contextlib.suppress(NodeError):
            await verify_credential(ctx, known_or_not, ADDRESS)
        assert hasher.verifications == before + 1, known_or_not[:6]

    before = hasher.verifications
    for malformed in ("", secret, f"CM-NC.{secret}{'A' * 100_000}"):
        await refused(ctx, malformed)
    assert hasher.verifications == before


async def test_revoked_credential_is_refused_and_listed_as_revoked(ctx: NodeContext) -> None:
    credential = await issue_credential(ctx, "CM-NC", ["CM-NC"])
    await issue_credential(ctx, "CM-NH", ["CM-NH"])

    info = await revoke(ctx, "CM-NC")
    assert info.revoked_at is not None
    assert (await refused(ctx, credential)).code == "bad_credential"
    again = await revoke(ctx, "CM-NC")
    assert again.revoked_at == info.revoked_at

    listed = {n.code: n.revoked for n in await list_nodes(ctx)}
    assert listed == {"CM-NC": True, "CM-NH": False}
    assert [n.code for n in await list_nodes(ctx, include_revoked=False)] == ["CM-NH"]
    with pytest.raises(NodeError) as caught:
        await revoke(ctx, "CM-XX")
    assert caught.value.code == "unknown_node"


async def test_reissue_replaces_secret_units_and_url_and_lifts_revocation(
    ctx: NodeContext,
) -> None:
    first = await issue_credential(ctx, "CM-NC", ["CM-NC", "CM-NH"], "https://old.vn")
    await revoke(ctx, "CM-NC")
    second = await issue_credential(ctx, "CM-NC", ["CM-NC", "CM-TVT"], "https://new.vn")
    assert split(first)[1] != split(second)[1]

    assert (await refused(ctx, first)).code == "bad_credential"
    info = await verify_credential(ctx, second, ADDRESS)
    assert (info.units, info.url, info.revoked) == (("CM-NC", "CM-TVT"), "https://new.vn", False)
    assert [n.code for n in await list_nodes(ctx)] == ["CM-NC"]


BAD_ISSUES: dict[str, tuple[str, list[str], str, str, str]] = {
    # name: (code, units, url, error code, text the message must name)
    "space": ("CM NC", ["CM-NC"], "", "invalid_code", "'CM NC'"),
    "empty": ("", ["CM-NC"], "", "invalid_code", "''"),
    "leading-dash": ("-CM", ["CM-NC"], "", "invalid_code", "'-CM'"),
    "too-long": ("C" * 65, ["CM-NC"], "", "invalid_code", "CCC"),
    "unknown-units": ("CM-NC", ["CM-NC", "HN", "CM-NC-XX"], "", "unknown_unit", "'HN', 'CM-NC-XX'"),
    "no-units": ("CM-NC", [], "", "no_units", "at least one unit"),
    "blank-units": ("CM-NC", [" ", ""], "", "no_units", "at least one unit"),
    "ftp": ("CM-NC", ["CM-NC"], "ftp://nc.vn", "invalid_url", "'ftp://nc.vn'"),
    "no-host": ("CM-NC", ["CM-NC"], "https://", "invalid_url", "'https:'"),
    "space-in-url": ("CM-NC", ["CM-NC"], "https://nc.vn/a b", "invalid_url", "'https://nc.vn/a b'"),
}


async def test_issue_refuses_bad_input_naming_it_and_stores_nothing(ctx: NodeContext) -> None:
    for name, (code, units, url, error, named) in BAD_ISSUES.items():
        with pytest.raises(NodeError) as caught:
            await issue_credential(ctx, code, units, url)
        assert caught.value.code == error, name
        assert named in caught.value.message, name
    assert await list_nodes(ctx) == []


# -- unit scope ----------------------------------------------------------------------------------


IN_SCOPE = {
    "own-district": ["CM-NC"],
    "commune-below": ["CM-NC-HR"],
    "several": ["CM-NC", "CM-NC-HR", "CM-NC-TT"],
    "second-unit-itself": ["CM-NH-RG"],
    "none": [],
}
OUT_OF_SCOPE = {
    # name: (claimed codes, the code the message must name)
    "sibling-district-commune": (["CM-TVT-KB"], "'CM-TVT-KB'"),
    "parent-province": (["CM"], "'CM'"),
    "above-second-unit": (["CM-NH"], "'CM-NH'"),
    "sibling-of-second-unit": (["CM-NH-TA"], "'CM-NH-TA'"),
    "unknown": (["NOPE"], "'NOPE'"),
    "mixed": (["CM-NC-HR", "CM-TVT-SD"], "'CM-TVT-SD'"),
}


async def test_claimed_units_must_lie_in_a_registered_subtree(ctx: NodeContext) -> None:
    credential = await issue_credential(ctx, "CM-NC", ["CM-NC", "CM-NH-RG"])
    info = await verify_credential(ctx, credential, ADDRESS)
    for claimed in IN_SCOPE.values():
        assert await check_units(ctx, info, claimed, ADDRESS) is None
    for name, (claimed, named) in OUT_OF_SCOPE.items():
        with pytest.raises(NodeError) as caught:
            await check_units(ctx, info, claimed, ADDRESS)
        assert (caught.value.code, caught.value.status) == ("unit_out_of_scope", 403), name
        assert named in caught.value.message, name
        assert "CM-NC-HR" not in caught.value.message, name


async def test_unit_of_a_node_cannot_be_deleted_and_node_rows_go_with_it(
    ctx: NodeContext,
) -> None:
    await issue_credential(ctx, "CM-NC", ["CM-NC-HR"])
    with pytest.raises(IntegrityError):
        async with ctx.sessionmaker() as db, db.begin():
            await db.execute(delete(Unit).where(Unit.code == "CM-NC-HR"))

    async with ctx.sessionmaker() as db, db.begin():
        await db.execute(delete(Node).where(Node.code == "CM-NC"))
    async with ctx.sessionmaker() as db:
        left = (await db.execute(text("SELECT count(*) FROM node_units"))).scalar_one()
    assert left == 0


# -- logs ----------------------------------------------------------------------------------------


async def test_refusals_are_logged_without_the_secret(
    ctx: NodeContext, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    credential = await issue_credential(ctx, "CM-NC", ["CM-NC"])
    code, secret = split(credential)
    info = await verify_credential(ctx, credential, ADDRESS)
    attempts = [
        f"{code}.{wrong(secret)}",
        secret,  # the secret alone: malformed
        f"CM-XX.{secret}",  # unknown code
        f"{credential}.{'x' * 43}",  # a code that would carry the secret into the log
        f"{credential}\n",
    ]
    for attempt in attempts:
        await refused(ctx, attempt)
    with pytest.raises(NodeError):
        await check_units(ctx, info, ["CM-TVT"], ADDRESS)
    await revoke(ctx, code)
    await refused(ctx, credential)

    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == len(attempts) + 2
    assert all(ADDRESS in r.getMessage() for r in warnings)
    assert sum("node CM-NC" in r.getMessage() for r in warnings) == 3  # wrong, scope, revoked
    everything = caplog.text + "".join(repr(r.__dict__) for r in caplog.records)
    assert secret[:20] not in everything
    assert secret[-20:] not in everything


# -- the hoinghi node commands -------------------------------------------------------------------


async def hoinghi(tmp_path: Path, url: str, *args: str) -> tuple[int, str, str]:
    env = environment(tmp_path) | {"HOINGHI_DATABASE_URL": url}
    proc = await asyncio.create_subprocess_exec(
        *COMMAND,
        *args,
        cwd=tmp_path,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def table_row(listing: str, code: str) -> list[str]:
    rows = [line.split() for line in listing.splitlines()]
    return next(row for row in rows if row and row[0] == code)


async def test_node_commands_add_list_and_revoke(
    ctx: NodeContext, tmp_path: Path, any_db_url: str
) -> None:
    async def run(*args: str) -> tuple[int, str, str]:
        return await hoinghi(tmp_path, any_db_url, *args)

    added, bad_unit, unknown = await asyncio.gather(
        run("node", "add", "CM-NC", "--units", "CM-NC-HR,CM-NC", "--url", "https://nc.vn/"),
        run("node", "add", "CM-NH", "--units", "CM-NH,HN-BD"),
        run("node", "revoke", "CM-XX"),
    )
    status, out, err = added
    assert status == 0, err
    assert "HOINGHI_PARENT_CREDENTIAL" in out
    found = re.findall(r"^  (CM-NC\.[A-Za-z0-9_-]{43,})$", out, re.MULTILINE)
    assert len(found) == 1
    credential = found[0]
    assert split(credential)[1] not in err
    info = await verify_credential(ctx, credential, ADDRESS)
    assert (info.units, info.url) == (("CM-NC", "CM-NC-HR"), "https://nc.vn")

    status, out, err = bad_unit
    assert status != 0
    assert "'HN-BD'" in err
    assert "nothing was changed" in err
    status, out, err = unknown
    assert (status, "no node with code 'CM-XX'" in err) == (2, True)
    assert [n.code for n in await list_nodes(ctx)] == ["CM-NC"]

    status, listing, err = await run("node", "list")
    assert status == 0, err
    assert listing.split()[:6] == ["code", "units", "url", "budget", "issued", "revoked"]
    assert table_row(listing, "CM-NC")[:3] == ["CM-NC", "CM-NC,CM-NC-HR", "https://nc.vn"]
    assert table_row(listing, "CM-NC")[-1] == "-"
    assert "argon2" not in listing
    assert split(credential)[1] not in listing

    status, out, err = await run("node", "revoke", "CM-NC")
    assert status == 0, err
    assert "node CM-NC revoked at" in out
    assert (await refused(ctx, credential)).code == "bad_credential"
    status, listing, err = await run("node", "list")
    assert status == 0, err
    assert table_row(listing, "CM-NC")[-1] != "-"
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d \+07$", listing.splitlines()[1])


async def test_link_budgets_are_set_kept_listed_and_checked(
    ctx: NodeContext, tmp_path: Path, any_db_url: str
) -> None:
    async def run(*args: str) -> tuple[int, str, str]:
        return await hoinghi(tmp_path, any_db_url, *args)

    status, out, err = await run("node", "add", "CM-NC", "--units", "CM-NC", "--budget", "300")
    assert status == 0, err
    assert (await list_nodes(ctx))[0].budget_kbit == 300
    # A new credential without --budget keeps the budget; `node set` changes or clears it.
    status, out, err = await run("node", "add", "CM-NC", "--units", "CM-NC")
    assert status == 0, err
    assert (await list_nodes(ctx))[0].budget_kbit == 300
    status, out, err = await run("node", "set", "CM-NC", "--budget", "512")
    assert status == 0, err
    assert "512 kbit/s" in out
    status, listing, err = await run("node", "list")
    assert table_row(listing, "CM-NC")[3:5] == ["512", "kbit/s"]
    # Out of range, not a number, an unknown node: refused, nothing changed.
    for args, words in (
        (("--budget", "8"), "32 to 10000000 kbit/s"),
        (("--budget", "lots"), "not a number of kbit/s"),
    ):
        status, out, err = await run("node", "set", "CM-NC", *args)
        assert status != 0
        assert words in err
    status, out, err = await run("node", "set", "CM-XX", "--budget", "300")
    assert status != 0
    assert "no node with code 'CM-XX'" in err
    assert (await list_nodes(ctx))[0].budget_kbit == 512
    status, out, err = await run("node", "set", "CM-NC", "--budget", "none")
    assert status == 0, err
    assert (await list_nodes(ctx))[0].budget_kbit is None
