"""Video tiers and what each participant receives (docs/architecture.md, "Tiers").

A publisher of the program (the chair, the floor holder) sends its camera twice from one
capture: ``camera`` (the *high* tier, about 640x360 at up to 700 kbit/s) and ``camera.low``
(the *low* tier, about 320x180 at 15 fps and 120 kbit/s, with VP8 temporal layers). The node
makes a third, *lowest*, without re-encoding: the low tier's base layer alone (half its frame
rate, a fraction of its bits; ``Consumer.base_only``). Each receive slot of a program video
shows one tier, picked here from the participant's receive mode:

- ``auto`` (the default): the tier its link carries (rooms/linkrate.py decides);
- ``high``, ``low``, ``lowest``: that tier, whatever the link;
- ``audio``: no video crosses the link at all; ``none``: nothing at all.

A tier that is not arriving (a publisher that sends one tier only, or not yet) is replaced by
the nearest one that is, so a slot is never empty while its source sends anything.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rooms.router import Producer

HIGH = "high"
LOW = "low"
LOWEST = "lowest"
TIERS = (HIGH, LOW, LOWEST)  # best first
AUTO = "auto"
AUDIO_ONLY = "audio"
NOTHING = "none"
MODES = (AUTO, HIGH, LOW, LOWEST, AUDIO_ONLY, NOTHING)
# kbit/s a tier is priced at where it does not arrive while another tier of the same video
# does: a child node gets the high tier from its parent only once a site below needs it, so
# before that its cost is what the publisher may send in it at most (docs/architecture.md).
CEILING_KBIT = {HIGH: 700.0, LOW: 120.0, LOWEST: 70.0}


@dataclass(frozen=True)
class Tiers:
    """The producers of one program video, by tier: its high and low tracks (either may be
    missing: a publisher that sends one only)."""

    high: Producer | None = None
    low: Producer | None = None

    def pick(self, tier: str | None, now: float | None = None) -> tuple[Producer | None, bool]:
        """The producer (and whether to forward its base layer only) that stands for ``tier``
        (None: no video). A tier not arriving gives way to the nearest one that is."""
        if tier is None:
            return None, False
        now = time.monotonic() if now is None else now
        high, low = self.high, self.low
        order = [high, low] if tier == HIGH else [low, high]
        for producer in order:
            if producer is not None and producer.flowing(now):
                return producer, tier == LOWEST and producer.layered
        # Nothing arriving yet: wait on the preferred one, so its first keyframe is taken.
        first = next((p for p in order if p is not None), None)
        return first, False

    def kbit(self, tier: str, now: float | None = None) -> float:
        """What ``tier`` of this video carries now, measured at its producer; a tier that
        does not arrive here while another one does, at its ceiling (``CEILING_KBIT``)."""
        now = time.monotonic() if now is None else now
        own = self.high if tier == HIGH else self.low
        if own is None:  # a publisher of one tier: what stands in for this one
            own, base = self.pick(tier, now)
        else:
            base = tier == LOWEST
        if own is None:
            return 0.0
        if not own.flowing(now):
            others = (p for p in (self.high, self.low) if p is not None and p is not own)
            return CEILING_KBIT[tier] if any(p.flowing(now) for p in others) else 0.0
        return own.kbit(now, base)

    def any(self) -> Producer | None:
        return self.high or self.low


def video_tier(mode: str, auto_tier: str) -> str | None:
    """The tier a receive mode asks for; ``auto_tier`` is what the link carries."""
    if mode == AUTO:
        return auto_tier
    if mode in TIERS:
        return mode
    return None  # audio only, or nothing


def hears(mode: str) -> bool:
    return mode != NOTHING
