"""Which login session each ``/meeting`` socket belongs to, and why that session ended.

A socket is opened with a session cookie; its ``Ticket`` records the session (the token's
hash, its expiry) and the user as they were (role, unit, a digest of the password hash). The
socket guard (server/sockets/guard.py) compares all tickets with the database in one query;
the first difference names the reason the socket is ended with (docs/protocol.md,
``session_ended``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import and_, select

from server import auth
from server.models import Role, Session, User, utcnow
from server.state import NodeContext

# The reasons a socket's session ended, as sent in ``session_ended``.
LOGGED_OUT = "logged_out"
EXPIRED = "expired"
DISABLED = "disabled"
PASSWORD_CHANGED = "password_changed"
ROLE_CHANGED = "role_changed"
UNIT_CHANGED = "unit_changed"
REASONS = (LOGGED_OUT, EXPIRED, DISABLED, PASSWORD_CHANGED, ROLE_CHANGED, UNIT_CHANGED)


@dataclass(frozen=True, slots=True)
class Ticket:
    token_hash: str
    expires_at: datetime
    user_id: int
    role: Role
    unit_id: int
    password: str  # SHA-256 of the stored password hash: tells a reset from a logout


def _digest(password_hash: str) -> str:
    return hashlib.sha256(password_hash.encode()).hexdigest()


async def open_ticket(node: NodeContext, token: str) -> tuple[auth.CurrentUser, Ticket] | None:
    """The user a session cookie belongs to and the socket's ticket; None when the session
    is unknown, expired or its account disabled."""
    found = await auth.live_session(node, token)
    if found is None:
        return None
    session, user = found
    current = auth.current_of(session, user)
    ticket = Ticket(
        session.token_hash,
        session.expires_at,
        user.id,
        user.role,
        user.unit_id,
        _digest(user.password_hash),
    )
    return current, ticket


async def ended(node: NodeContext, tickets: Mapping[str, Ticket]) -> dict[str, str]:
    """Socket id -> reason, for every ticket whose session or user is no longer as it was."""
    hashes = {t.token_hash for t in tickets.values()}
    async with node.sessionmaker() as db:
        rows = (
            await db.execute(
                select(
                    User.id,
                    User.role,
                    User.unit_id,
                    User.active,
                    User.password_hash,
                    Session.token_hash,
                    Session.expires_at,
                )
                .outerjoin(
                    Session, and_(Session.user_id == User.id, Session.token_hash.in_(hashes))
                )
                .where(User.id.in_({t.user_id for t in tickets.values()}))
            )
        ).all()
    users = {
        user_id: _Account(role, unit_id, active, _digest(password_hash))
        for user_id, role, unit_id, active, password_hash, _token, _expires in rows
    }
    sessions = {token: expires for *_user, token, expires in rows if token is not None}
    now = utcnow()
    reasons: dict[str, str] = {}
    for sid, ticket in tickets.items():
        reason = _reason(ticket, users.get(ticket.user_id), sessions.get(ticket.token_hash), now)
        if reason is not None:
            reasons[sid] = reason
    return reasons


@dataclass(frozen=True, slots=True)
class _Account:
    role: Role
    unit_id: int
    active: bool
    password: str


def _reason(
    ticket: Ticket, account: _Account | None, expires_at: datetime | None, now: datetime
) -> str | None:
    if account is None or not account.active:
        return DISABLED  # disabled, or the account is gone
    if account.role is not ticket.role:
        return ROLE_CHANGED
    if account.unit_id != ticket.unit_id:
        return UNIT_CHANGED
    if expires_at is None:
        # The session row is gone: an admin's reset ends every session of the account (and a
        # new login sweeps expired ones away), so tell those from a plain logout.
        if account.password != ticket.password:
            return PASSWORD_CHANGED
        return EXPIRED if ticket.expires_at <= now else LOGGED_OUT
    if expires_at <= now:
        return EXPIRED
    return None
