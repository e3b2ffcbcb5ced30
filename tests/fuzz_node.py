"""A real node under fuzz: it sends the cases of tests/fuzzing.py over HTTP and real
python-socketio clients, and judges each answer against the documented ones.

Shared by tests/test_fuzz.py and bench/fuzz.py. The node really serves on 127.0.0.1
(tests/conftest.py ``serve_node``); each role is a real login with its own cookie jar.
Between cases the world is put back as the next case needs it (the fuzzer logs out, disables
users, ends meetings): users restored from a snapshot, fresh sessions, a new meeting, the
chair and the site joined again.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import socketio
from aiohttp import web
from sqlalchemy import delete, select
from yarl import URL

from rooms.peer import CHAIR_LAYOUT, RELAY_LAYOUT, SITE_LAYOUT
from rooms.probe import ProbePeer
from server import auth, models
from server.cascade.nodelink import NODE_NS
from server.cascade.nodes import issue_credential
from server.demo.tree import DEMO_PASSWORD
from server.sockets.protocol import ERROR_CODES
from server.sockets.signaling import MAX_MESSAGE, REGISTRY
from server.state import CTX
from tests.conftest import make_settings, serve_node
from tests.fuzzing import VALID, EventCase, HttpCase, SdpCase

DOC = Path(__file__).resolve().parent.parent / "docs" / "protocol.md"
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+")
ACK_WAIT = 20.0  # generous: a busy machine answers long before this

HTTP_USERS = {
    "admin": "quantri",
    "chair": "chutri",
    "secretary": "thuky",
    "operator": "kt.cm-nc-hr",
    "anonymous": None,
}
SOCKET_USERS = {
    "chair": "chutri",  # hosts the meeting
    "site": "kt.cm-nc-hr",  # its commune is invited (district CM-NC as a whole)
    "secretary": "thuky",
    "admin": "quantri",
    "outsider": "kt.cm-tvt-kh",  # a commune of another district, not invited
}
# The child node speaks for district CM-NH (its commune CM-NH-RG is invited): not for the
# site's district, whose operators the meeting socket would send to the child's node.
CHILD_NODE = "CM-NH"

# -- what the document allows ------------------------------------------------------------------


@dataclass(frozen=True)
class HttpDoc:
    rows: dict[tuple[str, str], frozenset[tuple[int, str]]]  # (method, path with {}) -> answers
    everywhere: frozenset[tuple[int, str]]  # answers any route may give
    codes: frozenset[str]
    statuses: frozenset[int]

    def allowed(self, method: str, path: str) -> frozenset[tuple[int, str]]:
        key = ("GET" if method == "HEAD" else method, re.sub(r"\{\w+\}", "{}", path))
        return self.everywhere | self.rows.get(key, frozenset())

    def documents(self, method: str, path: str) -> bool:
        return (method, re.sub(r"\{\w+\}", "{}", path)) in self.rows


PAIR = re.compile(r"`(\d{3})(?:\s+([a-z_]+))?`")


@cache
def http_doc() -> HttpDoc:
    """The JSON API's answers as docs/protocol.md lists them (section "The HTTP JSON API")."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 11.") :]
    rows: dict[tuple[str, str], frozenset[tuple[int, str]]] = {}
    prose = []
    for line in section.splitlines():
        cells = (
            [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        )
        route = re.match(r"`([A-Z]+) (/[^`\s]*)", cells[0]) if cells else None
        if route is None:
            prose.append(line)
            continue
        pairs = {(int(s), c or "not_authenticated") for s, c in PAIR.findall(" ".join(cells[1:]))}
        rows[(route.group(1), re.sub(r"\{\w+\}", "{}", route.group(2)))] = frozenset(pairs)
    everywhere = {(int(s), c) for s, c in PAIR.findall("\n".join(prose)) if c}
    everywhere.add((401, "not_authenticated"))  # "logged in" routes: 401 is in every row
    codes = {c for pairs in rows.values() for _s, c in pairs} | {c for _s, c in everywhere}
    statuses = {s for pairs in rows.values() for s, _c in pairs} | {s for s, _c in everywhere}
    return HttpDoc(rows, frozenset(everywhere), frozenset(codes), frozenset(statuses))


@cache
def node_doc_codes() -> frozenset[str]:
    """Error codes the /node section names besides the /meeting ones (section 10)."""
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("## 10.") : text.index("## 11.")]
    named = set(re.findall(r"`([a-z]+(?:_[a-z]+)+)`", section))
    return frozenset(c for c in named if c.endswith(("_scope", "_credential")))


STANDARD_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
SUCCESS = frozenset({200, 201, 204, 206, 301, 302, 303, 304, 307, 308})


# -- answers -----------------------------------------------------------------------------------


@dataclass
class Answer:
    surface: str
    target: str  # route or event
    label: str  # for by_answer: the status and code, or the ack's code
    problems: list[str]
    case: str
    raw: str = ""

    def report(self) -> str:
        return (
            f"{self.surface} {self.target}: {self.label}: {self.problems} <- {self.case}; "
            f"answer {self.raw[:400]}"
        )


@dataclass
class Tally:
    inputs: Counter[str] = field(default_factory=Counter)
    by_answer: Counter[str] = field(default_factory=Counter)
    server_errors: int = 0
    tracebacks_to_client: int = 0
    undocumented: int = 0
    no_answer: int = 0
    failures: list[str] = field(default_factory=list)

    def add(self, answer: Answer) -> None:
        self.inputs[answer.surface] += 1
        self.by_answer[answer.label] += 1
        text = " ".join(answer.problems)
        self.server_errors += "server error" in text
        self.tracebacks_to_client += "traceback" in text
        self.undocumented += "undocumented" in text
        self.no_answer += "no answer" in text
        if answer.problems and len(self.failures) < 200:
            self.failures.append(answer.report())


class ErrorLog(logging.Handler):
    """Records logged at ERROR or above while fuzzing (a handled bad input logs none)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        # Engine.IO logs a client's bad handshake (wrong origin, old protocol) once at ERROR,
        # then at INFO, as it says: a client's mistake, not the node failing.
        if record.name.startswith("engineio") and "further occurrences" in record.getMessage():
            return
        self.records.append(record)

    def take(self) -> list[str]:
        taken, self.records = self.records, []
        return [
            f"{r.name}: {r.getMessage()[:200]}" + (" (with traceback)" if r.exc_info else "")
            for r in taken
        ]


def judge_http(case: HttpCase, status: int, content_type: str, text: str) -> Answer:
    doc = http_doc()
    problems: list[str] = []
    code = ""
    if status >= 500:
        problems.append("server error")
    if TRACEBACK.search(text):
        problems.append("traceback in the body")
    api = case.route.path.startswith("/api/")
    # aiohttp's HTTP parser refuses an unknown method before any handler: a plain 400.
    parser_refusal = case.method not in STANDARD_METHODS and status == 400
    if api and case.method != "HEAD" and not parser_refusal:
        try:
            body = json.loads(text)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("ok"), bool):
            problems.append("API answer is not an {ok: ...} object")
        elif status >= 400:
            code = str(body.get("error"))
            if body["ok"] is not False or not isinstance(body.get("message"), str):
                problems.append("API error without ok false and a message")
            if (status, code) not in doc.allowed(case.method, case.route.path):
                problems.append(f"undocumented answer {status} {code}")
        elif body["ok"] is not True:
            problems.append("API success without ok true")
    elif status >= 400:
        found = re.search(r'data-error-code="([^"]*)"', text)
        code = found.group(1) if found else ""
        page_codes = doc.codes | set(ERROR_CODES) | {f"http_{s}" for s in doc.statuses}
        if status not in doc.statuses or (code and code not in page_codes):
            problems.append(f"undocumented answer {status} {code}")
    elif status not in SUCCESS:
        problems.append(f"undocumented answer {status}")
    label = f"{status} {code}".strip()
    return Answer("http", case.route.id, label, problems, case.describe(), text[:400])


def judge_ack(surface: str, target: str, ack: Any, allowed: frozenset[str], case: str) -> Answer:
    problems: list[str] = []
    raw = json.dumps(ack, ensure_ascii=False, default=repr)
    if TRACEBACK.search(raw):
        problems.append("traceback in the acknowledgement")
    if not isinstance(ack, dict) or not isinstance(ack.get("ok"), bool):
        return Answer(surface, target, "malformed", [*problems, "ack is not {ok: ...}"], case, raw)
    if ack["ok"]:
        return Answer(surface, target, "ok", problems, case, raw)
    code = str(ack.get("error"))
    if code == "internal_error":
        problems.append("server error: internal_error")
    elif code not in allowed:
        problems.append(f"undocumented code {code}")
    if not isinstance(ack.get("message"), str) or not ack["message"]:
        problems.append("refusal without a message")
    return Answer(surface, target, code, problems, case, raw)


# -- the node ----------------------------------------------------------------------------------


def _future() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0).isoformat()


class HttpUser:
    """One role's browser: a cookie jar, its CSRF token."""

    def __init__(self, base: str, username: str | None) -> None:
        self.base = base
        self.username = username
        self.http = aiohttp.ClientSession(
            cookie_jar=aiohttp.CookieJar(unsafe=True),
            timeout=aiohttp.ClientTimeout(total=60),
        )
        self.csrf = ""

    async def login(self) -> None:
        async with self.http.get(self.base + "/api/csrf") as resp:
            self.csrf = (await resp.json())["csrf_token"]
        if self.username is None:
            return
        async with self.http.post(
            self.base + "/api/login",
            json={"username": self.username, "password": DEMO_PASSWORD},
            headers={"X-CSRF-Token": self.csrf},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
            self.csrf = body["csrf_token"]

    def cookie(self) -> str:
        return "; ".join(f"{c.key}={c.value}" for c in self.http.cookie_jar)

    async def json(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.http.request(
            method, self.base + path, json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            return resp.status, await resp.json()


class FuzzNode:
    """A served demo node, its role sessions, and (for the socket surfaces) one meeting with
    its chair and one site joined, and a child node's link."""

    def __init__(self, app: web.Application, runner: web.AppRunner, base: str) -> None:
        self.app = app
        self.runner = runner
        self.base = base
        self.users: dict[str, HttpUser] = {}
        self.sockets: dict[str, socketio.AsyncClient] = {}
        self.errors = ErrorLog()
        self.meeting_id = 0
        self.credential = ""
        self.offers: dict[str, str] = {}
        self._snapshot: dict[int, tuple[Any, ...]] = {}

    @classmethod
    async def start(cls, tmp: Path, database_url: str = "") -> FuzzNode:
        """A served demo node on ``database_url`` (default: SQLite under ``tmp``)."""
        url = database_url or f"sqlite+aiosqlite:///{tmp / 'fuzz.sqlite3'}"
        settings = make_settings(tmp, url)
        node = cls(*await serve_node(settings))
        # Garbage left by earlier tests (an unclosed aiohttp session of a test that timed out,
        # say) is reported by asyncio at ERROR when the collector gets to it, which may be in
        # the middle of fuzzing: collect it before this node's records start to count.
        gc.collect()
        logging.getLogger().addHandler(node.errors)
        async with node.ctx.sessionmaker() as db:
            for user in (await db.execute(select(models.User))).scalars():
                node._snapshot[user.id] = _user_row(user)
        return node

    @property
    def ctx(self) -> Any:
        return self.app[CTX]

    async def close(self) -> None:
        logging.getLogger().removeHandler(self.errors)
        for sio in self.sockets.values():
            if sio.connected:
                await sio.disconnect()
        for user in self.users.values():
            await user.http.close()
        await self.runner.cleanup()

    # -- HTTP ----------------------------------------------------------------------------------

    async def login_all(self) -> None:
        for role, username in HTTP_USERS.items():
            self.users[role] = HttpUser(self.base, username)
            await self.users[role].login()

    async def http(self, case: HttpCase) -> Answer:
        user = self.users[case.role]
        path = case.route.path
        for name, value in case.params.items():
            path = path.replace("{" + name + "}", quote(value, safe="/" if name == "tail" else ""))
        query = urlencode(case.query)
        url = URL(self.base + path + ("?" + query if query else ""), encoded=True)
        headers = dict(case.headers)
        if case.csrf is not None:
            headers[auth.CSRF_HEADER] = user.csrf if case.csrf == VALID else case.csrf
        data: Any = None
        if case.body_kind == "json":
            data = json.dumps(case.body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif case.body_kind == "form":
            fields = list(case.body)
            if case.form_csrf is not None:
                fields.append(
                    (auth.CSRF_FIELD, user.csrf if case.form_csrf == VALID else case.form_csrf)
                )
            data = urlencode(fields).encode()
            headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
        elif case.body_kind == "raw":
            data = case.body
        status = 0
        try:
            async with user.http.request(
                case.method, url, data=data, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                raw = await resp.read()
                answer = judge_http(
                    case, resp.status, resp.content_type, raw.decode("utf-8", "replace")
                )
        except (TimeoutError, aiohttp.ClientError) as exc:
            answer = Answer(
                "http", case.route.id, "no answer", [f"no answer: {exc!r}"], case.describe()
            )
        answer.problems += [f"server error logged: {e}" for e in self.errors.take()]
        if case.method not in ("GET", "HEAD") and not 400 <= status < 500:
            await self.repair_http()  # a change may have gone through
        return answer

    async def repair_http(self) -> None:
        """Put the users back as they were and give each role a working session of its own
        user again (a fuzzed login, logout or user change may have taken it)."""
        node = self.ctx
        async with node.sessionmaker() as db, db.begin():
            for user in (await db.execute(select(models.User))).scalars():
                row = self._snapshot.get(user.id)
                if row is not None and _user_row(user) != row:
                    user.role, user.unit_id, user.active, user.password_hash, user.full_name = row
            failures = getattr(models, "LoginFailure", None)
            if failures is not None:
                await db.execute(delete(failures))
        for role, username in HTTP_USERS.items():
            user = self.users[role]
            async with user.http.get(self.base + "/api/me") as resp:
                me = await resp.json() if resp.status == 200 else None
            if me is not None and me["user"]["username"] == username:
                user.csrf = me["csrf_token"]
                continue
            user.http.cookie_jar.clear()
            if username is None:
                await user.login()
                continue
            async with node.sessionmaker() as db:
                row = (
                    await db.execute(select(models.User).where(models.User.username == username))
                ).scalar_one()
            token, session = await auth.start_session(node, row)
            user.http.cookie_jar.update_cookies({auth.SESSION_COOKIE: token}, URL(self.base))
            user.csrf = session.csrf_token

    # -- sockets -------------------------------------------------------------------------------

    async def open_meeting(self) -> None:
        """Log the socket users in, link a child node, schedule the meeting, base offers."""
        for role, username in SOCKET_USERS.items():
            self.users[role] = HttpUser(self.base, username)
            await self.users[role].login()
        self.credential = await issue_credential(self.ctx, CHILD_NODE, [CHILD_NODE], "")
        for target, layout in (
            ("site", SITE_LAYOUT),
            ("chair", CHAIR_LAYOUT),
            ("relay", RELAY_LAYOUT),
        ):
            probe = ProbePeer(layout, publish=False, decode=False)
            self.offers[target] = await probe.offer()
            await probe.close()
        await self.new_meeting()

    async def new_meeting(self) -> None:
        status, body = await self.users["chair"].json(
            "POST",
            "/api/meetings",
            {
                "title": "Hội nghị thử tải",
                "starts_at": _future(),
                "invited_subtrees": ["CM-NC"],
                "invited_units": ["CM-NH-RG"],
            },
        )
        assert status == 201, body
        self.meeting_id = body["meeting"]["id"]

    async def socket(self, role: str) -> socketio.AsyncClient:
        sio = self.sockets.get(role)
        if sio is not None and sio.connected and sio.namespaces:
            return sio
        if sio is not None:
            await sio.disconnect()
        sio = socketio.AsyncClient(reconnection=False)
        if role == "node":
            await sio.connect(
                self.base,
                namespaces=["/node"],
                auth={"credential": self.credential},
                transports=["websocket"],
                wait_timeout=ACK_WAIT,
            )
        else:
            await sio.connect(
                self.base,
                namespaces=["/meeting"],
                headers={"Cookie": self.users[role].cookie()},
                transports=["websocket"],
                wait_timeout=ACK_WAIT,
            )
        self.sockets[role] = sio
        return sio

    async def _call(self, role: str, event: str, payload: Any) -> Any:
        ns = "/node" if role == "node" else "/meeting"
        sio = await self.socket(role)
        return await sio.call(event, payload, namespace=ns, timeout=ACK_WAIT)

    def _participant(self, role: str) -> Any:
        live = self.app[REGISTRY].get(self.meeting_id)
        sio = self.sockets.get(role)
        ns = "/node" if role == "node" else "/meeting"
        if live is None or sio is None or not sio.connected:
            return None
        return live.by_sid(sio.get_sid(ns))

    async def ready(
        self, *, live: bool = False, hello: bool = False, relay: bool = False, fresh: str = ""
    ) -> None:
        """The meeting open with the chair and the site joined (``live``: started), the child
        node linked and said hello (``relay``: joined the meeting as a relay); ``fresh``: that
        role's link has no answer yet, so an offer is not ``already_negotiated``."""
        meeting = self.app[REGISTRY].get(self.meeting_id)
        if meeting is not None and meeting.ended:
            await self.new_meeting()
        for role in ("chair", "site"):
            participant = self._participant(role)
            if participant is None or (fresh == role and participant.peer is not None):
                ack = await self._call(role, "join", {"meeting_id": self.meeting_id})
                assert ack.get("ok"), ("join", role, ack)
        meeting = self.app[REGISTRY].get(self.meeting_id)
        if (live or relay) and not meeting.live:
            ack = await self._call("chair", "start", {})
            assert ack.get("ok"), ("start", ack)
        if hello or relay:
            sio = await self.socket("node")
            session = await self.app[NODE_NS].get_session(sio.get_sid("/node"))
            if not session.get("units"):
                ack = await self._call("node", "hello", {"units": [CHILD_NODE], "url": ""})
                assert ack.get("ok"), ("hello", ack)
        if relay:
            participant = self._participant("node")
            if participant is not None and fresh == "relay" and participant.peer is not None:
                await self._call("node", "relay_leave", {"meeting_id": self.meeting_id})
                participant = None
            if participant is None:
                ack = await self._call("node", "relay_join", {"meeting_id": self.meeting_id})
                assert ack.get("ok"), ("relay_join", ack)

    async def event(self, case: EventCase, namespace: str) -> Answer:
        surface = "node_events" if namespace == "/node" else "meeting_events"
        role = "node" if namespace == "/node" else case.role
        if namespace == "/node":  # two cases in three from a relay joined to the meeting
            await self.ready(
                live=True, hello=True, relay=zlib.crc32(case.describe().encode()) % 3 > 0
            )
        else:
            await self.ready()
        payload: Any = case.args[0] if len(case.args) == 1 else (tuple(case.args) or None)
        size = len(json.dumps(case.args, separators=(",", ":")))  # as socket.io encodes it
        allowed = frozenset(ERROR_CODES) | (
            node_doc_codes() if namespace == "/node" else frozenset()
        )
        answer = await self._send(
            surface, role, case.event, payload, allowed, case.describe(), size
        )
        return answer

    async def sdp(self, case: SdpCase) -> Answer:
        relay = case.target == "relay"
        await self.ready(live=relay, hello=relay, relay=relay, fresh=case.target)
        offer = case.apply(self.offers[case.target])
        if case.target == "relay":
            role, event, payload = (
                "node",
                "relay_offer",
                {"meeting_id": self.meeting_id, "sdp": offer},
            )
        else:
            role, event, payload = case.target, "offer", {"sdp": offer}
        size = len(json.dumps(payload, separators=(",", ":")))
        return await self._send(
            "sdp", role, event, payload, frozenset(ERROR_CODES), case.describe(), size
        )

    async def _send(
        self,
        surface: str,
        role: str,
        event: str,
        payload: Any,
        allowed: frozenset[str],
        case: str,
        size: int,
    ) -> Answer:
        sio = await self.socket(role)
        ns = "/node" if role == "node" else "/meeting"
        answered: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_ack(*args: Any) -> None:
            if not answered.done():
                answered.set_result(args[0] if len(args) == 1 else args)

        await sio.emit(event, payload, namespace=ns, callback=on_ack)
        # Wait for the acknowledgement, or for the node to close the socket.
        deadline = asyncio.get_running_loop().time() + ACK_WAIT
        while not answered.done() and sio.connected and ns in sio.namespaces:
            if asyncio.get_running_loop().time() > deadline:
                break
            await asyncio.wait([answered], timeout=0.02)
        too_large = size > MAX_MESSAGE - 1024  # documented: a larger message closes the socket
        if answered.done():
            answer = judge_ack(surface, event, answered.result(), allowed, case)
        elif too_large:
            answer = Answer(surface, event, "closed: too large", [], case)
        elif not sio.connected or ns not in sio.namespaces:
            answer = Answer(
                surface, event, "closed", ["no answer: the node closed the socket"], case
            )
        else:
            answer = Answer(surface, event, "no answer", [f"no answer within {ACK_WAIT} s"], case)
        answer.problems += [f"server error logged: {e}" for e in self.errors.take()]
        return answer


def _user_row(user: Any) -> tuple[Any, ...]:
    return (user.role, user.unit_id, user.active, user.password_hash, user.full_name)
