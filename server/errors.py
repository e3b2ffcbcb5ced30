"""Domain errors with stable codes, and the one middleware that turns them into responses.

API routes (``/api/...``) answer ``{"ok": false, "error": CODE, "message": TEXT}`` (plus
``fields`` for validation errors); pages render ``error.html``. No traceback reaches a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import web
from pydantic import BaseModel, ValidationError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class AppError(Exception):
    """An error a client may see: HTTP status, stable code, human message, field errors."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.code, "message": self.message}
        if self.fields:
            body["fields"] = self.fields
        return body


def not_found(what: str = "resource") -> AppError:
    return AppError(404, f"{what}_not_found", f"No such {what.replace('_', ' ')}.")


# Row ids are INTEGER columns: 32-bit on PostgreSQL, and SQLite refuses ints past 64 bits.
MAX_ROW_ID = 2**31 - 1


def path_id(request: web.Request, key: str, what: str) -> int:
    """A numeric id from the URL, or the not-found error (never a database overflow)."""
    text = request.match_info[key]
    # Length first: int() refuses strings past 4300 digits (a ValueError, once a 500).
    if len(text) > 10 or not (text.isascii() and text.isdigit()) or not 0 < int(text) <= MAX_ROW_ID:
        raise not_found(what)
    return int(text)


def forbidden(message: str = "You may not do this.") -> AppError:
    return AppError(403, "forbidden", message)


def field_errors(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "body"
        fields.setdefault(key, err["msg"])
    return fields


def invalid(fields: dict[str, str]) -> AppError:
    names = ", ".join(sorted(fields))
    return AppError(400, "invalid_field", f"Invalid value for: {names}.", fields)


async def read_json(request: web.Request, model: type[M]) -> M:
    """Parse the request body as JSON into ``model`` or raise a 400 with a stable code."""
    try:
        raw = await request.read()
        data = json.loads(raw.decode("utf-8")) if raw else None
    # ValueError covers undecodable UTF-8, bad JSON and a number past int()'s digit limit.
    except (ValueError, RecursionError) as exc:
        raise AppError(400, "bad_json", "The request body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise AppError(400, "bad_json", "The request body must be a JSON object.")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(field_errors(exc)) from exc


def is_api(request: web.Request) -> bool:
    return request.path.startswith("/api/")


ErrorPage = Callable[[web.Request, AppError], Awaitable[web.StreamResponse]]
# The page renderer for errors on HTML routes, registered by the app (server/http/pages.py's
# render_error): the pages import this module, so it must not import them.
ERROR_PAGE: web.AppKey[ErrorPage] = web.AppKey("hoinghi_error_page")


async def plain_error_page(request: web.Request, err: AppError) -> web.StreamResponse:
    """The error as plain text, for an app that registered no page renderer."""
    return web.Response(status=err.status, text=f"{err.code}: {err.message}")


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    render_error = request.app.get(ERROR_PAGE, plain_error_page)
    try:
        return await handler(request)
    except AppError as exc:
        if is_api(request):
            return web.json_response(exc.body(), status=exc.status)
        return await render_error(request, exc)
    except web.HTTPException as exc:
        if exc.status < 400 or not is_api(request):
            if exc.status >= 400 and exc.status != 405:
                err = AppError(exc.status, f"http_{exc.status}", exc.reason)
                return await render_error(request, err)
            raise
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}.get(
            exc.status, f"http_{exc.status}"
        )
        return web.json_response(
            {"ok": False, "error": code, "message": exc.reason}, status=exc.status
        )
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        err = AppError(500, "internal_error", "Internal error; it has been logged.")
        if is_api(request):
            return web.json_response(err.body(), status=500)
        return await render_error(request, err)
