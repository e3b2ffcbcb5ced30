"""How long a node takes to stop on SIGTERM, idle and with a live meeting attached.

Issue 8 item 13: with live pages attached, SIGTERM must stop a node within 3 s, losing
nothing. Two real nodes run as ``hoinghi serve`` processes, set up as ``hoinghi demo --nodes
3`` sets them up (the province and Năm Căn, CM-NC, linked by a node credential), and this
process plays everyone else through the same login and ``/meeting`` socket as the browser
client (bench/cascade.py's ``Client``): the chair on the province publishing, one site on the
province node and eight on the district node, all with real aiortc peer connections.

Three stops are timed, each from ``kill -TERM`` to the process's exit:

* **baseline**: a province node with nothing attached (the same machine, the same run);
* **district**: the district node with its eight sites and its link up live (its sites'
  sockets are told, its relay peer closes, the province sees the link drop);
* **province**: the province node with the chair, its site and the district's relay live.

The ratio of each to the baseline says what the live meeting costs the stop. After each stop
the exit code must be 0, and the meeting must still be stored as it was (``live``: a stop is
not an end). Progress goes to stderr; the last line on stdout is one JSON object.

    .venv/bin/python bench/shutdown.py          # under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
for entry in (str(ROOT), str(ROOT / "bench")):
    if entry not in sys.path:
        sys.path.insert(0, entry)

from cascade import (  # noqa: E402
    DISTRICT_SITES,
    PROVINCE_SITE,
    Client,
    log,
    mirrored_id,
    start_nodes,
)
from sqlalchemy import select  # noqa: E402

from server.db import create_engine, make_sessionmaker  # noqa: E402
from server.demo.nodes import DemoNode, node_settings  # noqa: E402
from server.models import Meeting  # noqa: E402

TITLE = "Đo thời gian dừng nút"


async def stop(proc: subprocess.Popen[bytes], within: float = 30.0) -> tuple[float, int | None]:
    """SIGTERM, then the seconds until the process exits and its exit code.

    Waited for without blocking this process's event loop: the clients attached must go on
    answering (a browser answers the node's websocket close at once; a client that cannot
    would hold each of its connections open for the node's whole shutdown timeout).
    """
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    while proc.poll() is None:
        if time.monotonic() - started > within:
            proc.kill()
            proc.wait()
            return time.monotonic() - started, None
        await asyncio.sleep(0.01)
    return time.monotonic() - started, proc.returncode


async def stored_status(node: DemoNode, title: str) -> str | None:
    engine = create_engine(node_settings(node).effective_database_url)
    try:
        async with make_sessionmaker(engine)() as db:
            meeting = (
                await db.execute(select(Meeting).where(Meeting.title == title))
            ).scalar_one_or_none()
            return None if meeting is None else meeting.status.value
    finally:
        await engine.dispose()


async def go_live(province: DemoNode, district: DemoNode, sites: int) -> list[Client]:
    clients: list[Client] = []

    async def client(url: str, user: str) -> Client:
        c = await Client(url).login(user)
        clients.append(c)
        return c

    admin_d = await client(district.url, "quantri")
    deadline = time.monotonic() + 30
    while (await admin_d.api("GET", "/api/links"))["parent"]["state"] != "connected":
        if time.monotonic() > deadline:
            raise RuntimeError("the district did not link to the province")
        await asyncio.sleep(0.2)
    chair = await client(province.url, "chutri")
    created = await chair.api(
        "POST",
        "/api/meetings",
        {
            "title": TITLE,
            "starts_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 3600)),
            "invited_subtrees": ["CM-NC"],
            "invited_units": ["CM-TVT-KB"],
        },
    )
    meeting_id = int(created["meeting"]["id"])
    await chair.join(meeting_id, chair=True)
    await chair.call("start")
    near = await client(province.url, PROVINCE_SITE)
    await near.join(meeting_id, chair=False)
    local_id = await mirrored_id(admin_d, TITLE)
    for user in DISTRICT_SITES[:sites]:
        site = await client(district.url, user)
        await site.join(local_id, chair=False)
    log(f"meeting {meeting_id} live: chair, 1 province site, {sites} district sites")
    return clients


async def close_all(clients: list[Client]) -> None:
    for c in reversed(clients):
        try:
            await asyncio.wait_for(c.close(), 10)
        except Exception as exc:  # a client of a stopped node: nothing left to close cleanly
            log(f"closing a client: {exc.__class__.__name__}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-port", type=int, default=18280)
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--keep", action="store_true", help="keep the nodes' data and logs")
    args = parser.parse_args()
    os.environ.setdefault("HOINGHI_LOG_LEVEL", "WARNING")
    started = time.monotonic()
    result: dict[str, Any] = {}
    place = (
        contextlib.nullcontext(tempfile.mkdtemp(prefix="hoinghi-stop-"))
        if args.keep
        else tempfile.TemporaryDirectory(prefix="hoinghi-stop-")
    )
    with place as tmp:
        # The baseline: a province node that has linked its district, nothing else attached.
        nodes, procs = start_nodes(Path(tmp) / "idle", args.base_port)
        time.sleep(args.warmup)
        idle_s, idle_code = asyncio.run(stop(procs[0]))
        asyncio.run(stop(procs[1]))
        log(f"idle province stopped in {idle_s:.2f} s (exit {idle_code})")

        log(f"data and logs in {tmp}")
        nodes, procs = start_nodes(Path(tmp) / "live", args.base_port + 10)
        province, district = nodes
        loop = asyncio.new_event_loop()
        try:
            clients = loop.run_until_complete(go_live(province, district, args.sites))
            loop.run_until_complete(asyncio.sleep(args.warmup))
            district_s, district_code = loop.run_until_complete(stop(procs[1]))
            log(f"live district stopped in {district_s:.2f} s (exit {district_code})")
            loop.run_until_complete(asyncio.sleep(1.0))
            province_s, province_code = loop.run_until_complete(stop(procs[0]))
            log(f"live province stopped in {province_s:.2f} s (exit {province_code})")
            loop.run_until_complete(close_all(clients))
            status = loop.run_until_complete(stored_status(province, TITLE))
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
            loop.close()
    result = {
        "idle_stop_s": round(idle_s, 2),
        "live_district_stop_s": round(district_s, 2),
        "live_province_stop_s": round(province_s, 2),
        "district_to_idle_ratio": round(district_s / idle_s, 2),
        "province_to_idle_ratio": round(province_s / idle_s, 2),
        "exit_codes": {"idle": idle_code, "district": district_code, "province": province_code},
        "meeting_stored_as": status,
        "district_sites": args.sites,
        "target_s": 3.0,
        "run_s": round(time.monotonic() - started, 1),
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
