"""The fuzz test, for longer: at least 10,000 inputs per surface against a real node.

The same generators (tests/fuzzing.py) and the same node and judging (tests/fuzz_node.py)
as tests/test_fuzz.py, four surfaces in turn: ``http`` (every route of the router, each
role), ``meeting_events`` (every ``/meeting`` event and unknown names, each role),
``node_events`` (every ``/node`` event, from a linked child node) and ``sdp`` (mutations of
real aiortc offers to a site, the chair and a relay). Every input is sent and its answer
judged; nothing stops at the first failure. Each surface has a time budget, so the run is
bounded on a busy machine (a surface cut short says so in ``cut_short``). By default two
processes share the surfaces (``--jobs 2``: sdp alone, the others together), one core
each, each with its own node.

Progress and one example of each kind of failure go to stderr; the last line on stdout is
one JSON object: ``inputs`` per surface, ``by_answer`` (HTTP status and code, or the
acknowledgement's code), ``server_errors`` (5xx, ``internal_error``, anything logged at
ERROR), ``tracebacks_to_client``, ``undocumented``, ``no_answer``, ``seconds``.

    .venv/bin/python bench/fuzz.py                      # 5 to 10 minutes on 2 cores
    .venv/bin/python bench/fuzz.py --inputs 500         # a quick look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rooms.ice import offer_host_addresses  # noqa: E402
from server.cascade.nodelink import NODE_EVENTS  # noqa: E402
from server.sockets.protocol import EVENTS  # noqa: E402
from tests.fuzz_node import Answer, FuzzNode, Tally  # noqa: E402
from tests.fuzzing import (  # noqa: E402
    MEETING_ROLES,
    app_routes,
    event_cases,
    http_cases,
    sdp_cases,
)

SURFACES = ("http", "meeting_events", "node_events", "sdp")
# Seconds at most per surface. An SDP offer that passes costs the node a peer connection, so
# that surface is the slowest (about 250 s for 10,000 on an idle 2-core machine); the others
# take one to two minutes. The slowest process (sdp alone) is bounded at 10 minutes.
BUDGETS = {"http": 300.0, "meeting_events": 300.0, "node_events": 300.0, "sdp": 600.0}


def strategies(node: FuzzNode) -> dict[str, st.SearchStrategy[Any]]:
    meeting = [*sorted(EVENTS.items()), (None, None)]
    child = [*sorted(NODE_EVENTS.items()), (None, None)]
    return {
        "http": st.sampled_from(app_routes(node.app)).flatmap(http_cases),
        "meeting_events": st.sampled_from(meeting).flatmap(
            lambda em: event_cases(em[0], em[1], MEETING_ROLES)
        ),
        "node_events": st.sampled_from(child).flatmap(
            lambda em: event_cases(em[0], em[1], ("node",))
        ),
        "sdp": sdp_cases,
    }


def sender(node: FuzzNode, surface: str) -> Callable[[Any], Coroutine[Any, Any, Answer]]:
    if surface == "http":
        return node.http
    if surface == "sdp":
        return node.sdp
    namespace = "/node" if surface == "node_events" else "/meeting"
    return lambda case: node.event(case, namespace)


def kind(answer: Answer) -> str:
    """Failures of one kind: same surface, target, answer and problems (numbers dropped)."""
    problems = sorted({re.sub(r"\d+", "N", p)[:80] for p in answer.problems})
    return f"{answer.surface} {answer.target} {answer.label} {problems}"


def run_surface(
    loop: asyncio.AbstractEventLoop,
    node: FuzzNode,
    surface: str,
    count: int,
    budget: float,
    tally: Tally,
    seen: set[str],
) -> tuple[float, bool]:
    send = sender(node, surface)
    started = time.monotonic()
    cut = False

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategies(node)[surface])
    def drive(case: Any) -> None:
        nonlocal cut
        if time.monotonic() - started > budget:
            cut = True
            return
        answer = loop.run_until_complete(send(case))
        tally.add(answer)
        if answer.problems and kind(answer) not in seen:
            seen.add(kind(answer))
            print(f"FAILURE {answer.report()}", file=sys.stderr, flush=True)
        done = tally.inputs[surface]
        if done % 1000 == 0:
            print(f"{surface}: {done} inputs, {time.monotonic() - started:.0f} s", file=sys.stderr)

    drive()
    return time.monotonic() - started, cut


async def start(tmp: Path, surface: str) -> FuzzNode:
    node = await FuzzNode.start(tmp / surface)
    if surface == "http":
        await node.login_all()
    else:
        await node.open_meeting()
    return node


def in_parallel(args: argparse.Namespace, surfaces: list[str]) -> dict[str, Any]:
    """Run shares of the surfaces in child processes (one core each) and add their results."""
    # Greedy by budget: with two processes, sdp alone and the three others together.
    shares: list[list[str]] = [[] for _ in range(args.jobs)]
    for surface in sorted(surfaces, key=lambda s: -BUDGETS[s]):
        min(shares, key=lambda share: sum(BUDGETS[s] for s in share)).append(surface)
    children = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--jobs=1",
                f"--inputs={args.inputs}",
                *([f"--budget={args.budget}"] if args.budget else []),
                "--surfaces=" + ",".join(share),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for share in shares
        if share
    ]
    results = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode != 0 or not out.strip():
            raise SystemExit(f"a fuzzing process failed (exit {child.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    merged: dict[str, Any] = {
        "inputs": {s: sum(r["inputs"].get(s, 0) for r in results) for s in SURFACES},
        "by_answer": dict(sum((Counter(r["by_answer"]) for r in results), Counter()).most_common()),
    }
    for key in ("server_errors", "tracebacks_to_client", "undocumented", "no_answer"):
        merged[key] = sum(r[key] for r in results)
    merged["failure_kinds"] = sum(r["failure_kinds"] for r in results)
    merged["seconds"] = {k: v for r in results for k, v in r["seconds"].items()}
    merged["cut_short"] = [s for r in results for s in r["cut_short"]]
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=10_000, help="inputs per surface")
    parser.add_argument(
        "--budget",
        type=float,
        default=0.0,
        help="seconds at most per surface (default: BUDGETS; a cut-short surface is reported "
        "in cut_short)",
    )
    parser.add_argument("--surfaces", default=",".join(SURFACES))
    parser.add_argument(
        "--jobs", type=int, default=2, help="processes, each fuzzing a share of the surfaces"
    )
    args = parser.parse_args()
    surfaces = args.surfaces.split(",")
    if args.jobs > 1 and len(surfaces) > 1:
        print(json.dumps(in_parallel(args, surfaces)))
        return
    # No console handler: the judge (tests/fuzz_node.py ErrorLog) takes every ERROR record.
    offer_host_addresses(["127.0.0.1"])
    tally = Tally()
    seen: set[str] = set()
    seconds: dict[str, float] = {}
    cut_short: list[str] = []
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    with tempfile.TemporaryDirectory(prefix="hoinghi-fuzz-") as tmp:
        for surface in surfaces:
            (Path(tmp) / surface).mkdir()
            node = loop.run_until_complete(start(Path(tmp), surface))
            try:
                budget = args.budget or BUDGETS[surface]
                took, cut = run_surface(loop, node, surface, args.inputs, budget, tally, seen)
            finally:
                loop.run_until_complete(node.close())
            seconds[surface] = round(took, 1)
            if cut:
                cut_short.append(surface)
            print(f"{surface}: {tally.inputs[surface]} inputs in {took:.0f} s", file=sys.stderr)
    loop.close()
    result = {
        "inputs": {s: tally.inputs[s] for s in SURFACES},
        "by_answer": dict(tally.by_answer.most_common()),
        "server_errors": tally.server_errors,
        "tracebacks_to_client": tally.tracebacks_to_client,
        "undocumented": tally.undocumented,
        "no_answer": tally.no_answer,
        "failure_kinds": len(seen),
        "seconds": seconds,
        "cut_short": cut_short,
    }
    print(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main()
