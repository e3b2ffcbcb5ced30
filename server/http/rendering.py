"""Rendering a page: the context every template gets, and the error page.

Its own module so that the page handlers (server/http/pages.py, server/http/admin.py,
server/http/live_pages.py) and the error middleware (server/errors.py, which is given
``render_error`` by the app) all use it without importing one another.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import aiohttp_jinja2
from aiohttp import web

from server import auth, login_limit
from server.errors import AppError
from server.i18n import error_text, request_lang, translator
from server.models import Role
from server.state import ctx

log = logging.getLogger(__name__)


def base_context(request: web.Request, **extra: Any) -> dict[str, Any]:
    node = ctx(request)
    lang = request_lang(request)
    user = auth.current_user(request)
    csrf = user.csrf_token if user else request.get(auth.PRELOGIN_CSRF, "")
    unit = node.units.by_id.get(user.unit_id) if user else None
    return {
        "_": translator(lang),
        "lang": lang,
        "user": user,
        "user_unit": unit,
        "csrf_token": csrf,
        "path": request.path_qs,
        "flash": request.query.get("flash", ""),
        "Role": Role,
        **extra,
    }


def render(request: web.Request, template: str, status: int = 200, **extra: Any) -> web.Response:
    errors = extra.get("errors")
    if isinstance(errors, dict):  # field errors the catalog knows are shown in Vietnamese
        _ = translator(request_lang(request))
        extra["errors"] = {k: _(v) if isinstance(v, str) else v for k, v in errors.items()}
    response = aiohttp_jinja2.render_template(
        template, request, base_context(request, **extra), status=status
    )
    response.headers["Cache-Control"] = "no-store"
    new_cookie = request.get(auth.PRELOGIN_NEW_COOKIE)
    if new_cookie:
        auth.set_cookie(response, request, auth.PRELOGIN_COOKIE, new_cookie)
    return response


def error_values(lang: str, err: AppError) -> dict[str, str]:
    """What the "{...}" marks of the error texts (server/i18n.py ``ERRORS_VI``) are filled
    with: ``{wait}`` (too_many_failures) is the wait in words, from ``retry_after_seconds``."""
    values: dict[str, str] = {}
    seconds = err.fields.get("retry_after_seconds", "")
    if seconds.isascii() and seconds.isdigit() and len(seconds) <= 9:
        values["wait"] = login_limit.wait_words(lang, int(seconds))
    return values


async def render_error(request: web.Request, err: AppError) -> web.StreamResponse:
    if err.code == "not_authenticated":
        raise web.HTTPSeeOther("/login?next=" + quote(request.path_qs))
    lang = request_lang(request)
    text = error_text(lang, err.code, err.message, **error_values(lang, err))
    try:
        return render(request, "error.html", status=err.status, error=err, error_text=text)
    except Exception:  # the error page itself failed: plain text, still no traceback
        log.exception("error page failed")
        return web.Response(status=err.status, text=f"{err.code}: {text}")
