"""Every string the page templates translate has a Vietnamese entry in server/i18n.py."""

from __future__ import annotations

import re

from server.app import WEB_DIR
from server.i18n import VI


def template_strings(name: str) -> set[str]:
    text = (WEB_DIR / "templates" / name).read_text(encoding="utf-8")
    return set(re.findall(r"""_\(\s*"([^"]+)"\s*\)""", text)) | set(
        re.findall(r"""_\(\s*'([^']+)'\s*\)""", text)
    )


def test_every_template_string_has_vietnamese() -> None:
    used: set[str] = set()
    for path in sorted((WEB_DIR / "templates").glob("*.html")):
        used |= template_strings(path.name)
    assert len(used) > 50
    missing = sorted(text for text in used if text not in VI)
    assert missing == []


def test_the_right_door_page_is_translated_with_its_placeholders() -> None:
    used = template_strings("served_elsewhere.html")
    assert len(used) == 3
    for text in used:
        assert set(re.findall(r"{\w+}", VI[text])) == set(re.findall(r"{\w+}", text))
