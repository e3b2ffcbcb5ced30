"""What a commune on a poor line receives, for links of 128, 256 and 512 kbit/s with 0, 5 and
10% loss.

Issue 10 item 6. For each link, tests/lowband.py builds the whole path for real: a province
node and a district node in this process, the chair as a Chromium page publishing a busy
picture and a steady tone in two tiers, and the commune of Hàm Rồng as a Chromium page in
its own network namespace behind the shaped link (tests/netshape.py: tbf both ways, nftables
random loss on UDP both ways), joined through the district node in ``auto``. After its first
frame the bench lets the link settle for ``--settle`` seconds, then reads the commune's own
``getStats()`` once a second for ``--seconds``: the chair's video frame rate (median of
``framesPerSecond``), its freezes (``freezeCount``, ``totalFreezesDuration``: the longest
is the biggest rise of the total in one second, per freeze), the audio played
(``1 - concealedSamples / totalSamplesReceived``), the tier it ended on, and what crossed
the link towards it (kbit/s on the wire, headers included). Needs root (namespaces).

The baseline, in the same run, is the same commune on an unshaped link, so the ratios say
what the line costs, whatever the machine. The last line is JSON:
``{"links": [{"kbit", "loss_pct", "tier", "fps_median", "freezes_per_min",
"longest_freeze_s", "audio_played_pct", "kbit_received"}, ...], "baseline": {...}}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.lowband import poor_line
from tests.netshape import ShapedLink, available


async def one_link(
    kbit: float | None, loss: float, settle: float, seconds: float
) -> dict[str, Any]:
    shape = {"down_kbit": kbit, "up_kbit": kbit, "down_loss_pct": loss, "up_loss_pct": loss}
    with ShapedLink(**shape) as link, tempfile.TemporaryDirectory(prefix="hoinghi-lb-") as tmp:
        async with poor_line(link, Path(tmp)) as line:
            await asyncio.sleep(settle)
            got = await line.measure(seconds)
    return {"kbit": kbit, "loss_pct": loss, **got.public()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    baseline = await one_link(None, 0.0, args.settle, args.seconds)
    print(json.dumps({"baseline": baseline}), file=sys.stderr, flush=True)
    links = []
    for kbit in args.kbit:
        for loss in args.loss:
            result = await one_link(kbit, loss, args.settle, args.seconds)
            print(json.dumps(result), file=sys.stderr, flush=True)
            links.append(result)
    for result in links:
        if baseline["fps_median"]:
            result["fps_to_baseline"] = round(result["fps_median"] / baseline["fps_median"], 2)
    return {"links": links, "baseline": baseline, "run_s": round(time.monotonic() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kbit", type=float, nargs="+", default=[128, 256, 512])
    parser.add_argument("--loss", type=float, nargs="+", default=[0, 5, 10])
    parser.add_argument("--settle", type=float, default=10.0, help="seconds before measuring")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds measured per link")
    args = parser.parse_args()
    ok, reason = available()
    if not ok:
        print(json.dumps({"error": f"shaped links are not available here: {reason}"}))
        sys.exit(2)
    print(json.dumps(asyncio.run(run(args)), ensure_ascii=False))


if __name__ == "__main__":
    main()
