"""Static file routes that answer 404, never 500, for a path no file can have.

aiohttp's ``StaticResource`` turns a missing file or a path outside its directory into a
404, but lets the file system's other refusals through: a name longer than 255 bytes or a
path longer than 4096 (``ENAMETOOLONG``) became a 500 with a logged traceback, one request
each. Any ``OSError`` while looking the path up means there is no such file to serve.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web


class StaticFiles(web.StaticResource):
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await super()._handle(request)
        except OSError as exc:
            raise web.HTTPNotFound() from exc


def add_static_files(router: web.UrlDispatcher, prefix: str, directory: Path, name: str) -> None:
    """``router.add_static(prefix, directory, name=name)`` with the 404 above."""
    router.register_resource(StaticFiles(prefix.rstrip("/"), directory, name=name))
