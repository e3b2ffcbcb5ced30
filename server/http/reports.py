"""The attendance reports on the web: a meeting's (page, JSON, CSV, XLSX) and the one across
the meetings of a date range, each showing the reader only the rows they may see.

Access: the meeting must be visible to the user (else ``404 meeting_not_found``, never an
empty report). A secretary, chair or admin sees the sites of their own unit's subtree (all
of them from the host or above); an operator sees only their own site. Across meetings:
the units of the user's subtree (an operator: their own unit).
"""

from __future__ import annotations

import asyncio
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web
from sqlalchemy import select

from rooms.roster import DROP, JOIN, LEAVE, NODE_DOWN, NODE_UP, RECONNECT, InvitedSite
from server import auth, meetings
from server.attendance import exports
from server.attendance.report import (
    ClockNote,
    HeldMeeting,
    RangeReport,
    Report,
    RollCallColumn,
    SiteRow,
    Span,
    Subtotal,
    UnitRow,
    UnitSubtotal,
    build_range_report,
    build_report,
)
from server.attendance.service import ATTENDANCE, invited_sites
from server.attendance.store import Stored, stored
from server.auth import CurrentUser
from server.errors import AppError, path_id
from server.http.rendering import render
from server.i18n import error_text, request_lang, translator
from server.models import AttendanceEvent, Meeting, MeetingStatus, Role, RollCall
from server.state import NodeContext, ctx
from server.units import UnitTree

routes = web.RouteTableDef()

MAX_RANGE_DAYS = 366
# Dates before 1970 hold no meeting; past 9998 the day after the range overflows.
FIRST_YEAR, LAST_YEAR = 1970, 9998
ISO_DATE = re.compile(r"^([0-9]{4})-([0-9]{2})-([0-9]{2})$")
VN_DATE = re.compile(r"^([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})$")
PRESENCE_KINDS = (JOIN, RECONNECT, LEAVE, DROP, NODE_DOWN, NODE_UP)


# -- who sees which rows -----------------------------------------------------------------------


def row_filter(
    user: CurrentUser, tree: UnitTree, host_unit_id: int | None
) -> Callable[[str], bool]:
    """Which site codes the user may see rows of (``host_unit_id`` None: across meetings)."""
    own = tree.get(user.unit_id).code
    if user.role is Role.OPERATOR:
        return lambda code: code == own
    if host_unit_id is not None and tree.in_subtree(host_unit_id, user.unit_id):
        return lambda code: True
    codes = {tree.get(uid).code for uid in tree.subtree_ids(user.unit_id)}
    return codes.__contains__


def describer(tree: UnitTree, host_unit_id: int) -> Callable[[str], InvitedSite | None]:
    """A site that joined without being invited, placed as an invited one would be."""

    def describe(code: str) -> InvitedSite | None:
        info = tree.by_code.get(code)
        if info is None:
            return None
        path = tree.path(info.id)
        below = [u for u in path if u.id != host_unit_id and tree.in_subtree(u.id, host_unit_id)]
        group = below[0] if below else info
        parent = tree.by_id.get(info.parent_id) if info.parent_id is not None else None
        return InvitedSite(
            unit=info.code,
            name=info.name,
            level=info.level,
            path=tuple(u.code for u in path),
            group=group.code,
            group_name=group.name,
            parent_name=parent.name if parent else "",
        )

    return describe


def node_name(node: NodeContext) -> str:
    """``node_name``, else the units this node serves, else the root unit's name."""
    settings = node.settings
    if settings.node_name:
        return settings.node_name
    names = [node.units.by_code[c].name for c in settings.served_units if c in node.units.by_code]
    if names:
        return ", ".join(names)
    roots = node.units.roots()
    return roots[0].name if roots else settings.own_code


def _meeting_id(request: web.Request) -> int:
    text = request.match_info["meeting_id"]
    if not (text.isascii() and text.isdigit()):
        raise AppError(400, "bad_id", "The meeting id must be a number.")
    return path_id(request, "meeting_id", "meeting")


def meeting_span(meeting: Meeting, events: list[Stored], now: datetime) -> Span:
    end = meeting.ended_at
    if end is None and meeting.started_at is not None and meeting.status is MeetingStatus.ENDED:
        # Ended before its end time was recorded: it ended by its last event at the latest.
        times = [e.at + timedelta(milliseconds=e.offset_ms) for e in events]
        end = max([meeting.started_at, *times])
    return Span(meeting.started_at, end, now)


# -- a meeting's report ------------------------------------------------------------------------


@dataclass
class MeetingReport:
    meeting: Meeting
    report: Report


def _level_names(request: web.Request) -> Callable[[str], str]:
    return translator(request_lang(request))


async def load_report(request: web.Request, user: CurrentUser, meeting: Meeting) -> Report:
    """The report of a meeting already found visible to ``user``, with the user's rows."""
    node = ctx(request)
    async with node.sessionmaker() as db:
        calls = (
            await db.execute(
                select(RollCall.id, RollCall.number)
                .where(RollCall.meeting_id == meeting.id)
                .order_by(RollCall.number)
            )
        ).all()
    store = request.app[ATTENDANCE].store
    events = await store.meeting_events(meeting.id)
    tree = node.units
    return build_report(
        events,
        [RollCallColumn(c.id, c.number) for c in calls],
        invited_sites(meeting, tree),
        meeting_span(meeting, events, store.now()),
        include=row_filter(user, tree, meeting.host_unit_id),
        describe=describer(tree, meeting.host_unit_id),
        level_names=_level_names(request),
    )


async def _meeting_report(request: web.Request) -> tuple[CurrentUser, MeetingReport]:
    user = auth.require_user(request)
    mid = _meeting_id(request)
    node = ctx(request)
    async with node.sessionmaker() as db:
        meeting = await meetings.get_visible(db, user, node.units, mid)
    return user, MeetingReport(meeting, await load_report(request, user, meeting))


class Words:
    """How a report's values read on a page, in the reader's language."""

    def __init__(self, request: web.Request) -> None:
        self.lang = request_lang(request)
        self._ = translator(self.lang)
        self.tz: tzinfo = ctx(request).settings.tz

    def time(self, value: datetime | None) -> str:
        return exports.local(value, self.tz)

    def number(self, value: float, digits: int = 1) -> str:
        text = f"{value:.{digits}f}"
        return text.replace(".", ",") if self.lang == "vi" else text

    def rate(self, value: float | None) -> str:
        return "—" if value is None else self.number(value) + "%"

    def level(self, level: str) -> str:
        return self._(level)

    def value(self, value: exports.Value) -> str:
        """A fact as text: a time in the node's zone, a number, a text."""
        if value is None:
            return ""
        if isinstance(value, datetime):
            return self.time(value)
        return str(value)

    def answer(self, value: int | None) -> str:
        return self._("no answer") if value is None else str(value)

    def clock_note(self, note: ClockNote) -> str:
        seconds = self.number(abs(note.offset_ms) / 1000)
        text = (
            "The clock of node {node} was {seconds} s behind this node's; its times have "
            "been corrected."
            if note.offset_ms > 0
            else "The clock of node {node} was {seconds} s ahead of this node's; its times "
            "have been corrected."
        )
        return self._(text).format(node=note.node, seconds=seconds)


def _meeting_facts(
    words: Words, node: NodeContext, meeting: Meeting, report: Report
) -> list[tuple[str, exports.Value]]:
    _ = words._
    host = node.units.by_id.get(meeting.host_unit_id)
    span = report.span
    end: exports.Value = span.end
    if span.start is None:
        end = _("not started")
    elif span.running:
        end = _("still running")
    return [
        (_("Meeting"), meeting.title),
        (_("Host"), host.name if host else ""),
        (_("Node"), node_name(node)),
        (_("Started"), span.start if span.start else _("not started")),
        (_("Ended"), end),
        (_("Meeting length (minutes)"), report.meeting_minutes),
        (_("Time zone"), node.settings.timezone),
    ]


def _ascii_name(text: str) -> str:
    """A file name part in plain ASCII: diacritics dropped, anything else a dash."""
    text = text.replace("đ", "d").replace("Đ", "D")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60]


def download(body: bytes, content_type: str, stem: str, nice: str, suffix: str) -> web.Response:
    """A file answer: an ASCII ``filename`` for old clients, ``filename*`` in UTF-8."""
    ascii_name = f"{stem}.{suffix}"
    utf8_name = quote(f"{nice}.{suffix}", safe="")
    response = web.Response(body=body, content_type=content_type)
    if content_type.startswith("text/"):
        response.charset = "utf-8"
    response.headers["Content-Disposition"] = (
        f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{utf8_name}"
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _file_names(meeting: Meeting, words: Words) -> tuple[str, str]:
    slug = _ascii_name(meeting.title)
    stem = f"diem-danh-{meeting.id}" + (f"-{slug}" if slug else "")
    nice = f"{words._('Attendance')} {meeting.id} - {meeting.title}"
    return stem, nice.replace("/", "-").replace("\\", "-")


@routes.get("/meetings/{meeting_id}/attendance", name="attendance")
async def attendance_page(request: web.Request) -> web.StreamResponse:
    _user, found = await _meeting_report(request)
    words = Words(request)
    node = ctx(request)
    report = found.report
    return render(
        request,
        "attendance.html",
        m=found.meeting,
        report=report,
        w=words,
        facts=_meeting_facts(words, node, found.meeting, report),
        notes=[words.clock_note(n) for n in report.clock_notes],
        node_name=node_name(node),
        host=node.units.by_id.get(found.meeting.host_unit_id),
    )


@routes.get("/meetings/{meeting_id}/attendance.csv")
async def attendance_csv(request: web.Request) -> web.StreamResponse:
    _user, found = await _meeting_report(request)
    words = Words(request)
    columns = exports.meeting_columns(found.report, words._, words.level)
    body = exports.csv_bytes(exports.Table("", columns, found.report.rows), words.tz)
    stem, nice = _file_names(found.meeting, words)
    return download(body, "text/csv", stem, nice, "csv")


def meeting_xlsx(words: Words, node: NodeContext, meeting: Meeting, report: Report) -> bytes:
    _ = words._
    columns = exports.meeting_columns(report, _, words.level)
    summary = [
        exports.Table(
            _("By level"), exports.subtotal_columns(_, _("Level")), [*report.levels, report.total]
        ),
        exports.Table(
            _("By group"),
            exports.subtotal_columns(_, _("Group")),
            [g.total for g in report.groups if g.total.invited],
        ),
    ]
    sheets = [
        (_("Level {level}").format(level=words.level(level)), exports.Table("", columns, rows))
        for level, rows in exports.by_level(report.rows).items()
    ]
    return exports.xlsx_bytes(
        f"{_('Attendance report')}: {meeting.title}",
        _meeting_facts(words, node, meeting, report),
        [words.clock_note(n) for n in report.clock_notes],
        summary,
        sheets,
        words.tz,
        _("Summary"),
    )


@routes.get("/meetings/{meeting_id}/attendance.xlsx")
async def attendance_xlsx(request: web.Request) -> web.StreamResponse:
    _user, found = await _meeting_report(request)
    words = Words(request)
    node = ctx(request)
    body = await asyncio.to_thread(meeting_xlsx, words, node, found.meeting, found.report)
    stem, nice = _file_names(found.meeting, words)
    return download(body, exports.XLSX_TYPE, stem, nice, "xlsx")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def subtotal_json(s: Subtotal) -> dict[str, Any]:
    return {
        "key": s.key,
        "name": s.name,
        "invited": s.invited,
        "present": s.present,
        "minutes": s.minutes,
        "possible_minutes": s.possible_minutes,
        "head_count": s.head_count,
        "site_rate": s.site_rate,
        "time_rate": s.time_rate,
    }


def row_json(row: SiteRow) -> dict[str, Any]:
    return {
        "unit": row.unit,
        "name": row.name,
        "level": row.level,
        "parent_name": row.parent_name,
        "group": row.group,
        "group_name": row.group_name,
        "invited": row.invited,
        "node": row.node or None,
        "first_join": _iso(row.first_join),
        "last_leave": _iso(row.last_leave),
        "seconds": round(row.seconds),
        "minutes": row.minutes,
        "drops": row.drops,
        "head_count_peak": row.head_count_peak,
        "head_count_last": row.head_count_last,
        "roll_answers": list(row.answers),
        "state": row.state,
    }


def report_json(node: NodeContext, meeting: Meeting, report: Report) -> dict[str, Any]:
    host = node.units.by_id.get(meeting.host_unit_id)
    return {
        "meeting": {
            "id": meeting.id,
            "title": meeting.title,
            "host_unit": host.code if host else None,
            "host_name": host.name if host else None,
            "status": meeting.status.value,
            "started_at": _iso(meeting.started_at),
            "ended_at": _iso(report.span.end),
        },
        "node_name": node_name(node),
        "running": report.span.start is not None and report.span.running,
        "meeting_minutes": report.meeting_minutes,
        "roll_calls": [{"id": c.id, "number": c.number} for c in report.roll_calls],
        "clock_notes": [{"node": n.node, "offset_ms": n.offset_ms} for n in report.clock_notes],
        "sites": [row_json(r) for r in report.rows],
        "groups": [
            {**subtotal_json(g.total), "sites": [r.unit for r in g.rows]} for g in report.groups
        ],
        "levels": [subtotal_json(s) for s in report.levels],
        "total": subtotal_json(report.total),
    }


@routes.get("/api/meetings/{meeting_id}/attendance")
async def api_attendance(request: web.Request) -> web.StreamResponse:
    _user, found = await _meeting_report(request)
    body = report_json(ctx(request), found.meeting, found.report)
    return web.json_response({"ok": True, **body}, headers={"Cache-Control": "no-store"})


# -- across meetings ---------------------------------------------------------------------------


def _parse_date(text: str, name: str) -> date:
    iso = ISO_DATE.match(text)
    vn = VN_DATE.match(text)
    try:
        if iso:
            day = date(int(iso[1]), int(iso[2]), int(iso[3]))
        elif vn:
            day = date(int(vn[3]), int(vn[2]), int(vn[1]))
        else:
            raise ValueError(text)
    except ValueError:
        raise AppError(
            400,
            "bad_date",
            f"{name} must be a date: YYYY-MM-DD or DD/MM/YYYY.",
            {name: "not a date"},
        ) from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise AppError(
            400,
            "bad_date",
            f"{name} must lie between {FIRST_YEAR} and {LAST_YEAR}.",
            {name: "out of range"},
        )
    return day


def _month_end(day: date) -> date:
    following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
    return following - timedelta(days=1)


def date_range(request: web.Request) -> tuple[date, date]:
    """``from`` and ``to`` (inclusive); missing both: the current month; one missing: the
    month of the other."""
    raw_from = request.query.get("from", "").strip()
    raw_to = request.query.get("to", "").strip()
    node = ctx(request)
    today = datetime.fromtimestamp(node.clock(), node.settings.tz).date()
    first = _parse_date(raw_from, "from") if raw_from else None
    last = _parse_date(raw_to, "to") if raw_to else None
    if first is None:
        first = (last or today).replace(day=1)
    if last is None:
        last = _month_end(first)
    if first > last:
        raise AppError(400, "bad_range", "from must not be after to.", {"from": "after to"})
    if (last - first).days + 1 > MAX_RANGE_DAYS:
        raise AppError(
            400,
            "range_too_long",
            f"The range may span at most {MAX_RANGE_DAYS} days.",
            {"to": "too far from from"},
        )
    return first, last


async def load_range(
    request: web.Request, user: CurrentUser, first: date, last: date
) -> RangeReport:
    """The meetings held in the range (by their real start, in the node's time zone) that
    the user may see, and each unit's attendance over them."""
    node = ctx(request)
    tz = node.settings.tz
    since = datetime.combine(first, time(0), tz).astimezone(UTC)
    until = datetime.combine(last + timedelta(days=1), time(0), tz).astimezone(UTC)
    tree = node.units
    async with node.sessionmaker() as db:
        held = list(
            (
                await db.execute(
                    select(Meeting)
                    .where(
                        meetings.visibility_clause(user, tree),
                        Meeting.started_at.is_not(None),
                        Meeting.started_at >= since,
                        Meeting.started_at < until,
                    )
                    .order_by(Meeting.started_at, Meeting.id)
                )
            )
            .scalars()
            .unique()
            .all()
        )
        events: dict[int, list[Stored]] = {m.id: [] for m in held}
        if held:
            rows = await db.execute(
                select(AttendanceEvent)
                .where(
                    AttendanceEvent.meeting_id.in_(list(events)),
                    AttendanceEvent.kind.in_(PRESENCE_KINDS),
                )
                .order_by(AttendanceEvent.id)
            )
            for row in rows.scalars():
                events[row.meeting_id].append(stored(row))
    now = request.app[ATTENDANCE].store.now()
    entries = []
    for meeting in held:
        host = tree.by_id.get(meeting.host_unit_id)
        entries.append(
            HeldMeeting(
                id=meeting.id,
                title=meeting.title,
                host_name=host.name if host else "",
                span=meeting_span(meeting, events[meeting.id], now),
                sites=invited_sites(meeting, tree),
                events=events[meeting.id],
            )
        )
    return build_range_report(
        first,
        last,
        entries,
        include=row_filter(user, tree, None),
        level_names=_level_names(request),
    )


def range_subtotal_json(s: UnitSubtotal) -> dict[str, Any]:
    return {
        "key": s.key,
        "name": s.name,
        "units": s.units,
        "invited": s.invited,
        "attended": s.attended,
        "minutes": s.minutes,
        "possible_minutes": s.possible_minutes,
        "attend_rate": s.attend_rate,
        "rate": s.rate,
    }


def unit_json(row: UnitRow) -> dict[str, Any]:
    return {
        "unit": row.unit,
        "name": row.name,
        "level": row.level,
        "parent_name": row.parent_name,
        "invited": row.invited,
        "attended": row.attended,
        "minutes": row.minutes,
        "possible_minutes": row.possible_minutes,
        "rate": row.rate,
    }


def range_json(node: NodeContext, report: RangeReport) -> dict[str, Any]:
    return {
        "from": report.first.isoformat(),
        "to": report.last.isoformat(),
        "node_name": node_name(node),
        "meetings": [
            {
                "id": m.id,
                "title": m.title,
                "host_name": m.host_name,
                "started_at": _iso(m.span.start),
                "ended_at": _iso(m.span.end),
                "minutes": m.minutes,
            }
            for m in report.meetings
        ],
        "units": [unit_json(r) for r in report.rows],
        "levels": [range_subtotal_json(s) for s in report.levels],
        "total": range_subtotal_json(report.total),
    }


def _dmy(day: date) -> str:
    return day.strftime("%d/%m/%Y")


def _range_page(
    request: web.Request,
    report: RangeReport | None,
    values: dict[str, str],
    error: AppError | None = None,
) -> web.Response:
    words = Words(request)
    query = urlencode({"from": values["from"], "to": values["to"]})
    return render(
        request,
        "attendance_range.html",
        status=error.status if error else 200,
        report=report,
        values=values,
        shown={k: _shown(v) for k, v in values.items()},
        query=query,
        error=error,
        error_text=error_text(words.lang, error.code, error.message) if error else "",
        w=words,
        node_name=node_name(ctx(request)),
    )


def _shown(text: str) -> str:
    """A date field's value as dd/mm/yyyy, as far as it reads as a date."""
    match = ISO_DATE.match(text)
    return f"{match[3]}/{match[2]}/{match[1]}" if match else text


async def _range_report(
    request: web.Request,
) -> tuple[CurrentUser, RangeReport | None, dict[str, str], AppError | None]:
    user = auth.require_user(request)
    values = {
        "from": request.query.get("from", "").strip()[:40],
        "to": request.query.get("to", "").strip()[:40],
    }
    try:
        first, last = date_range(request)
    except AppError as err:
        return user, None, values, err
    values = {"from": first.isoformat(), "to": last.isoformat()}
    return user, await load_range(request, user, first, last), values, None


@routes.get("/reports/attendance", name="attendance_range")
async def range_page(request: web.Request) -> web.StreamResponse:
    _user, report, values, error = await _range_report(request)
    return _range_page(request, report, values, error)


def _range_names(report: RangeReport, words: Words) -> tuple[str, str]:
    stem = f"diem-danh-{report.first.isoformat()}-{report.last.isoformat()}"
    nice = f"{words._('Attendance')} {_dmy(report.first)}–{_dmy(report.last)}"
    return stem, nice.replace("/", ".")


@routes.get("/reports/attendance.csv")
async def range_csv(request: web.Request) -> web.StreamResponse:
    _user, report, values, error = await _range_report(request)
    if report is None:
        return _range_page(request, None, values, error)
    words = Words(request)
    columns = exports.range_columns(words._, words.level)
    body = exports.csv_bytes(exports.Table("", columns, report.rows), words.tz)
    stem, nice = _range_names(report, words)
    return download(body, "text/csv", stem, nice, "csv")


def range_xlsx(words: Words, node: NodeContext, report: RangeReport) -> bytes:
    _ = words._
    meeting_columns = [
        exports.Column(_("Meeting"), 40, lambda m: m.title),
        exports.Column(_("Host"), 24, lambda m: m.host_name),
        exports.Column(_("Started"), 20, lambda m: m.span.start, exports.TIME),
        exports.Column(_("Ended"), 20, lambda m: m.span.end, exports.TIME),
        exports.Column(_("Meeting length (minutes)"), 12, lambda m: m.minutes, exports.NUMBER),
    ]
    summary = [
        exports.Table(
            _("By level"),
            exports.range_subtotal_columns(_),
            [*report.levels, report.total],
        ),
        exports.Table(_("Meetings held"), meeting_columns, report.meetings),
    ]
    columns = exports.range_columns(_, words.level)
    sheets = [
        (_("Level {level}").format(level=words.level(level)), exports.Table("", columns, rows))
        for level, rows in exports.by_level(report.rows).items()
    ]
    facts: list[tuple[str, exports.Value]] = [
        (_("From"), _dmy(report.first)),
        (_("To"), _dmy(report.last)),
        (_("Node"), node_name(node)),
        (_("Meetings held"), len(report.meetings)),
        (_("Time zone"), node.settings.timezone),
    ]
    title = f"{_('Attendance across meetings')}: {_dmy(report.first)} – {_dmy(report.last)}"
    return exports.xlsx_bytes(title, facts, [], summary, sheets, words.tz, _("Summary"))


@routes.get("/reports/attendance.xlsx")
async def range_xlsx_file(request: web.Request) -> web.StreamResponse:
    _user, report, values, error = await _range_report(request)
    if report is None:
        return _range_page(request, None, values, error)
    words = Words(request)
    body = await asyncio.to_thread(range_xlsx, words, ctx(request), report)
    stem, nice = _range_names(report, words)
    return download(body, exports.XLSX_TYPE, stem, nice, "xlsx")


@routes.get("/api/reports/attendance")
async def api_range(request: web.Request) -> web.StreamResponse:
    user = auth.require_user(request)
    first, last = date_range(request)
    report = await load_range(request, user, first, last)
    return web.json_response(
        {"ok": True, **range_json(ctx(request), report)}, headers={"Cache-Control": "no-store"}
    )
