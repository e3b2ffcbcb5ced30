"""A real poor link for tests and benchmarks: a site in a network namespace behind a shaped veth.

A commune site on 128 kbit/s - 1 Mbit/s with loss is put in its own network namespace,
joined to the host by a veth pair on a private /30::

    with ShapedLink(down_kbit=256, up_kbit=128, down_loss_pct=5) as link:
        server listens on link.host_address        # NOT 127.0.0.1, see below
        link.run([...]) / link.popen([...])        # a process at the site
        link.socket(AF_INET, SOCK_DGRAM)           # a socket opened at the site, used here
        chromium.launch(executable_path=link.chromium_executable(), ...)
        link.set_rate(128, 64); link.set_loss(10, 2); link.blackout("up", 3)
        before = link.snapshot(); ...; link.snapshot().since(before).kbit_s("down")

**The server under test must listen on ``link.host_address``**: the namespace has its own
loopback, so the host's 127.0.0.1 is out of its reach, and its only route is the /30 to
the host end (no default route: nothing else is reachable from the site). Media servers
must offer that address as an ICE candidate too (tests/conftest.py offers only 127.0.0.1).

How each knob is made (``netem`` is not in this kernel, so there is no added delay):

- Bandwidth: ``tbf`` as the root qdisc on each end's egress: the host end for download
  (towards the site), the site end for upload. tbf counts link-layer bytes (14-byte
  Ethernet header included), as do the counters below, so a UDP payload gets the rate
  times payload/(payload + 42). ``burst`` (the bucket) is the larger of two full frames
  (3028 bytes) and 20 ms at the rate. The bucket must hold a whole frame: tbf silently
  drops every packet bigger than it (a 1000-byte bucket passed nothing). One frame was
  enough to reach the rate from 128 kbit/s to 1 Mbit/s, even with both cores busy; the
  second is margin, and the 20 ms keep tokens from overflowing the bucket while a late
  timer wake-up on a busy machine holds the queue at higher rates. Either way bursts above
  the rate stay within a few frames, as on a real modem. ``latency`` (``queue_ms``,
  default 400 ms) sizes the queue (limit = rate x latency + burst): a sender faster than
  the link sees that much queueing delay, then drops, like a modem's bufferbloat
  (measured with 1200-byte datagrams: 540 ms at 128 kbit/s, 460 ms at 256, 414 ms at 1000).
  GSO is off on the veth (``gso_max_segs 1``): TCP crosses as MTU-size frames, so loss
  hits one frame rather than a 64 KiB super-packet, and the counters count real frames.
- Loss: nftables in the namespace, in a ``netdev`` table on the site's device: the
  ``ingress`` hook for download, the ``egress`` hook for upload (``numgen random``,
  0.01 % steps). Not the ``inet`` input/output hooks: an output-hook drop makes the
  sending application's ``sendto`` fail with EPERM, which no real link does; an egress
  drop is silent. UDP only unless ``loss_tcp=True``, so a page's TCP signaling survives.
  Upload drops happen before the site's shaper (they use no link capacity); download
  drops happen after the wire (they did).
- Counters: the host end's ``/sys/class/net/*/statistics`` (what crossed the wire), the
  nftables counters (what the loss rules dropped) and the tbf drop counts (what the
  queue had no room for). IPv6 is off on both ends so no router solicitations or MLD
  reports mix with the test's traffic (a few ARP frames still do).

Names are ``hn-<pid>-<n>`` for both the namespace and the host end of the veth (the site
end is ``site`` inside the namespace); addresses come from 10.213.0.0/16, chosen under a
lock file and checked against the host's addresses and routes, so parallel links and test
processes do not collide. ``close()`` (context exit, the ``atexit`` hook) kills what still
runs in the namespace, removes the veth and the namespace; nftables rules live in the
namespace and go with it. ``cleanup_stale()`` removes what a killed run left (only our
prefix, only names whose process is gone).

Needs root, ``ip``/``tc`` (iproute2) and ``nft`` (nftables); ``make setup-test`` installs
them. ``available()`` says whether they work here; the ``shaped_link`` fixture skips with
the reason when not, or fails when ``HOINGHI_REQUIRE_SERVICES=1`` (as CI sets). A test
module gets the fixture from tests/conftest.py (``pytest_plugins``).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import functools
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

import pytest

Direction = Literal["down", "up"]
PREFIX = "hn-"
SITE_IFACE = "site"
POOL = ipaddress.IPv4Network("10.213.0.0/16")
FRAME = 1514  # a full Ethernet frame on the veth, as tbf and the counters measure it
CHROMIUM = "/usr/bin/chromium"
_NAME_RE = re.compile(r"^hn-(\d+)-(\d+)$")
_LOCK_FILE = Path("/run/hoinghi-netshape.lock")
_TABLE = "hoinghi_shape"
_CLONE_NEWNET = 0x40000000
_T = TypeVar("_T")


class NetShapeError(RuntimeError):
    """A command that builds or changes the link failed; the message has its stderr."""


def _tool(name: str) -> str | None:
    # Debian keeps ip, tc and nft in /usr/sbin, which a plain user's PATH lacks.
    return shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _cmd(*argv: str, check: bool = True, input: str | None = None) -> str:
    tool = _tool(argv[0]) or argv[0]
    done = subprocess.run(
        [tool, *argv[1:]], input=input, capture_output=True, text=True, timeout=30, check=False
    )
    if check and done.returncode != 0:
        raise NetShapeError(f"`{' '.join(argv)}` failed: {done.stderr.strip() or done.stdout}")
    return done.stdout


def _burst_bytes(kbit: float) -> int:
    return max(2 * FRAME, int(kbit * 1000 / 8 * 0.020))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _in_netns(name: str, fn: Callable[[], _T]) -> _T:
    """Runs ``fn`` in a thread that joined the namespace (a thread's network namespace is
    its own): sockets it opens stay in the namespace when used from any thread."""
    box: dict[str, Any] = {}

    def enter_and_run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            with open(f"/run/netns/{name}", "rb") as ns:
                if libc.setns(ns.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns into {name}: {os.strerror(err)}")
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=enter_and_run, name=f"netns-{name}", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Shape:
    """What the link does now. Rates in kbit/s (None: unshaped), loss in percent."""

    down_kbit: float | None = None
    up_kbit: float | None = None
    down_loss_pct: float = 0.0
    up_loss_pct: float = 0.0
    down_drop_all: bool = False
    up_drop_all: bool = False
    loss_tcp: bool = False


@dataclass(frozen=True)
class Flow:
    """Traffic one way. Bytes are link-layer frames (UDP payload + 42 bytes for IPv4)."""

    delivered_bytes: int  # reached the far end's IP stack
    delivered_packets: int
    lost_bytes: int  # dropped by the loss or blackout rules
    lost_packets: int
    shaper_drops: int  # packets the tbf queue had no room for

    def __sub__(self, other: Flow) -> Flow:
        return Flow(
            self.delivered_bytes - other.delivered_bytes,
            self.delivered_packets - other.delivered_packets,
            self.lost_bytes - other.lost_bytes,
            self.lost_packets - other.lost_packets,
            self.shaper_drops - other.shaper_drops,
        )


@dataclass(frozen=True)
class Traffic:
    """What crossed the link between two snapshots."""

    seconds: float
    down: Flow
    up: Flow

    def kbit_s(self, direction: Direction) -> float:
        """Delivered link-layer kbit/s in that direction."""
        flow = self.down if direction == "down" else self.up
        return flow.delivered_bytes * 8 / 1000 / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Snapshot:
    at: float  # time.monotonic()
    down: Flow
    up: Flow

    def since(self, earlier: Snapshot) -> Traffic:
        return Traffic(self.at - earlier.at, self.down - earlier.down, self.up - earlier.up)


class ShapedLink:
    """A site in a network namespace behind a veth shaped both ways. See the module doc."""

    _counter = 0
    _counter_lock = threading.Lock()

    def __init__(
        self,
        down_kbit: float | None = None,
        up_kbit: float | None = None,
        *,
        down_loss_pct: float = 0.0,
        up_loss_pct: float = 0.0,
        loss_tcp: bool = False,
        queue_ms: float = 400.0,
    ) -> None:
        with ShapedLink._counter_lock:
            n = ShapedLink._counter
            ShapedLink._counter += 1
        self.name = f"{PREFIX}{os.getpid()}-{n}"
        if len(self.name) > 15:  # IFNAMSIZ - 1: the host end carries the same name
            raise NetShapeError(f"link name {self.name} is too long for an interface")
        self.queue_ms = queue_ms
        self._wanted = Shape(down_kbit, up_kbit, down_loss_pct, up_loss_pct, loss_tcp=loss_tcp)
        self.shape = Shape()
        self._net: ipaddress.IPv4Network | None = None
        self._lock = threading.RLock()
        self._timers: dict[Direction, threading.Timer] = {}
        self._procs: list[subprocess.Popen[Any]] = []
        self._shaper_base: dict[Direction, int] = {"down": 0, "up": 0}
        self._tmp: Path | None = None
        self._open = False

    # -- life cycle ---------------------------------------------------------------------

    def open(self) -> ShapedLink:
        if self._open:
            return self
        _OPEN_LINKS.add(self)
        self._open = True
        try:
            self._build()
            wanted = self._wanted
            self.set_rate(wanted.down_kbit, wanted.up_kbit)
            self.set_loss(wanted.down_loss_pct, wanted.up_loss_pct, tcp=wanted.loss_tcp)
        except BaseException:
            self.close()
            raise
        return self

    def _build(self) -> None:
        name = self.name
        if Path(f"/run/netns/{name}").exists():  # our pid's name, left by a dead process
            _remove(name)
        with _allocation_lock():
            self._net = _free_subnet(n=int(name.rsplit("-", 1)[1]))
            _cmd("ip", "netns", "add", name)
            _cmd(
                "ip", "link", "add", name, "type", "veth", "peer", "name", SITE_IFACE, "netns", name
            )
            _disable_ipv6(Path(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6"))
            _cmd("ip", "addr", "add", f"{self.host_address}/30", "dev", name)
        _in_netns(name, lambda: _disable_ipv6(Path("/proc/sys/net/ipv6/conf/all/disable_ipv6")))
        _cmd("ip", "-n", name, "addr", "add", f"{self.site_address}/30", "dev", SITE_IFACE)
        # One segment per GSO packet: TCP crosses as MTU-size frames, as on a real link.
        _cmd("ip", "link", "set", name, "gso_max_segs", "1")
        _cmd("ip", "-n", name, "link", "set", SITE_IFACE, "gso_max_segs", "1")
        _cmd("ip", "-n", name, "link", "set", "lo", "up")
        _cmd("ip", "-n", name, "link", "set", SITE_IFACE, "up")
        _cmd("ip", "link", "set", name, "up")
        dev = f'device "{SITE_IFACE}" priority 0; policy accept;'
        self._nft(
            "-f",
            "-",
            input=f"table netdev {_TABLE} {{\n"
            "  counter down_lost {}\n  counter up_lost {}\n"
            f"  chain down {{ type filter hook ingress {dev} }}\n"
            f"  chain up {{ type filter hook egress {dev} }}\n}}\n",
        )

    def _nft(self, *argv: str, input: str | None = None) -> str:
        return _cmd("ip", "netns", "exec", self.name, "nft", *argv, input=input)

    def close(self) -> None:
        """Idempotent. Stops timers, kills what runs in the namespace, removes it all."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            for timer in self._timers.values():
                timer.cancel()
            self._timers.clear()
            for proc in self._procs:
                if proc.poll() is None:
                    proc.kill()
            for proc in self._procs:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
            _remove(self.name)
            if self._tmp is not None:
                shutil.rmtree(self._tmp, ignore_errors=True)
            _OPEN_LINKS.discard(self)

    def __enter__(self) -> ShapedLink:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- addresses and processes ----------------------------------------------------------

    @property
    def host_address(self) -> str:
        """The host end: servers under test listen here (not on 127.0.0.1)."""
        assert self._net is not None, "the link is not open"
        return str(self._net.network_address + 1)

    @property
    def site_address(self) -> str:
        assert self._net is not None, "the link is not open"
        return str(self._net.network_address + 2)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run in the namespace, e.g. for ``asyncio.create_subprocess_exec``."""
        return [_tool("ip") or "ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[Any]:
        """``subprocess.run`` in the namespace (a 60 s timeout unless given)."""
        kwargs.setdefault("timeout", 60)
        return subprocess.run(self.command(argv), **kwargs)

    def popen(self, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """``subprocess.Popen`` in the namespace; killed at ``close()`` if still running."""
        proc = subprocess.Popen(self.command(argv), **kwargs)
        self._procs.append(proc)
        return proc

    def socket(
        self, family: int = socket.AF_INET, type: int = socket.SOCK_DGRAM, proto: int = 0
    ) -> socket.socket:
        """A socket at the site, usable from this process (threads, asyncio)."""
        return _in_netns(self.name, lambda: socket.socket(family, type, proto))

    def chromium_executable(self, chromium: str = CHROMIUM) -> str:
        """A wrapper that runs ``chromium`` in the namespace with the arguments given, for
        Playwright's ``launch(executable_path=...)`` (it talks to it over a pipe)."""
        if self._tmp is None:
            self._tmp = Path(tempfile.mkdtemp(prefix=f"{self.name}-"))
        wrapper = self._tmp / "chromium"
        ip, browser = shlex.quote(_tool("ip") or "ip"), shlex.quote(chromium)
        wrapper.write_text(f'#!/bin/sh\nexec {ip} netns exec {self.name} {browser} "$@"\n')
        wrapper.chmod(0o755)
        return str(wrapper)

    # -- shaping ---------------------------------------------------------------------------

    def set_rate(self, down_kbit: float | None, up_kbit: float | None = None) -> None:
        """Bandwidth each way in kbit/s, now; None leaves that way unshaped."""
        for rate in (down_kbit, up_kbit):
            if rate is not None and not rate > 0:
                raise ValueError(f"a rate must be positive kbit/s or None, not {rate!r}")
        with self._lock:
            self._shape_one("down", down_kbit)
            self._shape_one("up", up_kbit)
            self.shape = replace(self.shape, down_kbit=down_kbit, up_kbit=up_kbit)

    def _tc(self, direction: Direction) -> list[str]:
        return ["tc"] if direction == "down" else ["tc", "-n", self.name]

    def _dev(self, direction: Direction) -> str:
        return self.name if direction == "down" else SITE_IFACE

    def _shape_one(self, direction: Direction, kbit: float | None) -> None:
        dev = self._dev(direction)
        if kbit is None:
            # Deleting the qdisc loses its drop count: keep it so snapshots stay monotonic.
            self._shaper_base[direction] += self._shaper_drops(direction)
            _cmd(*self._tc(direction), "qdisc", "del", "dev", dev, "root", check=False)
            return
        tbf = f"tbf rate {round(kbit * 1000)}bit burst {_burst_bytes(kbit)}"
        tbf += f" latency {round(self.queue_ms)}ms"
        _cmd(*self._tc(direction), "qdisc", "replace", "dev", dev, "root", *tbf.split())

    def set_loss(
        self, down_pct: float, up_pct: float | None = None, *, tcp: bool | None = None
    ) -> None:
        """Random loss each way in percent, now (None: 0); ``tcp`` also drops TCP."""
        up = up_pct or 0.0
        for pct in (down_pct, up):
            if not 0 <= pct <= 100:
                raise ValueError(f"a loss must be between 0 and 100 percent, not {pct!r}")
        with self._lock:
            tcp_too = self.shape.loss_tcp if tcp is None else tcp
            self._apply_rules(
                replace(self.shape, down_loss_pct=down_pct, up_loss_pct=up, loss_tcp=tcp_too)
            )

    def set_drop_all(self, direction: Direction | Literal["both"], on: bool) -> None:
        """Drop every UDP packet (and TCP with ``loss_tcp``) that way, until turned off."""
        with self._lock:
            shape = self.shape
            if direction in ("down", "both"):
                shape = replace(shape, down_drop_all=on)
            if direction in ("up", "both"):
                shape = replace(shape, up_drop_all=on)
            self._apply_rules(shape)

    def blackout(self, direction: Direction | Literal["both"], seconds: float) -> None:
        """``set_drop_all(direction, True)`` now and back off after ``seconds``; returns
        at once (a timer thread ends it), so async tests keep their loop running."""
        ways: tuple[Direction, ...] = ("down", "up") if direction == "both" else (direction,)
        with self._lock:
            self.set_drop_all(direction, True)
            for way in ways:
                if way in self._timers:
                    self._timers.pop(way).cancel()
                timer = threading.Timer(seconds, self._end_blackout, args=(way,))
                timer.daemon = True
                self._timers[way] = timer
                timer.start()

    def _end_blackout(self, way: Direction) -> None:
        with self._lock:
            if self._open and self._timers.get(way) is threading.current_thread():
                del self._timers[way]
                self.set_drop_all(way, False)

    def _apply_rules(self, shape: Shape) -> None:
        protos = "{ udp, tcp }" if shape.loss_tcp else "udp"
        lines = []
        for way, pct, drop_all in (
            ("down", shape.down_loss_pct, shape.down_drop_all),
            ("up", shape.up_loss_pct, shape.up_drop_all),
        ):
            lines.append(f"flush chain netdev {_TABLE} {way}")
            odds = "" if drop_all else f"numgen random mod 10000 < {round(pct * 100)} "
            if drop_all or pct > 0:
                lines.append(
                    f"add rule netdev {_TABLE} {way} meta l4proto {protos} {odds}"
                    f'counter name "{way}_lost" drop'
                )
        # One nft run is one transaction: both ways change at once, no unshaped instant.
        self._nft("-f", "-", input="\n".join(lines) + "\n")
        self.shape = shape

    # -- counters --------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """Counters now; ``later.since(earlier)`` gives what crossed in between."""
        with self._lock:
            at = time.monotonic()
            stats = Path(f"/sys/class/net/{self.name}/statistics")

            def stat(name: str) -> int:
                return int((stats / name).read_text())

            tx_bytes, tx_packets = stat("tx_bytes"), stat("tx_packets")
            rx_bytes, rx_packets = stat("rx_bytes"), stat("rx_packets")
            lost = self._lost()
            down_lost_bytes, down_lost_packets = lost["down"]
            up_lost_bytes, up_lost_packets = lost["up"]
            down_drops = self._shaper_base["down"] + self._shaper_drops("down")
            up_drops = self._shaper_base["up"] + self._shaper_drops("up")
        # Download loss is at the site's ingress, after the host end counted the frame sent;
        # upload loss is at the site's egress, before the host end could count it received.
        down = Flow(
            tx_bytes - down_lost_bytes,
            tx_packets - down_lost_packets,
            down_lost_bytes,
            down_lost_packets,
            down_drops,
        )
        up = Flow(rx_bytes, rx_packets, up_lost_bytes, up_lost_packets, up_drops)
        return Snapshot(at, down, up)

    def _lost(self) -> dict[str, tuple[int, int]]:
        out = self._nft("-j", "list", "counters", "table", "netdev", _TABLE)
        lost = {"down": (0, 0), "up": (0, 0)}
        for item in json.loads(out)["nftables"]:
            counter = item.get("counter")
            if counter is not None:
                lost[counter["name"].removesuffix("_lost")] = (counter["bytes"], counter["packets"])
        return lost

    def _shaper_drops(self, direction: Direction) -> int:
        out = _cmd(*self._tc(direction), "-s", "-j", "qdisc", "show", "dev", self._dev(direction))
        return sum(
            int(q.get("drops", 0)) for q in json.loads(out or "[]") if q.get("kind") == "tbf"
        )


# -- shared state: addresses, cleanup ---------------------------------------------------------

_OPEN_LINKS: set[ShapedLink] = set()


@atexit.register
def _close_open_links() -> None:
    for link in tuple(_OPEN_LINKS):
        with contextlib.suppress(Exception):
            link.close()


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Choosing a /30 and putting its address on the host end happen under one lock, so
    two processes never pick the same one."""
    with open(_LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _free_subnet(n: int) -> ipaddress.IPv4Network:
    """A /30 of the pool holding none of the host's addresses and no route more specific
    than the pool (a wider route, such as the default, loses to our /30 anyway)."""
    taken: list[ipaddress.IPv4Network] = []
    for line in _cmd("ip", "-4", "-o", "addr", "show").splitlines():
        m = re.search(r"\binet ([\d.]+)", line)
        if m:
            taken.append(ipaddress.IPv4Network(m.group(1)))
    for line in _cmd("ip", "-4", "-o", "route", "show", "table", "all").splitlines():
        with contextlib.suppress(ValueError):  # "default", "local ...", "broadcast ..."
            route = ipaddress.IPv4Network(line.split()[0], strict=False)
            if not POOL.subnet_of(route):
                taken.append(route)
    blocks = POOL.num_addresses // 4
    start = (os.getpid() * 61 + n * 7) % blocks  # spread processes apart; probe onwards
    for i in range(blocks):
        net = ipaddress.IPv4Network((int(POOL.network_address) + (start + i) % blocks * 4, 30))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise NetShapeError(f"no free /30 left in {POOL}")


def _disable_ipv6(path: Path) -> None:
    with contextlib.suppress(OSError):  # no IPv6 in this kernel: nothing to quieten
        path.write_text("1")


def _remove(name: str) -> None:
    # Processes still in the namespace would keep it (and the veth) alive after `netns del`.
    for pid in _cmd("ip", "netns", "pids", name, check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    # Deleting the host end takes the site end with it at once; `netns del` alone leaves
    # the pair to the kernel's asynchronous namespace teardown.
    _cmd("ip", "link", "del", name, check=False)
    _cmd("ip", "netns", "del", name, check=False)


def cleanup_stale() -> list[str]:
    """Removes namespaces and host ends named ``hn-<pid>-<n>`` whose process is gone (a
    killed run's leftovers); returns their names. Others' links, and live ones, stay."""
    names = set(_cmd("ip", "netns", "list", check=False).split())
    for line in _cmd("ip", "-o", "link", "show", check=False).splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            names.add(parts[1].strip().split("@")[0])
    stale = []
    for name in sorted(names):
        m = _NAME_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _remove(name)
            stale.append(name)
    return stale


@functools.cache
def available() -> tuple[bool, str]:
    """Whether shaped links work here (root, ip, tc, nft, namespaces, tbf, nftables
    netdev hooks), found by building one; the reason when not."""
    if os.geteuid() != 0:
        return False, "shaped links need root (network namespaces, tc, nftables)"
    missing = [t for t in ("ip", "tc", "nft") if _tool(t) is None]
    if missing:
        return False, f"missing {', '.join(missing)}: run `make setup-test` as root"
    try:
        with ShapedLink(256, 256, down_loss_pct=1, up_loss_pct=1) as link:
            link.snapshot()
    except (NetShapeError, OSError) as exc:
        return False, f"cannot build a shaped link: {exc}"
    return True, ""


def require() -> None:
    """Skips the calling test when shaped links do not work here, or fails it when
    ``HOINGHI_REQUIRE_SERVICES=1`` (CI), as tests/conftest.py does for PostgreSQL."""
    ok, reason = available()
    if ok:
        return
    if os.environ.get("HOINGHI_REQUIRE_SERVICES") == "1":
        pytest.fail(f"shaped links are required (HOINGHI_REQUIRE_SERVICES=1) but: {reason}")
    pytest.skip(f"shaped links unavailable: {reason}")


@pytest.fixture
def shaped_link() -> Iterator[Callable[..., ShapedLink]]:
    """A factory: ``shaped_link(down_kbit=256, ...)`` gives an open ShapedLink, closed
    after the test. Skips or fails (see ``require``) when links cannot be built here."""
    require()
    cleanup_stale()
    links: list[ShapedLink] = []

    def make(*args: Any, **kwargs: Any) -> ShapedLink:
        link = ShapedLink(*args, **kwargs).open()
        links.append(link)
        return link

    yield make
    for link in reversed(links):
        link.close()
