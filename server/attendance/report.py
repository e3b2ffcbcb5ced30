"""The attendance reports, computed from stored events: what a secretary hands in after a
meeting (one row per site, subtotals per group and level) and across the meetings of a
date range (one row per unit).

Pure functions of their inputs (events, roll calls, invited sites, the meeting's real span),
no database and no clock, so they are tested directly and stay fast: a 300-site meeting
with thousands of events is a few milliseconds.

What the events mean (as ``rooms/roster.py`` folds them live):

- every time is on this node's clock: ``at + offset_ms / 1000``; events are ordered by it,
  ties by the order they were stored in;
- a site is present from a ``join`` or ``reconnect`` to its next ``leave`` or ``drop``; one
  still present when the meeting ended is present until the end (until now while it runs);
- a ``node_down`` until the same node's ``node_up`` is a gap for every site whose path holds
  one of the units it names (no units: every site); presence minus gaps is what counts, and
  a gap that cuts into a presence is one drop, as is a ``drop`` that ends one;
- minutes and drops are counted within the meeting's real span only (none before it started).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from rooms.roster import (
    DROP,
    HEAD_COUNT,
    JOIN,
    LEAVE,
    NODE_DOWN,
    NODE_UP,
    RECONNECT,
    ROLL_ANSWER,
    InvitedSite,
)
from server.attendance.store import OFFSET_FLAG_MS, Stored

PRESENT = "present"
ABSENT = "absent"
_OPEN = "open"  # a presence still going at the end of the span
_GAP = "gap"


@dataclass(frozen=True)
class Span:
    """A meeting's real start and end (``end`` None while it runs), and now."""

    start: datetime | None
    end: datetime | None
    now: datetime

    @property
    def running(self) -> bool:
        return self.end is None

    def bounds(self) -> tuple[float | None, float]:
        """Start and end on this node's clock (the end: now while it runs)."""
        end = (self.end or self.now).timestamp()
        if self.start is None:
            return None, end
        start = self.start.timestamp()
        return start, max(start, end)

    @property
    def seconds(self) -> float:
        start, end = self.bounds()
        return 0.0 if start is None else end - start


@dataclass(frozen=True)
class RollCallColumn:
    id: str
    number: int


@dataclass
class SiteRow:
    unit: str
    name: str
    level: str
    parent_name: str
    group: str
    group_name: str
    path: tuple[str, ...]
    invited: bool
    node: str = ""  # the node its last join came through
    first_join: datetime | None = None
    last_leave: datetime | None = None  # None while still present
    seconds: float = 0.0  # connected within the span
    drops: int = 0
    head_count_peak: int | None = None
    head_count_last: int | None = None
    answers: tuple[int | None, ...] = ()  # per roll call, in number order; None: no answer
    still_present: bool = False

    @property
    def minutes(self) -> int:
        return minutes_of(self.seconds)

    @property
    def present(self) -> bool:
        return self.minutes > 0

    @property
    def state(self) -> str:
        return PRESENT if self.present else ABSENT


def minutes_of(seconds: float) -> int:
    """Whole minutes, half a minute and more rounded up (a site is present from 30 s)."""
    return math.floor(seconds / 60 + 0.5)


def rate(part: float, whole: float) -> float | None:
    """A percentage with one decimal; None when there is nothing to divide by."""
    if whole <= 0:
        return None
    return round(100 * part / whole, 1)


@dataclass
class _Totals:
    """What every subtotal adds up: the rows' minutes and seconds, against the most that
    could have been (invited × the meetings' lengths)."""

    key: str
    name: str
    minutes: int = 0  # the rows' minutes added up (what the printed column sums to)
    seconds: float = 0.0
    possible_seconds: float = 0.0

    @property
    def possible_minutes(self) -> int:
        return minutes_of(self.possible_seconds)

    @property
    def time_rate(self) -> float | None:
        return rate(self.seconds, self.possible_seconds)


@dataclass
class Subtotal(_Totals):
    """Counts over the invited sites of a group, a level or the whole report."""

    invited: int = 0
    present: int = 0
    head_count: int = 0  # the last head count of the sites present, added up

    def add(self, row: SiteRow, meeting_seconds: float) -> None:
        self.invited += 1
        self.present += row.present
        self.minutes += row.minutes
        self.seconds += row.seconds
        self.possible_seconds += meeting_seconds
        if row.present and row.head_count_last:
            self.head_count += row.head_count_last

    @property
    def site_rate(self) -> float | None:
        return rate(self.present, self.invited)


@dataclass
class Group:
    total: Subtotal
    rows: list[SiteRow] = field(default_factory=list)


@dataclass(frozen=True)
class ClockNote:
    """A node whose clock was off by more than ``OFFSET_FLAG_MS``: its times were corrected.
    ``offset_ms`` is what was added to its clock (positive: it was behind)."""

    node: str
    offset_ms: int


@dataclass
class Report:
    span: Span
    roll_calls: list[RollCallColumn]
    rows: list[SiteRow]
    groups: list[Group]
    levels: list[Subtotal]
    total: Subtotal
    clock_notes: list[ClockNote]

    @property
    def meeting_seconds(self) -> float:
        return self.span.seconds

    @property
    def meeting_minutes(self) -> int:
        return minutes_of(self.meeting_seconds)


# -- folding events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Gap:
    start: float
    end: float  # inf while the node is still down
    units: frozenset[str]  # empty: every site

    def covers(self, path: tuple[str, ...]) -> bool:
        return not self.units or not self.units.isdisjoint(path)


def _time(event: Stored) -> float:
    return event.at.timestamp() + event.offset_ms / 1000


def _ordered(events: Iterable[Stored]) -> list[tuple[float, Stored]]:
    keyed = [(_time(e), i, e) for i, e in enumerate(events)]
    keyed.sort(key=lambda k: (k[0], k[1]))
    return [(t, e) for t, _i, e in keyed]


def _node_units(event: Stored) -> frozenset[str]:
    if not event.detail:
        return frozenset()
    try:
        units = json.loads(event.detail).get("units", [])
    except (ValueError, AttributeError):
        return frozenset()
    return frozenset(str(u) for u in units) if isinstance(units, list) else frozenset()


def _gaps(ordered: Sequence[tuple[float, Stored]]) -> list[_Gap]:
    """Each node's down time, from its ``node_down`` to its next ``node_up``."""
    down: dict[str, tuple[float, frozenset[str]]] = {}
    gaps: list[_Gap] = []
    for t, event in ordered:
        if event.kind == NODE_DOWN:
            units = _node_units(event)
            if event.node in down:  # down again before up: one gap, over both units
                start, before = down[event.node]
                units = frozenset() if not before or not units else before | units
                down[event.node] = (start, units)
            else:
                down[event.node] = (t, units)
        elif event.kind == NODE_UP and event.node in down:
            start, units = down.pop(event.node)
            if t > start:
                gaps.append(_Gap(start, t, units))
    gaps.extend(_Gap(start, math.inf, units) for start, units in down.values())
    return gaps


def _merged(gaps: Iterable[_Gap]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for gap in sorted(gaps, key=lambda g: g.start):
        if out and gap.start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], gap.end))
        else:
            out.append((gap.start, gap.end))
    return out


def _presence(
    events: Sequence[tuple[float, Stored]], close_at: float
) -> list[tuple[float, float, str]]:
    """The site's presence intervals (start, end, what ended it) from its own events."""
    out: list[tuple[float, float, str]] = []
    since: float | None = None
    for t, event in events:
        if event.kind in (JOIN, RECONNECT):
            if since is None:
                since = t
        elif event.kind in (LEAVE, DROP) and since is not None:
            out.append((since, t, event.kind))
            since = None
    if since is not None and since < close_at:
        out.append((since, close_at, _OPEN))
    return out


def _minus_gaps(
    presence: Sequence[tuple[float, float, str]], gaps: Sequence[tuple[float, float]]
) -> list[tuple[float, float, str]]:
    """Presence with the gaps cut out; a piece ended by a gap ends with ``_GAP``."""
    out: list[tuple[float, float, str]] = []
    for start, end, why in presence:
        current = start
        for gap_start, gap_end in gaps:
            if gap_end <= current:
                continue
            if gap_start >= end:
                break
            if gap_start > current:
                out.append((current, gap_start, _GAP))
            current = max(current, gap_end)
            if current >= end:
                break
        if current < end:
            out.append((current, end, why))
    return out


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _fill(
    row: SiteRow,
    events: Sequence[tuple[float, Stored]],
    gaps: Sequence[_Gap],
    span: Span,
    roll_calls: Sequence[RollCallColumn],
) -> None:
    start, end = span.bounds()
    close_at = end
    cuts = _merged(g for g in gaps if g.covers(row.path))
    pieces = _minus_gaps(_presence(events, close_at), cuts)
    if pieces:
        row.first_join = _utc(pieces[0][0])
        last_end, why = pieces[-1][1], pieces[-1][2]
        row.still_present = why == _OPEN and span.running
        row.last_leave = None if row.still_present else _utc(last_end)
    if start is not None:
        for a, b, why in pieces:
            row.seconds += max(0.0, min(b, end) - max(a, start))
            if why in (_GAP, DROP) and start <= b <= end:
                row.drops += 1
    answers: dict[str, int] = {}
    for _t, event in events:
        if event.kind in (JOIN, RECONNECT) and event.origin_node:
            row.node = event.origin_node
        if event.kind in (HEAD_COUNT, ROLL_ANSWER) and event.head_count is not None:
            row.head_count_last = event.head_count
            row.head_count_peak = max(row.head_count_peak or 0, event.head_count)
        if event.kind == ROLL_ANSWER and event.roll_call:
            answers[event.roll_call] = event.head_count or 0
    row.answers = tuple(answers.get(call.id) for call in roll_calls)


def _clock_notes(events: Iterable[Stored]) -> list[ClockNote]:
    worst: dict[str, int] = {}
    for event in events:
        if abs(event.offset_ms) > OFFSET_FLAG_MS and abs(event.offset_ms) > abs(
            worst.get(event.origin_node, 0)
        ):
            worst[event.origin_node] = event.offset_ms
    return [ClockNote(node, offset) for node, offset in sorted(worst.items())]


def _blank(site: InvitedSite, invited: bool) -> SiteRow:
    return SiteRow(
        unit=site.unit,
        name=site.name,
        level=site.level,
        parent_name=site.parent_name,
        group=site.group,
        group_name=site.group_name,
        path=site.path,
        invited=invited,
    )


def _unknown(code: str) -> InvitedSite:
    return InvitedSite(code, code, "", (code,), code, code, "")


def site_rows(
    events: Sequence[Stored],
    roll_calls: Sequence[RollCallColumn],
    sites: Sequence[InvitedSite],
    span: Span,
    *,
    include: Callable[[str], bool] | None = None,
    describe: Callable[[str], InvitedSite | None] | None = None,
) -> list[SiteRow]:
    """One row per invited site (and per site that joined uninvited), in tree order.

    ``include`` keeps only the rows the reader may see; ``describe`` names a site that was
    not invited (else its code stands for its name)."""
    ordered = _ordered(events)
    gaps = _gaps(ordered)
    by_unit: dict[str, list[tuple[float, Stored]]] = {}
    joined: set[str] = set()
    for t, event in ordered:
        if event.unit_code and event.kind not in (NODE_DOWN, NODE_UP):
            by_unit.setdefault(event.unit_code, []).append((t, event))
            if event.kind in (JOIN, RECONNECT):
                joined.add(event.unit_code)
    invited = {site.unit: site for site in sites}
    chosen: list[SiteRow] = []
    for site in sites:
        if include is None or include(site.unit):
            chosen.append(_blank(site, True))
    for code in sorted(joined - set(invited)):
        if include is None or include(code):
            found = describe(code) if describe is not None else None
            chosen.append(_blank(found or _unknown(code), False))
    for row in chosen:
        _fill(row, by_unit.get(row.unit, ()), gaps, span, roll_calls)
    chosen.sort(key=lambda r: (r.path, r.unit))
    return chosen


def level_order(rows: Iterable[SiteRow | UnitRow]) -> list[str]:
    """Levels from the top of the tree down (the shortest path of each first)."""
    depth: dict[str, int] = {}
    for row in rows:
        depth[row.level] = min(depth.get(row.level, len(row.path)), len(row.path))
    return sorted(depth, key=lambda level: (depth[level], level))


def build_report(
    events: Sequence[Stored],
    roll_calls: Sequence[RollCallColumn],
    sites: Sequence[InvitedSite],
    span: Span,
    *,
    include: Callable[[str], bool] | None = None,
    describe: Callable[[str], InvitedSite | None] | None = None,
    level_names: Callable[[str], str] = str,
) -> Report:
    """A meeting's report. ``events`` in the order they were stored; ``roll_calls`` in
    number order. Subtotals count invited sites only (a site that joined uninvited is listed,
    marked, but would push a rate past 100 %)."""
    rows = site_rows(events, roll_calls, sites, span, include=include, describe=describe)
    seconds = span.seconds
    groups: dict[str, Group] = {}
    for row in rows:
        group = groups.get(row.group)
        if group is None:
            group = groups[row.group] = Group(Subtotal(row.group, row.group_name))
        group.rows.append(row)
        if row.invited:
            group.total.add(row, seconds)
    levels = {level: Subtotal(level, level_names(level)) for level in level_order(rows)}
    total = Subtotal("", "")
    for row in rows:
        if row.invited:
            levels[row.level].add(row, seconds)
            total.add(row, seconds)
    return Report(
        span=span,
        roll_calls=list(roll_calls),
        rows=rows,
        groups=list(groups.values()),
        levels=[s for s in levels.values() if s.invited],
        total=total,
        clock_notes=_clock_notes(events),
    )


# -- across meetings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class HeldMeeting:
    """A meeting that really took place, with what its report needs."""

    id: int
    title: str
    host_name: str
    span: Span
    sites: Sequence[InvitedSite]
    events: Sequence[Stored]

    @property
    def minutes(self) -> int:
        return minutes_of(self.span.seconds)


@dataclass
class UnitRow:
    unit: str
    name: str
    level: str
    parent_name: str
    path: tuple[str, ...]
    invited: int = 0  # meetings it was invited to
    attended: int = 0  # of those, the ones it was present at
    seconds: float = 0.0
    possible_seconds: float = 0.0  # the lengths of the meetings it was invited to

    @property
    def minutes(self) -> int:
        return minutes_of(self.seconds)

    @property
    def possible_minutes(self) -> int:
        return minutes_of(self.possible_seconds)

    @property
    def rate(self) -> float | None:
        return rate(self.seconds, self.possible_seconds)


@dataclass
class UnitSubtotal(_Totals):
    """Counts over the units of a level (or all) across the meetings of a range."""

    units: int = 0
    invited: int = 0
    attended: int = 0

    def add(self, row: UnitRow) -> None:
        self.units += 1
        self.invited += row.invited
        self.attended += row.attended
        self.minutes += row.minutes
        self.seconds += row.seconds
        self.possible_seconds += row.possible_seconds

    @property
    def attend_rate(self) -> float | None:
        return rate(self.attended, self.invited)

    @property
    def rate(self) -> float | None:
        return self.time_rate


@dataclass
class RangeReport:
    first: date
    last: date
    meetings: list[HeldMeeting]
    rows: list[UnitRow]
    levels: list[UnitSubtotal]
    total: UnitSubtotal


def build_range_report(
    first: date,
    last: date,
    held: Sequence[HeldMeeting],
    *,
    include: Callable[[str], bool] | None = None,
    level_names: Callable[[str], str] = str,
) -> RangeReport:
    """Per unit in scope, over the meetings held: invited to, attended, minutes, rate
    (minutes connected / the lengths of the meetings it was invited to)."""
    units: dict[str, UnitRow] = {}
    for meeting in held:
        for row in site_rows(meeting.events, (), meeting.sites, meeting.span, include=include):
            if not row.invited:
                continue
            unit = units.get(row.unit)
            if unit is None:
                unit = units[row.unit] = UnitRow(
                    row.unit, row.name, row.level, row.parent_name, row.path
                )
            unit.invited += 1
            unit.attended += row.present
            unit.seconds += row.seconds
            unit.possible_seconds += meeting.span.seconds
    rows = sorted(units.values(), key=lambda r: (r.path, r.unit))
    levels = {level: UnitSubtotal(level, level_names(level)) for level in level_order(rows)}
    total = UnitSubtotal("", "")
    for unit_row in rows:
        levels[unit_row.level].add(unit_row)
        total.add(unit_row)
    return RangeReport(first, last, list(held), rows, list(levels.values()), total)
