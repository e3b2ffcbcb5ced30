"""Who of a meeting's invited sites is here now, as its attendance events say.

A ``Roster`` holds every invited site (not only the connected ones) and folds each stored
attendance event into the site's present state: never came, online, connection lost, left.
It knows nothing of the database: the node feeds it the events it stores (its own and those
its children send up, server/attendance/), once each, in any order. The chair's console
shows ``view()``; a roll call's tally comes from the same records (``tally``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

NEVER = "never"  # chưa vào
ONLINE = "online"  # trực tuyến
LOST = "lost"  # mất kết nối
LEFT = "left"  # đã rời

# Event kinds (docs/protocol.md, "Attendance events").
JOIN = "join"
RECONNECT = "reconnect"
LEAVE = "leave"
DROP = "drop"
HEAD_COUNT = "head_count"
ROLL_ANSWER = "roll_answer"
NODE_DOWN = "node_down"
NODE_UP = "node_up"
KINDS = (JOIN, RECONNECT, LEAVE, DROP, HEAD_COUNT, ROLL_ANSWER, NODE_DOWN, NODE_UP)
PRESENCE = {JOIN: ONLINE, RECONNECT: ONLINE, LEAVE: LEFT, DROP: LOST}


@dataclass(frozen=True)
class InvitedSite:
    unit: str
    name: str
    level: str
    path: tuple[str, ...]  # unit codes from the root down to the site itself
    group: str  # the code of the unit right below the host on the path (a district), or ""
    group_name: str
    parent_name: str


@dataclass(frozen=True)
class Happening:
    """One attendance event as the roster needs it; ``at`` is on this node's clock."""

    origin: str
    seq: int
    unit: str
    kind: str
    at: float
    node: str = ""
    head_count: int | None = None
    roll_call: str | None = None
    units: tuple[str, ...] = ()  # a node event: the units the node serves (() = all)


@dataclass
class SiteRecord:
    state: str = NEVER
    since: float = 0.0  # when the state began
    head_count: int | None = None
    head_count_at: float = 0.0
    node: str = ""  # the node it joined through
    answers: dict[str, int] = field(default_factory=dict)  # roll call id -> head count
    answered_at: dict[str, float] = field(default_factory=dict)  # roll call id -> when


class Roster:
    def __init__(self) -> None:
        self.sites: dict[str, InvitedSite] = {}
        self.records: dict[str, SiteRecord] = {}
        self._seen: set[tuple[str, int]] = set()
        # Nodes whose link (or which themselves) are down: node code -> the units it serves.
        self._down: dict[str, tuple[str, ...]] = {}
        self._down_at: dict[str, float] = {}

    def invite(self, sites: Iterable[InvitedSite]) -> None:
        """Set the invited sites (a site that is not invited but joins is still counted)."""
        self.sites = {site.unit: site for site in sites}

    def apply(self, event: Happening) -> bool:
        """Fold one event in; False when it was seen already (the same id twice)."""
        key = (event.origin, event.seq)
        if key in self._seen:
            return False
        self._seen.add(key)
        if event.kind in (NODE_DOWN, NODE_UP):
            if event.at >= self._down_at.get(event.node, 0.0):
                self._down_at[event.node] = event.at
                if event.kind == NODE_DOWN:
                    self._down[event.node] = event.units
                else:
                    self._down.pop(event.node, None)
            return True
        record = self.records.setdefault(event.unit, SiteRecord())
        state = PRESENCE.get(event.kind)
        if state is not None and event.at >= record.since:
            record.state, record.since = state, event.at
            if state == ONLINE and event.origin:
                record.node = event.origin
        if event.head_count is not None and event.at >= record.head_count_at:
            record.head_count, record.head_count_at = event.head_count, event.at
        call = event.roll_call
        if event.kind == ROLL_ANSWER and call and event.at >= record.answered_at.get(call, 0.0):
            record.answers[call] = event.head_count or 0
            record.answered_at[call] = event.at
        return True

    # -- reading -----------------------------------------------------------------------------

    def state_of(self, unit: str) -> str:
        record = self.records.get(unit)
        state = record.state if record else NEVER
        if state == ONLINE and self._cut_off(unit):
            return LOST
        return state

    def _cut_off(self, unit: str) -> bool:
        """Whether a node between this node and the site is down."""
        site = self.sites.get(unit)
        path = set(site.path) if site else {unit}
        return any(not units or path & set(units) for units in self._down.values())

    def view(self) -> dict[str, Any]:
        """Every invited site with its state, and present/expected per level and group."""
        sites = []
        levels: dict[str, list[int]] = {}
        groups: dict[str, dict[str, Any]] = {}
        heads = 0
        for site in sorted(self.sites.values(), key=lambda s: s.path):
            record = self.records.get(site.unit) or SiteRecord()
            state = self.state_of(site.unit)
            present = state == ONLINE
            if present and record.head_count:
                heads += record.head_count
            sites.append(
                {
                    "unit": site.unit,
                    "name": site.name,
                    "level": site.level,
                    "group": site.group,
                    "state": state,
                    "since": record.since or None,
                    "head_count": record.head_count,
                    "node": record.node or None,
                }
            )
            level = levels.setdefault(site.level, [0, 0])
            level[0] += present
            level[1] += 1
            group = groups.setdefault(
                site.group, {"group": site.group, "name": site.group_name, "present": 0}
            )
            group["present"] += present
            group["expected"] = group.get("expected", 0) + 1
        return {
            "sites": sites,
            "levels": [
                {"level": name, "present": p, "expected": e} for name, (p, e) in levels.items()
            ],
            "groups": sorted(groups.values(), key=lambda g: g["name"]),
            "present": sum(p for p, _ in levels.values()),
            "expected": len(self.sites),
            "head_count": heads,
        }

    def tally(self, roll_call: str) -> dict[str, Any]:
        """A roll call's answers by level and group: answered, waited for, offline."""
        groups: dict[tuple[str, str], dict[str, Any]] = {}
        totals = {"answered": 0, "waiting": 0, "offline": 0, "head_count": 0}
        answers = {}
        for site in sorted(self.sites.values(), key=lambda s: s.path):
            record = self.records.get(site.unit) or SiteRecord()
            if roll_call in record.answers:
                bucket = "answered"
                answers[site.unit] = record.answers[roll_call]
            elif self.state_of(site.unit) == ONLINE:
                bucket = "waiting"
            else:
                bucket = "offline"
            group = groups.setdefault(
                (site.level, site.group),
                {
                    "level": site.level,
                    "group": site.group,
                    "name": site.group_name,
                    "answered": 0,
                    "waiting": 0,
                    "offline": 0,
                    "head_count": 0,
                },
            )
            group[bucket] += 1
            totals[bucket] += 1
            if bucket == "answered":
                group["head_count"] += record.answers[roll_call]
                totals["head_count"] += record.answers[roll_call]
        return {
            "groups": sorted(groups.values(), key=lambda g: (g["level"], g["name"])),
            "answers": answers,
            **totals,
        }
