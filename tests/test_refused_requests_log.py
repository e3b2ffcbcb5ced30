"""Requests the HTTP parser refuses (an unknown method, huge headers, a bad request line)
are logged on one line each, without a traceback: an easy way to flood the log otherwise.
Real raw requests over a socket to a node served on a TCP port."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import make_settings, serve_node
from tests.raw_http import raw_exchange

GOOD = b"GET /login HTTP/1.1\r\nHost: x\r\n\r\n"
REFUSED = {
    "unknown-method": b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "unknown-method-after-a-good-request": GOOD + b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n",
    "huge-header": b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n",
    "huge-request-line": b"GET /" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-request-line": b"GET / HTTP/1.1 extra\r\nHost: x\r\n\r\n",
    "bad-version": b"GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    "nul-in-target": b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n",
    "bad-header-name": GOOD + b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n",
    "bad-content-length": b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[web.Application, int]]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'test.sqlite3'}")
    app, runner, _url = await serve_node(settings)
    yield app, int(runner.addresses[0][1])
    await runner.cleanup()


@pytest.mark.parametrize("raw", list(REFUSED.values()), ids=list(REFUSED))
async def test_refused_request_is_logged_on_one_line_without_traceback(
    served: tuple[web.Application, int], raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    _app, port = served
    caplog.set_level(logging.DEBUG, logger="aiohttp.server")
    for _ in range(3):  # the same each time, not only the first
        answer = await raw_exchange("127.0.0.1", port, raw)
        assert b" 400 Bad Request\r\n" in answer, answer[:200]
    records = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert records, "the refusal is still logged"
    for record in records:
        assert record.exc_info is None, record.getMessage()
        assert record.exc_text is None
        assert "\n" not in record.getMessage(), record.getMessage()
        assert record.levelno <= logging.INFO
    assert "Traceback" not in caplog.text
