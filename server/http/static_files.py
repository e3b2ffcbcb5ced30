"""Static file routes: gzip for text files, revalidation by ETag, and 404 (never 500) for a
path no file can have.

Communes sit on 128-512 kbit/s links, so what a page loads goes out small and is fetched
once. A text file (JS, CSS, HTML, JSON, SVG, source maps) is gzipped the first time a client
that accepts gzip asks for it, in a worker thread, and the result is kept in memory under
its path with the modification time and size it had: an upgrade that rewrites the file
gets it compressed again, nothing else does. Every answer says ``Cache-Control: no-cache``
with an ETag and Last-Modified: the browser keeps its copy and asks each time whether it is
still good, a 304 of a few hundred bytes. The JS modules import one another by plain paths
(no version in the URL), so a long max-age could mix two versions' modules after an
upgrade; revalidation cannot.

Everything else goes to aiohttp's own ``FileResponse``, which streams from disk, answers
ranges and conditional requests: a file that is not text, a client that does not accept
gzip, a request with a Range (ranges are of the file as it is on disk), or with If-Match or
If-Unmodified-Since.

aiohttp's ``StaticResource`` turns a missing file or a path outside its directory into a
404, but lets the file system's other refusals through: a name longer than 255 bytes or a
path longer than 4096 (``ENAMETOOLONG``) became a 500 with a logged traceback, one request
each. Any ``OSError`` while looking the path up means there is no such file to serve.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from aiohttp import hdrs, web

from server.http.compression import accepts_gzip, add_vary

# The text files, with the type they go out as (both as gzip and as they are).
TEXT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".txt": "text/plain; charset=utf-8",
}

# A larger text file is sent as it is, streamed: what is kept in memory stays small (the
# largest file served today is socket.io's 300 KB source map).
MAX_COMPRESSED_SIZE = 4 * 1024 * 1024

CACHE_CONTROL = "no-cache"


@dataclass(frozen=True)
class Gzipped:
    """One file's gzip, for the version of it with this modification time and size."""

    mtime_ns: int
    size: int
    mtime: float
    body: bytes | None  # None: gzip made it no smaller, send the file as it is

    @property
    def etag(self) -> str:
        # Not aiohttp's identity ETag ("mtime-size"): the two encodings are two
        # representations, and a strong ETag names exactly one.
        return f"{self.mtime_ns:x}-{self.size:x}-gz"


class StaticFiles(web.StaticResource):
    def __init__(self, prefix: str, directory: Path, *, name: str) -> None:
        super().__init__(prefix, directory, name=name)
        # Keyed by the resolved path: bounded by the files in the directory.
        self._gzipped: dict[Path, Gzipped] = {}

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            response = await self._compressed(request)
            if response is None:
                response = await super()._handle(request)
                self._label(response, request)
            return response
        except OSError as exc:
            raise web.HTTPNotFound() from exc

    def _label(self, response: web.StreamResponse, request: web.Request) -> None:
        """Headers for a file aiohttp sends as it is."""
        response.headers[hdrs.CACHE_CONTROL] = CACHE_CONTROL
        suffix = PurePosixPath(request.match_info["filename"]).suffix.lower()
        if suffix in TEXT_TYPES:
            response.headers[hdrs.CONTENT_TYPE] = TEXT_TYPES[suffix]
            add_vary(response, hdrs.ACCEPT_ENCODING)

    async def _compressed(self, request: web.Request) -> web.StreamResponse | None:
        """The gzip answer (200 or 304), or None for aiohttp's plain file answer."""
        filename = request.match_info["filename"]
        suffix = PurePosixPath(filename).suffix.lower()
        headers = request.headers
        if (
            suffix not in TEXT_TYPES
            or hdrs.RANGE in headers
            or hdrs.IF_MATCH in headers
            or hdrs.IF_UNMODIFIED_SINCE in headers
            or not accepts_gzip(headers.get(hdrs.ACCEPT_ENCODING, ""))
        ):
            return None
        loop = asyncio.get_running_loop()
        found = await loop.run_in_executor(None, self._gzip_of, filename)
        if found is None or found.body is None:
            return None
        response_headers = {
            hdrs.CACHE_CONTROL: CACHE_CONTROL,
            hdrs.VARY: hdrs.ACCEPT_ENCODING,
        }
        if not_modified(request, found.etag, found.mtime):
            response = web.Response(status=304, headers=response_headers)
        else:
            response = web.Response(
                body=found.body,
                headers={
                    **response_headers,
                    hdrs.CONTENT_TYPE: TEXT_TYPES[suffix],
                    hdrs.CONTENT_ENCODING: "gzip",
                },
            )
        response.etag = found.etag
        response.last_modified = found.mtime
        return response

    def _gzip_of(self, filename: str) -> Gzipped | None:
        """In a worker thread: the file's gzip, from memory while the file is unchanged.
        None when it is not a regular file inside the directory (aiohttp's own answer
        then says 403 or 404) or too large to keep."""
        path = self._locate(filename)
        if path is None:
            return None
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_COMPRESSED_SIZE:
                return None
            kept = self._gzipped.get(path)
            if kept is not None and (kept.mtime_ns, kept.size) == (st.st_mtime_ns, st.st_size):
                return kept
            data = f.read()
        # mtime=0: the same bytes each time, whatever the clock.
        body = gzip.compress(data, compresslevel=9, mtime=0)
        smaller = body if len(body) < len(data) else None
        made = Gzipped(st.st_mtime_ns, st.st_size, st.st_mtime, smaller)
        self._gzipped[path] = made
        return made

    def _locate(self, filename: str) -> Path | None:
        """The file's path, with aiohttp's own checks (no absolute path, nothing outside the
        directory, symlinks not followed out of it), or None."""
        if Path(filename).is_absolute():
            return None
        path = self._directory.joinpath(filename).resolve()
        try:
            path.relative_to(self._directory)
        except ValueError:
            return None
        return path if path.is_file() else None


def not_modified(request: web.Request, etag: str, mtime: float) -> bool:
    """Whether the client's copy is this one: If-None-Match (weak comparison, as RFC 9110
    asks for GET) or, without it, If-Modified-Since at one-second resolution."""
    if_none_match = request.if_none_match
    if if_none_match is not None:
        return any(tag.value in (etag, "*") for tag in if_none_match)
    since = request.if_modified_since
    return since is not None and int(mtime) <= since.timestamp()


def add_static_files(router: web.UrlDispatcher, prefix: str, directory: Path, name: str) -> None:
    """``router.add_static(prefix, directory, name=name)`` with the behaviour above."""
    router.register_resource(StaticFiles(prefix.rstrip("/"), directory, name=name))
