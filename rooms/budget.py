"""What crosses a link to a child node: the tiers its sites need, within the link's budget.

A child node's relay link carries each program video in at most two slots: ``X`` (the high
tier) and ``X.low`` (the low tier, or its base layer alone: the lowest). The child reports
which tiers its sites (and the nodes below it) use (``needs``, in ``presence``); its link has
a budget in kbit/s, set by the parent's administrator (``hoinghi node set CODE --budget``),
and a measured cap: the tier the link itself is judged to carry, by the same estimate as a
site's link (rooms/linkrate.py: receiver reports' loss and round trip, probes before going
up; not the child's REMB, see ``TierWatch``). Audio always crosses
and is counted first; then the low slot (every site below gets a picture), in the low tier
when it fits and else the lowest (it crosses whenever any video is needed below, so a site
changing tier never waits for the link); then the high tier if it is needed and still fits. The
costs are what each tier carries now at its producer (rooms/meter.py), so a plan follows the
publisher's real bitrate, not an assumed one. One copy per tier in use below, not one per
site.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass

from rooms.router import Producer
from rooms.tiers import HIGH, LOW, LOWEST, Tiers

EVERY_TIER = frozenset({HIGH, LOW})  # a child that has not said what it needs


@dataclass(frozen=True)
class SlotPlan:
    """What one program video sends up its two relay slots."""

    high: Producer | None = None
    low: Producer | None = None
    low_base_only: bool = False


def _kbit(producer: Producer | None, now: float, base: bool = False) -> float:
    return 0.0 if producer is None else producer.kbit(now, base)


def plan(
    needs: frozenset[str] | None,
    videos: list[Tiers],
    audio: Iterable[Producer | None],
    budget: float | None,
    now: float | None = None,
    cap: str = HIGH,
) -> list[SlotPlan]:
    """One ``SlotPlan`` per program video in ``videos`` (the chair's, the floor holder's).
    ``cap``: the highest tier the link is measured to carry (``HIGH``: no cap)."""
    now = time.monotonic() if now is None else now
    needed = EVERY_TIER if needs is None else needs
    # A publisher of one tier sends it up the low slot, so it crosses once.
    sources: list[tuple[Producer | None, Producer | None]] = []
    for video in videos:
        high, low = video.high, video.low
        if low is None or (not low.flowing(now) and high is not None and high.flowing(now)):
            high, low = None, high
        sources.append((high, low))
    remaining = float("inf") if budget is None else budget
    remaining -= sum(_kbit(p, now) for p in audio)  # audio first
    plans = []
    for high, low in sources:  # the chair's first, then the floor holder's
        # The low slot crosses whenever video is needed below, even when every site there
        # takes the high tier: a site moving between tiers then never waits for the link,
        # and a site whose own line weakens has its tier at hand.
        cost_high = _kbit(high, now)
        base_only = False
        if low is not None and needed:
            if (LOW in needed or HIGH in needed) and cap != LOWEST:
                base_only = low.layered and _kbit(low, now) > remaining
            else:
                base_only = low.layered  # only the lowest is used below
            remaining -= _kbit(low, now, base=base_only)
        else:
            low = None
        send_high = HIGH in needed and cap == HIGH and high is not None and cost_high <= remaining
        if send_high:
            remaining -= cost_high
        plans.append(SlotPlan(high if send_high else None, low, base_only))
    return plans


def relay_costs(videos: list[Tiers], now: float) -> dict[str, float]:
    """kbit/s a link carries at each measured cap, as ``plan`` would fill it with nothing
    else in the way: the low slot (its base layer alone at ``LOWEST``), and the high tier
    beside it at ``HIGH``."""
    costs = dict.fromkeys((HIGH, LOW, LOWEST), 0.0)
    for video in videos:
        if video.low is None or video.high is None:  # one tier: it crosses the low slot
            one = video.kbit(LOW, now)
            for tier in costs:
                costs[tier] += one
            continue
        costs[LOWEST] += video.kbit(LOWEST, now)
        costs[LOW] += video.kbit(LOW, now)
        costs[HIGH] += video.kbit(LOW, now) + video.kbit(HIGH, now)
    return costs


def needs_below(wants: Iterable[str | None], relays: Iterable[frozenset[str] | None]) -> set[str]:
    """The tiers in use on this node (its sites' ``wants_video``) and below its own child
    nodes (their ``needs``; not yet said: every tier)."""
    found = {tier for tier in wants if tier is not None}
    for needs in relays:
        found |= EVERY_TIER if needs is None else needs
    return found
