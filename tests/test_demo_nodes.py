"""`hoinghi demo --nodes 3`: three real node processes on this machine, linked, then stopped."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from server.demo.nodes import answers, hoinghi_command
from server.demo.tree import DEMO_PASSWORD


def free_base_port() -> int:
    """A port P with P, P+1 and P+2 free just now."""
    for _ in range(50):
        base = random.randint(20000, 60000)
        sockets = []
        try:
            for port in range(base, base + 3):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no three consecutive free ports")


def start_demo(
    tmp_path: Path, base: int, log: Path, stdin: int | None = None
) -> subprocess.Popen[bytes]:
    command = hoinghi_command()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOINGHI_")}
    env["HOINGHI_DATA_DIR"] = str(tmp_path / "var")
    out = log.open("wb")
    try:
        return subprocess.Popen(
            [*command, "demo", "--nodes", "3", "--base-port", str(base)],
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()


async def wait_for_log(log: Path, proc: subprocess.Popen[bytes], *needles: str) -> str:
    deadline = time.monotonic() + 60
    while True:
        text = await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace")
        if all(n in text for n in needles):
            return text
        assert proc.poll() is None, f"demo stopped early:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"never saw {needles}:\n{text[-3000:]}"
        await asyncio.sleep(0.2)


async def login(url: str, username: str) -> dict[str, Any]:
    """Log in through the API of the node at ``url``; its /api/me answer."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(f"{url}/api/csrf") as resp:
            token = (await resp.json())["csrf_token"]
        async with http.post(
            f"{url}/api/login",
            json={"username": username, "password": DEMO_PASSWORD},
            headers={"X-CSRF-Token": token},
        ) as resp:
            body = await resp.json()
            assert resp.status == 200, body
        async with http.get(f"{url}/api/me") as resp:
            me: dict[str, Any] = await resp.json()
            return me


def stop(proc: subprocess.Popen[bytes], log: Path) -> str:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(40)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    text = log.read_text(encoding="utf-8", errors="replace")
    assert proc.returncode == 0, text[-3000:]
    assert "all demo nodes stopped" in text
    return text


def assert_gone(pids: list[int]) -> None:
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


@pytest.mark.timeout(120)
async def test_demo_starts_three_linked_nodes_and_stops_them(tmp_path: Path) -> None:
    base = free_base_port()
    province, nc, nh = (f"http://127.0.0.1:{base + i}" for i in range(3))
    linked = [f"linked to parent {province} as CM-NC", f"linked to parent {province} as CM-NH"]
    log = tmp_path / "demo.log"
    proc = start_demo(tmp_path, base, log)
    try:
        text = await wait_for_log(log, proc, "three demo nodes are running", *linked)
        assert text.count(": demo data loaded") == 3
        pids = [int(p) for p in re.findall(r"  pid (\d+)  ", text)]
        assert len(pids) == 3
        assert f"{province}/  as chutri" in text
        assert f"{nc}/  as kt.cm-nc-hr" in text
        assert f"{nh}/  as kt.cm-nh-dmu" in text
        for name in ("province", "cm-nc", "cm-nh"):
            assert (tmp_path / "var" / "nodes" / name / "hoinghi.sqlite3").is_file()
        settings = (tmp_path / "var" / "nodes" / "cm-nc" / "node.toml").read_text()
        assert f'parent_url = "{province}"' in settings
        assert (tmp_path / "var" / "nodes" / "cm-nc" / "node.toml").stat().st_mode & 0o077 == 0

        # Each commune logs in on its own district node; at the wrong door it gets a link.
        assert (await login(nc, "kt.cm-nc-hr"))["served_by"] is None
        assert (await login(nh, "kt.cm-nh-dmu"))["served_by"] is None
        assert (await login(province, "chutri"))["served_by"] is None
        assert (await login(province, "kt.cm-nc-hr"))["served_by"] == {"node": "CM-NC", "url": nc}
        assert (await login(nc, "kt.cm-nh-dmu"))["served_by"] == {
            "node": "parent",
            "url": province,
        }
    finally:
        if proc.poll() is None:
            stop(proc, log)
    assert_gone(pids)

    # A second run reuses the data directories, with freshly issued credentials.
    log2 = tmp_path / "demo2.log"
    proc = start_demo(tmp_path, base, log2)
    try:
        text = await wait_for_log(log2, proc, "three demo nodes are running", *linked)
        assert text.count(": existing data kept") == 3
        assert ": demo data loaded" not in text
        pids = [int(p) for p in re.findall(r"  pid (\d+)  ", text)]
        assert (await login(nc, "kt.cm-nc-hr"))["user"]["unit"] == "CM-NC-HR"
    finally:
        if proc.poll() is None:
            stop(proc, log2)
    assert_gone(pids)


async def answering(url: str) -> bool:
    return await asyncio.to_thread(answers, url)


@pytest.mark.timeout(180)
async def test_a_killed_district_is_reported_the_others_keep_running_and_it_restarts(
    tmp_path: Path,
) -> None:
    base = free_base_port()
    province, nc, nh = (f"http://127.0.0.1:{base + i}" for i in range(3))
    linked_nc = f"linked to parent {province} as CM-NC"
    log = tmp_path / "demo.log"
    proc = start_demo(tmp_path, base, log, stdin=subprocess.PIPE)
    assert proc.stdin is not None
    try:
        text = await wait_for_log(log, proc, "three demo nodes are running", linked_nc)
        hint = "type a stopped node's number (1-3) and Enter to restart it"
        assert hint in text
        assert "gõ số của một nút đã dừng (1-3) rồi Enter để khởi động lại nó" in text
        pids = [int(p) for p in re.findall(r"  pid (\d+)  ", text)]
        assert len(pids) == 3
        os.kill(pids[1], signal.SIGKILL)  # the Năm Căn district dies

        text = await wait_for_log(log, proc, "node 2 (cm-nc, district CM-NC) stopped")
        assert "nút 2 (cm-nc, huyện CM-NC) đã dừng" in text
        assert "Type 2 and Enter to restart it" in text
        assert "Gõ 2 rồi Enter để khởi động lại nó" in text
        assert "stopping the others" not in text
        # The province and the other district go on, and still serve their users.
        await asyncio.sleep(2)
        assert proc.poll() is None
        assert await answering(province)
        assert await answering(nh)
        assert not await answering(nc)
        assert (await login(nh, "kt.cm-nh-dmu"))["served_by"] is None

        # An unknown line gets the hint; the node's number restarts it.
        proc.stdin.write(b"what now\n")
        proc.stdin.flush()
        await wait_for_log(log, proc, "hoinghi: gõ số của một nút", f"         {hint}")
        proc.stdin.write(b"r 2\n")
        proc.stdin.flush()
        text = await wait_for_log(log, proc, "node 2 (cm-nc, district CM-NC) is running again")
        assert "restarting node 2 (cm-nc, district CM-NC)" in text
        new_pid = int(re.findall(r"is running again: \S+  pid (\d+)", text)[-1])
        assert new_pid != pids[1]
        assert await answering(nc)
        # It links to the province again, with the credential it was started with.
        deadline = time.monotonic() + 60
        while log.read_text(encoding="utf-8").count(linked_nc) < 2:
            assert time.monotonic() < deadline, "the restarted district never linked again"
            await asyncio.sleep(0.2)
        assert (await login(nc, "kt.cm-nc-hr"))["served_by"] is None
        # Asking for a running node restarts nothing.
        proc.stdin.write(b"2\n")
        proc.stdin.flush()
        await wait_for_log(log, proc, "node 2 (cm-nc, district CM-NC) is running:")
    finally:
        if proc.poll() is None:
            stop(proc, log)
    assert_gone([pids[0], new_pid, pids[2]])
