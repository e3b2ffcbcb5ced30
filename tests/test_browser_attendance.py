"""Attendance in the browser (issue 9, must-show 6): a real node, Debian's chromium with fake
camera and microphone.

A commune site joins and enters its head count in the dialog its page opens; the chair's
console lists every invited site, this one online with its count and the others not joined
yet; the chair starts a roll call, the site sees the prompt and answers "Có mặt", the
chair's tally shows one answer with its head count, and the chair closes the roll call in
the console's own dialog. After the meeting the province's secretary opens its attendance
report and downloads the XLSX. Screenshots go to test-output/attendance-*.png.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path

import openpyxl
import pytest
from aiohttp import web
from playwright.async_api import Browser, Page, async_playwright
from sqlalchemy import select

from server.demo.tree import DEMO_PASSWORD
from server.models import AttendanceEvent
from server.state import CTX
from tests.conftest import make_settings, serve_node
from tests.test_browser_live import (
    CHROMIUM_ARGS,
    OUT,
    WAIT_MS,
    open_live,
    record,
    schedule_meeting,
    until,
)

TITLE = "Hội nghị giao ban có điểm danh"
HR = '#roster li[data-unit="CM-NC-HR"]'


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[web.Application, str]]:
    """A migrated, demo-seeded node serving on 127.0.0.1 at a free port, and its address."""
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'attendance.sqlite3'}")
    app, runner, url = await serve_node(settings)
    try:
        yield app, url
    finally:
        await runner.cleanup()


async def kinds_of(app: web.Application, unit: str) -> list[str]:
    """The attendance events the node stored for ``unit``, in order."""
    async with app[CTX].sessionmaker() as db:
        query = select(AttendanceEvent.kind).where(AttendanceEvent.unit_code == unit)
        return list((await db.execute(query.order_by(AttendanceEvent.id))).scalars())


async def text(page: Page, selector: str) -> str:
    return " ".join((await page.text_content(selector) or "").split())


async def visible(page: Page, selector: str) -> None:
    await page.wait_for_selector(selector, state="visible", timeout=WAIT_MS)


async def hidden(page: Page, selector: str) -> None:
    await page.wait_for_selector(selector, state="hidden", timeout=WAIT_MS)


async def stat(chair: Page, key: str) -> str:
    return await text(chair, f'#rc-tally [data-stat="{key}"] .rc-stat-value')


@pytest.mark.timeout(180)
async def test_head_count_roll_call_and_tally_in_chromium(
    chromium: str, served: tuple[web.Application, str]
) -> None:
    app, base_url = served
    mid = await schedule_meeting(base_url, title=TITLE)  # Huyện Năm Căn and its 8 communes
    log: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            await run_attendance(browser, app, base_url, mid, log)
        finally:
            (OUT / "attendance-console.log").write_text("\n".join(log), encoding="utf-8")
            await browser.close()


async def run_attendance(
    browser: Browser, app: web.Application, base: str, mid: int, log: list[str]
) -> None:
    chair = await open_live(browser, base, "chutri", mid, log)
    hr = await open_live(browser, base, "kt.cm-nc-hr", mid, log)

    # The site is asked for its head count as it joins, in plain words, one big field.
    await visible(hr, "#hc-dialog")
    assert await text(hr, "#hc-question") == "Có bao nhiêu người đang dự họp tại điểm cầu?"
    field = hr.locator("#hc-count")
    assert await field.get_attribute("inputmode") == "numeric"
    assert await field.get_attribute("min") == "0"
    assert await text(hr, "#hc-confirm") == "Xác nhận"
    # Nothing typed: the dialog says what is missing, in words, and stays.
    await hr.click("#hc-confirm")
    await visible(hr, "#hc-error")
    assert await text(hr, "#hc-error") == "Vui lòng nhập số người (từ 0 trở lên)."
    await field.fill("25")
    await hr.click("#hc-names summary")
    assert await text(hr, "#hc-names summary") == "Thêm danh sách người dự (không bắt buộc)"
    await hr.fill("#hc-rows li:nth-child(1) .hc-name", "Nguyễn Văn An")
    await hr.fill("#hc-rows li:nth-child(1) .hc-position", "Chủ tịch UBND xã")
    await hr.screenshot(path=str(OUT / "attendance-site-headcount.png"))
    await hr.click("#hc-confirm")
    await hidden(hr, "#hc-dialog")
    assert await text(hr, "#hc-text") == "Số người dự: 25"
    assert await text(hr, "#hc-edit") == "Sửa"
    # "Sửa" asks again, starting from what was entered; "Để sau" leaves it as it was.
    await hr.click("#hc-edit")
    await visible(hr, "#hc-dialog")
    assert await field.input_value() == "25"
    assert await hr.locator("#hc-rows .hc-name").input_value() == "Nguyễn Văn An"
    await hr.click("#hc-later")
    await hidden(hr, "#hc-dialog")

    # The chair sees every invited site: this one online with its count, the rest not yet.
    await chair.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    await chair.click("#tab-roster")
    await visible(chair, f'{HR}[data-state="online"]')
    await until(chair, "(s) => document.querySelector(s).textContent.includes('25 người')", HR)
    assert await text(chair, f"{HR} .roster-pill") == "Trực tuyến"
    for unit in ("CM-NC", "CM-NC-TT", "CM-NC-TGD"):
        row = f'#roster li[data-unit="{unit}"]'
        assert await chair.get_attribute(row, "data-state") == "never", unit
        assert await text(chair, f"{row} .roster-pill") == "Chưa vào", unit
        assert await text(chair, f"{row} .roster-heads") == "—", unit
        assert await chair.locator(f"{row} .btn-call").count() == 0, unit
    assert await text(chair, "#roster-title") == "Điểm cầu được mời (1/9)"
    assert await text(chair, "#roster-present") == "Có mặt: 1/9 điểm cầu"
    assert await text(chair, "#roster-heads") == "Tổng số người dự: 25"
    assert await text(chair, '#roster li[data-group="CM-NC"] .count-pill') == "1/9"
    assert await text(chair, '.level-chip[data-level="commune"]') == "Cấp xã1/8"
    assert await text(chair, '.level-chip[data-level="district"]') == "Cấp huyện0/1"
    await chair.screenshot(path=str(OUT / "attendance-chair-roster.png"), full_page=True)

    # No roll call before the meeting is in session; then the chair starts one.
    assert await chair.is_disabled("#btn-rc-start")
    await chair.click("#btn-start")
    await until(chair, "() => !document.getElementById('btn-rc-start').disabled")
    assert await text(chair, "#btn-rc-start") == "Bắt đầu điểm danh"
    await chair.click("#btn-rc-start")
    await visible(chair, "#btn-rc-end")

    # The site is prompted, its last head count filled in, and answers "Có mặt".
    await visible(hr, "#rc-prompt")
    title = await text(hr, "#rc-title")
    assert title == "Điểm danh lần 1 — Chủ trì đề nghị xác nhận có mặt"
    assert await hr.locator("#rc-count").input_value() == "25"
    assert await text(hr, "#rc-present") == "Có mặt"
    await hr.screenshot(path=str(OUT / "attendance-site-rollcall.png"))
    await hr.click("#rc-present")
    await visible(hr, "#rc-done")
    assert re.fullmatch(r"Đã điểm danh lúc \d\d:\d\d", await text(hr, "#rc-done"))
    assert await hr.is_hidden("#rc-form")

    # The chair's tally: one answered with its 25 people, the other eight not connected.
    await until(
        chair,
        "() => document.querySelector('#rc-tally [data-stat=\"answered\"] .rc-stat-value')"
        "?.textContent === '1'",
    )
    assert await stat(chair, "heads") == "25"
    assert await stat(chair, "waiting") == "0"
    assert await stat(chair, "offline") == "8"
    commune = '#rc-tally table[data-level="commune"] tr[data-group="CM-NC"] td'
    assert await chair.locator(commune).all_text_contents() == ["1", "0", "7", "25"]
    assert (await text(chair, "#rc-status")).startswith("Đang điểm danh lần 1 — bắt đầu lúc")
    assert await text(chair, "#rc-all") == "Mọi điểm cầu đang kết nối đã điểm danh."
    await chair.locator("#rollcall-panel").screenshot(path=str(OUT / "attendance-chair-tally.png"))
    await chair.screenshot(path=str(OUT / "attendance-chair.png"), full_page=True)

    # Closing asks in the console's own dialog (not the browser's); "keep open" keeps it.
    await chair.click("#btn-rc-end")
    await visible(chair, "#rc-end-modal")
    assert await text(chair, "#rc-end-modal-title") == "Kết thúc điểm danh lần 1?"
    await chair.click('#rc-end-modal [data-answer="no"]')
    await hidden(chair, "#rc-end-modal")
    assert await chair.get_attribute("#rollcall-panel", "data-roll-call") == "open"
    await chair.click("#btn-rc-end")
    await chair.click('#rc-end-modal [data-answer="yes"]')
    await until(
        chair, "() => document.getElementById('rollcall-panel').dataset.rollCall === 'closed'"
    )
    # The result stays on the console; the prompt leaves the site's page.
    assert (await text(chair, "#rc-status")).startswith("Kết quả điểm danh lần 1 — kết thúc lúc")
    assert await stat(chair, "answered") == "1"
    assert await chair.is_visible("#btn-rc-start")
    await hidden(hr, "#rc-prompt")

    # "Gọi" beside an online site gives it the floor.
    await chair.click(f"{HR} .btn-call")
    await hr.wait_for_selector(".live-status-good", timeout=WAIT_MS)
    assert await text(hr, "#live-status") == "Điểm cầu của bạn được trao lời — mời phát biểu"
    await visible(chair, "#btn-call-take")
    assert await text(chair, f"{HR} .flag-floor") == "đang phát biểu"

    # The site leaves: the chair's list says so at once, in words.
    await hr.click("#btn-leave")
    await hr.wait_for_url(f"**/meetings/{mid}", timeout=WAIT_MS)
    await visible(chair, f'{HR}[data-state="left"]')
    assert await text(chair, f"{HR} .roster-pill") == "Đã rời"
    assert await text(chair, "#roster-present") == "Có mặt: 0/9 điểm cầu"
    # What the node stored: one head count (the dialog), the answer, and a leave with no
    # drop before it (the page says it leaves before its media link closes).
    assert await kinds_of(app, "CM-NC-HR") == ["join", "head_count", "roll_answer", "leave"]

    # The chair ends the meeting; the province's secretary opens its attendance report and
    # downloads the spreadsheet, which carries this site's head count.
    chair.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await chair.click("#btn-end")
    await visible(chair, "#overlay")
    await secretary_downloads_report(browser, base, mid, log)

    await asyncio.sleep(0.5)
    problems = [line for line in log if "pageerror" in line or "Security Policy" in line]
    assert problems == []


async def secretary_downloads_report(browser: Browser, base: str, mid: int, log: list[str]) -> None:
    context = await browser.new_context(
        viewport={"width": 1366, "height": 800}, accept_downloads=True
    )
    page = await context.new_page()
    record(page, "thuky", log)
    await page.goto(f"{base}/login?next=/meetings/{mid}/attendance")
    await page.fill('input[name="username"]', "thuky")
    await page.fill('input[name="password"]', DEMO_PASSWORD)
    await page.click('button[type="submit"]')
    await page.wait_for_url(f"**/meetings/{mid}/attendance")
    assert TITLE in await text(page, "h1")
    assert "Xã Hàm Rồng" in await text(page, "main")
    await page.screenshot(path=str(OUT / "attendance-report.png"), full_page=True)
    async with page.expect_download() as info:
        await page.click("#download-xlsx")
    download = await info.value
    assert download.suggested_filename.endswith(".xlsx")
    path = OUT / "attendance-report.xlsx"
    await download.save_as(path)
    book = openpyxl.load_workbook(path)
    rows = [
        [cell for cell in row if cell is not None]
        for sheet in book.worksheets
        for row in sheet.iter_rows(values_only=True)
    ]
    hr = [row for row in rows if "Xã Hàm Rồng" in row]
    assert hr, "Xã Hàm Rồng has a row in the spreadsheet"
    assert any(25 in row for row in hr), hr
