"""A site's live page on a commune's link: what it costs to load, and how it looks on a phone.

Communes sit on 128-512 kbit/s links. The site page with everything it loads (HTML, the JS
modules, the CSS, the socket.io client; it uses no web fonts) must cross the wire in at most
150 KB on a first visit, and a revisit must revalidate rather than fetch it all again
(server/http/static_files.py: gzip kept in memory, ``no-cache`` with ETags). Chromium's own
count of the bytes received (the DevTools protocol's ``encodedDataLength``: headers and the
body as it came, compressed) is summed over every request the page made.

The same page at 360x740 (a small phone): no sideways scrolling, the program as wide as the
screen, the buttons a meeting needs on the first screen and big enough for a finger.
Screenshots go to test-output/. Below, the static handler's headers request by request.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from playwright.async_api import BrowserContext, Page, async_playwright

from server.demo.tree import DEMO_PASSWORD
from server.http.static_files import add_static_files
from tests.conftest import TEST_OUTPUT, Node
from tests.live_helpers import schedule, start_as_chair
from tests.raw_http import raw_exchange, status_of
from tests.test_browser_live import CHROMIUM_ARGS, WAIT_MS, until, wait_video
from tests.test_static_paths import ODD_NAMES

BUDGET = 150 * 1024
PHONE = {"width": 360, "height": 740}
# The files every site page loads, each of which must come gzipped.
MAIN_FILES = (
    "/static/app.css",
    "/static/live.css",
    "/static/live/site.js",
    "/static/live/connection.js",
    "/vendor/socket.io/socket.io.esm.min.js",
)
# What a site needs in reach during a meeting, on the first screen.
MAIN_BUTTONS = ("#btn-hand", "#btn-mic", "#btn-cam")
MIN_TAP = 44  # CSS pixels: the smallest target a finger hits reliably


@dataclass
class Transfer:
    url: str
    status: int = 0
    encoding: str = ""
    from_cache: bool = False
    wire_bytes: int = 0
    done: bool = False


class WireCount:
    """Every request of one page as Chromium's network layer saw it (a CDP session)."""

    def __init__(self) -> None:
        self.requests: dict[str, Transfer] = {}

    async def attach(self, context: BrowserContext, page: Page) -> None:
        cdp = await context.new_cdp_session(page)
        cdp.on("Network.requestWillBeSent", self._sent)
        cdp.on("Network.responseReceived", self._response)
        cdp.on("Network.requestServedFromCache", self._memory_cache)
        cdp.on("Network.loadingFinished", self._finished)
        await cdp.send("Network.enable")

    def _sent(self, event: dict[str, Any]) -> None:
        self.requests[event["requestId"]] = Transfer(event["request"]["url"])

    def _response(self, event: dict[str, Any]) -> None:
        transfer = self.requests.setdefault(event["requestId"], Transfer(event["response"]["url"]))
        response = event["response"]
        headers = {k.lower(): v for k, v in response.get("headers", {}).items()}
        transfer.status = int(response["status"])
        transfer.encoding = headers.get("content-encoding", "")
        if response.get("fromDiskCache") or response.get("fromPrefetchCache"):
            transfer.from_cache = True

    def _memory_cache(self, event: dict[str, Any]) -> None:
        if event["requestId"] in self.requests:
            self.requests[event["requestId"]].from_cache = True

    def _finished(self, event: dict[str, Any]) -> None:
        transfer = self.requests.get(event["requestId"])
        if transfer is not None:
            transfer.wire_bytes = int(event["encodedDataLength"])
            transfer.done = True

    def clear(self) -> None:
        self.requests.clear()

    def total(self) -> int:
        return sum(t.wire_bytes for t in self.requests.values())

    def by_path(self, base: str) -> dict[str, Transfer]:
        return {t.url.removeprefix(base): t for t in self.requests.values()}

    def table(self, base: str) -> str:
        rows = sorted(self.requests.values(), key=lambda t: -t.wire_bytes)
        lines = [
            f"{t.wire_bytes:>8} {t.status:>3} {t.encoding or '-':<5} "
            f"{'cache' if t.from_cache else '':<5} {t.url.removeprefix(base)[:90]}"
            for t in rows
        ]
        return "\n".join([*lines, f"{self.total():>8} total"])


async def settle(page: Page, count: WireCount) -> None:
    """Connected, the chair's picture decoded, and no request left open for a moment."""
    await page.wait_for_selector("#conn.conn-connected", timeout=WAIT_MS)
    await wait_video(page, "chair-video")
    quiet_since = time.monotonic()
    deadline = quiet_since + 20
    while time.monotonic() < deadline:
        if not all(t.done for t in count.requests.values()):
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        await asyncio.sleep(0.1)


async def log_in(context: BrowserContext, base: str, username: str) -> None:
    """Through the JSON API, sharing the context's cookies: the page's first load is then
    the live page itself, on an empty cache."""
    csrf = (await (await context.request.get(f"{base}/api/csrf")).json())["csrf_token"]
    answer = await context.request.post(
        f"{base}/api/login",
        data=json.dumps({"username": username, "password": DEMO_PASSWORD}),
        headers={"Content-Type": "application/json", "X-CSRF-Token": csrf},
    )
    assert answer.status == 200, await answer.text()


# Where the program and the buttons are, and whether the page is wider than the screen.
PHONE_LAYOUT = """
(selectors) => {
  window.scrollTo(0, 0);
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return { top: r.top, left: r.left, bottom: r.bottom, right: r.right,
             height: r.height, width: r.width, visible: el.checkVisibility() };
  };
  const buttons = {};
  for (const s of selectors) buttons[s] = box(document.querySelector(s));
  return { scrollWidth: document.documentElement.scrollWidth,
           width: window.innerWidth, height: window.innerHeight,
           program: box(document.getElementById("program")), buttons };
}
"""


def check_phone_layout(layout: dict[str, Any], what: str) -> None:
    width, height = layout["width"], layout["height"]
    assert (width, height) == (PHONE["width"], PHONE["height"]), (what, layout)
    assert layout["scrollWidth"] <= width, f"{what}: the page scrolls sideways: {layout}"
    program = layout["program"]
    assert program["width"] >= width - 16, f"{what}: the program is not screen wide: {program}"
    for selector, box in layout["buttons"].items():
        assert box["visible"], (what, selector, box)
        inside = 0 <= box["top"] <= box["bottom"] <= height and 0 <= box["left"] <= box["right"]
        assert inside, f"{what}: {selector} is not on the first screen: {box}"
        assert box["right"] <= width, f"{what}: {selector} is not on the first screen: {box}"
        assert box["height"] >= MIN_TAP, f"{what}: {selector} is too small to tap: {box}"


def static(path: str) -> bool:
    return path.startswith(("/static/", "/vendor/"))


@pytest.mark.timeout(180)
async def test_site_page_weight_and_phone_layout(chromium: str, node: Node) -> None:
    base = f"http://127.0.0.1:{node.client.server.port}"
    chair_session = await node.login("chutri")
    mid = await schedule(chair_session, invited_subtrees=["CM-NC"])
    chair = await start_as_chair(node, chair_session, mid)
    log: list[str] = []
    report: list[str] = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = await browser.new_context(
                viewport=PHONE,
                device_scale_factor=1,
                is_mobile=True,
                has_touch=True,
                permissions=["camera", "microphone"],
            )
            await log_in(context, base, "kt.cm-nc-hr")
            page = await context.new_page()
            page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
            count = WireCount()
            await count.attach(context, page)

            # First visit, on an empty cache.
            await page.goto(f"{base}/meetings/{mid}/live")
            await settle(page, count)
            first_total = count.total()
            first = count.by_path(base)
            report += ["first load:", count.table(base)]

            # The head count question is asked on joining: it may push the picture down,
            # never sideways.
            await page.wait_for_selector("#hc-dialog:not([hidden])", timeout=WAIT_MS)
            layout = await page.evaluate(PHONE_LAYOUT, [])
            await page.screenshot(path=str(TEST_OUTPUT / "site-360x740-headcount.png"))
            assert layout["scrollWidth"] <= PHONE["width"], layout
            await page.click("#hc-later")
            await until(page, "() => document.getElementById('hc-dialog').hidden")
            await asyncio.sleep(0.5)  # a few frames painted
            layout = await page.evaluate(PHONE_LAYOUT, list(MAIN_BUTTONS))
            await page.screenshot(path=str(TEST_OUTPUT / "site-360x740.png"))
            report.append(f"layout: {layout}")
            check_phone_layout(layout, "in the meeting")

            # A revisit: the browser asks whether its copies are still good.
            count.clear()
            await page.reload()
            await settle(page, count)
            reload_total = count.total()
            again = count.by_path(base)
            report += ["reload:", count.table(base)]
        finally:
            (TEST_OUTPUT / "page-weight.log").write_text(
                "\n".join([*report, "console:", *log]), encoding="utf-8"
            )
            await browser.close()
            await chair.close()

    assert first_total <= BUDGET, f"first load {first_total} B > {BUDGET} B:\n{report[1]}"
    for path in (f"/meetings/{mid}/live", *MAIN_FILES):
        assert path in first, f"{path} was not loaded:\n{report[1]}"
        assert (first[path].status, first[path].encoding) == (200, "gzip"), (path, first[path])
    statics = [path for path in first if static(path)]
    assert len(statics) >= len(MAIN_FILES)
    for path in statics:
        transfer = again.get(path)
        assert transfer is not None, f"{path} not asked for on reload"
        assert transfer.status == 304 or transfer.from_cache, (path, transfer)
    static_first = sum(first[p].wire_bytes for p in statics)
    static_again = sum(again[p].wire_bytes for p in statics)
    assert static_again < static_first / 3, (static_first, static_again)
    assert reload_total < first_total, (first_total, reload_total)
    problems = [line for line in log if "pageerror" in line or "Security Policy" in line]
    assert problems == []


# -- the static handler, request by request ------------------------------------------------

STATIC = Path(__file__).resolve().parent.parent / "web" / "static"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def exchange(node: Node, path: str, method: str = "GET", **headers: str) -> Answer:
    """One request straight onto the node's port, and its answer as it came (the bytes on
    the wire: no client library decompressing or adding its own Accept-Encoding)."""
    server = node.client.server
    lines = [f"{method} {path} HTTP/1.1", "Host: x", "Connection: close"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    raw = await raw_exchange(
        str(server.host), int(server.port or 0), ("\r\n".join(lines) + "\r\n\r\n").encode()
    )
    head, _, body = raw.partition(b"\r\n\r\n")
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        fields[name.strip().lower()] = value.strip()
    return Answer(status_of(raw), fields, body)


def vary(answer: Answer) -> set[str]:
    return {v.strip().lower() for v in answer.headers.get("vary", "").split(",") if v.strip()}


async def test_text_file_goes_out_gzipped_when_accepted(node: Node) -> None:
    answer = await exchange(node, "/static/live.css", Accept_Encoding="gzip, deflate, br")
    assert answer.status == 200
    h = answer.headers
    assert h["content-encoding"] == "gzip"
    assert h["content-type"].startswith("text/css")
    assert "accept-encoding" in vary(answer)
    assert h["cache-control"] == "no-cache"
    assert int(h["content-length"]) == len(answer.body)
    assert gzip.decompress(answer.body) == (STATIC / "live.css").read_bytes()
    assert len(answer.body) < (STATIC / "live.css").stat().st_size / 2
    assert h["etag"].endswith('-gz"')
    assert "last-modified" in h
    assert "content-security-policy" in h  # the node's other headers still go along


@pytest.mark.parametrize(
    "accept",
    ["", "identity", "gzip;q=0", "br", "deflate", "*;q=0", "gzip;q=0, *", "gzip;q=zero"],
)
async def test_text_file_as_it_is_when_gzip_is_not_accepted(node: Node, accept: str) -> None:
    headers = {"Accept_Encoding": accept} if accept else {}
    answer = await exchange(node, "/static/live/site.js", **headers)
    assert answer.status == 200
    h = answer.headers
    assert "content-encoding" not in h
    assert answer.body == (STATIC / "live" / "site.js").read_bytes()
    assert int(h["content-length"]) == len(answer.body)
    assert h["content-type"].startswith("text/javascript")
    assert "accept-encoding" in vary(answer)
    assert h["cache-control"] == "no-cache"
    assert "etag" in h
    assert not h["etag"].endswith('-gz"')


@pytest.mark.parametrize("accept", ["gzip", "x-gzip", "*", "br;q=1, gzip;q=0.5", "GZIP"])
async def test_every_way_of_accepting_gzip(node: Node, accept: str) -> None:
    answer = await exchange(node, "/static/app.css", Accept_Encoding=accept)
    assert answer.headers.get("content-encoding") == "gzip", accept


async def test_revisit_is_304_for_either_encoding(node: Node) -> None:
    path = "/static/live/connection.js"
    zipped = await exchange(node, path, Accept_Encoding="gzip")
    plain = await exchange(node, path)
    assert zipped.headers["etag"] != plain.headers["etag"]
    again = await exchange(node, path, Accept_Encoding="gzip", If_None_Match=zipped.headers["etag"])
    assert again.status == 304
    assert again.body == b""
    assert again.headers["etag"] == zipped.headers["etag"]
    assert again.headers["cache-control"] == "no-cache"
    assert "accept-encoding" in vary(again)
    since = await exchange(
        node, path, Accept_Encoding="gzip", If_Modified_Since=zipped.headers["last-modified"]
    )
    assert since.status == 304
    assert (await exchange(node, path, If_None_Match=plain.headers["etag"])).status == 304
    # The other encoding's tag is another representation: the whole file again.
    other = await exchange(node, path, Accept_Encoding="gzip", If_None_Match=plain.headers["etag"])
    assert other.status == 200
    assert other.headers["content-encoding"] == "gzip"


async def test_head_says_the_gzip_length_without_a_body(node: Node) -> None:
    get = await exchange(node, "/static/live.css", Accept_Encoding="gzip")
    head = await exchange(node, "/static/live.css", "HEAD", Accept_Encoding="gzip")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == get.headers["content-length"]
    assert head.headers["content-encoding"] == "gzip"


async def test_range_is_of_the_file_as_it_is(node: Node) -> None:
    answer = await exchange(node, "/static/live.css", Accept_Encoding="gzip", Range="bytes=0-99")
    assert answer.status == 206
    assert "content-encoding" not in answer.headers
    assert answer.body == (STATIC / "live.css").read_bytes()[:100]
    assert answer.headers["content-range"].startswith("bytes 0-99/")


async def test_vendor_client_is_gzipped_too(node: Node) -> None:
    answer = await exchange(node, "/vendor/socket.io/socket.io.esm.min.js", Accept_Encoding="gzip")
    assert answer.status == 200, "the socket.io client is missing: run `npm ci`"
    assert answer.headers["content-encoding"] == "gzip"
    assert answer.headers["content-type"].startswith("text/javascript")


@pytest.mark.parametrize(
    "name",
    ["no-such.css", "live/no-such.js", "live", *ODD_NAMES.values()],
    ids=["missing", "missing-in-subdir", "directory", *ODD_NAMES],
)
async def test_no_file_is_still_404_when_gzip_is_accepted(node: Node, name: str) -> None:
    answer = await exchange(node, f"/static/{name}", Accept_Encoding="gzip")
    expected = {403, 404} if name == "live" else {404}  # a directory is aiohttp's 403
    assert answer.status in expected, answer


async def test_changed_file_is_compressed_again(aiohttp_client: Any, tmp_path: Path) -> None:
    """The kept gzip belongs to one version of the file; a file gzip cannot shrink goes out
    as it is; a file that is not text is never compressed."""
    (tmp_path / "a.js").write_text("let a = 1;\n" * 200)
    (tmp_path / "tiny.css").write_text("a{}")
    (tmp_path / "photo.png").write_bytes(b"\x89PNG" + b"\0" * 4000)
    app = web.Application()
    add_static_files(app.router, "/s/", tmp_path, "s")
    client = await aiohttp_client(app)
    node = Node(app, client)

    first = await exchange(node, "/s/a.js", Accept_Encoding="gzip")
    assert gzip.decompress(first.body) == (tmp_path / "a.js").read_bytes()
    (tmp_path / "a.js").write_text("let b = 2;\n" * 300)
    os.utime(tmp_path / "a.js", ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
    second = await exchange(
        node, "/s/a.js", Accept_Encoding="gzip", If_None_Match=first.headers["etag"]
    )
    assert second.status == 200
    assert gzip.decompress(second.body) == (tmp_path / "a.js").read_bytes()
    assert second.headers["etag"] != first.headers["etag"]

    tiny = await exchange(node, "/s/tiny.css", Accept_Encoding="gzip")
    assert "content-encoding" not in tiny.headers
    assert tiny.body == b"a{}"
    photo = await exchange(node, "/s/photo.png", Accept_Encoding="gzip")
    assert photo.status == 200
    assert "content-encoding" not in photo.headers
    assert "vary" not in photo.headers
    assert photo.headers["cache-control"] == "no-cache"


# -- pages ----------------------------------------------------------------------------------


async def test_page_is_gzipped_for_the_browser_own_requests(node: Node) -> None:
    for fetch_site in ("none", "same-origin"):
        answer = await exchange(node, "/login", Accept_Encoding="gzip", Sec_Fetch_Site=fetch_site)
        assert answer.status == 200
        assert answer.headers["content-encoding"] == "gzip", fetch_site
        assert int(answer.headers["content-length"]) == len(answer.body)
        assert b"<html" in gzip.decompress(answer.body)
        assert {"accept-encoding", "sec-fetch-site"} <= vary(answer)


@pytest.mark.parametrize(
    "headers",
    [
        {"Accept_Encoding": "gzip", "Sec_Fetch_Site": "cross-site"},
        {"Accept_Encoding": "gzip", "Sec_Fetch_Site": "same-site"},
        {"Accept_Encoding": "gzip"},
        {"Sec_Fetch_Site": "same-origin"},
        {"Accept_Encoding": "gzip;q=0", "Sec_Fetch_Site": "same-origin"},
    ],
    ids=["cross-site", "same-site", "no-fetch-site", "no-gzip", "gzip-refused"],
)
async def test_page_as_it_is_otherwise(node: Node, headers: dict[str, str]) -> None:
    """Another site's requests get the page uncompressed: a page holds the CSRF token beside
    text from its URL, and its compressed size must not tell that token (BREACH)."""
    answer = await exchange(node, "/login", **headers)
    assert answer.status == 200
    assert "content-encoding" not in answer.headers
    assert b"<html" in answer.body
    assert int(answer.headers["content-length"]) == len(answer.body)
