"""Text fields: one rule for every string a client, a file or an operator gives the node.

No text field holds a control character: PostgreSQL refuses NUL, a terminal obeys ESC in a
log line, a newline in a title breaks the one-line places it is shown, and a bidi override
(U+202E) shows a title reversed. The rule, for both kinds of field:

- refused: every Unicode control character (category Cc: U+0000-U+001F, U+007F-U+009F),
  the line and paragraph separators U+2028 and U+2029, lone surrogates (a JSON ``\\ud800``
  decodes to one), and the bidi embeddings, overrides and isolates U+202A-U+202E and
  U+2066-U+2069;
- ``Line`` (names, titles, codes, URLs): nothing else;
- ``Text`` (a meeting's description): also allows a tab and a newline; a CR LF pair (what a
  browser sends from a textarea) becomes a newline, and a lone CR is refused.

Whitespace is left to each model: the form and API models strip it (``str_strip_whitespace``),
the socket events take strings as sent. Length limits stay on the fields (``Field``).
``control_free`` applies the rule outside pydantic (the CLI).
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

# Stable texts: pages look them up in server/i18n.py's catalog to show them in Vietnamese.
LINE_MESSAGE = "must not contain line breaks, tabs or control characters"
TEXT_MESSAGE = "must not contain control characters"
ERROR_TYPE = "control_character"

BIDI_CONTROLS = frozenset(chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A)))
SEPARATORS = frozenset("\u2028\u2029")
MULTILINE_ALLOWED = frozenset("\t\n")


class ControlCharacterError(ValueError):
    """A text holds a refused character; ``char`` and ``index`` say which and where."""

    def __init__(self, message: str, char: str, index: int) -> None:
        super().__init__(f"{message} (U+{ord(char):04X} at position {index + 1})")
        self.message = message
        self.char = char
        self.index = index


def _refused(ch: str) -> bool:
    if ch in BIDI_CONTROLS or ch in SEPARATORS:
        return True
    return unicodedata.category(ch) in ("Cc", "Cs")


def first_refused(text: str, multiline: bool = False) -> int | None:
    """The index of the first refused character of ``text`` (already CR LF normalised)."""
    for index, ch in enumerate(text):
        if multiline and ch in MULTILINE_ALLOWED:
            continue
        if _refused(ch):
            return index
    return None


def control_free(text: str, multiline: bool = False) -> str:
    """``text`` as stored (CR LF as LF when ``multiline``), or ControlCharacterError."""
    if multiline:
        text = text.replace("\r\n", "\n")
    index = first_refused(text, multiline)
    if index is not None:
        raise ControlCharacterError(TEXT_MESSAGE if multiline else LINE_MESSAGE, text[index], index)
    return text


def _line(value: str) -> str:
    if first_refused(value) is not None:
        raise PydanticCustomError(ERROR_TYPE, LINE_MESSAGE)
    return value


def _text(value: str) -> str:
    value = value.replace("\r\n", "\n")
    if first_refused(value, multiline=True) is not None:
        raise PydanticCustomError(ERROR_TYPE, TEXT_MESSAGE)
    return value


Line = Annotated[str, AfterValidator(_line)]
Text = Annotated[str, AfterValidator(_text)]
