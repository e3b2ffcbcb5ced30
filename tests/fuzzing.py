"""Fuzz generators shared by tests/test_fuzz.py (a few hundred inputs) and bench/fuzz.py
(tens of thousands): hypothesis strategies for HTTP requests, socket events and SDP offers.

Nothing here names a route or an event: the HTTP cases are drawn for a route of the app's
router, the event payloads from the event's pydantic model, so a new route, event or field
is fuzzed without editing this file. The drivers that send the cases to a real node and
judge the answers are in tests/fuzz_node.py.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import types
import typing
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from functools import cache
from typing import Any

from aiohttp import web
from hypothesis import strategies as st
from pydantic import BaseModel

# -- values ------------------------------------------------------------------------------------

DEMO_UNITS = ["CM", "CM-NC", "CM-NC-HR", "CM-NH", "CM-NH-RG", "CM-TVT-KB", "CM-XX", "cm-nc"]
DEMO_USERS = ["quantri", "chutri", "thuky", "kt.cm-nc-hr", "chutri.cm-nh", "CHUTRI "]

# Unicode of every kind, control characters included (NUL, newlines, bidi marks, surrogates
# are not JSON-encodable as UTF-8 and are left to the raw-bytes bodies).
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
control_text = st.text(st.characters(max_codepoint=0x9F, exclude_categories=["Cs"]), max_size=12)
vietnamese = st.sampled_from(["Hội nghị", "Xã Hàm Rồng", "Đà Nẵng", "Tỉnh Cà Mau", "\u0000", ""])
huge_text = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "é", "\u0000", "𝕏", "/"]), st.integers(300, 70_000)
)
texts = st.one_of(any_text, control_text, vietnamese, huge_text, st.sampled_from(DEMO_UNITS))

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(-1, 100)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=10,
)
# Start times anywhere in the calendar, often in the future, with an offset or without
# (st.timezones() would cost more to draw than a request costs to send).
offsets = st.sampled_from(["", "Z", "+07:00", "-23:59", "+14:00", "+00:00"])
iso_times = st.builds(
    lambda d, z: d.isoformat() + z,
    st.datetimes(min_value=datetime(2030, 1, 1)) | st.datetimes(),
    offsets,
)

# Plausible values by field name, where the type alone would rarely hit something real.
BY_NAME: dict[str, st.SearchStrategy[Any]] = {
    "unit": st.sampled_from(DEMO_UNITS),
    "parent": st.sampled_from(DEMO_UNITS),
    "code": st.sampled_from([*DEMO_UNITS, "CM-NC-MOI", "CM-FUZZ-1"]),
    "units": st.lists(st.sampled_from(DEMO_UNITS), max_size=3),
    "invited_units": st.lists(st.sampled_from(DEMO_UNITS), max_size=3),
    "invited_subtrees": st.lists(st.sampled_from(DEMO_UNITS), max_size=3),
    "username": st.sampled_from([*DEMO_USERS, "nguoi.moi", "fuzz.user"]),
    "password": st.sampled_from(["hoinghi-demo", "mat-khau-moi", "short"]),
    "starts_at": iso_times,
    "meeting_id": st.integers(0, 12) | st.integers(2**31 - 2, 2**31 + 1),
    "level": st.sampled_from(["province", "district", "commune", "Xã"]),
    "slot": st.integers(-1, 5),
}


def _annotation_values(annotation: Any) -> st.SearchStrategy[Any]:
    """JSON values of (roughly) the annotated type: str, int, bool, enums, lists, models."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return st.one_of([_annotation_values(a) for a in typing.get_args(annotation)])
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return st.lists(_annotation_values(item), max_size=4)
    if annotation is type(None):
        return st.none()
    if annotation is bool:
        return st.booleans()
    if annotation is int:
        return st.integers(-2, 50) | st.integers()
    if annotation is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    if annotation is str:
        return texts
    if annotation is datetime:
        return iso_times
    if inspect.isclass(annotation) and issubclass(annotation, Enum):
        return st.sampled_from([m.value for m in annotation])
    if inspect.isclass(annotation) and issubclass(annotation, BaseModel):
        return plausible(annotation)
    return json_values


def _field_values(name: str, annotation: Any) -> st.SearchStrategy[Any]:
    typed = _annotation_values(annotation)
    return BY_NAME[name] | typed if name in BY_NAME else typed


def plausible(model: type[BaseModel]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with the model's fields (required ones always, optional ones sometimes)."""
    required = {}
    optional = {}
    for name, info in model.model_fields.items():
        values = _field_values(name, info.annotation)
        (required if info.is_required() else optional)[name] = values
    return st.fixed_dictionaries(required, optional=optional)


def payloads(model: type[BaseModel]) -> st.SearchStrategy[Any]:
    """Any JSON, or the model's object as drawn, with one field replaced by any JSON, one
    left out, or one unknown field added."""
    good = plausible(model)
    names = list(model.model_fields)
    keys = st.sampled_from(names) if names else any_text
    return st.one_of(
        json_values,
        good,
        good,
        st.builds(lambda d, k, v: {**d, k: v}, good, keys, json_values),
        st.builds(lambda d, k: {x: y for x, y in d.items() if x != k}, good, keys),
        st.builds(lambda d, k, v: {**d, k: v}, good, any_text, json_values),
    )


def wire_models() -> list[type[BaseModel]]:
    """Every pydantic model the node's HTTP handlers read (their fields feed the bodies)."""
    found: list[type[BaseModel]] = []
    for name in ("server.http.api", "server.http.admin", "server.meetings"):
        module = importlib.import_module(name)
        for value in vars(module).values():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseModel)
                and value.__module__ == name
                and value not in found
            ):
                found.append(value)
    return found


# -- HTTP --------------------------------------------------------------------------------------

ROLES = ("admin", "chair", "secretary", "operator", "anonymous")
OTHER_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS", "HEAD", "FOO")


@dataclass(frozen=True)
class Route:
    """One entry of the app's router: a method and a path (``{name}`` for parameters; a
    static directory's route ends in ``/{tail}``)."""

    method: str
    path: str
    params: tuple[str, ...]

    @property
    def id(self) -> str:
        return f"{self.method} {self.path}"


def app_routes(app: web.Application) -> list[Route]:
    """Every route of the app's router except the HEAD twins of GET routes (a case sends
    HEAD to a GET route now and then)."""
    routes: list[Route] = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method == "HEAD":
            continue
        info = resource.get_info()
        if "prefix" in info:  # a static directory
            path = info["prefix"].rstrip("/") + "/{tail}"
        else:
            path = info.get("formatter") or info["path"]
        found = Route(route.method, path, tuple(re.findall(r"\{(\w+)\}", path)))
        if found not in routes:
            routes.append(found)
    return routes


PARAM_VALUES: dict[str, st.SearchStrategy[str]] = {
    "meeting_id": st.integers(0, 12).map(str) | st.sampled_from(["2147483648", "٣", "1e3", "-1"]),
    "user_id": st.integers(0, 40).map(str) | st.sampled_from(["99999999999999999999", "١"]),
    "code": st.sampled_from(DEMO_UNITS),
    "lang": st.sampled_from(["vi", "en", "fr", "VI"]),
    "tail": st.sampled_from(["pages.css", "live/client.js", "nope.txt", "", "live/", "../x"]),
}


def param_values(name: str) -> st.SearchStrategy[str]:
    return PARAM_VALUES.get(name, st.nothing()) | any_text | huge_text.map(lambda s: s[:400])


@dataclass
class HttpCase:
    route: Route
    role: str
    method: str
    params: dict[str, str]
    query: dict[str, str]
    csrf: str | None  # "<valid>" for the session's own token, None for no header
    headers: dict[str, str]
    body_kind: str  # none, json, form, raw
    body: Any = None
    form_csrf: str | None = None

    def describe(self) -> str:
        body = json.dumps(self.body, ensure_ascii=True, default=repr)
        return (
            f"{self.method} {self.route.path} as {self.role} params={self.params!r} "
            f"query={self.query!r} csrf={self.csrf!r} headers={self.headers!r} "
            f"{self.body_kind}={body[:300]}"
        )


VALID = "<valid>"
# Header values a client can put on the wire: any printable text (non-ASCII and tabs too),
# never CR, LF or NUL (those no HTTP client sends).
header_text = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters="\r\n\x00") | st.just("\t"),
    max_size=60,
)
csrf_values = st.sampled_from([VALID, VALID, VALID, None]) | header_text
extra_headers = st.dictionaries(
    st.sampled_from(["Accept-Language", "Content-Type", "Origin", "Referer", "X-Forwarded-For"]),
    header_text | st.sampled_from(["application/json", "multipart/form-data", "vi"]),
    max_size=2,
)
form_bodies = st.lists(
    st.tuples(
        st.sampled_from(
            [*{n for m in wire_models() for n in m.model_fields}, "next", "active", "csrf_token"]
        )
        | any_text,
        texts.map(lambda s: s[:2000]),
    ),
    max_size=8,
)
raw_bodies = st.binary(max_size=200) | st.sampled_from(
    [b"{", b'{"a":' * 2000, b"\xff\xfe", b"null"]
)
json_bodies = st.one_of(json_values, *(payloads(m) for m in wire_models()))


@cache
def http_cases(route: Route) -> st.SearchStrategy[HttpCase]:
    method = st.just(route.method) | st.sampled_from(OTHER_METHODS)
    if route.method == "GET":
        method = method | st.just("HEAD")
    body = st.one_of(
        st.tuples(st.just("none"), st.none()),
        st.tuples(st.just("json"), json_bodies),
        st.tuples(st.just("form"), form_bodies),
        st.tuples(st.just("raw"), raw_bodies),
    )
    return st.builds(
        lambda role, m, params, query, csrf, headers, kind_body, form_csrf: HttpCase(
            route, role, m, params, query, csrf, headers, kind_body[0], kind_body[1], form_csrf
        ),
        st.sampled_from(ROLES),
        method,
        st.fixed_dictionaries({p: param_values(p) for p in route.params}),
        st.dictionaries(
            st.sampled_from(["next", "flash", "lang"]) | any_text,
            st.sampled_from(["/meetings", "//evil.example", "/\t/evil.example", "created"])
            | any_text,
            max_size=2,
        ),
        csrf_values,
        extra_headers,
        body,
        st.sampled_from([VALID, None]) | header_text,
    )


# -- socket events -----------------------------------------------------------------------------

MEETING_ROLES = ("chair", "site", "secretary", "admin", "outsider")
# Names no namespace handles, the reserved socket.io names among them.
ODD_EVENTS = st.sampled_from(["connect", "disconnect", "message", "join ", "JOIN", ""]) | any_text


@dataclass
class EventCase:
    event: str
    role: str
    args: tuple[Any, ...]  # what the client sends after the event name (usually one)

    def describe(self) -> str:
        args = json.dumps(self.args, ensure_ascii=True, default=repr)
        return f"{self.event!r} as {self.role} args={args[:400]}"


@cache
def event_cases(
    event: str | None, model: type[BaseModel] | None, roles: tuple[str, ...]
) -> st.SearchStrategy[EventCase]:
    """Cases for one event (its model's payloads) or, with ``event`` None, for names the
    namespace does not handle."""
    name = st.just(event) if event is not None else ODD_EVENTS
    payload = payloads(model) if model is not None else json_values
    args = st.one_of(
        payload.map(lambda p: (p,)),
        payload.map(lambda p: (p,)),
        st.just(()),
        st.tuples(payload, json_values),
    )
    return st.builds(EventCase, name, st.sampled_from(roles), args)


# -- SDP offers --------------------------------------------------------------------------------

SDP_TARGETS = ("site", "chair", "relay")

junk_fingerprints = (
    st.sampled_from(
        [
            "sha-256 00",
            "md5 " + ":".join(["AB"] * 16),
            "sha-1 " + ":".join(["AB"] * 20),
            "sha-256 " + ":".join(["ZZ"] * 32),
            "sha-256 " + ":".join(["AB"] * 31),
            "sha-999 " + ":".join(["AB"] * 32),
            "",
            "sha-256",
        ]
    )
    | any_text
)
junk_ports = st.sampled_from(
    ["0", "65536", "99999999999", "-1", "abc", "", "9" * 400]
) | st.integers().map(str)


@dataclass(frozen=True)
class SdpMutation:
    op: str
    at: int
    value: str = ""

    def apply(self, lines: list[str]) -> list[str]:
        i = self.at % max(len(lines), 1)
        if self.op == "drop":
            return lines[:i] + lines[i + 1 :]
        if self.op == "drop_kind":
            return [line for line in lines if not line.startswith(self.value)]
        if self.op == "duplicate":
            return lines[: i + 1] + lines[i:]
        if self.op == "insert":
            return [*lines[:i], self.value, *lines[i:]]
        if self.op == "replace":
            return [*lines[:i], self.value, *lines[i + 1 :]]
        if self.op == "fingerprint":
            return [
                f"a=fingerprint:{self.value}" if line.startswith("a=fingerprint:") else line
                for line in lines
            ]
        if self.op == "port":
            return [
                _with_port(line, self.value) if line.startswith("m=") else line for line in lines
            ]
        if self.op == "truncate":
            return "\r\n".join(lines)[: self.at].split("\r\n")
        if self.op == "swap":
            j = (i + 7) % max(len(lines), 1)
            out = list(lines)
            if out:
                out[i], out[j] = out[j], out[i]
            return out
        if self.op == "text":  # unicode or control characters inside a line
            return [*lines[:i], lines[i] + self.value if lines else self.value, *lines[i + 1 :]]
        raise AssertionError(self.op)


def _with_port(line: str, port: str) -> str:
    parts = line.split(" ")
    return " ".join([parts[0], port, *parts[2:]]) if len(parts) > 1 else line


mutations = st.one_of(
    st.builds(SdpMutation, st.just("drop"), st.integers(0, 400)),
    st.builds(
        SdpMutation,
        st.just("drop_kind"),
        st.just(0),
        st.sampled_from(
            [
                "a=fingerprint",
                "a=ice-ufrag",
                "a=ice-pwd",
                "a=mid",
                "a=group",
                "m=",
                "a=rtpmap",
                "v=",
                "a=setup",
                "c=",
            ]
        ),
    ),
    st.builds(SdpMutation, st.just("duplicate"), st.integers(0, 400)),
    st.builds(
        SdpMutation,
        st.just("insert"),
        st.integers(0, 400),
        st.sampled_from(
            [
                "a=candidate:1 1 udp 1 999.1.1.1 99999999 typ host",
                "m=video 9 UDP/TLS/RTP/SAVPF 96",
                "a=x",
            ]
        )
        | huge_text.map(lambda s: "a=x-junk:" + s)
        | any_text,
    ),
    st.builds(SdpMutation, st.just("replace"), st.integers(0, 400), texts.map(lambda s: s[:5000])),
    st.builds(SdpMutation, st.just("fingerprint"), st.just(0), junk_fingerprints),
    st.builds(SdpMutation, st.just("port"), st.just(0), junk_ports),
    st.builds(SdpMutation, st.just("truncate"), st.integers(0, 6000)),
    st.builds(SdpMutation, st.just("swap"), st.integers(0, 400)),
    st.builds(SdpMutation, st.just("text"), st.integers(0, 400), any_text | control_text),
)


@dataclass
class SdpCase:
    target: str
    mutations: list[SdpMutation] = field(default_factory=list)
    newline: str = "\r\n"

    def apply(self, offer: str) -> str:
        lines = offer.split("\r\n")
        for mutation in self.mutations:
            lines = mutation.apply(lines)
        return self.newline.join(lines)

    def describe(self) -> str:
        return f"offer to {self.target} with {self.mutations!r} newline={self.newline!r}"


sdp_cases = st.builds(
    SdpCase,
    st.sampled_from(SDP_TARGETS),
    st.lists(mutations, max_size=4),
    st.sampled_from(["\r\n", "\r\n", "\n", "\r"]),
)
