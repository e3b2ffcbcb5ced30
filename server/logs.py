"""The node's log: text or JSON lines, readable at INFO by the province's IT staff.

At INFO and above, the libraries that speak once per packet or per request (aioice's ICE
checks, aiortc, engine.io and socket.io packets) are held to WARNING, and the access log
leaves out the socket.io transport's requests (long-polling every few seconds per browser,
and the websocket upgrade) unless they fail. ``log_level = "DEBUG"`` shows everything.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from aiohttp.web_log import AccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

from server.config import Settings

# Loggers that log per packet or per request at INFO.
CHATTY_LIBRARIES = ("aioice", "aiortc", "engineio", "socketio")
# socket.io's transport requests, polling and the websocket upgrade (server/sockets/signaling.py).
SOCKETIO_PATH = "/socket.io/"
RECORD_KEYS = ("meeting", "unit", "peer", "node")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in RECORD_KEYS:
            if hasattr(record, key):
                out[key] = getattr(record, key)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False)


def setup_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=settings.log_level, handlers=[handler], force=True)
    quiet_libraries(logging.getLevelName(settings.log_level))


def quiet_libraries(level: int) -> None:
    """Hold the per-packet libraries to WARNING unless the node logs at DEBUG."""
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(
            logging.NOTSET if level <= logging.DEBUG else max(level, logging.WARNING)
        )


class AccessLog(AccessLogger):
    """aiohttp's access log without socket.io's transport requests, unless they fail (a
    refused handshake, a wrong origin) or the access logger is at DEBUG."""

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if (
            request.path.startswith(SOCKETIO_PATH)
            and response.status < 400
            and not self.logger.isEnabledFor(logging.DEBUG)
        ):
            return
        super().log(request, response, time)
