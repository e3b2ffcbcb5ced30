"""Is it well-formed SDP? Checked before aiortc parses an offer or an answer.

aiortc's parser accepts much that is not SDP (no ``v=`` line, a port of 70000, a candidate at
``999.1.1.1``, a three-letter ``ice-ufrag``, an ``md5`` fingerprint) and raises bare
``AssertionError``/``KeyError`` on other junk; what it accepts may then fail later, at ICE or
DTLS time, long after the answer. ``check_sdp`` refuses all that up front with a message that
names the line: the session lines (RFC 8866), every line ``x=value``, ports, ``c=`` lines,
candidates and ICE credentials (RFC 8839), DTLS fingerprints (RFC 8122) and ``a=setup``
(RFC 8842), and in each media section an ``a=mid`` of its own (RFC 9143), ICE credentials, a
SHA-2 fingerprint, ``a=setup`` and (audio, video) ``a=rtcp-mux``. Whether the sections follow
a layout is rooms/peer.py's question.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

MAX_SDP = 64 * 1024  # characters; the socket payload limit too (server/sockets/protocol.py)

LINE = re.compile(r"[a-z]=")
TOKEN = re.compile(r"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+")  # RFC 8866 token-char
ICE_CHARS = re.compile(r"[A-Za-z0-9+/]+")
HEX_BYTES = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2})*")
MDNS_NAME = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+local")
# Characters that end a line for str.splitlines (so for aiortc's parser) besides CR and LF,
# and the other C0 controls (a tab is text): none belongs inside an SDP line.
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")
# Digest lengths in bytes. aiortc checks the SHA-2 ones; a section needs one of those.
DIGEST_BYTES = {"md2": 16, "md5": 16, "sha-1": 20, "sha-224": 28}
SHA2_BYTES = {"sha-256": 32, "sha-384": 48, "sha-512": 64}
SETUP = ("actpass", "active", "passive")
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
TCP_TYPES = ("active", "passive", "so")


class SdpError(ValueError):
    """Not well-formed SDP; the message names the line and what is wrong with it."""


@dataclass
class _Level:
    """What the session, or one media section, says about ICE and DTLS."""

    where: str
    kind: str = ""
    ufrag: str | None = None
    pwd: str | None = None
    setup: str | None = None
    mid: str | None = None
    sha2: bool = False  # has a SHA-2 fingerprint
    rtcp_mux: bool = False
    seen: set[str] = field(default_factory=set)


def check_sdp(sdp: str, *, answer: bool = False) -> None:
    """Raise ``SdpError`` unless ``sdp`` is a well-formed WebRTC session description
    (``answer``: ``a=setup`` must be ``active`` or ``passive``)."""
    if len(sdp) > MAX_SDP:
        raise SdpError(f"the SDP is longer than {MAX_SDP} characters")
    lines = sdp.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    for number, line in enumerate(lines, 1):
        if "\r" in line:
            raise SdpError(f"line {number} holds a carriage return not followed by a line feed")
        if CONTROL.search(line):
            raise SdpError(f"line {number} holds a control character")
        if not LINE.match(line):
            raise SdpError(f"line {number} is not of the form x=value: {line[:40]!r}")
    _check_session_lines(lines)
    session = _Level("the session")
    sections: list[_Level] = []
    current = session
    for number, line in enumerate(lines, 1):
        if line.startswith("m="):
            current = _Level(f"section {len(sections)}", kind=_check_media_line(number, line))
            sections.append(current)
        elif line.startswith("c="):
            _check_connection(number, line[2:])
        elif line.startswith("a="):
            _check_attribute(number, line[2:], current, answer)
    mids: set[str] = set()
    for section in sections:
        _check_section(section, session)
        assert section.mid is not None
        if section.mid in mids:
            raise SdpError(f"{section.where} repeats a=mid:{section.mid} of another section")
        mids.add(section.mid)


def _check_session_lines(lines: list[str]) -> None:
    if not lines or lines[0] != "v=0":
        raise SdpError("the first line must be v=0")
    if len(lines) < 2 or not lines[1].startswith("o="):
        raise SdpError("the second line must be the origin, o=")
    origin = lines[1][2:].split(" ")
    if len(origin) != 6 or not (origin[1].isdigit() and origin[2].isdigit()):
        raise SdpError("the origin must be o=<username> <sess-id> <sess-version> IN IP4 <address>")
    if len(lines) < 3 or not lines[2].startswith("s="):
        raise SdpError("the third line must be the session name, s=")
    head = lines[: next((i for i, line in enumerate(lines) if line.startswith("m=")), len(lines))]
    times = [line for line in head if line.startswith("t=")]
    if not times:
        raise SdpError("the session has no timing line, t=")
    for line in times:
        if not re.fullmatch(r"t=[0-9]{1,20} [0-9]{1,20}", line):
            raise SdpError(f"the timing line must be t=<start> <stop>: {line[:40]!r}")


def _port(value: str, what: str) -> int:
    if not re.fullmatch(r"[0-9]{1,5}", value) or int(value) > 65535:
        raise SdpError(f"{what}: the port must be a number from 0 to 65535, not {value[:20]!r}")
    return int(value)


def _check_media_line(number: int, line: str) -> str:
    parts = line[2:].split(" ")
    if len(parts) < 4 or not all(parts):
        raise SdpError(f"line {number}: a media line is m=<media> <port> <proto> <fmt> ...")
    kind, port, proto, formats = parts[0], parts[1], parts[2], parts[3:]
    if not TOKEN.fullmatch(kind) or not all(TOKEN.fullmatch(p) for p in proto.split("/")):
        raise SdpError(f"line {number}: the media and protocol of m= must be tokens")
    _port(port, f"line {number}")
    if kind in ("audio", "video"):
        for fmt in formats:
            if not re.fullmatch(r"[0-9]{1,3}", fmt) or int(fmt) > 127:
                raise SdpError(f"line {number}: payload type {fmt[:20]!r} is not 0 to 127")
    return kind


def _address(value: str, what: str, version: str = "") -> None:
    try:
        parsed = ipaddress.ip_address(value)
    except ValueError:
        raise SdpError(f"{what}: {value[:60]!r} is not an IP address") from None
    if version and str(parsed.version) != version:
        raise SdpError(f"{what}: {value[:60]!r} is not an IPv{version} address")


def _check_connection(number: int, value: str) -> None:
    match = re.fullmatch(r"IN IP([46]) (\S+)", value)
    if match is None:
        raise SdpError(f"line {number}: a connection line is c=IN IP4 <address> (or IP6)")
    _address(match.group(2), f"line {number}", match.group(1))


def _once(number: int, name: str, level: _Level) -> None:
    if name in level.seen:
        raise SdpError(f"line {number}: {level.where} has a second a={name}")
    level.seen.add(name)


def _check_attribute(number: int, attribute: str, level: _Level, answer: bool) -> None:
    name, _, value = attribute.partition(":")
    where = f"line {number}"
    if name == "candidate":
        _check_candidate(where, value)
    elif name in ("ice-ufrag", "ice-pwd"):
        _once(number, name, level)
        low = 4 if name == "ice-ufrag" else 22
        if not (low <= len(value) <= 256 and ICE_CHARS.fullmatch(value)):
            raise SdpError(
                f"{where}: a={name} must be {low} to 256 letters, digits, '+' or '/' (RFC 8839)"
            )
        if name == "ice-ufrag":
            level.ufrag = value
        else:
            level.pwd = value
    elif name == "fingerprint":
        algorithm, _, digest = value.partition(" ")
        algorithm = algorithm.lower()
        if not TOKEN.fullmatch(algorithm) or not HEX_BYTES.fullmatch(digest):
            raise SdpError(f"{where}: a fingerprint is a=fingerprint:<hash> <hex:hex:...>")
        size = SHA2_BYTES.get(algorithm, DIGEST_BYTES.get(algorithm))
        if size is not None and len(digest.split(":")) != size:
            raise SdpError(f"{where}: a {algorithm} fingerprint has {size} bytes")
        level.sha2 = level.sha2 or algorithm in SHA2_BYTES
    elif name == "setup":
        _once(number, name, level)
        allowed = SETUP[1:] if answer else SETUP
        if value not in allowed:
            raise SdpError(f"{where}: a=setup must be {' or '.join(allowed)}, not {value[:20]!r}")
        level.setup = value
    elif name == "mid":
        _once(number, name, level)
        if not TOKEN.fullmatch(value) or len(value) > 256:
            raise SdpError(f"{where}: a=mid must be a token")
        level.mid = value
    elif name == "rtcp-mux":
        level.rtcp_mux = True
    elif name == "rtcp":
        port, _, rest = value.partition(" ")
        _port(port, where)
        if rest:
            _check_connection(number, rest)


def _check_candidate(where: str, value: str) -> None:
    """RFC 8839 section 5.1: foundation component transport priority address port typ type,
    then name/value pairs (raddr, rport, tcptype, generation...)."""
    parts = value.split(" ")
    if len(parts) < 8 or len(parts) % 2 or not all(parts):
        raise SdpError(
            f"{where}: a candidate is <foundation> <component> <transport> <priority> "
            "<address> <port> typ <type>, then name/value pairs"
        )
    foundation, component, transport, priority, address, port, typ, kind = parts[:8]
    if not (len(foundation) <= 32 and ICE_CHARS.fullmatch(foundation)):
        raise SdpError(f"{where}: the candidate's foundation is 1 to 32 ICE characters")
    if not (re.fullmatch(r"[0-9]{1,3}", component) and 1 <= int(component) <= 256):
        raise SdpError(f"{where}: the candidate's component is 1 to 256")
    if not TOKEN.fullmatch(transport):
        raise SdpError(f"{where}: the candidate's transport must be a token")
    if not (re.fullmatch(r"[0-9]{1,10}", priority) and 1 <= int(priority) <= 2**31 - 1):
        raise SdpError(f"{where}: the candidate's priority is 1 to 2147483647")
    if not MDNS_NAME.fullmatch(address):
        _address(address, f"{where}: the candidate's address")
    _port(port, f"{where}: the candidate")
    if typ != "typ" or kind not in CANDIDATE_TYPES:
        raise SdpError(f"{where}: the candidate's type is typ host, srflx, prflx or relay")
    for key, extra in zip(parts[8::2], parts[9::2], strict=True):
        if key == "raddr" and not MDNS_NAME.fullmatch(extra):
            _address(extra, f"{where}: the candidate's raddr")
        elif key == "rport":
            _port(extra, f"{where}: the candidate's rport")
        elif key == "tcptype" and extra not in TCP_TYPES:
            raise SdpError(f"{where}: the candidate's tcptype is active, passive or so")


def _check_section(section: _Level, session: _Level) -> None:
    where = section.where
    if section.mid is None:
        raise SdpError(f"{where} has no a=mid")
    if not (section.ufrag or session.ufrag) or not (section.pwd or session.pwd):
        raise SdpError(f"{where} lacks its ICE credentials (a=ice-ufrag, a=ice-pwd)")
    if not (section.sha2 or session.sha2):
        raise SdpError(f"{where} has no sha-256, sha-384 or sha-512 DTLS fingerprint")
    if not (section.setup or session.setup):
        raise SdpError(f"{where} has no a=setup")
    if section.kind in ("audio", "video") and not section.rtcp_mux:
        raise SdpError(f"{where} lacks a=rtcp-mux")
