"""Requests the HTTP parser refuses: one log line each, never a traceback.

aiohttp answers a request it cannot parse (an unknown method, a header past 8 KiB, a bad
request line) with a 400 and logs it on ``aiohttp.server`` with the parser's traceback,
about twenty lines a request: anyone could flood the log. A filter on that logger keeps the
record but rewrites it as one INFO line naming the client and what was wrong (the
parser's message, collapsed to one line and cut short). Other records pass unchanged.
"""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

LOGGER = "aiohttp.server"
MAX_DETAIL = 200


def _one_line(message: str) -> str:
    parts = [line.strip() for line in message.splitlines()]
    text = " ".join(p for p in parts if p and set(p) != {"^"})
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


class RefusedRequestFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            client = record.args[0] if isinstance(record.args, tuple) and record.args else "-"
            record.msg = "refused a malformed request from %s: %s: %s"
            record.args = (client, type(exc).__name__, _one_line(exc.message or str(exc)))
            record.exc_info = None
            record.exc_text = None
            record.stack_info = None
            if record.levelno > logging.INFO:  # a client's mistake, not the node's
                record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def quiet_refused_requests() -> None:
    """Install the filter once on aiohttp's server logger (a process-wide logger)."""
    logger = logging.getLogger(LOGGER)
    if not any(isinstance(f, RefusedRequestFilter) for f in logger.filters):
        logger.addFilter(RefusedRequestFilter())
