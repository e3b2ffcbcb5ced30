"""gzip for what the node sends over slow links: who accepts it, and the pages' middleware.

Communes sit on 128-512 kbit/s links, where a page's HTML is worth compressing (a live
page's 10 KB of markup is 3 KB gzipped). Static files are compressed once and kept
(server/http/static_files.py); pages and JSON answers are compressed as they go out, here.
gzip only: every browser has it, the standard library has it, and brotli would be one more
native dependency for a few percent on files this small.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.web_response import ContentCoding

from server.errors import Handler

# Below this a gzip header and trailer (18 bytes) and the lost round of the Huffman table
# win nothing worth a CPU's time.
MIN_SIZE = 512

# Pages and API answers; text/plain and binary bodies (socket.io polling, exports) are left.
COMPRESSED_TYPES = frozenset({"text/html", "application/json"})

# What a request's Sec-Fetch-Site may say for a page to go out compressed (see below).
SAFE_FETCH_SITES = frozenset({"same-origin", "none"})


def accepts_gzip(accept_encoding: str) -> bool:
    """Whether an Accept-Encoding header lets gzip through: "gzip" (or "x-gzip") with a
    q above 0, or "*" above 0 when gzip is not named. "gzip;q=0" is a refusal; a q that is
    not a number counts as 0."""
    gzip_q: float | None = None
    star_q: float | None = None
    for item in accept_encoding.lower().split(","):
        coding, _, params = item.partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        coding = coding.strip()
        if coding in ("gzip", "x-gzip"):
            gzip_q = q if gzip_q is None else max(gzip_q, q)
        elif coding == "*":
            star_q = q
    if gzip_q is not None:
        return gzip_q > 0  # NaN is not above 0 either
    return star_q is not None and star_q > 0


def add_vary(response: web.StreamResponse, *names: str) -> None:
    """Add header names to Vary, once each, keeping what is there."""
    present = [v.strip() for v in response.headers.get(hdrs.VARY, "").split(",") if v.strip()]
    lowered = {v.lower() for v in present}
    for name in names:
        if name.lower() not in lowered:
            present.append(name)
            lowered.add(name.lower())
    response.headers[hdrs.VARY] = ", ".join(present)


@web.middleware
async def compression_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """gzip an HTML page or JSON answer when the client accepts it.

    Only for requests the browser says came from this node's own pages or from the person
    (Sec-Fetch-Site "same-origin" or "none"): a page holds the session's CSRF token next to
    text taken from the URL (the language links repeat the path and query), which is what
    BREACH needs — another site making the browser fetch pages with chosen URLs and watching
    the compressed sizes on the wire. A browser's cross-site requests say "cross-site" or
    "same-site", and a page cannot forge the header; a browser too old to send it gets the
    page uncompressed. API clients that are not browsers (the python client, child nodes)
    send no Sec-Fetch-Site either and are answered uncompressed, as before.
    """
    response = await handler(request)
    if type(response) is not web.Response or response.prepared:
        return response  # a file, a stream or a WebSocket: not ours to touch
    if response.content_type not in COMPRESSED_TYPES:
        return response
    add_vary(response, hdrs.ACCEPT_ENCODING, "Sec-Fetch-Site")
    body = response.body
    if (
        not isinstance(body, bytes)
        or len(body) < MIN_SIZE
        or hdrs.CONTENT_ENCODING in response.headers
        or response.status in (204, 304)
        or request.headers.get("Sec-Fetch-Site", "").lower() not in SAFE_FETCH_SITES
        or not accepts_gzip(request.headers.get(hdrs.ACCEPT_ENCODING, ""))
    ):
        return response
    # aiohttp compresses the whole body when the headers go out (in a thread past 4 KB) and
    # sets Content-Length to the compressed size.
    response.enable_compression(ContentCoding.gzip)
    return response
