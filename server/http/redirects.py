"""Where a page may send the browser next: a path on this site, or ``/meetings``.

A browser does more to a ``Location`` than read it: it drops tabs, newlines and CRs anywhere,
strips leading spaces and control characters, and reads a backslash as a slash, so
``/<TAB>/evil.example`` becomes ``//evil.example``, another site. So the value is refused
outright when it holds any of those (also once percent-decoded, in case a later hop decodes
it), and what aiohttp will actually send (``str(URL(value))``) must still be a path that
starts with exactly one slash.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote

from yarl import URL

FALLBACK = "/meetings"
MAX_LENGTH = 2000

# Control characters, lone surrogates and the Unicode line and paragraph separators.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _plain_path(text: str) -> bool:
    return (
        text.startswith("/")
        and not text.startswith("//")
        and "\\" not in text
        and not any(unicodedata.category(c) in _REFUSED_CATEGORIES for c in text)
    )


def safe_next(value: str | None) -> str:
    """``value`` when it is a same-site path a browser cannot read as another site."""
    if not value or len(value) > MAX_LENGTH:
        return FALLBACK
    if not (_plain_path(value) and _plain_path(unquote(value))):
        return FALLBACK
    try:
        sent = URL(value)
    except ValueError:
        return FALLBACK
    if sent.absolute or not _plain_path(str(sent)):
        return FALLBACK
    return value
