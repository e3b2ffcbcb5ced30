"""``hoinghi demo --nodes 3``: a province node and two district nodes on this machine.

Each node gets its own data directory under ``DATA_DIR/nodes/`` (migrated, demo-seeded),
the province issues the districts' credentials, each node's settings are written to
``node.toml`` there (mode 600: it holds the credential), and the three are started as
``hoinghi serve`` subprocesses with ``HOINGHI_*`` variables. A node that stops is reported
and the others keep running; typing its number restarts it (server/demo/supervisor.py).
Ctrl-C (or SIGTERM) stops all three, districts first. A second run reuses the directories
and issues fresh credentials.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, Any

from server.config import ENV_PREFIX, Settings, load_settings
from server.db import create_engine, migrate
from server.demo.supervisor import Supervisor, hint_lines

# Settings a demo node takes from the caller's environment (the machine's media addresses
# are the same for every node on it); every other HOINGHI_* variable (database, secret,
# TLS, parent...) belongs to one node and is set per node below.
SHARED_KEYS = ("timezone", "default_language", "log_format", "log_level", "media_addresses")
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


@dataclass
class DemoNode:
    name: str  # directory name
    port: int
    host: str
    data_dir: Path
    parent_url: str = ""
    credential: str = ""
    served_units: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def values(self) -> dict[str, str]:
        return {
            "host": self.host,
            "port": str(self.port),
            "data_dir": str(self.data_dir),
            "public_url": self.url,
            "parent_url": self.parent_url,
            "parent_credential": self.credential,
            "served_units": ",".join(self.served_units),
        }


def plan(settings: Settings, base_port: int) -> list[DemoNode]:
    root = settings.data_dir / "nodes"
    host = "127.0.0.1"
    province = DemoNode("province", base_port, host, root / "province")
    districts = [
        DemoNode(
            code.lower(),
            base_port + i,
            host,
            root / code.lower(),
            parent_url=province.url,
            served_units=[code],
        )
        for i, code in enumerate(("CM-NC", "CM-NH"), start=1)
    ]
    return [province, *districts]


def node_settings(node: DemoNode) -> Settings:
    values: dict[str, Any] = dict(node.values())
    if not node.credential:  # not issued yet: the child settings are only checked later
        values.update(parent_url="", served_units="")
    values["database_url"] = ""
    return load_settings(None, {}, **values)


async def prepare(nodes: list[DemoNode]) -> None:
    """Migrate and demo-seed each node's database; the first issues the others' credentials."""
    from server.app import node_context
    from server.cascade.nodes import issue_credential
    from server.demo.tree import seed_demo

    for n in nodes:
        settings = node_settings(n)
        engine = create_engine(settings.effective_database_url)
        try:
            await migrate(engine)
        finally:
            await engine.dispose()
        ctx = node_context(settings)
        try:
            await ctx.reload_units()
            seeded = await seed_demo(ctx)
            print(f"{n.name}: " + ("demo data loaded" if seeded else "existing data kept"))
            if n is nodes[0]:
                for child in nodes[1:]:
                    code = child.served_units[0]
                    child.credential = await issue_credential(
                        ctx, code, child.served_units, child.url
                    )
        finally:
            await ctx.engine.dispose()


def write_settings(node: DemoNode) -> Path:
    """The node's settings as TOML, so it can also be started by hand with ``--config``."""
    path = node.data_dir / "node.toml"
    lines = ["[hoinghi]"]
    for key, value in node.values().items():
        if key == "port":
            lines.append(f"{key} = {value}")
        elif key == "served_units":
            codes = ", ".join('"' + c + '"' for c in node.served_units)
            lines.append(f"{key} = [{codes}]")
        elif value:
            lines.append(f'{key} = "{value}"')
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def node_env(node: DemoNode) -> dict[str, str]:
    shared = {ENV_PREFIX + k.upper() for k in SHARED_KEYS}
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX) or k in shared}
    for key, value in node.values().items():
        env[ENV_PREFIX + key.upper()] = value
    return env


def answers(url: str) -> bool:
    """Whether the node at ``url`` serves its login page just now."""
    try:
        with urllib.request.urlopen(url + "/login", timeout=2) as resp:
            return bool(resp.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class _Stop(Exception):
    pass


def _on_term(signum: int, frame: FrameType | None) -> None:
    raise _Stop


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop every node with SIGTERM (a graceful exit), districts first; kill a node that hangs."""
    for p in reversed(procs):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"hoinghi: node pid {p.pid} did not stop in time; killing it", flush=True)
                p.kill()
                p.wait()


def summary(nodes: list[DemoNode], procs: list[subprocess.Popen[bytes]]) -> Iterator[str]:
    from server.demo.tree import DEMO_PASSWORD

    province, nc, nh = nodes
    yield ""
    yield "three demo nodes are running (Ctrl-C stops all three):"
    for number, (n, p) in enumerate(zip(nodes, procs, strict=True), start=1):
        role = "province" if not n.parent_url else f"district {n.served_units[0]}"
        yield f"  {number}  {role:<18} {n.url}/  pid {p.pid}  settings {n.data_dir / 'node.toml'}"
    yield f"log in with password '{DEMO_PASSWORD}':"
    yield f"  chair of the province      {province.url}/  as chutri"
    yield f"  commune of Huyện Năm Căn   {nc.url}/  as kt.cm-nc-hr"
    yield f"  commune of Huyện Ngọc Hiển {nh.url}/  as kt.cm-nh-dmu"
    yield "an operator who opens the wrong node is shown a link to the right one"
    yield "a node that stops is reported here and the others keep running:"
    for line in hint_lines(len(nodes)):
        yield f"  {line}"


def hoinghi_command() -> list[str]:
    """The ``hoinghi`` entry point installed beside this Python, else the module."""
    script = Path(sys.executable).with_name("hoinghi")
    return [str(script)] if script.exists() else [sys.executable, "-m", "server.cli"]


def start_process(node: DemoNode, output: IO[bytes] | None = None) -> subprocess.Popen[bytes]:
    """``hoinghi serve`` for one node; its output to ``output`` (else inherited)."""
    # In a session of its own: Ctrl-C reaches this process only, which stops the nodes in
    # order (districts before the province they link to).
    return subprocess.Popen(
        [*hoinghi_command(), "serve"],
        env=node_env(node),
        start_new_session=True,
        stdin=subprocess.DEVNULL,  # what is typed is for this command (a restart), not a node
        stdout=output,
        stderr=subprocess.STDOUT if output is not None else None,
    )


def wait_answering(started: list[tuple[DemoNode, subprocess.Popen[bytes]]]) -> str:
    """Wait until every node answers HTTP; else what went wrong."""
    deadline = time.monotonic() + START_TIMEOUT
    waiting = list(started)
    while waiting:
        for n, p in list(waiting):
            if p.poll() is not None:
                return f"the {n.name} node stopped (exit {p.returncode})"
            if answers(n.url):
                waiting.remove((n, p))
        if waiting and time.monotonic() > deadline:
            names = ", ".join(n.name for n, _ in waiting)
            return f"no answer from {names} within {START_TIMEOUT:.0f} s"
        time.sleep(0.2)
    return ""


def run_demo_nodes(settings: Settings, base_port: int) -> int:
    nodes = plan(settings, base_port)
    for n in nodes:
        n.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(prepare(nodes))
    for n in nodes:
        write_settings(n)
    print(f"demo data ready under {settings.data_dir / 'nodes'}", flush=True)

    previous = signal.signal(signal.SIGTERM, _on_term)
    procs: list[subprocess.Popen[bytes]] = []
    try:
        # The province first, so the districts find it up when they link.
        for group in (nodes[:1], nodes[1:]):
            started = [(n, start_process(n)) for n in group]
            procs.extend(p for _, p in started)
            problem = wait_answering(started)
            if problem:
                print(f"hoinghi: {problem}", flush=True)
                return 1
        print("\n".join(summary(nodes, procs)), flush=True)
        # Until Ctrl-C or SIGTERM; a node that stops is reported and restarted on request.
        Supervisor(nodes, procs, start_process, wait_answering).run()
    except (KeyboardInterrupt, _Stop):
        print("\nstopping the demo nodes…", flush=True)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not orphan them
        try:
            _stop(procs)
        finally:
            signal.signal(signal.SIGTERM, previous)
            signal.signal(signal.SIGINT, signal.default_int_handler)
    print("all demo nodes stopped", flush=True)
    return 0
