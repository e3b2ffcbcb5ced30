"""The attendance reports as files: CSV (UTF-8 with a byte-order mark, so spreadsheet
programs show the diacritics) and XLSX (openpyxl: a summary sheet, then one per level).

Both are built from the same column lists as the page (``meeting_columns``,
``range_columns``), so a file carries exactly the page's numbers. A column's cell is a
number, a time (aware; written in the node's time zone), a text or nothing.

The CSV is comma-separated (RFC 4180), what the csv module, LibreOffice, Google Sheets
and every import tool read by default; its numbers are all whole, so a decimal comma
cannot clash with the separator, and whoever wants typed columns in Excel, whatever the
regional settings, takes the XLSX.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import Cell as SheetCell
from openpyxl.cell.cell import MergedCell
from openpyxl.styles import Alignment, Font
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from server.attendance.report import Report, SiteRow, UnitRow, level_order

Value = str | int | float | datetime | None
TEXT, NUMBER, TIME, RATE = "text", "number", "time", "rate"
TIME_FORMAT = "%d/%m/%Y %H:%M:%S"
XLSX_TIME_FORMAT = "dd/mm/yyyy hh:mm:ss"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@")


@dataclass(frozen=True)
class Column:
    header: str
    width: int  # in characters, for the XLSX
    value: Callable[[Any], Value]
    kind: str = TEXT


@dataclass(frozen=True)
class Table:
    caption: str
    columns: Sequence[Column]
    rows: Sequence[Any]


def local(value: datetime | None, tz: tzinfo) -> str:
    return value.astimezone(tz).strftime(TIME_FORMAT) if value is not None else ""


def meeting_columns(
    report: Report, _: Callable[[str], str], level_name: Callable[[str], str]
) -> list[Column]:
    """The columns of a meeting's rows, one per roll call among them."""
    columns = [
        Column(_("Group"), 24, lambda r: r.group_name),
        Column(_("Unit"), 30, lambda r: r.name),
        Column(_("Code"), 14, lambda r: r.unit),
        Column(_("Level"), 10, lambda r: level_name(r.level)),
        Column(_("Parent unit"), 24, lambda r: r.parent_name),
        Column(_("Invited"), 9, lambda r: _("yes") if r.invited else _("no")),
        Column(_("Node"), 12, lambda r: r.node),
        Column(_("First join"), 20, lambda r: r.first_join, TIME),
        Column(_("Last leave"), 20, lambda r: r.last_leave, TIME),
        Column(_("Minutes connected"), 12, lambda r: r.minutes, NUMBER),
        Column(_("Drops"), 10, lambda r: r.drops, NUMBER),
        Column(_("Head count (peak)"), 12, lambda r: r.head_count_peak, NUMBER),
        Column(_("Head count (last)"), 12, lambda r: r.head_count_last, NUMBER),
    ]
    for index, call in enumerate(report.roll_calls):
        columns.append(
            Column(
                _("Roll call {number}").format(number=call.number), 12, _answer_of(index), NUMBER
            )
        )
    columns.append(Column(_("State"), 10, lambda r: _("Present") if r.present else _("Absent")))
    return columns


def _answer_of(index: int) -> Callable[[SiteRow], Value]:
    def answer(row: SiteRow) -> Value:
        return row.answers[index] if index < len(row.answers) else None

    return answer


def subtotal_columns(_: Callable[[str], str], first: str) -> list[Column]:
    """The columns of a group's or a level's subtotal (Subtotal objects)."""
    return [
        Column(first, 28, lambda s: s.name),
        Column(_("Sites present"), 12, lambda s: s.present, NUMBER),
        Column(_("Sites invited"), 12, lambda s: s.invited, NUMBER),
        Column(_("Sites present (%)"), 12, lambda s: s.site_rate, RATE),
        Column(_("Minutes present"), 12, lambda s: s.minutes, NUMBER),
        Column(_("Possible minutes"), 12, lambda s: s.possible_minutes, NUMBER),
        Column(_("Time present (%)"), 12, lambda s: s.time_rate, RATE),
        Column(_("Head count"), 12, lambda s: s.head_count, NUMBER),
    ]


def range_columns(_: Callable[[str], str], level_name: Callable[[str], str]) -> list[Column]:
    """The columns of a unit's row across meetings (UnitRow objects)."""
    return [
        Column(_("Unit"), 30, lambda r: r.name),
        Column(_("Code"), 14, lambda r: r.unit),
        Column(_("Level"), 10, lambda r: level_name(r.level)),
        Column(_("Parent unit"), 24, lambda r: r.parent_name),
        Column(_("Meetings invited to"), 12, lambda r: r.invited, NUMBER),
        Column(_("Meetings attended"), 12, lambda r: r.attended, NUMBER),
        Column(_("Minutes connected"), 12, lambda r: r.minutes, NUMBER),
        Column(_("Possible minutes"), 12, lambda r: r.possible_minutes, NUMBER),
        Column(_("Time present (%)"), 12, lambda r: r.rate, RATE),
    ]


def range_subtotal_columns(_: Callable[[str], str]) -> list[Column]:
    return [
        Column(_("Level"), 24, lambda s: s.name),
        Column(_("Units"), 10, lambda s: s.units, NUMBER),
        Column(_("Meetings invited to"), 12, lambda s: s.invited, NUMBER),
        Column(_("Meetings attended"), 12, lambda s: s.attended, NUMBER),
        Column(_("Attended (%)"), 12, lambda s: s.attend_rate, RATE),
        Column(_("Minutes connected"), 12, lambda s: s.minutes, NUMBER),
        Column(_("Possible minutes"), 12, lambda s: s.possible_minutes, NUMBER),
        Column(_("Time present (%)"), 12, lambda s: s.rate, RATE),
    ]


# -- CSV ---------------------------------------------------------------------------------------


def _csv_text(value: Value, tz: tzinfo) -> str | int | float:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return local(value, tz)
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value


def csv_bytes(table: Table, tz: tzinfo) -> bytes:
    """A header row, then one row per entry; UTF-8 with a byte-order mark."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([c.header for c in table.columns])
    for row in table.rows:
        writer.writerow([_csv_text(c.value(row), tz) for c in table.columns])
    return ("\ufeff" + out.getvalue()).encode("utf-8")


# -- XLSX --------------------------------------------------------------------------------------


def sheet_title(text: str, taken: set[str]) -> str:
    """A valid, unique sheet name: no ``[]:*?/\\``, at most 31 characters."""
    base = re.sub(r"[\[\]:*?/\\]", " ", text).strip()[:31] or "Sheet"
    name, n = base, 2
    while name.lower() in taken:
        suffix = f" ({n})"
        name, n = base[: 31 - len(suffix)] + suffix, n + 1
    taken.add(name.lower())
    return name


def _put(cell: SheetCell | MergedCell, value: Value, kind: str, tz: tzinfo) -> None:
    if value is None or not isinstance(cell, SheetCell):
        return
    if isinstance(value, datetime):
        cell.value = value.astimezone(tz).replace(tzinfo=None)
        cell.number_format = XLSX_TIME_FORMAT
    elif kind == RATE and isinstance(value, int | float):
        cell.value = value / 100
        cell.number_format = "0.0%"
    else:
        cell.value = value
        if isinstance(value, str):
            cell.data_type = "s"  # never a formula, whatever the text starts with


def _table(sheet: Worksheet, top: int, table: Table, tz: tzinfo, widths: bool) -> int:
    """Write a table with its bold header row at ``top``; returns the next free row."""
    bold = Font(bold=True)
    for col, column in enumerate(table.columns, start=1):
        cell = sheet.cell(row=top, column=col, value=column.header)
        cell.font = bold
        cell.alignment = Alignment(wrap_text=True, vertical="top")
        if widths:
            letter = get_column_letter(col)
            current = sheet.column_dimensions[letter].width or 0
            sheet.column_dimensions[letter].width = max(current, column.width)
    for offset, row in enumerate(table.rows, start=1):
        for col, column in enumerate(table.columns, start=1):
            _put(sheet.cell(row=top + offset, column=col), column.value(row), column.kind, tz)
    return top + len(table.rows) + 1


def xlsx_bytes(
    title: str,
    facts: Sequence[tuple[str, Value]],
    notes: Sequence[str],
    summary: Sequence[Table],
    sheets: Sequence[tuple[str, Table]],
    tz: tzinfo,
    summary_name: str,
) -> bytes:
    """A summary sheet (title, facts, notes, then its tables under their captions), then
    one sheet per table of ``sheets``, each a header row frozen above its rows."""
    book = Workbook()
    taken: set[str] = set()
    first = book.active
    assert isinstance(first, Worksheet)
    first.title = sheet_title(summary_name, taken)
    first.cell(row=1, column=1, value=title).font = Font(bold=True, size=14)
    first.cell(row=1, column=1).data_type = "s"
    first.freeze_panes = "A2"
    line = 3
    for label, value in facts:
        first.cell(row=line, column=1, value=label).font = Font(bold=True)
        _put(first.cell(row=line, column=2), value, TEXT, tz)
        line += 1
    for note in notes:
        line += 1
        _put(first.cell(row=line, column=1), note, TEXT, tz)
    for table in summary:
        line += 2
        first.cell(row=line, column=1, value=table.caption).font = Font(bold=True, size=12)
        line = _table(first, line + 1, table, tz, widths=True)
    first.column_dimensions["A"].width = max(first.column_dimensions["A"].width or 0, 28)
    first.column_dimensions["B"].width = max(first.column_dimensions["B"].width or 0, 20)
    for name, table in sheets:
        sheet = book.create_sheet(sheet_title(name, taken))
        _table(sheet, 1, table, tz, widths=True)
        sheet.freeze_panes = "A2"
        sheet.auto_filter.ref = f"A1:{get_column_letter(len(table.columns))}{len(table.rows) + 1}"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def by_level(rows: Sequence[SiteRow] | Sequence[UnitRow]) -> dict[str, list[Any]]:
    """Rows per level, from the top of the tree down."""
    out: dict[str, list[Any]] = {}
    for row in rows:
        out.setdefault(row.level, []).append(row)
    return {level: out[level] for level in level_order(rows)}
