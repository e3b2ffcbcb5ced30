"""The failed-login limit: counted in the database, reserved before the password is checked.

Rules (settings in server/config.py, documented in README and docs/architecture.md):
- Per (account, address) pair: after ``login_max_failures_pair`` failures within the window,
  that account cannot log in from that address until the oldest leaves the window. Other
  addresses (a colleague at another office) and other accounts behind the same address (a
  whole commune behind one NAT) are not locked out.
- Per account, from any address: after ``login_delay_after`` failures within the window,
  each further login waits 2^k seconds after the last failure (k = the failures past that
  number), at most ``login_delay_max_seconds``. A guesser with many addresses slows down
  exponentially; the owner waits seconds, never a lock.
- A refused login answers ``429 too_many_failures`` with the seconds to wait, even with the
  right password; 1 second when it was refused only for attempts still being checked. A
  right password clears the failures of its pair; an administrator of the account's
  subtree can clear all of its failures (``unlock``).

Atomic under parallel guesses: each attempt first locks the account's ``login_accounts``
row (an upsert, the transaction's first write), then counts and stores itself as a failure
being checked, in one transaction; the password is verified after: a wrong one marks the
reservation ``checked``, a right one deletes it.
So N parallel guesses are checked at most up to the limit; the rest are refused unchecked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.atomic import atomic
from server.errors import AppError
from server.models import LoginAccount, LoginFailure, utcnow
from server.state import NodeContext

MAX_EXPONENT = 30  # 2^30 s is far past any cap; keeps the power small
PENDING_TIMEOUT = timedelta(seconds=60)  # far past any password verification


async def _lock_account(db: AsyncSession, username: str, now: datetime) -> None:
    dialect = db.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(LoginAccount).values(username=username, last_attempt_at=now)
    await db.execute(
        statement.on_conflict_do_update(
            index_elements=[LoginAccount.username], set_={"last_attempt_at": now}
        )
    )


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(0, math.ceil((moment - now).total_seconds()))


def refused(seconds: int) -> AppError:
    seconds = max(1, seconds)
    return AppError(
        429,
        "too_many_failures",
        f"Too many failed logins. Try again in {wait_words('en', seconds)}.",
        {
            "retry_after_seconds": str(seconds),
            "retry_after_minutes": str(math.ceil(seconds / 60)),
        },
    )


def wait_words(lang: str, seconds: int) -> str:
    """ "37 giây", "15 phút"; "37 second(s)", "15 minute(s)"."""
    if seconds < 60:
        return f"{seconds} giây" if lang == "vi" else f"{seconds} second(s)"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} phút" if lang == "vi" else f"{minutes} minute(s)"


async def reserve(node: NodeContext, username: str, address: str) -> int:
    """Count this attempt as a failure before the password is checked (its row id, for
    ``failed``), or refuse it (429).

    An attempt still being checked counts too, so parallel guesses cannot outrun the limit;
    one refused only because of those is told to retry in a second, not after the window.
    """
    s = node.settings
    async with atomic(node.sessionmaker) as db:
        now = utcnow()
        await _lock_account(db, username, now)
        window = timedelta(minutes=s.login_window_minutes)
        # A reservation left by a node that died while verifying counts as a failure.
        done = or_(LoginFailure.checked.is_(True), LoginFailure.at < now - PENDING_TIMEOUT)
        recent = (LoginFailure.username == username, LoginFailure.at > now - window)
        pair_all, pair_done, pair_oldest = (
            await db.execute(
                select(
                    func.count(), func.count().filter(done), func.min(LoginFailure.at).filter(done)
                ).where(*recent, LoginFailure.address == address)
            )
        ).one()
        account_all, account_done, account_last = (
            await db.execute(
                select(
                    func.count(), func.count().filter(done), func.max(LoginFailure.at).filter(done)
                ).where(*recent)
            )
        ).one()
        wait = 0
        if pair_all >= s.login_max_failures_pair:
            if pair_done >= s.login_max_failures_pair and pair_oldest is not None:
                wait = _seconds_until(pair_oldest + window, now)
            else:
                wait = 1  # attempts from here are being checked: one may have been right
        if account_all >= s.login_delay_after:
            if account_all > account_done:
                wait = max(wait, 1)
            if account_done >= s.login_delay_after and account_last is not None:
                exponent = min(account_done - s.login_delay_after, MAX_EXPONENT)
                delay = min(s.login_delay_max_seconds, 2**exponent)
                wait = max(wait, _seconds_until(account_last + timedelta(seconds=delay), now))
        if wait > 0:
            raise refused(wait)
        attempt = LoginFailure(username=username, address=address, at=now, checked=False)
        db.add(attempt)
        await db.flush()
        return attempt.id


async def failed(node: NodeContext, attempt_id: int) -> None:
    """The password was wrong: the reserved attempt is a failure from now on."""
    async with atomic(node.sessionmaker) as db:
        await db.execute(
            update(LoginFailure).where(LoginFailure.id == attempt_id).values(checked=True)
        )


async def succeeded(db: AsyncSession, username: str, address: str) -> None:
    """A right password: this pair's failures (its reservation among them) are forgotten."""
    await db.execute(
        delete(LoginFailure).where(
            LoginFailure.username == username, LoginFailure.address == address
        )
    )


async def unlock(db: AsyncSession, username: str) -> None:
    """An administrator's unlock: every failure of the account, from every address."""
    await db.execute(delete(LoginFailure).where(LoginFailure.username == username))


async def recent_failures(node: NodeContext, usernames: Iterable[str]) -> dict[str, int]:
    """Failures within the window per account, for the administrator's list."""
    names = list(usernames)
    if not names:
        return {}
    since = utcnow() - timedelta(minutes=node.settings.login_window_minutes)
    async with node.sessionmaker() as db:
        rows = await db.execute(
            select(LoginFailure.username, func.count())
            .where(LoginFailure.username.in_(names), LoginFailure.at > since)
            .group_by(LoginFailure.username)
        )
        return {name: int(count) for name, count in rows}
