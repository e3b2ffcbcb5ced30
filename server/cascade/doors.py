"""The right door: which node serves a user whose unit this node does not serve.

On a parent, a user whose unit lies in the subtree of a unit registered for a child node
(``hoinghi node add ... --url URL``, not revoked) is sent to that child. On a child, a user
whose unit lies outside every subtree of ``served_units`` is sent to the parent. Admins are
never sent away: they administer units everywhere. The answer is only shown as a link, never
a cross-origin redirect, so an official sees where they are going.
"""

from __future__ import annotations

from typing import TypedDict

from sqlalchemy import select

from server.models import Node, Role
from server.state import NodeContext

PARENT = "parent"  # the "node" of the answer when the level above serves the user


class ServedBy(TypedDict):
    node: str  # the child node's code, or PARENT
    node_name: str  # name of the child's unit the user falls under; "" for the parent
    url: str
    unit_name: str  # the user's own unit


async def served_elsewhere(
    node: NodeContext, role: Role, unit_id: int, *, with_url_only: bool = True
) -> ServedBy | None:
    """The node that serves a user's unit when it is not this one; None when it is.

    Pages only send users to a child registered with a URL (``with_url_only``); the meeting
    socket also counts a child registered without one (answered with ``url`` ""), because
    a site must never be joined both here and through that child (one site, one link).
    """
    if role is Role.ADMIN:
        return None
    tree = node.units
    unit = tree.by_id.get(unit_id)
    if unit is None:
        return None
    settings = node.settings
    if settings.is_child:
        roots = [tree.by_code[c].id for c in settings.served_units if c in tree.by_code]
        # No served unit known here (a misconfiguration): send nobody away on that ground.
        if roots and not any(tree.in_subtree(unit.id, root) for root in roots):
            return ServedBy(node=PARENT, node_name="", url=settings.parent_url, unit_name=unit.name)
    async with node.sessionmaker() as db:
        query = select(Node).where(Node.revoked_at.is_(None))
        if with_url_only:
            query = query.where(Node.url != "")
        children = (await db.execute(query)).scalars().all()
        registered = [(n.code, n.url, [nu.unit_id for nu in n.units]) for n in children]
    best: tuple[int, ServedBy] | None = None
    depth = len(tree.ancestors(unit.id))
    for code, url, unit_ids in registered:
        if settings.public_url and url == settings.public_url:
            continue  # this node itself
        for root in unit_ids:
            if root not in tree.by_id or not tree.in_subtree(unit.id, root):
                continue
            # The closest registered unit above the user wins (nested registrations).
            closeness = depth - len(tree.ancestors(root))
            if best is None or closeness < best[0]:
                name = tree.by_id[root].name
                best = (
                    closeness,
                    ServedBy(node=code, node_name=name, url=url, unit_name=unit.name),
                )
    return best[1] if best else None
