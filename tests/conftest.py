"""Shared fixtures: databases (SQLite, and PostgreSQL when present), a demo node, logins.

PostgreSQL tests use a fresh database per test, created on the server at
``HOINGHI_TEST_PG`` (default ``postgresql+asyncpg://root@127.0.0.1:5432/test``). They skip
when the server is unreachable, unless ``HOINGHI_REQUIRE_SERVICES=1``, where they fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher
from sqlalchemy.engine import make_url

from rooms.ice import offer_host_addresses
from server.app import create_app, ssl_context
from server.config import Settings, load_settings
from server.db import create_engine, migrate
from server.demo.tree import DEMO_PASSWORD, seed_demo
from server.state import CTX

# The shaped_link fixture (a site behind a real poor link), for any test module.
pytest_plugins = ("tests.netshape",)

CHROMIUM = os.environ.get("HOINGHI_CHROMIUM", "/usr/bin/chromium")
TEST_OUTPUT = Path(__file__).resolve().parent.parent / "test-output"  # screenshots, logs
PG_URL = os.environ.get("HOINGHI_TEST_PG", "postgresql+asyncpg://root@127.0.0.1:5432/test")
REQUIRE_SERVICES = os.environ.get("HOINGHI_REQUIRE_SERVICES") == "1"


@pytest.fixture(autouse=True, scope="session")
def _media_on_loopback_only() -> None:
    """Test traffic stays on 127.0.0.1: every aiortc peer in the tests offers only it."""
    offer_host_addresses(["127.0.0.1"])


# Real Argon2 with light parameters: the same code paths, a fraction of the CPU time.
FAST_HASHER = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def _asyncpg_dsn(url: str, database: str | None = None) -> str:
    u = make_url(url)
    if database is not None:
        u = u.set(database=database)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


async def _pg_available() -> str | None:
    try:
        conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=3)
    except (OSError, asyncpg.PostgresError) as exc:
        return str(exc)
    await conn.close()
    return None


async def _require_pg() -> None:
    problem = await _pg_available()
    if problem is None:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"PostgreSQL is required (HOINGHI_REQUIRE_SERVICES=1) but: {problem}")
    pytest.skip(f"PostgreSQL not reachable: {problem}")


async def fresh_pg_database() -> tuple[str, Callable[[], Awaitable[None]]]:
    await _require_pg()
    name = f"hoinghi_t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()

    async def drop() -> None:
        conn = await asyncpg.connect(_asyncpg_dsn(PG_URL), timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()

    return make_url(PG_URL).set(database=name).render_as_string(hide_password=False), drop


@pytest.fixture(params=["sqlite", "postgresql"])
async def any_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """A database URL on each backend in turn."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"
        return
    url, drop = await fresh_pg_database()
    try:
        yield url
    finally:
        await drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}"


def make_settings(tmp_path: Path, database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "media_addresses": ["127.0.0.1"],
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "secret_key": "test-secret-key-not-for-production",
        **overrides,
    }
    return load_settings(environ={}, **values)


@dataclass
class Node:
    """A migrated, demo-seeded node under test, with helpers to act as demo users."""

    app: web.Application
    client: TestClient[Any, Any]
    sessions: list[Session] = field(default_factory=list)

    async def anonymous(self) -> Session:
        """A fresh browser-like client with its own cookie jar."""
        client = TestClient(self.client.server)
        await client.start_server()
        session = Session(client)
        self.sessions.append(session)
        return session

    async def login(self, username: str, password: str = DEMO_PASSWORD) -> Session:
        session = await self.anonymous()
        await session.login(username, password)
        return session

    async def close(self) -> None:
        for session in self.sessions:
            await session.close()


@dataclass
class Session:
    client: TestClient[Any, Any]
    csrf: str = ""

    async def fetch_csrf(self) -> str:
        resp = await self.client.get("/api/csrf")
        assert resp.status == 200
        self.csrf = (await resp.json())["csrf_token"]
        return self.csrf

    async def login(self, username: str, password: str) -> Any:
        await self.fetch_csrf()
        resp = await self.client.post(
            "/api/login",
            json={"username": username, "password": password},
            headers={"X-CSRF-Token": self.csrf},
        )
        body = await resp.json()
        assert resp.status == 200, body
        self.csrf = body["csrf_token"]
        return body

    async def call(self, method: str, path: str, json: Any = None, **kw: Any) -> tuple[int, Any]:
        headers = {"X-CSRF-Token": self.csrf, **kw.pop("headers", {})}
        resp = await self.client.request(method, path, json=json, headers=headers, **kw)
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()

    async def close(self) -> None:
        await self.client.close()


async def migrated_app(settings: Settings) -> web.Application:
    """A node app on a freshly migrated database, hashing passwords the fast test way."""
    engine = create_engine(settings.effective_database_url)
    await migrate(engine)
    await engine.dispose()
    app = create_app(settings)
    app[CTX].hasher = FAST_HASHER
    return app


async def serve_node(settings: Settings) -> tuple[web.Application, web.AppRunner, str]:
    """A migrated, demo-seeded node really serving on 127.0.0.1 at a free port (HTTPS when
    the settings carry a certificate); the caller cleans the runner up."""
    app = await migrated_app(settings)
    runner = web.AppRunner(app)
    await runner.setup()
    await seed_demo(app[CTX])
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context(settings))
    await site.start()
    scheme = "https" if settings.tls_enabled else "http"
    return app, runner, f"{scheme}://127.0.0.1:{runner.addresses[0][1]}"


async def start_node(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
    database_url: str,
    **overrides: Any,
) -> Node:
    app = await migrated_app(make_settings(tmp_path, database_url, **overrides))
    client = await aiohttp_client(app)
    await seed_demo(app[CTX])
    return Node(app, client)


@pytest.fixture
async def node(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
    sqlite_url: str,
) -> AsyncIterator[Node]:
    """A demo node on SQLite."""
    started = await start_node(aiohttp_client, tmp_path, sqlite_url)
    yield started
    await started.close()


@pytest.fixture
async def any_node(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
    tmp_path: Path,
    any_db_url: str,
) -> AsyncIterator[Node]:
    """A demo node on each database backend in turn."""
    started = await start_node(aiohttp_client, tmp_path, any_db_url)
    yield started
    await started.close()


@pytest.fixture
def chromium() -> str:
    """Debian's chromium; missing is a failure, not a skip (``make test`` installs it)."""
    if not Path(CHROMIUM).is_file() or not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"chromium is missing at {CHROMIUM}: run `make test` (installs Debian's chromium "
            "as root) or `sudo apt-get install chromium`, or set HOINGHI_CHROMIUM"
        )
    TEST_OUTPUT.mkdir(exist_ok=True)
    return CHROMIUM


@dataclass
class Tree:
    """A province node and its two district nodes (CM-NC, CM-NH), linked."""

    province: Node
    districts: dict[str, Node]


@pytest.fixture
async def tree(
    aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]], tmp_path: Path
) -> AsyncIterator[Tree]:
    import asyncio

    from server.cascade.parent_link import PARENT_LINK
    from tests.live_helpers import start_child  # it imports this module: here, not above

    root = tmp_path / "CM"
    root.mkdir()
    province = await start_node(aiohttp_client, root, f"sqlite+aiosqlite:///{root / 'p.sqlite3'}")
    districts = {
        code: await start_child(aiohttp_client, tmp_path, province, code)
        for code in ("CM-NC", "CM-NH")
    }
    for district in districts.values():
        await asyncio.wait_for(district.app[PARENT_LINK].connected.wait(), 15)
    yield Tree(province, districts)
    for n in (*districts.values(), province):
        await n.close()


# -- a hang in an async test fails that test ----------------------------------------------------

# pytest-timeout's SIGALRM raises its failure wherever the main thread is. When that is inside
# an asyncio callback, the event loop logs the exception and drops it, and the test (and the
# run) hangs until CI's own limit. So every coroutine test also runs under an asyncio deadline
# a little shorter than its pytest-timeout: the test is cancelled where it waits, its fixtures
# tear down, and the run goes on. pytest-timeout stays the backstop for fixtures and sync code.
ASYNC_DEADLINE_SHARE = 0.9


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        return float(marker.args[0])
    return float(item.config.getini("timeout") or 0)


def _awaiting(coro: Any) -> str:
    """Where a suspended coroutine waits: its chain of awaits, outermost first."""
    lines = []
    while coro is not None:
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is not None:
            code = frame.f_code
            lines.append(f"  {code.co_filename}:{frame.f_lineno} in {code.co_name}")
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    return "\n".join(lines)


def _other_tasks(skip: set[Any], limit: int = 80) -> str:
    """Where the loop's other tasks wait (a test's wait is often on one of them, and an
    async generator's cleanup hides its own frames from `_awaiting`)."""
    parts = []
    for other in list(asyncio.all_tasks())[:limit]:
        if other in skip or other.done():
            continue
        parts.append(f" {other.get_name()}:\n{_awaiting(other.get_coro())}")
    return "\n".join(parts) or " none"


def _with_deadline(test: Callable[..., Awaitable[Any]], seconds: float) -> Callable[..., Any]:
    @functools.wraps(test)
    async def bounded(*args: Any, **kwargs: Any) -> Any:
        coro = test(*args, **kwargs)
        task = asyncio.ensure_future(coro)
        done, _ = await asyncio.wait({task}, timeout=seconds)
        if done:
            return task.result()
        where = _awaiting(coro)
        others = _other_tasks({task, asyncio.current_task()})
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        pytest.fail(
            f"timed out after {seconds:.0f} s (the asyncio deadline, "
            f"{ASYNC_DEADLINE_SHARE:.0%} of the test's timeout), waiting at:\n{where}"
            f"\nother tasks then:\n{others}",
            pytrace=False,
        )

    return bounded


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not isinstance(item, pytest.Function):
            continue
        limit = _timeout_of(item)
        test = item.obj
        if limit > 0 and inspect.iscoroutinefunction(test) and not hasattr(test, "hypothesis"):
            item.obj = _with_deadline(test, limit * ASYNC_DEADLINE_SHARE)
