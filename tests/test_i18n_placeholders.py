"""Every "{name}" mark of the catalog (server/i18n.py) is filled by the code that shows it.

A Vietnamese text keeps the marks of its English; each template, live-client and error-page
call site passes exactly the names its text uses, so no page ever shows a raw "{wait}".
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from server import login_limit
from server.app import WEB_DIR
from server.errors import AppError
from server.http.live_pages import LIVE_STRINGS
from server.i18n import ERRORS_VI, LANG_COOKIE, VI
from tests.conftest import make_settings, migrated_app

MARK = re.compile(r"{(\w+)}")


def marks(text: str) -> set[str]:
    return set(MARK.findall(text))


def test_every_vietnamese_text_keeps_the_marks_of_its_english() -> None:
    differ = {en: vi for en, vi in VI.items() if marks(en) != marks(vi)}
    assert differ == {}


# The template call sites: _("text") and, for a text with marks, .format(name=..., ...).
TEMPLATE_CALL = re.compile(
    r"""_\(\s*(?P<q>["'])(?P<text>.*?)(?P=q)\s*\)(?:\.format\((?P<args>[^)]*)\))?"""
)


def test_templates_fill_every_mark_of_the_texts_they_translate() -> None:
    wrong: list[tuple[str, str, set[str]]] = []
    seen = 0
    for path in sorted((WEB_DIR / "templates").glob("*.html")):
        for found in TEMPLATE_CALL.finditer(path.read_text(encoding="utf-8")):
            text, args = found["text"], found["args"] or ""
            passed = set(re.findall(r"(\w+)\s*=", args))
            seen += bool(marks(text))
            if marks(text) != passed:
                wrong.append((path.name, text, passed))
    assert seen >= 3  # the right door (2) and the failed-logins count
    assert wrong == []


# Live client: t("key") or t("key", {name: value, other}) in web/static/live/*.js.
JS_CALL = re.compile(r"""(?<![\w.])t\(\s*"(?P<key>\w+)"\s*(?:,\s*\{(?P<args>[^}]*)\})?\s*\)""")
# Keys the client looks up through a variable (screen.js upperBanner: t(title, { host })).
JS_DYNAMIC = {"upper_lost_title": {"host"}, "upper_refused_title": {"host"}}


def js_calls() -> dict[str, list[set[str]]]:
    calls: dict[str, list[set[str]]] = {}
    for path in sorted((WEB_DIR / "static" / "live").glob("*.js")):
        for found in JS_CALL.finditer(path.read_text(encoding="utf-8")):
            names = {
                part.split(":")[0].strip()
                for part in (found["args"] or "").split(",")
                if part.strip()
            }
            calls.setdefault(found["key"], []).append(names)
    return calls


def test_the_live_client_fills_every_mark_of_its_strings() -> None:
    calls = js_calls()
    assert len(calls) > 30
    wrong = {
        key: passed
        for key, passed_list in calls.items()
        if key in LIVE_STRINGS
        for passed in passed_list
        if marks(LIVE_STRINGS[key]) - passed
    }
    assert wrong == {}
    screen = (WEB_DIR / "static" / "live" / "screen.js").read_text(encoding="utf-8")
    assert "t(title, { host })" in screen
    for key, names in JS_DYNAMIC.items():
        assert marks(LIVE_STRINGS[key]) == names
    # Every marked string is shown somewhere that fills it.
    unfilled = {
        key for key, text in LIVE_STRINGS.items() if marks(text) and key not in calls
    } - set(JS_DYNAMIC)
    assert unfilled == set()
    # errorText() shows err_<code> texts as they are: they carry no marks.
    assert [k for k, text in LIVE_STRINGS.items() if k.startswith("err_") and marks(text)] == []


# The error page (server/http/rendering.py render_error) for each error text with marks:
# the error as the code that raises it builds it.
RAISED: dict[str, Callable[[], AppError]] = {
    "too_many_failures": lambda: login_limit.refused(37),
}


def test_every_error_text_with_marks_is_listed_with_the_error_that_carries_it() -> None:
    assert {code for code, text in ERRORS_VI.items() if marks(text)} == set(RAISED)


async def error_page_node(aiohttp_client: Any, tmp_path: Path) -> Any:
    """A real node app with one more page route, which raises the error named in the URL
    (no page of the node itself refuses a login through the error page today)."""
    app = await migrated_app(make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'e.db'}"))

    async def raising(request: web.Request) -> web.StreamResponse:
        code = request.match_info["code"]
        if code == "too_many_failures_long":
            raise login_limit.refused(14 * 60 + 5)
        raise RAISED[code]()

    app.router.add_get("/raise/{code}", raising)
    return await aiohttp_client(app)


async def error_page_text(client: Any, code: str, lang: str) -> str:
    async with client.get(f"/raise/{code}", cookies={LANG_COOKIE: lang}) as resp:
        assert resp.status >= 400
        html = await resp.text()
    found = re.search(r'data-error-code="[^"]*">([^<]*)<', html)
    assert found, html
    return found.group(1)


async def test_the_error_page_fills_the_marks_of_every_error_text(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await error_page_node(aiohttp_client, tmp_path)
    for code in RAISED:
        for lang in ("vi", "en"):
            text = await error_page_text(client, code, lang)
            assert not MARK.search(text), (code, lang, text)
            assert "{" not in text, (code, lang, text)


async def test_the_error_page_says_how_long_to_wait_after_too_many_failed_logins(
    aiohttp_client: Any, tmp_path: Path
) -> None:
    client = await error_page_node(aiohttp_client, tmp_path)
    assert await error_page_text(client, "too_many_failures", "vi") == (
        "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 37 giây."
    )
    assert await error_page_text(client, "too_many_failures_long", "vi") == (
        "Đăng nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút."
    )
    assert await error_page_text(client, "too_many_failures", "en") == (
        "Too many failed logins. Try again in 37 second(s)."
    )
