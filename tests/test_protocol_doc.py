"""docs/protocol.md keeps up with the code: every event the namespace handles, every event the
node sends, every payload field with its limits, every error code, every layout slot and
every key of the state object must be in it (and nothing it lists may be stale)."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import Any

import annotated_types
import pytest
from aiohttp import web

from rooms.meeting import CHAIR, SITE, LiveMeeting, Participant
from rooms.peer import CHAIR_LAYOUT, SITE_LAYOUT
from server.auth import SESSION_COOKIE
from server.protocol import ERROR_CODES, EVENTS, SERVER_EVENTS
from server.signaling import NAMESPACE, MeetingNamespace

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"


@cache
def doc() -> str:
    return DOC.read_text(encoding="utf-8")


@cache
def sections() -> dict[str, str]:
    """Text under each ``### `name``` heading, up to the next heading."""
    out: dict[str, str] = {}
    name: str | None = None
    for line in doc().splitlines():
        heading = re.match(r"^#{1,6} ", line)
        if heading:
            match = re.match(r"^### `([^`]+)`\s*$", line)
            name = match.group(1) if match else None
            if name is not None:
                out[name] = ""
            continue
        if name is not None:
            out[name] += line + "\n"
    return out


def handled_events() -> set[str]:
    """The events the namespace dispatches, read from a real (unattached) namespace."""
    return set(MeetingNamespace(web.Application()).handlers)


CLIENT_EVENTS = sorted(set(EVENTS) | handled_events())


def test_the_doc_names_the_namespace_and_the_cookie() -> None:
    assert f"`{NAMESPACE}`" in doc()
    assert f"`{SESSION_COOKIE}`" in doc()
    assert "/socket.io/" in doc()


@pytest.mark.parametrize("event", CLIENT_EVENTS)
def test_every_client_event_has_its_section(event: str) -> None:
    assert event in sections(), f"docs/protocol.md has no '### `{event}`' section"
    assert sections()[event].strip(), f"the section of `{event}` is empty"


@pytest.mark.parametrize("event", SERVER_EVENTS)
def test_every_node_event_has_its_section(event: str) -> None:
    assert event in sections(), f"docs/protocol.md has no '### `{event}`' section"
    assert sections()[event].strip(), f"the section of `{event}` is empty"


def test_no_section_documents_an_event_that_does_not_exist() -> None:
    assert set(sections()) <= set(CLIENT_EVENTS) | set(SERVER_EVENTS)


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_payload_field_is_in_its_event_section(event: str) -> None:
    text = sections().get(event, "")
    model = EVENTS[event]
    for name in model.model_fields:
        assert f"`{name}`" in text, f"field `{name}` of `{event}` is not in its section"
    # Field tables list only real fields.
    rows = set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))
    assert rows <= set(model.model_fields), f"`{event}` documents unknown fields {rows}"
    if not model.model_fields:
        assert "`{}`" in text, f"`{event}` takes no fields: say its payload is {{}}"


@pytest.mark.parametrize("event", sorted(EVENTS))
def test_every_field_limit_is_in_its_event_section(event: str) -> None:
    text = sections().get(event, "")
    for name, info in EVENTS[event].model_fields.items():
        for rule in info.metadata:
            for attr in ("min_length", "max_length", "ge", "le", "gt", "lt"):
                value = getattr(rule, attr, None)
                if value is not None:
                    assert re.search(rf"\b{value}\b", text), (
                        f"limit {attr}={value} of `{event}`.`{name}` is not in its section"
                    )


def test_the_field_limits_are_read_at_all() -> None:
    # The limit test above must see the limits, or it would pass on anything.
    rules = [r for r in EVENTS["offer"].model_fields["sdp"].metadata]
    assert any(isinstance(r, annotated_types.MaxLen) for r in rules)


def test_every_error_code_is_in_the_table() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| .+\|$", doc(), flags=re.MULTILINE)
    for code in ERROR_CODES:
        assert code in rows, f"error code `{code}` has no row in the error table"


def test_the_error_table_lists_only_real_codes() -> None:
    table = doc().split("## 8. Error codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.MULTILINE)
    assert rows, "no error table under '## 8. Error codes'"
    assert set(rows) == set(ERROR_CODES)


def test_every_error_code_named_in_an_event_section_is_real() -> None:
    for event in EVENTS:
        text = sections().get(event, "")
        paragraph = text.split("Errors:", 1)[1].split("\n\n", 1)[0] if "Errors:" in text else ""
        for code in re.findall(r"`([a-z_]+)`", paragraph):
            assert code in ERROR_CODES, f"`{event}` names an unknown error code `{code}`"


@pytest.mark.parametrize(("role", "layout"), [("site", SITE_LAYOUT), ("chair", CHAIR_LAYOUT)])
def test_every_layout_slot_is_in_its_table_in_order(role: str, layout: Any) -> None:
    for index, slot in enumerate(layout):
        public = slot.public()
        row = (
            rf"^\| {index} \| `{re.escape(public['slot'])}` \| {public['kind']} \| "
            rf"`{public['direction']}` \|"
        )
        assert re.search(row, doc(), flags=re.MULTILINE), f"{role} slot {index}: {public}"


def keys_of(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in keys_of(v)}
    if isinstance(value, list):
        return {k for v in value for k in keys_of(v)}
    return set()


async def test_every_state_key_is_in_the_state_section() -> None:
    # A real live meeting with a chair and a site holding the floor and a raised hand,
    # so every optional part of the state is present.
    live = LiveMeeting(1, "Họp thử", "CM", lambda _live: None)
    chair = Participant("CM", CHAIR, "Tỉnh Cà Mau", ["Tỉnh Cà Mau"], 1, "sid-chair")
    site = Participant(
        "CM-NC-HR", SITE, "Xã Hàm Rồng", ["Tỉnh Cà Mau", "Huyện Năm Căn", "Xã Hàm Rồng"], 2, "s"
    )
    other = Participant("CM-NC", SITE, "Huyện Năm Căn", ["Tỉnh Cà Mau", "Huyện Năm Căn"], 3, "o")
    try:
        for p in (chair, site, other):
            await live.join(p)
        live.give_floor("CM-NC-HR")
        live.raise_hand(other, True)
        chair_state, site_state = live.state_for(chair), live.state_for(site)
    finally:
        await live.close()
    assert chair_state["queue"]
    assert chair_state["floor"] is not None
    text = sections().get("state", "")
    for key in sorted(keys_of(chair_state) | keys_of(site_state)):
        assert f"`{key}`" in text, f"state key `{key}` is not in the `state` section"
    for status in ("waiting", "live", "ended"):
        assert f'`"{status}"`' in text, f"state status {status!r} is not in the `state` section"
