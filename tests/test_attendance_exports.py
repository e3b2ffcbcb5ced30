"""The attendance reports of a real node (SQLite, the demo tree): a held meeting's events
written through the store, then the page, the JSON, the CSV and the XLSX carry the same
numbers (read back with the csv module and openpyxl) and the Vietnamese names survive; who
sees which rows; bad input; the report across meetings; the meeting page after the meeting.
"""

from __future__ import annotations

import csv
import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import unquote

import openpyxl
import pytest
from sqlalchemy import update

from server import meetings
from server.atomic import atomic
from server.attendance.service import ATTENDANCE
from server.attendance.store import EventIn
from server.models import Meeting, MeetingStatus, RollCall
from server.state import CTX
from tests.conftest import Node, Session

pytestmark = pytest.mark.timeout(120)

START = (datetime.now(UTC) - timedelta(hours=3)).replace(microsecond=0)
END = START + timedelta(minutes=90)


def at(minute: float) -> datetime:
    return START + timedelta(minutes=minute)


def local(value: datetime, node: Node) -> datetime:
    return value.astimezone(node.app[CTX].settings.tz).replace(tzinfo=None)


def shown(value: datetime, node: Node) -> str:
    return local(value, node).strftime("%d/%m/%Y %H:%M:%S")


async def schedule(session: Session, **body: Any) -> int:
    payload = {
        "title": "Hội nghị giao ban tháng 12: Huyện Ngọc Hiển & Năm Căn",
        "starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
        **body,
    }
    status, answer = await session.call("POST", "/api/meetings", payload)
    assert status == 201, answer
    return int(answer["meeting"]["id"])


async def hold(node: Node, mid: int, start: datetime = START, end: datetime | None = END) -> None:
    """Start (and end) the meeting as the chair's node does, then set its real times."""
    ctx = node.app[CTX]
    async with atomic(ctx.sessionmaker) as db:
        await meetings.set_status(db, mid, MeetingStatus.LIVE)
    if end is not None:
        async with atomic(ctx.sessionmaker) as db:
            await meetings.set_status(db, mid, MeetingStatus.ENDED)
    async with atomic(ctx.sessionmaker) as db:
        await db.execute(
            update(Meeting).where(Meeting.id == mid).values(started_at=start, ended_at=end)
        )


async def roll_call(node: Node, mid: int, number: int, minute: float) -> str:
    call = str(uuid.uuid4())
    async with atomic(node.app[CTX].sessionmaker) as db:
        db.add(RollCall(id=call, meeting_id=mid, number=number, started_at=at(minute)))
    return call


async def record(where: Node, mid: int, unit: str, kind: str, minute: float, **kw: Any) -> None:
    await where.app[ATTENDANCE].store.record(mid, unit, kind, at=at(minute), **kw)


async def held_meeting(node: Node) -> tuple[int, dict[str, str]]:
    """A province meeting of two districts, 90 minutes long, with what its sites did."""
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_subtrees=["CM-NC", "CM-NH"])
    await hold(node, mid)
    first = await roll_call(node, mid, 1, 20)
    second = await roll_call(node, mid, 2, 70)
    # Xã Hàm Rồng: joins early, drops once, 25 people then 31, answers both roll calls.
    await record(node, mid, "CM-NC-HR", "join", -5)
    await record(node, mid, "CM-NC-HR", "head_count", -4, head_count=25)
    await record(node, mid, "CM-NC-HR", "roll_answer", 21, head_count=26, roll_call=first)
    await record(node, mid, "CM-NC-HR", "drop", 30, reason="media")
    await record(node, mid, "CM-NC-HR", "reconnect", 33)
    await record(node, mid, "CM-NC-HR", "head_count", 40, head_count=31)
    await record(node, mid, "CM-NC-HR", "roll_answer", 71, head_count=30, roll_call=second)
    await record(node, mid, "CM-NC-HR", "leave", 80)
    # Huyện Ngọc Hiển's hall: the whole meeting, still there at the end (but cut off while
    # its node's link was down, below).
    await record(node, mid, "CM-NH", "join", 0)
    await record(node, mid, "CM-NH", "head_count", 1, head_count=40)
    await record(node, mid, "CM-NH", "roll_answer", 22, head_count=40, roll_call=first)
    # Thị trấn Rạch Gốc comes through the district node CM-NH, whose clock is 5 s behind;
    # that node's link was down from minute 50 to 55.
    store = node.app[ATTENDANCE].store
    lag = timedelta(seconds=5)
    sent = [
        ("CM-NH-RG", "join", 10, None),
        ("CM-NH-RG", "head_count", 11, 12),
        ("CM-NH-RG", "leave", 60, None),
    ]
    events = [
        EventIn(
            origin_node="CM-NH",
            origin_seq=n,
            meeting_id=mid,
            unit_code=unit,
            kind=kind,  # type: ignore[arg-type]
            at=(at(minute) - lag).timestamp(),
            offset_ms=5000,
            head_count=head,
        )
        for n, (unit, kind, minute, head) in enumerate(sent, start=1)
    ]
    new, again = await store.store_from_below(events, 0)
    assert (len(new), again) == (3, 0)
    await record(node, mid, "", "node_down", 50, node="CM-NH", detail={"units": ["CM-NH"]})
    await record(node, mid, "", "node_up", 55, node="CM-NH", detail={"units": ["CM-NH"]})
    return mid, {"first": first, "second": second}


def page_rows(html: str) -> dict[str, dict[str, str]]:
    """The site rows of the report page: unit -> minutes, drops, state and the cell texts."""
    rows: dict[str, dict[str, str]] = {}
    for match in re.finditer(
        r'<tr class="site [^"]*" data-unit="([^"]+)" data-minutes="(\d+)" data-drops="(\d+)" '
        r'data-state="(\w+)">(.*?)</tr>',
        html,
        flags=re.DOTALL,
    ):
        cells = [
            re.sub(r"\s+", " ", unescape(re.sub(r"<[^>]+>", " ", c))).strip()
            for c in re.findall(r"<td[^>]*>(.*?)</td>", match[5], flags=re.DOTALL)
        ]
        rows[match[1]] = {
            "minutes": match[2],
            "drops": match[3],
            "state": match[4],
            "cells": cells,  # type: ignore[dict-item]
        }
    return rows


async def get(session: Session, path: str) -> tuple[int, Any, Any]:
    resp = await session.client.get(path)
    body = await resp.read()
    return resp.status, resp.headers, body


# -- the same numbers everywhere ---------------------------------------------------------------


async def test_page_json_csv_and_xlsx_carry_the_same_numbers(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    secretary = await node.login("thuky")
    status, data = await secretary.call("GET", f"/api/meetings/{mid}/attendance")
    assert status == 200, data
    sites = {s["unit"]: s for s in data["sites"]}

    hr = sites["CM-NC-HR"]
    assert hr["name"] == "Xã Hàm Rồng"
    assert hr["group_name"] == "Huyện Năm Căn"
    assert (hr["minutes"], hr["drops"]) == (30 + 47, 1)  # from the start, less 3 minutes away
    assert (hr["head_count_peak"], hr["head_count_last"]) == (31, 30)
    assert hr["roll_answers"] == [26, 30]
    assert hr["first_join"] == at(-5).isoformat()
    assert hr["last_leave"] == at(80).isoformat()
    assert hr["node"] == "root"
    nh = sites["CM-NH"]
    assert (nh["minutes"], nh["drops"], nh["roll_answers"]) == (85, 1, [40, None])
    assert nh["last_leave"] == END.isoformat()  # still there at the end
    rg = sites["CM-NH-RG"]
    assert rg["name"] == "Thị trấn Rạch Gốc"
    assert rg["group_name"] == "Huyện Ngọc Hiển"
    assert rg["first_join"] == at(10).isoformat()  # corrected by the 5 s offset
    assert (rg["minutes"], rg["drops"], rg["node"]) == (45, 1, "CM-NH")  # the node's gap
    assert sites["CM-NC-TT"]["state"] == "absent"
    assert data["meeting_minutes"] == 90
    assert data["clock_notes"] == [{"node": "CM-NH", "offset_ms": 5000}]
    assert [c["number"] for c in data["roll_calls"]] == [1, 2]
    levels = {s["key"]: s for s in data["levels"]}
    district, commune = levels["district"], levels["commune"]
    assert (district["present"], district["invited"]) == (1, 2)
    assert district["site_rate"] == 50.0
    assert commune["present"] == 2
    assert data["total"]["present"] == 3

    # The page.
    resp = await secretary.client.get(f"/meetings/{mid}/attendance")
    html = await resp.text()
    assert resp.status == 200
    assert "Hội nghị giao ban tháng 12: Huyện Ngọc Hiển &amp; Năm Căn" in html
    assert "Đồng hồ của nút CM-NH chậm 5,0 giây" in html
    assert 'media="print"' in html
    assert "Xã Hàm Rồng" in html
    rows = page_rows(html)
    assert set(rows) == set(sites)
    for unit, s in sites.items():
        assert rows[unit]["minutes"] == str(s["minutes"]), unit
        assert rows[unit]["drops"] == str(s["drops"]), unit
        assert rows[unit]["state"] == s["state"], unit
    hr_cells = rows["CM-NC-HR"]["cells"]
    assert shown(at(-5), node) in hr_cells
    assert shown(at(80), node) in hr_cells
    assert "không trả lời" in rows["CM-NH"]["cells"]
    for level in data["levels"]:
        assert (
            f'data-level="{level["key"]}" data-present="{level["present"]}" '
            f'data-invited="{level["invited"]}" data-minutes="{level["minutes"]}"'
        ) in html
    for group in data["groups"]:
        assert (
            f'<tr class="subtotal" data-group="{group["key"]}" data-present="{group["present"]}" '
            f'data-invited="{group["invited"]}" data-minutes="{group["minutes"]}"'
        ) in html

    # The CSV.
    status, headers, body = await get(secretary, f"/meetings/{mid}/attendance.csv")
    assert status == 200
    assert headers["Content-Type"] == "text/csv; charset=utf-8"
    assert body.startswith(b"\xef\xbb\xbf")
    disposition = headers["Content-Disposition"]
    assert f'filename="diem-danh-{mid}-hoi-nghi-giao-ban-thang-12-huyen-ngoc-hien-nam-can.csv"' in (
        disposition
    )
    assert disposition.isascii()
    assert unquote(disposition.split("filename*=UTF-8''", 1)[1]).startswith(f"Điểm danh {mid} - ")
    text = body.decode("utf-8-sig")
    assert "Đồng hồ" not in text  # the clock note is for the page, not the CSV
    reader = list(csv.reader(io.StringIO(text)))
    header, lines = reader[0], reader[1:]
    assert header[:3] == ["Nhóm (huyện)", "Đơn vị", "Mã"]
    assert header[-3:] == ["Điểm danh 1", "Điểm danh 2", "Tình trạng"]
    by_code = {line[2]: dict(zip(header, line, strict=True)) for line in lines}
    assert set(by_code) == set(sites)
    for unit, s in sites.items():
        line = by_code[unit]
        assert line["Đơn vị"] == s["name"]
        assert line["Nhóm (huyện)"] == s["group_name"]
        assert int(line["Số phút kết nối"]) == s["minutes"]
        assert int(line["Số lần mất kết nối"]) == s["drops"]
        assert line["Tình trạng"] == ("Có mặt" if s["state"] == "present" else "Vắng")
    assert by_code["CM-NC-HR"]["Vào lần đầu"] == shown(at(-5), node)
    assert by_code["CM-NC-HR"]["Rời lần cuối"] == shown(at(80), node)
    assert by_code["CM-NC-HR"]["Điểm danh 1"] == "26"
    assert by_code["CM-NC-HR"]["Số người dự (cao nhất)"] == "31"
    assert by_code["CM-NH"]["Điểm danh 2"] == ""
    assert by_code["CM-NH-RG"]["Đơn vị cấp trên"] == "Huyện Ngọc Hiển"

    # The XLSX.
    status, headers, body = await get(secretary, f"/meetings/{mid}/attendance.xlsx")
    assert status == 200
    assert headers["Content-Type"].startswith(
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )
    assert f'filename="diem-danh-{mid}-' in headers["Content-Disposition"]
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames == ["Tổng hợp", "Cấp huyện", "Cấp xã"]
    summary = book["Tổng hợp"]
    summary_text = [c.value for r in summary.iter_rows() for c in r if c.value is not None]
    assert "Báo cáo điểm danh: Hội nghị giao ban tháng 12: Huyện Ngọc Hiển & Năm Căn" in (
        summary_text
    )
    assert any(isinstance(v, str) and v.startswith("Đồng hồ của nút CM-NH") for v in summary_text)
    assert local(START, node) in summary_text  # the real start, a real datetime
    assert "Huyện Ngọc Hiển" in summary_text
    xlsx_rows: dict[str, dict[str, Any]] = {}
    for name in ("Cấp huyện", "Cấp xã"):
        sheet = book[name]
        assert sheet.freeze_panes == "A2"
        head = [c.value for c in sheet[1]]
        assert all(c.font.bold for c in sheet[1])
        assert sheet.column_dimensions["B"].width >= 20
        for line in sheet.iter_rows(min_row=2, values_only=True):
            xlsx_rows[str(line[2])] = dict(zip(head, line, strict=True))
    assert set(xlsx_rows) == set(sites)
    for unit, s in sites.items():
        line = xlsx_rows[unit]
        assert line["Đơn vị"] == s["name"]
        assert line["Số phút kết nối"] == s["minutes"]
        assert line["Số lần mất kết nối"] == s["drops"]
    hr_line = xlsx_rows["CM-NC-HR"]
    assert isinstance(hr_line["Số phút kết nối"], int)
    assert hr_line["Vào lần đầu"] == local(at(-5), node)
    assert hr_line["Rời lần cuối"] == local(at(80), node)
    assert (hr_line["Điểm danh 1"], hr_line["Điểm danh 2"]) == (26, 30)
    assert xlsx_rows["CM-NH"]["Điểm danh 2"] is None
    assert xlsx_rows["CM-NH-RG"]["Nhóm (huyện)"] == "Huyện Ngọc Hiển"
    communes = book["Cấp xã"]
    hr_row = next(c.row for c in communes["C"] if c.value == "CM-NC-HR")
    assert communes[f"H{hr_row}"].number_format == "dd/mm/yyyy hh:mm:ss"
    # The level rates, as real fractions.
    level_rows = {r[0]: r for r in summary.iter_rows(values_only=True) if r[0] in ("huyện", "xã")}
    assert level_rows["huyện"][1:4] == (1, 2, 0.5)


async def test_a_running_meeting_counts_until_now(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, invited_units=["CM-NC-HR", "CM-NC-TT"])
    start = datetime.now(UTC) - timedelta(minutes=20)
    await hold(node, mid, start, None)
    await node.app[ATTENDANCE].store.record(mid, "CM-NC-HR", "join", at=start)
    status, data = await chair.call("GET", f"/api/meetings/{mid}/attendance")
    assert status == 200
    hr = {s["unit"]: s for s in data["sites"]}["CM-NC-HR"]
    assert data["running"] is True
    assert data["meeting"]["ended_at"] is None
    assert hr["minutes"] == 20
    assert hr["last_leave"] is None
    html = await (await chair.client.get(f"/meetings/{mid}/attendance")).text()
    assert "vẫn đang kết nối" in html
    assert "đang họp" in html


async def test_a_text_starting_like_a_formula_stays_text(node: Node) -> None:
    chair = await node.login("chutri")
    mid = await schedule(chair, title="=1+2 họp thử", invited_units=["CM-NC-HR"])
    await hold(node, mid)
    status, _headers, body = await get(chair, f"/meetings/{mid}/attendance.xlsx")
    assert status == 200
    sheet = openpyxl.load_workbook(io.BytesIO(body))["Tổng hợp"]
    assert sheet["A1"].value == "Báo cáo điểm danh: =1+2 họp thử"
    assert sheet["B3"].value == "=1+2 họp thử"
    assert sheet["B3"].data_type == "s"


# -- who sees which rows -----------------------------------------------------------------------


async def report_units(session: Session, mid: int) -> tuple[set[str], set[str], set[str]]:
    """The units in the JSON, the page and the CSV of a meeting's report."""
    status, data = await session.call("GET", f"/api/meetings/{mid}/attendance")
    assert status == 200, data
    html = await (await session.client.get(f"/meetings/{mid}/attendance")).text()
    status, _headers, body = await get(session, f"/meetings/{mid}/attendance.csv")
    assert status == 200
    lines = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))[1:]
    return {s["unit"] for s in data["sites"]}, set(page_rows(html)), {line[2] for line in lines}


async def test_a_commune_operator_sees_only_its_own_row(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    for username, unit in (("kt.cm-nc-hr", "CM-NC-HR"), ("kt.cm-nh-rg", "CM-NH-RG")):
        operator = await node.login(username)
        assert await report_units(operator, mid) == ({unit}, {unit}, {unit})
        _status, data = await operator.call("GET", f"/api/meetings/{mid}/attendance")
        assert [g["key"] for g in data["groups"]] == [unit[:5]]
        assert data["total"]["invited"] == 1
        _s, _h, body = await get(operator, f"/meetings/{mid}/attendance.xlsx")
        book = openpyxl.load_workbook(io.BytesIO(body))
        codes = [r[2] for r in book["Cấp xã"].iter_rows(min_row=2, values_only=True)]
        assert codes == [unit]
        assert book.sheetnames == ["Tổng hợp", "Cấp xã"]
    # Hàm Rồng's operator reads nothing of Rạch Gốc's row.
    operator = await node.login("kt.cm-nc-hr")
    html = await (await operator.client.get(f"/meetings/{mid}/attendance")).text()
    assert "Thị trấn Rạch Gốc" not in html
    assert "CM-NH-RG" not in html


async def test_a_district_secretary_sees_only_its_district(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    secretary = await node.login("thuky.cm-nh")
    json_units, page_units, csv_units = await report_units(secretary, mid)
    assert json_units == page_units == csv_units
    assert json_units
    assert all(u == "CM-NH" or u.startswith("CM-NH-") for u in json_units)
    _status, data = await secretary.call("GET", f"/api/meetings/{mid}/attendance")
    assert [g["key"] for g in data["groups"]] == ["CM-NH"]
    # The province's secretary sees both districts.
    province = await node.login("thuky")
    units, _page, _csv = await report_units(province, mid)
    assert {"CM-NC-HR", "CM-NH-RG"} <= units


async def test_a_meeting_the_user_cannot_see_is_not_found(node: Node) -> None:
    chair = await node.login("chutri.cm-nc")
    mid = await schedule(chair, invited_units=["CM-NC-HR"])
    await hold(node, mid)
    await record(node, mid, "CM-NC-HR", "join", 0)
    for username in ("thuky.cm-nh", "kt.cm-nh-rg", "chutri.cm-nh"):
        outsider = await node.login(username)
        status, data = await outsider.call("GET", f"/api/meetings/{mid}/attendance")
        assert (status, data["error"]) == (404, "meeting_not_found")
        for suffix in ("", ".csv", ".xlsx"):
            resp = await outsider.client.get(f"/meetings/{mid}/attendance{suffix}")
            assert resp.status == 404
            assert 'data-error-code="meeting_not_found"' in await resp.text()
    anonymous = await node.anonymous()
    resp = await anonymous.client.get(f"/meetings/{mid}/attendance.csv", allow_redirects=False)
    assert resp.status == 303
    assert resp.headers["Location"].startswith("/login?next=")


# -- bad input ---------------------------------------------------------------------------------


async def test_a_meeting_id_that_is_not_a_number(node: Node) -> None:
    secretary = await node.login("thuky")
    status, data = await secretary.call("GET", "/api/meetings/abc/attendance")
    assert (status, data["error"]) == (400, "bad_id")
    for path in ("/meetings/abc/attendance", "/meetings/1x/attendance.csv"):
        resp = await secretary.client.get(path)
        assert resp.status == 400
        assert 'data-error-code="bad_id"' in await resp.text()
    status, data = await secretary.call("GET", "/api/meetings/99999999999/attendance")
    assert (status, data["error"]) == (404, "meeting_not_found")


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("from=2026-12-10&to=2026-12-01", "bad_range"),
        ("from=2026-13-01&to=2026-12-31", "bad_date"),
        ("from=yesterday", "bad_date"),
        ("from=31/02/2026", "bad_date"),
        ("from=2025-01-01&to=2026-01-02", "range_too_long"),
        ("from=0001-01-01&to=0001-01-02", "bad_date"),
    ],
)
async def test_bad_dates_are_refused_with_the_form_shown_again(
    node: Node, query: str, code: str
) -> None:
    secretary = await node.login("thuky")
    status, data = await secretary.call("GET", f"/api/reports/attendance?{query}")
    assert (status, data["error"]) == (400, code)
    for path in ("/reports/attendance", "/reports/attendance.csv", "/reports/attendance.xlsx"):
        resp = await secretary.client.get(f"{path}?{query}")
        html = await resp.text()
        assert resp.status == 400
        assert f'data-error-code="{code}"' in html
        assert '<input type="date" name="from"' in html  # the form, to correct it
        assert "không hợp lệ" in html


async def test_366_days_are_allowed_and_both_date_forms_read(node: Node) -> None:
    secretary = await node.login("thuky")
    status, data = await secretary.call(
        "GET", "/api/reports/attendance?from=2024-01-01&to=2024-12-31"
    )
    assert status == 200, data
    status, data = await secretary.call("GET", "/api/reports/attendance?from=05/02/2026")
    assert (status, data["from"], data["to"]) == (200, "2026-02-05", "2026-02-28")
    status, data = await secretary.call("GET", "/api/reports/attendance")
    today = datetime.now(node.app[CTX].settings.tz).date()
    assert data["from"] == today.replace(day=1).isoformat()
    html = await (await secretary.client.get("/reports/attendance")).text()
    assert today.replace(day=1).strftime("%d/%m/%Y") in html


# -- across meetings ---------------------------------------------------------------------------


async def test_the_report_across_meetings_and_its_files(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    chair = await node.login("chutri")
    other = await schedule(chair, title="Họp chuyên đề", invited_units=["CM-NC-HR", "CM-NH-RG"])
    await hold(node, other, at(120), at(150))
    await record(node, other, "CM-NC-HR", "join", 125)
    not_held = await schedule(chair, title="Chưa họp", invited_units=["CM-NC-HR"])
    day = START.astimezone(node.app[CTX].settings.tz).date()
    query = (
        f"from={(day - timedelta(days=1)).isoformat()}&to={(day + timedelta(days=1)).isoformat()}"
    )
    secretary = await node.login("thuky")
    status, data = await secretary.call("GET", f"/api/reports/attendance?{query}")
    assert status == 200, data
    assert [m["id"] for m in data["meetings"]] == [mid, other]
    assert not_held not in [m["id"] for m in data["meetings"]]
    units = {u["unit"]: u for u in data["units"]}
    hr = units["CM-NC-HR"]
    assert hr["name"] == "Xã Hàm Rồng"
    assert (hr["invited"], hr["attended"], hr["minutes"], hr["possible_minutes"]) == (
        2,
        2,
        77 + 25,
        90 + 30,
    )
    assert hr["rate"] == round(100 * 102 / 120, 1)
    rg = units["CM-NH-RG"]
    assert (rg["invited"], rg["attended"], rg["minutes"]) == (2, 1, 45)
    assert units["CM-NC-TT"]["attended"] == 0

    html = await (await secretary.client.get(f"/reports/attendance?{query}")).text()
    for unit, u in units.items():
        assert (
            f'data-unit="{unit}" data-invited="{u["invited"]}" data-attended="{u["attended"]}" '
            f'data-minutes="{u["minutes"]}"'
        ) in html
    assert "Họp chuyên đề" in html

    status, headers, body = await get(secretary, f"/reports/attendance.csv?{query}")
    assert status == 200
    assert body.startswith(b"\xef\xbb\xbf")
    assert headers["Content-Disposition"].startswith('attachment; filename="diem-danh-')
    reader = list(csv.DictReader(io.StringIO(body.decode("utf-8-sig"))))
    by_code = {line["Mã"]: line for line in reader}
    assert set(by_code) == set(units)
    for unit, u in units.items():
        assert by_code[unit]["Đơn vị"] == u["name"]
        assert int(by_code[unit]["Số cuộc họp được mời"]) == u["invited"]
        assert int(by_code[unit]["Số cuộc họp có mặt"]) == u["attended"]
        assert int(by_code[unit]["Số phút kết nối"]) == u["minutes"]

    status, headers, body = await get(secretary, f"/reports/attendance.xlsx?{query}")
    assert status == 200
    book = openpyxl.load_workbook(io.BytesIO(body))
    assert book.sheetnames[0] == "Tổng hợp"
    found: dict[str, tuple[Any, ...]] = {}
    for name in book.sheetnames[1:]:
        sheet = book[name]
        assert sheet.freeze_panes == "A2"
        found.update({str(r[1]): r for r in sheet.iter_rows(min_row=2, values_only=True)})
    assert set(found) == set(units)
    assert found["CM-NC-HR"][0] == "Xã Hàm Rồng"
    assert found["CM-NC-HR"][4:7] == (2, 2, 102)
    summary = [c.value for r in book["Tổng hợp"].iter_rows() for c in r if c.value]
    assert "Họp chuyên đề" in summary

    # An operator: its own unit only.
    operator = await node.login("kt.cm-nh-rg")
    status, data = await operator.call("GET", f"/api/reports/attendance?{query}")
    assert [u["unit"] for u in data["units"]] == ["CM-NH-RG"]
    # A district secretary: its district's units only.
    district = await node.login("thuky.cm-nc")
    status, data = await district.call("GET", f"/api/reports/attendance?{query}")
    assert data["units"]
    assert all(u["unit"].startswith("CM-NC") for u in data["units"])


# -- the meeting page and the navigation -------------------------------------------------------


async def test_the_meeting_page_after_the_meeting_shows_who_attended(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    secretary = await node.login("thuky")
    resp = await secretary.client.get(f"/meetings/{mid}")
    assert resp.status == 200
    html = await resp.text()
    assert shown(START, node)[:16] in html
    assert 'id="real-end"' in html
    assert f'href="/meetings/{mid}/attendance"' in html
    assert re.search(r'data-code="CM-NC-HR" data-attended="yes"', html)
    assert re.search(r'data-code="CM-NC-TT" data-attended="no"', html)
    assert "có mặt, 77 phút" in html
    # An operator is told about its own site only.
    operator = await node.login("kt.cm-nc-hr")
    resp = await operator.client.get(f"/meetings/{mid}")
    assert resp.status == 200
    html = await resp.text()
    assert 'data-code="CM-NC-HR" data-attended="yes"' in html
    assert "data-attended" not in html.replace('data-code="CM-NC-HR" data-attended', "")
    # Before the meeting: as before, no marks and no report link.
    chair = await node.login("chutri")
    later = await schedule(chair, invited_units=["CM-NC-HR"])
    resp = await chair.client.get(f"/meetings/{later}")
    assert resp.status == 200
    html = await resp.text()
    assert 'data-code="CM-NC-HR"' in html
    assert "data-attended" not in html
    assert 'id="real-start"' not in html
    assert f"/meetings/{later}/attendance" not in html


async def test_the_navigation_links_the_reports_for_secretaries_chairs_and_admins(
    node: Node,
) -> None:
    for username, shown_link in (
        ("thuky", True),
        ("chutri", True),
        ("quantri", True),
        ("kt.cm-nc-hr", False),
    ):
        session = await node.login(username)
        html = await (await session.client.get("/meetings")).text()
        assert ('href="/reports/attendance"' in html) is shown_link, username
        if shown_link:
            assert "Báo cáo điểm danh" in html


async def test_in_english_the_same_numbers_with_english_words(node: Node) -> None:
    mid, _calls = await held_meeting(node)
    secretary = await node.login("thuky")
    resp = await secretary.client.get("/lang/en?next=/meetings", allow_redirects=False)
    assert resp.status == 303
    html = await (await secretary.client.get(f"/meetings/{mid}/attendance")).text()
    assert "Attendance report" in html
    assert "The clock of node CM-NH was 5.0 s behind" in html
    assert "50.0%" in html
    assert page_rows(html)["CM-NC-HR"]["minutes"] == "77"
    _status, _headers, body = await get(secretary, f"/meetings/{mid}/attendance.csv")
    header = next(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
    assert header[:3] == ["Group", "Unit", "Code"]
    _status, _headers, body = await get(secretary, f"/meetings/{mid}/attendance.xlsx")
    assert openpyxl.load_workbook(io.BytesIO(body)).sheetnames == [
        "Summary",
        "Level district",
        "Level commune",
    ]
