"""Accounts and access: password hashes, login sessions, CSRF; the failed-login limit is
server/login_limit.py.

Every handler asks ``require_user`` (optionally with roles) for the caller; scope checks
against the unit tree live beside the data they guard (``server/meetings.py``,
``server/http/admin.py``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from aiohttp import web
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import delete, select

from server import login_limit
from server.atomic import atomic
from server.errors import AppError, Handler
from server.models import Role, Session, User, utcnow
from server.state import NodeContext, ctx
from server.text import LINE_MESSAGE, first_refused

log = logging.getLogger(__name__)

SESSION_COOKIE = "hoinghi_session"
PRELOGIN_COOKIE = "hoinghi_pre"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True, slots=True)
class CurrentUser:
    id: int
    username: str
    full_name: str
    role: Role
    unit_id: int
    csrf_token: str

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "username": self.username,
            "full_name": self.full_name,
            "role": self.role.value,
            "unit_id": self.unit_id,
        }


USER = web.RequestKey("hoinghi_user", CurrentUser)
PRELOGIN_CSRF = web.RequestKey("hoinghi_prelogin_csrf", str)
PRELOGIN_NEW_COOKIE = web.RequestKey("hoinghi_prelogin_cookie", str)


def current_user(request: web.Request) -> CurrentUser | None:
    return request.get(USER)


# -- passwords -----------------------------------------------------------------------------


async def hash_password(node: NodeContext, password: str) -> str:
    # Argon2 costs tens of milliseconds of CPU: keep it off the event loop.
    return await asyncio.to_thread(node.hasher.hash, password)


async def verify_password(node: NodeContext, stored: str, password: str) -> bool:
    def _verify() -> bool:
        try:
            return node.hasher.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    return await asyncio.to_thread(_verify)


def check_new_password(password: str) -> str | None:
    """The reason a new password is refused, or None."""
    if len(password) < 8:
        return "must be at least 8 characters"
    if len(password) > 256:
        return "must be at most 256 characters"
    if first_refused(password) is not None:
        return LINE_MESSAGE
    return None


# -- request identity ----------------------------------------------------------------------


def as_bytes(text: str) -> bytes:
    """A client-given string as bytes, never an error: aiohttp keeps header bytes that are
    not UTF-8 as lone surrogates, which a plain ``encode()`` refuses."""
    return text.encode("utf-8", "surrogatepass")


def _token_hash(token: str) -> str:
    return hashlib.sha256(as_bytes(token)).hexdigest()


def client_address(request: web.Request) -> str:
    return (request.remote or "unknown")[:64]


def is_secure(request: web.Request) -> bool:
    return request.scheme == "https"


def set_cookie(
    response: web.StreamResponse,
    request: web.Request,
    name: str,
    value: str,
    max_age: int | None = None,
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Lax",
        secure=is_secure(request),
    )


@web.middleware
async def session_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        user = await load_session_user(ctx(request), token)
        if user is not None:
            request[USER] = user
    return await handler(request)


async def live_session(node: NodeContext, token: str) -> tuple[Session, User] | None:
    """The login session a cookie token names and its account, while both still hold: None
    when the session is unknown or expired or its account is disabled."""
    async with node.sessionmaker() as db:
        row = (
            await db.execute(
                select(Session, User)
                .join(User, User.id == Session.user_id)
                .where(Session.token_hash == _token_hash(token))
            )
        ).first()
    if row is None:
        return None
    session, user = row
    if session.expires_at <= utcnow() or not user.active:
        return None
    return session, user


def current_of(session: Session, user: User) -> CurrentUser:
    return CurrentUser(
        user.id, user.username, user.full_name, user.role, user.unit_id, session.csrf_token
    )


async def load_session_user(node: NodeContext, token: str) -> CurrentUser | None:
    found = await live_session(node, token)
    return None if found is None else current_of(*found)


def require_user(request: web.Request, roles: Iterable[Role] | None = None) -> CurrentUser:
    user = current_user(request)
    if user is None:
        raise AppError(401, "not_authenticated", "Please log in.")
    if roles is not None and user.role not in set(roles):
        raise AppError(403, "forbidden", "Your role may not do this.")
    return user


# -- CSRF ------------------------------------------------------------------------------------


def prelogin_token(node: NodeContext, request: web.Request) -> tuple[str, str | None]:
    """The CSRF token for a page seen before login, and a new cookie value if one is needed."""
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    new_cookie = None
    if not cookie or len(cookie) > 100 or not cookie.isascii():
        cookie = new_cookie = secrets.token_urlsafe(24)
    token = hmac.new(node.secret.encode(), cookie.encode(), hashlib.sha256).hexdigest()
    return token, new_cookie


def expected_csrf(request: web.Request) -> str | None:
    user = current_user(request)
    if user is not None:
        return user.csrf_token
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    if not cookie or not cookie.isascii():
        return None  # prelogin_token never issues such a cookie
    node = ctx(request)
    return hmac.new(node.secret.encode(), cookie.encode(), hashlib.sha256).hexdigest()


async def check_csrf(request: web.Request) -> None:
    """Refuse a state-changing request without the caller's CSRF token (header or form)."""
    if request.method in SAFE_METHODS:
        return
    given = request.headers.get(CSRF_HEADER)
    unreadable_form = False
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        # Read (and cache) the form here, before any handler: a body that is not UTF-8
        # would make every handler's request.post() raise.
        try:
            form = await request.post()
        except (UnicodeDecodeError, ValueError):
            unreadable_form = True
        else:
            value = form.get(CSRF_FIELD)
            if given is None:
                given = value if isinstance(value, str) else None
    expected = expected_csrf(request)
    # Bytes, not str: compare_digest raises on a str with non-ASCII characters.
    if not given or not expected or not hmac.compare_digest(as_bytes(given), as_bytes(expected)):
        raise AppError(
            403,
            "csrf_failed",
            "The form has expired or did not come from this site; reload the page.",
        )
    if unreadable_form:
        raise AppError(
            400, "invalid_field", "The form is not valid UTF-8 text.", {"form": "not UTF-8"}
        )


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/socket.io/"):
        return await handler(request)  # the socket authenticates with the session cookie
    await check_csrf(request)
    return await handler(request)


# -- login and logout --------------------------------------------------------------------------


async def authenticate(node: NodeContext, username: str, password: str, address: str) -> User:
    username = username.strip().lower()[:64]
    if first_refused(username) is not None:
        # No account has such a name (server/text.py), and PostgreSQL refuses NUL in the
        # queries below: a wrong login, after the same hashing work as any other.
        await verify_password(node, node.extras["dummy_hash"], password)
        log.info("failed login for a username with control characters from %s", address)
        raise AppError(401, "bad_credentials", "Wrong username or password.")
    # Counted before the password is checked, so parallel guesses cannot outrun the limit.
    attempt = await login_limit.reserve(node, username, address)
    async with node.sessionmaker() as db:
        user = (
            await db.execute(select(User).where(User.username == username))
        ).scalar_one_or_none()
    # Verify against a real hash even for unknown users so timing does not reveal accounts.
    stored = user.password_hash if user is not None else node.extras["dummy_hash"]
    ok = await verify_password(node, stored, password)
    if user is None or not ok or not user.active:
        await login_limit.failed(node, attempt)
        log.info("failed login for %r from %s", username, address)
        raise AppError(401, "bad_credentials", "Wrong username or password.")
    async with atomic(node.sessionmaker) as db:
        await login_limit.succeeded(db, username, address)
        if node.hasher.check_needs_rehash(user.password_hash):
            db_user = await db.get(User, user.id)
            if db_user is not None:
                db_user.password_hash = await hash_password(node, password)
    return user


async def start_session(node: NodeContext, user: User) -> tuple[str, Session]:
    token = secrets.token_urlsafe(32)
    lifetime = timedelta(hours=node.settings.session_hours)
    session = Session(
        token_hash=_token_hash(token),
        csrf_token=secrets.token_urlsafe(32),
        user_id=user.id,
        expires_at=utcnow() + lifetime,
    )
    async with node.sessionmaker() as db, db.begin():
        # Drop this user's expired sessions while we are here.
        await db.execute(
            delete(Session).where(Session.user_id == user.id, Session.expires_at <= utcnow())
        )
        db.add(session)
    return token, session


def attach_session_cookie(response: web.StreamResponse, request: web.Request, token: str) -> None:
    max_age = int(ctx(request).settings.session_hours * 3600)
    set_cookie(response, request, SESSION_COOKIE, token, max_age=max_age)


async def end_session(request: web.Request, response: web.StreamResponse) -> None:
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        node = ctx(request)
        async with node.sessionmaker() as db, db.begin():
            await db.execute(delete(Session).where(Session.token_hash == _token_hash(token)))
        node.sessions_changed()  # its open sockets close now (server/sockets/guard.py)
    response.del_cookie(SESSION_COOKIE, path="/")


async def end_user_sessions(node: NodeContext, user_id: int) -> None:
    async with node.sessionmaker() as db, db.begin():
        await db.execute(delete(Session).where(Session.user_id == user_id))
    node.sessions_changed()
