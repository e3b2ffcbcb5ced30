"""A node's log at INFO is for a province IT person: what happened (started, joined, left),
not every ICE check, socket.io packet or long-polling request of a live meeting."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import socketio

from rooms.peer import Slot
from rooms.probe import ProbePeer
from server.demo.nodes import answers, hoinghi_command
from server.demo.tree import DEMO_PASSWORD
from tests.test_demo_nodes import free_base_port

# Loggers that speak per packet or per request at INFO when left alone.
CHATTY = ("aioice", "aiortc", "engineio", "socketio")


def node_env(tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOINGHI_")}
    env.update(
        HOINGHI_DATA_DIR=str(tmp_path / "var"),
        HOINGHI_PORT=str(port),
        HOINGHI_LOG_LEVEL="INFO",
        HOINGHI_MEDIA_ADDRESSES="127.0.0.1",
    )
    return env


def serve(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [*hoinghi_command(), "serve"], env=env, stdout=out, stderr=subprocess.STDOUT
        )


async def logged_in(http: aiohttp.ClientSession, url: str, username: str) -> str:
    """Log ``http`` in as ``username``; the session's CSRF token."""
    async with http.get(f"{url}/api/csrf") as resp:
        token = (await resp.json())["csrf_token"]
    async with http.post(
        f"{url}/api/login",
        json={"username": username, "password": DEMO_PASSWORD},
        headers={"X-CSRF-Token": token},
    ) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return str(body["csrf_token"])


async def joined(url: str, http: aiohttp.ClientSession, meeting_id: int) -> Any:
    """A socket (long-polling first, then upgraded, as a browser does) joined to the meeting
    with a real aiortc peer; returns (socket, peer)."""
    cookie = "; ".join(f"{c.key}={c.value}" for c in http.cookie_jar)
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(url, namespaces=["/meeting"], headers={"Cookie": cookie}, wait_timeout=20)
    ack = await sio.call("join", {"meeting_id": meeting_id}, namespace="/meeting", timeout=30)
    assert ack["ok"], ack
    layout = [Slot(s["slot"], s["kind"], s["direction"] == "sendonly") for s in ack["layout"]]
    probe = ProbePeer(layout, size=(320, 240), decode=False)
    answer = await sio.call("offer", {"sdp": await probe.offer()}, namespace="/meeting", timeout=30)
    assert answer["ok"], answer
    await probe.accept(answer["sdp"])
    await probe.wait_connected(within=30)
    return sio, probe


@pytest.mark.timeout(180)
async def test_the_info_log_of_a_live_meeting_shows_no_packets_or_polling(
    tmp_path: Path,
) -> None:
    port = free_base_port()
    url = f"http://127.0.0.1:{port}"
    env = node_env(tmp_path, port)
    for command in ("migrate", "demo"):
        done = await asyncio.to_thread(
            subprocess.run, [*hoinghi_command(), command], env=env, capture_output=True
        )
        assert done.returncode == 0, done.stderr.decode(errors="replace")
    log = tmp_path / "node.log"
    proc = serve(env, log)
    peers: list[Any] = []
    try:
        for _ in range(300):
            if await asyncio.to_thread(answers, url):
                break
            assert proc.poll() is None, log.read_text(errors="replace")
            await asyncio.sleep(0.2)
        jar = aiohttp.CookieJar(unsafe=True)
        async with (
            aiohttp.ClientSession(cookie_jar=jar) as chair_http,
            aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as site_http,
        ):
            token = await logged_in(chair_http, url, "chutri")
            await logged_in(site_http, url, "kt.cm-nc-hr")
            body = {
                "title": "Họp kiểm tra nhật ký",
                "starts_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
                "invited_subtrees": ["CM-NC"],
            }
            async with chair_http.post(
                f"{url}/api/meetings", json=body, headers={"X-CSRF-Token": token}
            ) as resp:
                assert resp.status == 201, await resp.text()
                meeting_id = (await resp.json())["meeting"]["id"]
            peers.append(await joined(url, chair_http, meeting_id))
            chair_sio = peers[0][0]
            ack = await chair_sio.call("start", {}, namespace="/meeting", timeout=30)
            assert ack["ok"], ack
            peers.append(await joined(url, site_http, meeting_id))
            await asyncio.sleep(3)  # media flows, ICE consent checks run, sockets ping
            for sio, probe in peers:
                await sio.call("leave", {}, namespace="/meeting", timeout=30)
                await sio.disconnect()
                await probe.close()
            peers.clear()
    finally:
        for sio, probe in peers:
            await sio.disconnect()
            await probe.close()
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)
            raise
    text = log.read_text(encoding="utf-8", errors="replace")
    # What happened is there...
    assert "joined" in text, text[-3000:]
    assert "POST /api/meetings" in text
    # ...and nothing per packet or per poll.
    chatty = [
        line
        for line in text.splitlines()
        if re.search(rf" (INFO|DEBUG) ({'|'.join(CHATTY)})(\.|:)", line) or "/socket.io/" in line
    ]
    assert not chatty, "\n".join(chatty[:20])
