"""Child nodes: credentials this node issues, verifies and revokes, and each child's units.

A credential is ``CODE.SECRET``: the child's code (the unit-code pattern, which allows dots)
and a random URL-safe secret, which has none, so the last dot splits them. Only the Argon2
hash of the secret is stored. Refusals are logged at WARNING with the client address and the
node's code when it is a registered one; the secret, the credential and an unregistered code
(which could be a mangled credential) are never logged.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import NoReturn
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError

from server import auth
from server.atomic import is_contention, is_unique_violation
from server.errors import AppError
from server.models import Node, NodeUnit, Unit, utcnow
from server.state import NodeContext
from server.units import valid_code

log = logging.getLogger(__name__)

SECRET_BYTES = 32
SECRET_RE = re.compile(r"[A-Za-z0-9_-]{43,128}")  # token_urlsafe(32) gives 43 characters
MAX_CREDENTIAL = 64 + 1 + 128
MAX_URL = 300
ISSUE_ATTEMPTS = 5

_STATUS = {"bad_credential": 401, "unit_out_of_scope": 403, "unknown_node": 404}
_MESSAGES = {"bad_credential": "The node credential is not valid."}


class NodeError(AppError):
    """A node operation was refused; ``code`` is stable, the message names the problem."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(_STATUS.get(code, 400), code, message or _MESSAGES.get(code, code))


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: int
    code: str
    units: tuple[str, ...]
    url: str
    issued_at: datetime
    revoked_at: datetime | None
    budget_kbit: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _info(node: Node) -> NodeInfo:
    units = tuple(sorted(nu.unit.code for nu in node.units))
    return NodeInfo(
        node.id, node.code, units, node.url, node.created_at, node.revoked_at, node.budget_kbit
    )


def _shown(values: Iterable[str], limit: int = 5) -> str:
    """Client-given values for a message or log line: quoted, shortened, at most ``limit``."""
    items = list(values)
    text = ", ".join(repr(v[:64]) for v in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def _address(address: str) -> str:
    return "".join(ch if ch.isprintable() else "?" for ch in address[:64]) or "unknown"


def check_url(url: str) -> str:
    """The child's public URL without a trailing slash, or "" ; NodeError if unusable."""
    url = url.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    if (
        len(url) > MAX_URL
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or any(ch.isspace() or not ch.isprintable() for ch in url)
    ):
        raise NodeError(
            "invalid_url",
            f"url {url[:80]!r} refused: give http:// or https:// and a host, "
            f"at most {MAX_URL} characters",
        )
    return url


MIN_BUDGET = 32  # kbit/s: below this not even the audio crosses
MAX_BUDGET = 10_000_000


def check_budget(kbit: int | None) -> int | None:
    if kbit is not None and not MIN_BUDGET <= kbit <= MAX_BUDGET:
        raise NodeError(
            "invalid_budget",
            f"budget {kbit} refused: give {MIN_BUDGET} to {MAX_BUDGET} kbit/s (or none)",
        )
    return kbit


async def issue_credential(
    node_ctx: NodeContext,
    code: str,
    unit_codes: Iterable[str],
    url: str = "",
    budget_kbit: int | None = None,
) -> str:
    """Register (or re-register) a child node; return its new credential ``CODE.SECRET``.

    Issuing again for a registered code replaces its secret, units and URL and lifts a
    revocation: the previous credential stops working at once.
    """
    if not valid_code(code):
        raise NodeError(
            "invalid_code",
            f"node code {code[:80]!r} refused: use 1 to 64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit",
        )
    wanted = list(dict.fromkeys(c.strip() for c in unit_codes if c.strip()))
    if not wanted:
        raise NodeError("no_units", "give at least one unit code the node may speak for")
    url = check_url(url)
    check_budget(budget_kbit)
    secret = secrets.token_urlsafe(SECRET_BYTES)
    secret_hash = await auth.hash_password(node_ctx, secret)
    # Two runs at once for one code: the one that finds its reading stale (a key the other
    # just added) reads again and replaces the other's credential, as a later run would.
    for attempt in range(ISSUE_ATTEMPTS):
        try:
            await _store_node(node_ctx, code, wanted, url, secret_hash, budget_kbit)
            break
        except DBAPIError as exc:
            if not (is_unique_violation(exc) or is_contention(exc)):
                raise
            if attempt == ISSUE_ATTEMPTS - 1:
                raise NodeError(
                    "busy", f"node {code!r} is being registered at the same time; run it again"
                ) from exc
    log.info("credential issued for node %s (units %s)", code, ", ".join(wanted))
    node_ctx.sessions_changed()  # a link made with the replaced credential is dropped now
    return f"{code}.{secret}"


async def _store_node(
    node_ctx: NodeContext,
    code: str,
    wanted: list[str],
    url: str,
    secret_hash: str,
    budget_kbit: int | None,
) -> None:
    async with node_ctx.sessionmaker() as db, db.begin():
        rows = (await db.execute(select(Unit).where(Unit.code.in_(wanted)))).scalars().all()
        unit_ids = {u.code: u.id for u in rows}
        unknown = [c for c in wanted if c not in unit_ids]
        if unknown:
            raise NodeError("unknown_unit", f"unknown unit code(s): {_shown(unknown)}")
        node = (await db.execute(select(Node).where(Node.code == code))).scalar_one_or_none()
        if node is None:
            node = Node(code=code)
            db.add(node)
        node.url = url
        if budget_kbit is not None:  # issuing again without one keeps the budget set
            node.budget_kbit = budget_kbit
        node.secret_hash = secret_hash
        node.created_at = utcnow()
        node.revoked_at = None
        # Keep the rows of units that stay, so no (node, unit) key is deleted and re-added.
        kept = {nu.unit_id: nu for nu in node.units} if node.id is not None else {}
        node.units = [kept.get(unit_ids[c]) or NodeUnit(unit_id=unit_ids[c]) for c in wanted]


async def revoke(node_ctx: NodeContext, code: str) -> NodeInfo:
    """Revoke a node's credential (a second revocation keeps the first time)."""
    async with node_ctx.sessionmaker() as db, db.begin():
        node = (await db.execute(select(Node).where(Node.code == code))).scalar_one_or_none()
        if node is None:
            raise NodeError("unknown_node", f"no node with code {code[:80]!r}")
        if node.revoked_at is None:
            node.revoked_at = utcnow()
        info = _info(node)
    log.info("credential of node %s revoked", code)
    node_ctx.sessions_changed()  # a link made with it is dropped now (other processes: soon)
    return info


async def set_budget(node_ctx: NodeContext, code: str, kbit: int | None) -> NodeInfo:
    """Set (or, with None, clear) what a child node's link may carry. A linked node's
    parent applies it within a few seconds (server/cascade/nodelink.py)."""
    check_budget(kbit)
    async with node_ctx.sessionmaker() as db, db.begin():
        node = (await db.execute(select(Node).where(Node.code == code))).scalar_one_or_none()
        if node is None:
            raise NodeError("unknown_node", f"no node with code {code[:80]!r}")
        node.budget_kbit = kbit
        info = _info(node)
    log.info("budget of node %s set to %s", code, f"{kbit} kbit/s" if kbit else "none")
    return info


async def budgets(node_ctx: NodeContext, codes: Iterable[str]) -> dict[str, int | None]:
    """The budget of each of these nodes, by code (one query)."""
    wanted = set(codes)
    if not wanted:
        return {}
    async with node_ctx.sessionmaker() as db:
        rows = (
            await db.execute(select(Node.code, Node.budget_kbit).where(Node.code.in_(wanted)))
        ).all()
    return {code: budget for code, budget in rows}


# Why a linked child's socket is dropped (server/cascade/nodelink.py guards every link with these).
REVOKED = "revoked"
REPLACED = "credential_replaced"


async def ended_links(node_ctx: NodeContext, links: Mapping[str, NodeInfo]) -> dict[str, str]:
    """Socket id -> reason, for each link whose credential was revoked (or the node
    removed) or replaced by a newer one since the link was made; one query for all."""
    async with node_ctx.sessionmaker() as db:
        rows = (
            await db.execute(
                select(Node.id, Node.created_at, Node.revoked_at).where(
                    Node.id.in_({info.id for info in links.values()})
                )
            )
        ).all()
    now = {node_id: (issued, revoked) for node_id, issued, revoked in rows}
    reasons: dict[str, str] = {}
    for sid, info in links.items():
        issued, revoked = now.get(info.id, (None, utcnow()))
        if revoked is not None:
            reasons[sid] = REVOKED
        elif issued != info.issued_at:
            reasons[sid] = REPLACED
    return reasons


async def list_nodes(node_ctx: NodeContext, include_revoked: bool = True) -> list[NodeInfo]:
    async with node_ctx.sessionmaker() as db:
        query = select(Node).order_by(Node.code)
        if not include_revoked:
            query = query.where(Node.revoked_at.is_(None))
        return [_info(n) for n in (await db.execute(query)).scalars().all()]


def _parse(credential: str) -> tuple[str, str] | None:
    if len(credential) > MAX_CREDENTIAL or "." not in credential:
        return None
    code, secret = credential.rsplit(".", 1)
    if not valid_code(code) or SECRET_RE.fullmatch(secret) is None:
        return None
    return code, secret


def _refuse(reason: str, address: str, code: str | None = None) -> NoReturn:
    log.warning(
        "node credential refused (%s): node %s from %s",
        reason,
        code or "-",
        _address(address),
        extra={"node": code or "-"},
    )
    raise NodeError("bad_credential")


async def _dummy_hash(node_ctx: NodeContext) -> str:
    dummy = node_ctx.extras.get("dummy_hash")  # the app makes one at start-up
    if not isinstance(dummy, str):
        dummy = await auth.hash_password(node_ctx, "not-a-real-secret")
        node_ctx.extras["dummy_hash"] = dummy
    return dummy


async def verify_credential(
    node_ctx: NodeContext, credential: str, address: str = "unknown"
) -> NodeInfo:
    """The registered, unrevoked node the credential belongs to; else ``bad_credential``.

    A well-formed credential always costs one Argon2 verification (against a dummy hash for
    an unknown code), so the time taken does not tell which codes exist.
    """
    parsed = _parse(credential)
    if parsed is None:
        _refuse("malformed", address)
    code, secret = parsed
    async with node_ctx.sessionmaker() as db:
        # A province has a few dozen child nodes: match the code here, so no client-given text
        # (a mangled credential can carry the secret in its "code") reaches the database, its
        # logs or a driver's debug log.
        nodes = (await db.execute(select(Node))).scalars().all()
        node = next((n for n in nodes if n.code == code), None)
        info = _info(node) if node is not None else None
        stored = node.secret_hash if node is not None else None
    if stored is None:
        stored = await _dummy_hash(node_ctx)
    matches = await auth.verify_password(node_ctx, stored, secret)
    if info is None:
        _refuse("unknown node", address)
    if not matches:
        _refuse("wrong secret", address, info.code)
    if info.revoked:
        _refuse("revoked", address, info.code)
    return info


async def check_units(
    node_ctx: NodeContext, info: NodeInfo, claimed_codes: Iterable[str], address: str = "unknown"
) -> None:
    """Refuse (``unit_out_of_scope``) a claimed unit outside every subtree the node holds."""
    tree = node_ctx.units
    roots = [tree.by_code[c].id for c in info.units if c in tree.by_code]
    outside: list[str] = []
    for claimed in claimed_codes:
        unit = tree.by_code.get(claimed)
        if unit is None or not any(tree.in_subtree(unit.id, root) for root in roots):
            outside.append(claimed)
    if outside:
        log.warning(
            "node %s from %s claimed units outside its scope: %s",
            info.code,
            _address(address),
            _shown(outside),
            extra={"node": info.code},
        )
        raise NodeError(
            "unit_out_of_scope", f"units outside node {info.code}'s scope: {_shown(outside)}"
        )
