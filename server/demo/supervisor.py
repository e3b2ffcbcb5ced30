"""Keeping the demo nodes of ``hoinghi demo --nodes 3`` running while one is stopped.

A demo is where an official tries killing a district: the others go on, the terminal says
which node stopped (in Vietnamese, then English), and typing its number (``2``, or ``r 2``)
and Enter starts it again. Lines are read from standard input on a thread of their own, so
the loop that watches the processes never blocks on the keyboard.
"""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from server.demo.nodes import DemoNode

POLL = 0.5
# "2", "r 2", "r2", "restart 2", "khởi động lại 2": the number is what counts.
RESTART = re.compile(r"^\s*(?:r|restart|khởi động lại)?\s*(\d+)\s*$", re.IGNORECASE)

Start = Callable[["DemoNode"], "subprocess.Popen[bytes]"]
WaitAnswering = Callable[[list[tuple["DemoNode", "subprocess.Popen[bytes]"]]], str]


def say(vi: str, en: str) -> None:
    print(f"hoinghi: {vi}\n         {en}", flush=True)


def describe(number: int, node: DemoNode) -> tuple[str, str]:
    if node.parent_url:
        code = node.served_units[0]
        return (
            f"nút {number} ({node.name}, huyện {code})",
            f"node {number} ({node.name}, district {code})",
        )
    return f"nút {number} ({node.name}, tỉnh)", f"node {number} ({node.name}, province)"


def hint_lines(count: int) -> tuple[str, str]:
    return (
        f"gõ số của một nút đã dừng (1-{count}) rồi Enter để khởi động lại nó; Ctrl-C dừng tất cả",
        f"type a stopped node's number (1-{count}) and Enter to restart it; Ctrl-C stops them all",
    )


def read_lines(stream: TextIO, into: queue.Queue[str]) -> None:
    """Put every line typed on ``stream`` into ``into`` until it ends. Started in the
    background of a shell (``&``), reading the terminal fails (SIGTTIN is ignored, see
    ``run``) instead of stopping the demo; it is tried again each second, for ``fg``."""
    while True:
        try:
            line = stream.readline()
        except OSError:
            time.sleep(1)
            continue
        if not line:
            return
        into.put(line)


class Supervisor:
    """Watch the node processes; report one that stops; restart it when asked."""

    def __init__(
        self,
        nodes: list[DemoNode],
        procs: list[subprocess.Popen[bytes]],
        start: Start,
        wait_answering: WaitAnswering,
    ) -> None:
        self.nodes = nodes
        self.procs = procs  # the same list the caller stops at the end: kept up to date
        self.start = start
        self.wait_answering = wait_answering
        self.reported: set[int] = set()
        self.lines: queue.Queue[str] = queue.Queue()

    def run(self, stdin: TextIO | None = None) -> None:
        """Until interrupted (Ctrl-C or SIGTERM, raised by the caller's handlers)."""
        stream = sys.stdin if stdin is None else stdin
        if hasattr(signal, "SIGTTIN"):
            signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        threading.Thread(target=read_lines, args=(stream, self.lines), daemon=True).start()
        while True:
            self.check()
            try:
                line = self.lines.get(timeout=POLL)
            except queue.Empty:
                continue
            self.command(line)

    def check(self) -> None:
        for index, (node, proc) in enumerate(zip(self.nodes, self.procs, strict=True)):
            if proc.poll() is None or index in self.reported:
                continue
            self.reported.add(index)
            vi, en = describe(index + 1, node)
            running = sum(p.poll() is None for p in self.procs)
            say(
                f"{vi} đã dừng (mã thoát {proc.returncode}); {running} nút khác vẫn chạy. "
                f"Gõ {index + 1} rồi Enter để khởi động lại nó.",
                f"{en} stopped (exit code {proc.returncode}); {running} other nodes keep "
                f"running. Type {index + 1} and Enter to restart it.",
            )

    def command(self, line: str) -> None:
        match = RESTART.match(line)
        number = int(match.group(1)) if match else 0
        if not 1 <= number <= len(self.nodes):
            say(*hint_lines(len(self.nodes)))
            return
        self.restart(number - 1)

    def restart(self, index: int) -> None:
        node = self.nodes[index]
        vi, en = describe(index + 1, node)
        if self.procs[index].poll() is None:
            say(f"{vi} đang chạy: {node.url}/", f"{en} is running: {node.url}/")
            return
        say(f"đang khởi động lại {vi}…", f"restarting {en}…")
        proc = self.start(node)
        self.procs[index] = proc
        self.reported.discard(index)
        problem = self.wait_answering([(node, proc)])
        if problem:
            say(f"{vi} không khởi động được: {problem}", f"{en} did not start: {problem}")
            return
        say(
            f"{vi} đã chạy lại: {node.url}/  pid {proc.pid}",
            f"{en} is running again: {node.url}/  pid {proc.pid}",
        )
