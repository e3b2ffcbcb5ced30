"""The ``hoinghi`` command: serve, migrate, units load, user add, node, demo, tls self-signed."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError

from server import auth
from server.config import ConfigError, Settings, load_settings
from server.db import create_engine, migrate
from server.logs import setup_logging
from server.models import Role, Unit, User
from server.state import NodeContext
from server.text import ControlCharacterError, control_free
from server.units import UnitFileError, load_units, parse_unit_file

T = TypeVar("T")


def fail(message: str, code: int = 2) -> int:
    print(f"hoinghi: {message}", file=sys.stderr)
    return code


def refused_text(**options: str | list[str] | None) -> str | None:
    """Why one of these option values is refused (server/text.py's rule), or None."""
    for option, value in options.items():
        values = value if isinstance(value, list) else [value] if value is not None else []
        for text in values:
            try:
                control_free(text)
            except ControlCharacterError as exc:
                return f"{option.replace('_', '-')} refused: {exc}"
    return None


# -- commands ----------------------------------------------------------------------------------


async def _migrate(settings: Settings) -> None:
    engine = create_engine(settings.effective_database_url)
    try:
        await migrate(engine)
    finally:
        await engine.dispose()


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    asyncio.run(_migrate(settings))
    print("database is up to date")
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from rooms.hooks import AiortcHooksMissing
    from server.app import SchemaError, node_url, run

    print(f"hoinghi node listening on {node_url(settings)}", flush=True)
    try:
        run(settings)
    except (SchemaError, AiortcHooksMissing) as exc:
        return fail(str(exc))
    return 0


async def _units_load(settings: Settings, path: Path) -> tuple[int, int]:
    entries = parse_unit_file(path)
    engine = create_engine(settings.effective_database_url)
    from server.db import make_sessionmaker

    try:
        async with make_sessionmaker(engine)() as db, db.begin():
            return await load_units(db, entries)
    finally:
        await engine.dispose()


def cmd_units_load(settings: Settings, args: argparse.Namespace) -> int:
    try:
        added, updated = asyncio.run(_units_load(settings, Path(args.file)))
    except UnitFileError as exc:
        return fail(f"unit file refused, nothing was loaded: {exc}")
    print(f"units loaded: {added} added, {updated} updated")
    return 0


async def _user_add(settings: Settings, args: argparse.Namespace, password: str) -> None:
    from server.app import node_context

    node = node_context(settings)
    try:
        async with node.sessionmaker() as db, db.begin():
            unit = (
                await db.execute(select(Unit).where(Unit.code == args.unit))
            ).scalar_one_or_none()
            if unit is None:
                raise ValueError(f"unknown unit {args.unit!r}")
            taken = await db.execute(select(User.id).where(User.username == args.username))
            if taken.first() is not None:
                raise ValueError(f"username {args.username!r} is taken")
            db.add(
                User(
                    username=args.username,
                    full_name=args.full_name or args.username,
                    role=Role(args.role),
                    unit_id=unit.id,
                    password_hash=await auth.hash_password(node, password),
                    active=True,
                )
            )
    except IntegrityError as exc:  # another process added the name after the check
        raise ValueError(f"username {args.username!r} is taken") from exc
    finally:
        await node.engine.dispose()


def cmd_user_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.http.admin import USERNAME_RE

    problem = refused_text(username=args.username, __unit=args.unit, __full_name=args.full_name)
    if problem:
        return fail(problem)
    # The same rule as the admin pages: logins are matched in lower case, so an upper-case
    # username would be an account nobody can log in to.
    if not re.fullmatch(USERNAME_RE, args.username):
        return fail(
            f"username {args.username!r} refused: use 2 to 64 lower-case letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != password:
            return fail("the passwords differ")
    else:  # piped in, for scripts: the first line of standard input
        password = sys.stdin.readline().rstrip("\n")
    problem = auth.check_new_password(password)
    if problem:
        return fail(f"password {problem}")
    try:
        asyncio.run(_user_add(settings, args, password))
    except ValueError as exc:
        return fail(str(exc))
    print(f"user {args.username} added ({args.role}, {args.unit})")
    return 0


async def _node_call(settings: Settings, work: Callable[[NodeContext], Awaitable[T]]) -> T:
    from server.app import node_context

    node = node_context(settings)
    try:
        return await work(node)
    finally:
        await node.engine.dispose()


def cmd_node_add(settings: Settings, args: argparse.Namespace) -> int:
    from server.cascade.nodes import NodeError, issue_credential

    problem = refused_text(code=args.code, __units=args.units, __url=args.url)
    if problem:
        return fail(f"{problem}; nothing was changed")
    units = list(dict.fromkeys(u.strip() for u in args.units.split(",") if u.strip()))
    try:
        credential = asyncio.run(
            _node_call(
                settings, lambda n: issue_credential(n, args.code, units, args.url, args.budget)
            )
        )
    except NodeError as exc:
        return fail(f"{exc}; nothing was changed")
    print(f"node {args.code} may link to this node for units {', '.join(units)}")
    print("its credential, shown this once (only a hash is kept; any earlier one stops working):")
    print(f"  {credential}")
    print("put it in the child's configuration as HOINGHI_PARENT_CREDENTIAL")
    return 0


def cmd_node_set(settings: Settings, args: argparse.Namespace) -> int:
    from server.cascade.nodes import NodeError, set_budget

    try:
        info = asyncio.run(_node_call(settings, lambda n: set_budget(n, args.code, args.budget)))
    except NodeError as exc:
        return fail(f"{exc}; nothing was changed")
    budget = f"{info.budget_kbit} kbit/s" if info.budget_kbit else "none (as measured)"
    print(f"node {info.code}: link budget {budget}; a linked node gets it within seconds")
    return 0


def _budget(text: str) -> int | None:
    """``--budget``: kbit/s as a whole number, or ``none`` to clear it."""
    if text.strip().lower() in ("none", "0", ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text[:40]!r} is not a number of kbit/s (or 'none')"
        ) from None


def cmd_node_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from server.cascade.nodes import NodeError, revoke

    try:
        info = asyncio.run(_node_call(settings, lambda n: revoke(n, args.code)))
    except NodeError as exc:
        return fail(str(exc))
    assert info.revoked_at is not None
    print(f"node {info.code} revoked at {_local_time(settings, info.revoked_at)}")
    return 0


def _local_time(settings: Settings, at: datetime) -> str:
    return at.astimezone(settings.tz).strftime("%Y-%m-%d %H:%M %Z")


def cmd_node_list(settings: Settings, args: argparse.Namespace) -> int:
    from server.cascade.nodes import list_nodes

    nodes = asyncio.run(_node_call(settings, list_nodes))
    if not nodes:
        print("no nodes registered")
        return 0
    rows = [("code", "units", "url", "budget", "issued", "revoked")]
    for n in nodes:
        revoked = _local_time(settings, n.revoked_at) if n.revoked_at else "-"
        issued = _local_time(settings, n.issued_at)
        budget = f"{n.budget_kbit} kbit/s" if n.budget_kbit else "-"
        rows.append((n.code, ",".join(n.units), n.url or "-", budget, issued, revoked))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[-1]]))
    return 0


async def _demo(settings: Settings) -> bool:
    from server.app import node_context
    from server.demo.tree import seed_demo

    node = node_context(settings)
    try:
        return await seed_demo(node)
    finally:
        await node.engine.dispose()


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from server.app import node_url
    from server.demo.tree import demo_logins_text

    if args.nodes == 3:
        from server.demo.nodes import run_demo_nodes

        if not 1 <= args.base_port <= 65533:
            return fail("--base-port must leave room for three ports (1 to 65533)")
        return run_demo_nodes(settings, args.base_port)

    seeded = asyncio.run(_demo(settings))
    if seeded:
        print("demo data loaded: Tỉnh Cà Mau with three districts and their communes")
    else:
        print("the database already holds data; demo data was not loaded again")
    print(demo_logins_text(node_url(settings)))
    return 0


def cmd_tls_self_signed(settings: Settings, args: argparse.Namespace) -> int:
    from server.tls import self_signed

    out = Path(args.out) if args.out else settings.data_dir / "tls"
    names = args.name or ["localhost", "127.0.0.1"]
    problem = refused_text(__name=names)
    if problem:
        return fail(problem)
    try:
        cert, key = self_signed(out, names)
    except ValueError as exc:
        return fail(str(exc))
    print(f"wrote {cert} and {key} for {', '.join(names)}")
    print("serve HTTPS with:")
    print(f"  HOINGHI_TLS_CERT={cert} HOINGHI_TLS_KEY={key} hoinghi serve")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hoinghi", description="hoinghi node: multi-level online meetings."
    )
    parser.add_argument(
        "--config", type=Path, help="TOML configuration file (default: $HOINGHI_CONFIG)"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("serve", help="start the node")
    p.add_argument("--host", help="listen address (overrides the configuration)")
    p.add_argument("--port", type=int, help="listen port (overrides the configuration)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("migrate", help="bring the database schema up to date")
    p.set_defaults(func=cmd_migrate)

    units = sub.add_parser("units", help="administrative units")
    units_sub = units.add_subparsers(dest="units_command", required=True)
    p = units_sub.add_parser("load", help="load units from a YAML or JSON file, all or nothing")
    p.add_argument("file", help="file with a list of {code, name, level, parent}")
    p.set_defaults(func=cmd_units_load)

    user = sub.add_parser("user", help="user accounts")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    p = user_sub.add_parser("add", help="add a user; the password is asked for, never an argument")
    p.add_argument("username")
    p.add_argument("--role", required=True, choices=[r.value for r in Role])
    p.add_argument("--unit", required=True, help="code of the user's unit")
    p.add_argument("--full-name", help="name shown on pages")
    p.set_defaults(func=cmd_user_add)

    node = sub.add_parser("node", help="child nodes that may link to this one")
    node_sub = node.add_subparsers(dest="node_command", required=True)
    p = node_sub.add_parser(
        "add", help="register a child node (or issue it a new credential); prints the credential"
    )
    p.add_argument("code", help="the child node's code, e.g. its district's unit code")
    p.add_argument(
        "--units", required=True, help="comma-separated codes of the units it may speak for"
    )
    p.add_argument("--url", default="", help="the child node's public URL, for its operators")
    p.add_argument(
        "--budget",
        type=_budget,
        default=None,
        help="kbit/s its link may carry (the tiers that fit cross it, audio first)",
    )
    p.set_defaults(func=cmd_node_add)
    p = node_sub.add_parser("set", help="change a child node's link budget")
    p.add_argument("code")
    p.add_argument(
        "--budget", type=_budget, required=True, help="kbit/s, or 'none' to follow the link"
    )
    p.set_defaults(func=cmd_node_set)
    p = node_sub.add_parser("revoke", help="revoke a child node's credential")
    p.add_argument("code")
    p.set_defaults(func=cmd_node_revoke)
    p = node_sub.add_parser(
        "list", help="list child nodes (code, units, url, budget, issued, revoked)"
    )
    p.set_defaults(func=cmd_node_list)

    p = sub.add_parser("demo", help="load the Cà Mau demo tree and accounts into an empty database")
    p.add_argument(
        "--nodes",
        type=int,
        choices=[1, 3],
        default=1,
        help="3: set up and start a province node and two district nodes on this machine "
        "(data under DATA_DIR/nodes/; Ctrl-C stops them)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=8080,
        help="with --nodes 3: the province's port; the districts take the next two",
    )
    p.set_defaults(func=cmd_demo)

    tls = sub.add_parser("tls", help="certificates")
    tls_sub = tls.add_subparsers(dest="tls_command", required=True)
    p = tls_sub.add_parser("self-signed", help="make a self-signed certificate for a trial")
    p.add_argument("--name", action="append", help="host name or IP (repeatable)")
    p.add_argument("--out", help="directory (default: DATA_DIR/tls)")
    p.set_defaults(func=cmd_tls_self_signed)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {}
    for key in ("host", "port"):
        if getattr(args, key, None) is not None:
            overrides[key] = getattr(args, key)
    try:
        settings = load_settings(args.config, **overrides)
    except ConfigError as exc:
        return fail(str(exc))
    setup_logging(settings)
    try:
        result: int = args.func(settings, args)
    except DBAPIError as exc:
        if not _missing_table(exc):
            raise
        return fail("the database has no tables yet: run `hoinghi migrate` first")
    return result


def _missing_table(exc: DBAPIError) -> bool:
    """A command run before ``hoinghi migrate`` (SQLite or PostgreSQL wording)."""
    text = str(exc.orig)
    return "no such table" in text or ("relation" in text and "does not exist" in text)


if __name__ == "__main__":
    sys.exit(main())
