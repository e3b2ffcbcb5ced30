"""The node's aiohttp application: ``create_app(settings)`` builds it, ``run`` serves it."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

import web as web_pkg
from rooms.hooks import check_aiortc_hooks
from rooms.ice import offer_host_addresses
from server import auth
from server.attendance.service import setup_attendance
from server.cascade import links
from server.cascade.nodelink import setup_nodelink
from server.cascade.parent_link import setup_parent_link
from server.config import Settings
from server.db import create_engine, current_revision, make_sessionmaker
from server.errors import ERROR_PAGE, Handler, error_middleware
from server.http import admin, api, live_pages, monitor, pages, rendering, reports
from server.http.compression import compression_middleware
from server.http.refused_requests import quiet_refused_requests
from server.http.static_files import add_static_files
from server.logs import AccessLog
from server.sockets.signaling import setup_signaling
from server.state import CTX, NodeContext

log = logging.getLogger(__name__)

WEB_DIR = Path(web_pkg.__file__).parent
PROJECT_DIR = WEB_DIR.parent
SOCKETIO_DIST = PROJECT_DIR / "node_modules" / "socket.io-client" / "dist"
SHUTDOWN_TIMEOUT = 1.0
HEAD_REVISION = "0005"


class SchemaError(RuntimeError):
    """The database is not at the schema this code needs."""


@web.middleware
async def forwarded_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Behind a trusted reverse proxy, take the scheme and client address it reports."""
    if request.app[CTX].settings.trust_forwarded:
        changes: dict[str, str] = {}
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        client = request.headers.get("X-Forwarded-For", "").split(",")[0].strip()
        if client:
            changes["remote"] = client
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        if host:
            changes["host"] = host
        if changes:
            request = request.clone(**changes)  # type: ignore[arg-type]
    return await handler(request)


@web.middleware
async def headers_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    h = response.headers
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("X-Frame-Options", "DENY")
    h.setdefault("Referrer-Policy", "same-origin")
    # Pages load nothing from elsewhere: communes may have no internet at all.
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
        "connect-src 'self' ws: wss:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; base-uri 'self'; form-action 'self'",
    )
    if request.scheme == "https":
        h.setdefault("Strict-Transport-Security", "max-age=31536000")
    return response


def node_context(settings: Settings) -> NodeContext:
    engine = create_engine(settings.effective_database_url)
    return NodeContext(
        settings=settings,
        engine=engine,
        sessionmaker=make_sessionmaker(engine),
        secret=settings.resolved_secret(),
    )


async def _database(app: web.Application) -> AsyncIterator[None]:
    node = app[CTX]
    revision = await current_revision(node.engine)
    if revision != HEAD_REVISION:
        await node.engine.dispose()
        raise SchemaError(
            f"database schema is at {revision or 'nothing'}, this node needs {HEAD_REVISION}: "
            "run `hoinghi migrate`"
        )
    await node.reload_units()
    node.extras["dummy_hash"] = await auth.hash_password(node, "not-a-real-password")
    yield
    await node.engine.dispose()


def create_app(settings: Settings) -> web.Application:
    check_aiortc_hooks()  # refuse to start, naming aiortc's version, if an internal is gone
    offer_host_addresses(settings.media_addresses)
    quiet_refused_requests()
    app = web.Application(
        middlewares=[
            forwarded_middleware,
            headers_middleware,
            compression_middleware,  # outside error_middleware: error pages too
            error_middleware,
            auth.session_middleware,
            auth.csrf_middleware,
        ],
        client_max_size=1024 * 1024,
    )
    app[CTX] = node_context(settings)
    app[ERROR_PAGE] = rendering.render_error
    app.cleanup_ctx.append(_database)
    aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(str(WEB_DIR / "templates")),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
    )
    app.router.add_routes(pages.routes)
    app.router.add_routes(api.routes)
    app.router.add_routes(admin.routes)
    app.router.add_routes(live_pages.routes)
    app.router.add_routes(links.routes)
    app.router.add_routes(reports.routes)
    app.router.add_routes(monitor.routes)
    add_static_files(app.router, "/static/", WEB_DIR / "static", name="static")
    namespace = setup_signaling(app)
    attendance = setup_attendance(app, namespace.registry)
    namespace.observers.append(attendance.meeting_changed)
    setup_nodelink(app)
    if settings.is_child:
        setup_parent_link(app)
    if SOCKETIO_DIST.is_dir():
        add_static_files(app.router, "/vendor/socket.io/", SOCKETIO_DIST, "vendor_socketio")
    return app


def ssl_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_enabled:
        return None
    assert settings.tls_cert is not None
    assert settings.tls_key is not None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context


def node_url(settings: Settings) -> str:
    scheme = "https" if settings.tls_enabled else "http"
    return f"{scheme}://{settings.host}:{settings.port}/"


def run(settings: Settings) -> None:
    app = create_app(settings)
    web.run_app(
        app,
        host=settings.host,
        port=settings.port,
        ssl_context=ssl_context(settings),
        print=None,
        access_log=logging.getLogger("hoinghi.access"),
        access_log_class=AccessLog,
        # After the meeting sockets are closed (signaling.py), requests still in flight (a
        # database write among them takes milliseconds) get this long to finish; then what
        # is left is cancelled: a change's transaction rolls back whole (server/atomic.py),
        # and a socket.io transport whose page is already told only waits for the page's
        # reply to its close. aiohttp waits twice (to finish, then after cancelling), so a
        # stop takes at most about twice this after the sockets close (bench/shutdown.py).
        shutdown_timeout=SHUTDOWN_TIMEOUT,
    )
