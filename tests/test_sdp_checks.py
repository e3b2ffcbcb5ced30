"""Malformed SDP in an offer gets a stable code, leaves nothing half-joined, never hangs.

Each case is a real offer made by a real aiortc peer (rooms/probe.py), altered line by line,
sent over a real socket to a real served node (tests/fuzz_node.py): as a site and as the
chair on ``/meeting``, and as a child node's ``relay_offer`` on ``/node``. ``bad_sdp`` means
the SDP is not well-formed (rooms/sdp_checks.py), ``bad_offer`` that well-formed sections do
not follow the layout (rooms/peer.py ``check_offer``); docs/protocol.md says both. After each
refusal the same join offers the unaltered offer, gets an answer and connects; nothing is
logged at ERROR and no acknowledgement carries a traceback.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from rooms.peer import (
    CHAIR_LAYOUT,
    RELAY_LAYOUT,
    SITE_LAYOUT,
    MediaError,
    Peer,
    Slot,
    check_answer,
)
from rooms.probe import ProbePeer
from rooms.router import Router
from rooms.sdp_checks import MAX_SDP as ROOMS_MAX_SDP
from rooms.sdp_checks import SdpError, check_sdp
from server.sockets.protocol import ERROR_CODES, MAX_SDP
from server.sockets.signaling import REGISTRY
from tests.fuzz_node import ACK_WAIT, FuzzNode, judge_ack

pytestmark = pytest.mark.asyncio(loop_scope="module")

LAYOUTS: dict[str, tuple[Slot, ...]] = {
    "site": SITE_LAYOUT,
    "chair": CHAIR_LAYOUT,
    "relay": RELAY_LAYOUT,
}
CONNECT_WAIT = 30.0  # generous: loopback ICE and DTLS finish long before this
HEX = "AB"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def served(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FuzzNode]:
    """A served demo node with one meeting, its chair and a site, and a linked child node."""
    node = await FuzzNode.start(tmp_path_factory.mktemp("sdp-checks"))
    await node.open_meeting()
    yield node
    await node.close()


# -- altering an offer line by line -------------------------------------------------------------


Edit = Callable[[str], str]


def lines_of(sdp: str) -> list[str]:
    return sdp.split("\r\n")


def edit(prefix: str, change: Callable[[str], str | None], *, first: bool = False) -> Edit:
    """Change each line starting with ``prefix`` (only the first with ``first``); a change to
    None drops the line. The offer must have such a line."""

    def apply(sdp: str) -> str:
        out: list[str] = []
        hit = False
        for line in lines_of(sdp):
            if line.startswith(prefix) and not (first and hit):
                hit = True
                changed = change(line)
                if changed is not None:
                    out.append(changed)
                continue
            out.append(line)
        assert hit, f"the offer has no {prefix!r} line"
        return "\r\n".join(out)

    return apply


def replace(prefix: str, value: str, *, first: bool = False) -> Edit:
    return edit(prefix, lambda _line: value, first=first)


def drop(prefix: str) -> Edit:
    return edit(prefix, lambda _line: None)


def field(prefix: str, index: int, value: str, *, first: bool = True) -> Edit:
    """Field ``index`` (split on spaces, after the ``a=x:`` prefix) of matching lines."""

    def change(line: str) -> str:
        head, rest = line[: len(prefix)], line[len(prefix) :].split(" ")
        rest[index] = value
        return head + " ".join(rest)

    return edit(prefix, change, first=first)


def insert_after(prefix: str, extra: str) -> Edit:
    return edit(prefix, lambda line: f"{line}\r\n{extra}", first=True)


def fingerprint(algorithm: str, count: int, byte: str = HEX) -> str:
    return f"a=fingerprint:{algorithm} " + ":".join([byte] * count)


@dataclass(frozen=True)
class Case:
    name: str
    alter: Edit
    code: str  # the answer expected: "ok" or an error code
    target: str = "site"
    connects: bool = True  # False: the alteration keeps the probe's ICE from connecting

    def __str__(self) -> str:
        return f"{self.target}-{self.name}"


CASES = [
    # DTLS fingerprints (RFC 8122): sha-256/384/512 with their number of hex bytes.
    Case("fingerprint-sha-1-only", replace("a=fingerprint:", fingerprint("sha-1", 20)), "bad_sdp"),
    Case("fingerprint-md5-only", replace("a=fingerprint:", fingerprint("md5", 16)), "bad_sdp"),
    Case("fingerprint-short", replace("a=fingerprint:", fingerprint("sha-256", 31)), "bad_sdp"),
    Case("fingerprint-long", replace("a=fingerprint:", fingerprint("sha-384", 64)), "bad_sdp"),
    Case(
        "fingerprint-not-hex",
        replace("a=fingerprint:", fingerprint("sha-256", 32, "ZZ")),
        "bad_sdp",
    ),
    Case("fingerprint-no-value", replace("a=fingerprint:", "a=fingerprint:sha-256"), "bad_sdp"),
    Case(
        "fingerprint-unknown-only", replace("a=fingerprint:", fingerprint("sha-999", 32)), "bad_sdp"
    ),
    Case(
        "fingerprint-extra-sha-1-ignored",
        insert_after("a=fingerprint:sha-256 ", fingerprint("sha-1", 20)),
        "ok",
    ),
    # Ports: 0 to 65535, digits.
    Case("m-port-too-big", field("m=video ", 0, "70000"), "bad_sdp"),
    Case("m-port-not-a-number", field("m=audio ", 0, "x"), "bad_sdp"),
    Case("m-port-with-count", field("m=video ", 0, "9/2"), "bad_sdp"),
    Case("rtcp-port-too-big", field("a=rtcp:", 0, "65536"), "bad_sdp"),
    Case("c-line-bad-address", replace("c=IN IP4 ", "c=IN IP4 999.0.0.1", first=True), "bad_sdp"),
    # Candidates (RFC 8839 section 5.1).
    Case(
        "candidate-too-few-fields",
        edit("a=candidate:", lambda line: " ".join(line.split(" ")[:7]), first=True),
        "bad_sdp",
    ),
    Case("candidate-port-too-big", field("a=candidate:", 5, "99999"), "bad_sdp"),
    Case("candidate-port-not-a-number", field("a=candidate:", 5, "abc"), "bad_sdp"),
    Case("candidate-bad-ip", field("a=candidate:", 4, "999.1.1.1", first=False), "bad_sdp"),
    Case("candidate-unknown-type", field("a=candidate:", 7, "bogus", first=False), "bad_sdp"),
    Case("candidate-component-zero", field("a=candidate:", 1, "0"), "bad_sdp"),
    Case("candidate-priority-zero", field("a=candidate:", 3, "0"), "bad_sdp"),
    Case(
        "candidate-dangling-extension",
        edit("a=candidate:", lambda line: line + " generation", first=True),
        "bad_sdp",
    ),
    Case(
        "candidate-mdns-name",
        field("a=candidate:", 4, "0b6b6b5e-5f27-4a5e-9d5e-5d7f4b3c2a10.local"),
        "ok",
        connects=False,  # resolves to nothing: the link may or may not connect
    ),
    Case(
        "candidate-extensions",
        edit("a=candidate:", lambda line: line + " generation 0 network-id 1", first=False),
        "ok",
    ),
    # ICE credentials (RFC 8839 section 5.4): ufrag 4-256, pwd 22-256 ice-chars.
    Case("ufrag-too-short", replace("a=ice-ufrag:", "a=ice-ufrag:abc"), "bad_sdp"),
    Case("ufrag-too-long", replace("a=ice-ufrag:", "a=ice-ufrag:" + "a" * 257), "bad_sdp"),
    Case("ufrag-not-ice-chars", replace("a=ice-ufrag:", "a=ice-ufrag:ab-cd"), "bad_sdp"),
    Case("pwd-too-short", replace("a=ice-pwd:", "a=ice-pwd:" + "p" * 21), "bad_sdp"),
    Case("pwd-too-long", replace("a=ice-pwd:", "a=ice-pwd:" + "p" * 257), "bad_sdp"),
    Case("pwd-not-ice-chars", replace("a=ice-pwd:", "a=ice-pwd:" + "đ" * 24), "bad_sdp"),
    Case(
        "ufrag-longest",
        replace("a=ice-ufrag:", "a=ice-ufrag:" + "u/+9" * 64),
        "ok",
        connects=False,  # the probe's own ufrag is another
    ),
    # a=mid present and unique; a=setup actpass/active/passive; a=rtcp-mux.
    Case("mid-duplicate", replace("a=mid:", "a=mid:0"), "bad_sdp"),
    Case("mid-missing", drop("a=mid:"), "bad_sdp"),
    Case("setup-holdconn", replace("a=setup:", "a=setup:holdconn"), "bad_sdp"),
    Case("setup-unknown", replace("a=setup:", "a=setup:bogus"), "bad_sdp"),
    Case("rtcp-mux-missing", drop("a=rtcp-mux"), "bad_sdp"),
    # Session lines and the form of every line (RFC 8866).
    Case("no-v-line", drop("v="), "bad_sdp"),
    Case("no-o-line", drop("o="), "bad_sdp"),
    Case("no-s-line", drop("s="), "bad_sdp"),
    Case("no-t-line", drop("t="), "bad_sdp"),
    Case("version-1", replace("v=", "v=1"), "bad_sdp"),
    Case("line-not-x-equals", insert_after("a=rtcp-mux", "hello world"), "bad_sdp"),
    Case("nul-in-a-line", edit("s=", lambda line: line + "\x00"), "bad_sdp"),
    Case("lone-cr-line-ends", lambda sdp: sdp.replace("\r\n", "\r"), "bad_sdp"),
    Case("lf-line-ends", lambda sdp: sdp.replace("\r\n", "\n"), "ok"),
    # Well-formed, but not the layout.
    Case("no-bundle", drop("a=group:BUNDLE"), "bad_offer"),
    Case("direction-swapped", replace("a=sendonly", "a=recvonly"), "bad_offer"),
    # The chair's offer and a child node's relay offer pass the same checks.
    Case(
        "fingerprint-sha-1-only",
        replace("a=fingerprint:", fingerprint("sha-1", 20)),
        "bad_sdp",
        "chair",
    ),
    Case(
        "candidate-bad-ip", field("a=candidate:", 4, "999.1.1.1", first=False), "bad_sdp", "chair"
    ),
    Case(
        "fingerprint-sha-1-only",
        replace("a=fingerprint:", fingerprint("sha-1", 20)),
        "bad_sdp",
        "relay",
    ),
    Case("candidate-port-too-big", field("a=candidate:", 5, "99999"), "bad_sdp", "relay"),
    Case("ufrag-too-short", replace("a=ice-ufrag:", "a=ice-ufrag:abc"), "bad_sdp", "relay"),
    Case("mid-duplicate", replace("a=mid:", "a=mid:0"), "bad_sdp", "relay"),
    Case("no-t-line", drop("t="), "bad_sdp", "relay"),
    Case("no-bundle", drop("a=group:BUNDLE"), "bad_offer", "relay"),
]


# -- sending over the node's sockets -----------------------------------------------------------


async def send_offer(served: FuzzNode, target: str, sdp: str, what: str) -> dict[str, Any]:
    """Offer ``sdp`` as ``target`` on a fresh join (a relay: a fresh ``relay_join``) and
    judge the acknowledgement: a documented code, no traceback, nothing logged at ERROR."""
    relay = target == "relay"
    await served.ready(live=relay, hello=relay, relay=relay, fresh=target)
    role, event_name, ns = (
        ("node", "relay_offer", "/node") if relay else (target, "offer", "/meeting")
    )
    payload: dict[str, Any] = {"sdp": sdp}
    if relay:
        payload["meeting_id"] = served.meeting_id
    sio = await served.socket(role)
    ack = await asyncio.wait_for(
        sio.call(event_name, payload, namespace=ns, timeout=ACK_WAIT), ACK_WAIT + 5
    )
    answer = judge_ack("sdp", event_name, ack, frozenset(ERROR_CODES), what)
    answer.problems += [f"server error logged: {e}" for e in served.errors.take()]
    assert not answer.problems, answer.report()
    assert isinstance(ack, dict)
    return ack


def participant(served: FuzzNode, target: str) -> Any:
    role = "node" if target == "relay" else target
    live = served.app[REGISTRY].get(served.meeting_id)
    sio = served.sockets[role]
    found = live.by_sid(sio.get_sid("/node" if role == "node" else "/meeting"))
    assert found is not None, f"the {target} is no longer in the meeting"
    return found


async def connected(probe: ProbePeer) -> None:
    deadline = time.monotonic() + CONNECT_WAIT
    while probe.pc.connectionState != "connected":
        assert probe.pc.connectionState not in ("failed", "closed"), probe.pc.connectionState
        assert time.monotonic() < deadline, f"not connected: {probe.pc.connectionState}"
        await asyncio.sleep(0.05)


def code_of(ack: dict[str, Any]) -> str:
    return "ok" if ack.get("ok") is True else str(ack.get("error"))


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_altered_offer_gets_its_code_and_the_join_still_negotiates(
    served: FuzzNode, case: Case
) -> None:
    probe = ProbePeer(LAYOUTS[case.target], publish=False, decode=False)
    try:
        good = await probe.offer()
        altered = case.alter(good)
        assert altered != good
        ack = await send_offer(served, case.target, altered, case.name)
        assert code_of(ack) == case.code, (case.name, ack)
        if case.code == "ok":
            check_answer(ack["sdp"], LAYOUTS[case.target])
        else:
            assert participant(served, case.target).peer is None, "a refused offer left a link"
            ack = await send_offer(served, case.target, good, f"{case.name}, then the good offer")
            assert code_of(ack) == "ok", ack
        await probe.accept(ack["sdp"])
        if case.connects or case.code != "ok":
            await connected(probe)
    finally:
        await probe.close()


# -- the limits and the other node's answer -----------------------------------------------------


async def test_the_size_limit_is_the_wire_limit_and_refuses_one_more_character() -> None:
    assert ROOMS_MAX_SDP == MAX_SDP == 64 * 1024
    head = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"
    padded = head + "a=x-pad:" + "p" * (MAX_SDP - len(head) - len("a=x-pad:\r\n")) + "\r\n"
    assert len(padded) == MAX_SDP
    check_sdp(padded)  # at the limit: well-formed
    with pytest.raises(SdpError, match="65536"):
        check_sdp(padded + "a")


@pytest.mark.parametrize(
    "junk",
    [
        "not an sdp at all",
        "v=0\r\n",
        "v=0 garbage",
        "",
        "\r\n\r\n",
        "v=0\r\no=-\r\ns=-\r\nt=0 0\r\n",
    ],
)
async def test_what_is_not_sdp_is_refused_as_such(junk: str) -> None:
    with pytest.raises(SdpError):
        check_sdp(junk)


async def test_a_malformed_answer_from_the_other_node_is_refused_with_its_code() -> None:
    """A child checks its parent's answer as the parent checks the offer (parent_link.py)."""
    offerer = ProbePeer(RELAY_LAYOUT, publish=False, decode=False)
    parent = Peer(Router("parent"), RELAY_LAYOUT, {}, lambda *_: None, lambda *_: None)
    try:
        answer = await parent.answer(await offerer.offer())
        check_answer(answer, RELAY_LAYOUT)
        for bad, code in (
            (replace("a=fingerprint:", fingerprint("md5", 16))(answer), "bad_sdp"),
            (field("a=candidate:", 4, "999.1.1.1", first=False)(answer), "bad_sdp"),
            (replace("a=setup:", "a=setup:actpass")(answer), "bad_sdp"),
            ("not an sdp at all", "bad_sdp"),
            (drop("a=group:BUNDLE")(answer), "bad_offer"),
            (replace("a=recvonly", "a=sendonly")(answer), "bad_offer"),
        ):
            with pytest.raises(MediaError) as refused:
                check_answer(bad, RELAY_LAYOUT)
            assert refused.value.code == code, (code, refused.value.message)
    finally:
        await offerer.close()
        await parent.close()


# -- mutations: only the documented codes ---------------------------------------------------

JUNK_VALUES = [
    "",
    "a=",
    "x",
    "a=candidate:1 1 udp 1 999.1.1.1 99999999 typ host",
    "a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ",
    "a=fingerprint:sha-256 00",
    "a=fingerprint:md5 " + ":".join(["AB"] * 16),
    "a=setup:holdconn",
    "a=ice-ufrag:a",
    "a=ice-pwd:short",
    "a=mid:0",
    "m=video 9 UDP/TLS/RTP/SAVPF 96",
    "m=video 99999 UDP/TLS/RTP/SAVPF 97",
    "c=IN IP4 nowhere",
    "a=rtcp:abc",
    "a=rtpmap:97 VP8/abc",
    "a=fmtp:200 apt=1",
    "a=extmap:x urn:x",
    "a=ssrc:x cname:y",
    "a=group:BUNDLE 0",
    "v=0",
    "t=0",
    "a=x-đ-\u2028-\x0b",
]
CODEC_LINES = ("m=", "a=rtpmap:", "a=fmtp:", "a=rtcp-fb:")


@dataclass(frozen=True)
class Mutation:
    op: str  # drop, duplicate, replace, swap, cut (a line's end cut off)
    at: int
    value: str = ""

    def apply(self, lines: list[str]) -> tuple[list[str], list[str]]:
        """The lines after the mutation, and the lines it touched (before and after)."""
        i = self.at % len(lines)
        out = list(lines)
        if self.op == "drop":
            del out[i]
            return out, [lines[i]]
        if self.op == "duplicate":
            out.insert(i, lines[i])
            return out, [lines[i]]
        if self.op == "replace":
            out[i] = self.value
            return out, [lines[i], self.value]
        if self.op == "swap":
            j = (i + 1) % len(lines)
            out[i], out[j] = out[j], out[i]
            return out, [lines[i], lines[j]]
        if self.op == "cut":
            out[i] = lines[i][: max(len(lines[i]) // 2, 2)]
            return out, [lines[i]]
        raise AssertionError(self.op)


mutations = st.builds(
    Mutation,
    st.sampled_from(["drop", "duplicate", "replace", "swap", "cut"]),
    st.integers(0, 300),
    st.sampled_from(JUNK_VALUES) | st.text(max_size=40).map(lambda s: "a=" + s),
)


@settings(
    max_examples=50,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # bounded time: no shrinking
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    target=st.sampled_from(["site", "site", "chair", "relay"]),
    changes=st.lists(mutations, min_size=1, max_size=3),
)
async def test_mutated_offer_is_answered_or_refused_bad_sdp_or_bad_offer(
    served: FuzzNode, target: str, changes: list[Mutation]
) -> None:
    lines = lines_of(served.offers[target])
    touched: list[str] = []
    for change in changes:
        lines, hit = change.apply(lines)
        touched += hit
    sdp = "\r\n".join(lines)
    ack = await send_offer(served, target, sdp, f"{target} {changes!r}")
    code = code_of(ack)
    event(code)
    allowed = {"ok", "bad_sdp", "bad_offer"}
    if any(line.startswith(CODEC_LINES) for line in touched):
        allowed.add("unsupported_codec")  # a codec line dropped or changed
    assert code in allowed, (target, changes, ack)
    if code != "ok":
        assert participant(served, target).peer is None, "a refused offer left a link"
        assert re.search(r"\S", ack["message"]), ack
