"""What each receiver's link carries, and the watch that keeps it on that tier.

A ``LinkEstimate`` per participant link reads what the node already gets back: the RTCP
receiver reports of its senders (fraction lost, and the round trip aiortc measures from them),
REMB where the browser sends it, and the page's own report every 2 s (``link_stats``: frames
decoded, freezes). From these it calls the link *good*, *fair* or *poor* and, for a receiver
in ``auto``, picks its tier (rooms/tiers.py):

- **down at once**: trouble (loss of 10% or more that rose with the rate: with the round
  trip up 100 ms and 8 points above the least loss of the last 30 s, since a line's own
  random loss is no reason to send less; a round trip 250 ms above the link's own lowest;
  a browser's REMB under what is being sent; or a freeze the page reported) on two ticks
  in a row, or one tick of severe trouble (a long freeze, loss of 20% over the window or
  40% between the last two reports: a line that just dropped), moves the receiver one
  tier down; a tier change needs a
  keyframe, so the estimate then waits ``SETTLE`` s before it judges again;
- **up slowly**: after ``hold`` seconds without trouble it first probes the link at the
  rate the tier above would add (rooms/linkprobe.py), in steps, each judged on the answer
  to a sender report sent behind it: trouble, or a round trip up ``PROBE_RISE`` s, keeps
  the tier and makes ``hold`` ``PROBE_FAILED_HOLD`` times longer (up to ``HOLD_MAX``); a
  clean climb moves it up. Trouble within ``TRIAL`` s of the move sends it back and doubles
  ``hold`` too; a try that holds halves it again. So a link that cannot carry a tier stops
  trying it often (hysteresis: no flapping) and never freezes for a try, and one that can
  gets there within seconds.

The ``TierWatch`` runs every ``TICK`` s while the meeting lasts: it updates every estimate
and re-routes the meeting, so a tier that began or stopped arriving is also followed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rooms.budget import relay_costs
from rooms.linkprobe import PROBE_SECONDS, can_probe, probe
from rooms.router import Consumer, Feedback
from rooms.tiers import HIGH, LOW, LOWEST, TIERS

if TYPE_CHECKING:
    from rooms.meeting import LiveMeeting, Participant

log = logging.getLogger(__name__)

TICK = 0.5
FIGURES_EVERY = 4  # ticks: the monitoring wall's figures are pushed every 2 s when they moved
FRESH = 3.0  # a report older than this says nothing of the link now
LOSS_TROUBLE = 0.10
LOSS_SEVERE = 0.20
LOSS_FAIR = 0.02
# Loss alone is the line's own (a radio link loses packets at any rate) unless it rose: it
# counts as trouble with the round trip rising too and this far above the line's floor (the
# least loss of the last RTT_WINDOW).
LOSS_RISE = 0.08
# Severe at once: this share lost between a receiver's last two reports (with at least
# BURST_MIN_EXPECTED packets in them, the latest younger than BURST_FRESH s).
LOSS_BURST = 0.4
BURST_MIN_EXPECTED = 30
BURST_FRESH = 1.5
MIN_EXPECTED = 50  # packets: fewer, and the pooled loss falls back to the reports' own
RTT_TROUBLE = 0.25  # seconds above the lowest round trip of the last RTT_WINDOW
RTT_SEVERE = 0.40
RTT_FAIR = 0.10
RTT_WINDOW = 30.0
REMB_TROUBLE = 0.85  # the receiver estimates less than this share of what it is sent
HOLD_FIRST = 2.5
HOLD_MAX = 64.0
TRIAL = 5.0
SETTLE = 1.5
PROBE_LISTEN = 0.9  # seconds after a probe for its receiver reports and REMB to come back
PROBE_ANSWER_WAIT = 1.5  # more, at most, for an answer to the report sent behind the probe
PROBE_MIN = 40.0  # kbit/s: a tier that adds less is simply tried
PROBE_MARGIN = 1.2
# A probe climbs in steps: the first adds half of what is sent now (on a full line its
# extra fits the modem's queue and is not lost), each next one PROBE_GROWTH times the step
# before, up to what the tier above adds. A step that fails ends the climb: what it cost
# the line is a short delay, not the tier it had.
PROBE_FIRST_SHARE = 0.5
PROBE_GROWTH = 4.0
# A step lasts PROBE_SECONDS, or less when it asks more than the line has shown it carries:
# then what goes beyond that is about PROBE_EXCESS_SECONDS of the proven rate (at least
# PROBE_EXCESS_MIN bytes), so a step that finds the line full queues about that long: less
# than the jitter buffer a lossy line's receiver keeps (about 130 ms measured at 256 kbit/s
# with 5% loss), so the voice plays on. Such a rise fails the step at PROBE_RISE.
PROBE_EXCESS_SECONDS = 0.1
PROBE_EXCESS_MIN = 2000
PROBE_RISE = 0.05
PROBE_SECONDS_MIN = 0.1
# After a failed probe its own effects (the queue it filled, a freeze the page reports a
# report later) are not the line's: for this long only severe trouble moves the tier down.
PROBE_GRACE = 3.5
PROBE_FAILED_HOLD = 4.0
LONG_FREEZE = 1.0
FPS_KEPT = 0.8  # of the frames sent: decoded fewer, the line loses frames
# Audio redundancy (RED, rooms/router.py): on from this loss, off after RED_CALM s below
# RED_OFF. It doubles the audio's payload, so a clean line does not pay for it.
RED_ON = 0.02
RED_OFF = 0.005
RED_CALM = 15.0

GOOD, FAIR, POOR, UNKNOWN = "good", "fair", "poor", "unknown"


@dataclass
class ClientFigures:
    """The page's latest ``link_stats`` and what changed since the one before."""

    at: float = 0.0
    freezes: int = 0  # cumulative, over the receive slots
    freeze_seconds: float = 0.0
    new_freezes: int = 0
    new_freeze_seconds: float = 0.0
    fps: float = 0.0  # the best program video slot's frame rate
    concealed: int = 0
    samples: int = 0
    audio_played: float | None = None  # share of audio samples played since the last report


class LinkEstimate:
    """One participant link's state, as the node judges it from what comes back."""

    def __init__(self, now: float, remb: bool = True, name: str = "") -> None:
        self.name = name  # whose link, for the log
        self.tier = LOW  # a new link starts low and proves the tiers above
        # A browser's REMB follows its link; aiortc's (a child node's) rises at most 1.5
        # times what arrives, so after the link starts carrying more it stays below for
        # many seconds on a clean line: not a sign of trouble there.
        self.uses_remb = remb
        self.quality = UNKNOWN
        self.reason = ""
        self.loss = 0.0
        self.rtt: float | None = None
        self.remb_kbit: float | None = None
        self.sent_kbit = 0.0
        self.sent_fps = 0.0  # program video frames sent per second, the best slot
        self._sent_frames: dict[str, int] = {}
        self.client = ClientFigures()
        self.hold = HOLD_FIRST
        self.calm_since = now
        self.settle_until = now
        self.trial_until = 0.0
        self.probing_until = 0.0
        self.probe_request: float | None = None  # kbit/s the watch should probe with
        self.probe_seconds = PROBE_SECONDS  # and for how long
        self._proven = 0.0  # kbit/s the line carried in the climb so far
        self._probe_started = 0.0
        self.probes = 0
        self._probe_step = 0
        self._probe_kbit = 0.0  # the last step's extra kbit/s
        self.grace_until = 0.0
        self.redundant = False
        self._lossy_at = 0.0
        self.changes = 0
        self._troubled_ticks = 0
        self._rtts: deque[tuple[float, float]] = deque()
        self._losses: deque[tuple[float, float]] = deque()
        self._loss_pooled = False
        self.loss_burst = 0.0
        self._sent_bytes: int | None = None
        self._sent_at = now

    # -- inputs ---------------------------------------------------------------------------

    def client_report(self, report: Any, now: float) -> None:
        """A ``link_stats`` report (server/sockets/protocol.py ``LinkReport``)."""
        video = [s for s in report.slots if s.frames_decoded or s.frames_per_second]
        freezes = sum(s.freeze_count for s in report.slots)
        seconds = sum(s.total_freezes_duration for s in report.slots)
        concealed = sum(s.concealed_samples for s in report.slots)
        samples = sum(s.total_samples_received for s in report.slots)
        before = self.client
        new = freezes - before.freezes if before.at and freezes >= before.freezes else 0
        played: float | None = None
        if before.at and samples > before.samples:
            lost = max(0, concealed - before.concealed)
            played = max(0.0, 1 - lost / (samples - before.samples))
        self.client = ClientFigures(
            at=now,
            freezes=freezes,
            freeze_seconds=seconds,
            new_freezes=new,
            new_freeze_seconds=max(0.0, seconds - before.freeze_seconds) if new else 0.0,
            fps=max((s.frames_per_second for s in video), default=0.0),
            concealed=concealed,
            samples=samples,
            audio_played=played,
        )

    def count_frames(self, frames: dict[str, int], seconds: float) -> None:
        """Frames sent so far per program video slot: the best slot's rate since the last
        call becomes ``sent_fps``."""
        rates = [
            (n - self._sent_frames[slot]) / seconds
            for slot, n in frames.items()
            if slot in self._sent_frames and seconds > 0
        ]
        self._sent_frames = dict(frames)
        if rates:
            self.sent_fps = 0.5 * self.sent_fps + 0.5 * max(rates)

    def _read(self, feedbacks: Iterable[Feedback], sent_bytes: int, now: float) -> None:
        fresh = [f for f in feedbacks if now - f.report_at < FRESH and f.reports]
        # Pooled over the link's streams: one stream of a few packets a second says little.
        lost = expected = 0
        for f in fresh:
            f_lost, f_expected = f.window()
            lost, expected = lost + f_lost, expected + f_expected
        self._loss_pooled = expected >= MIN_EXPECTED
        if self._loss_pooled:
            self.loss = min(1.0, lost / expected)
        else:
            self.loss = max((f.loss for f in fresh), default=0.0)
        # The last interval alone: a line that just dropped (a modem falling back) loses
        # most of what is sent at once, and the window would take seconds to say so.
        lost = expected = 0
        for f in fresh:
            if now - f.report_at < BURST_FRESH:
                f_lost, f_expected = f.last_interval()
                lost, expected = lost + f_lost, expected + f_expected
        self.loss_burst = lost / expected if expected >= BURST_MIN_EXPECTED else 0.0
        if fresh:
            self._losses.append((now, self.loss))
        while self._losses and now - self._losses[0][0] > RTT_WINDOW:
            self._losses.popleft()
        rtts = [f.rtt for f in fresh if f.rtt is not None]
        self.rtt = max(rtts) if rtts else None
        if self.rtt is not None:
            self._rtts.append((now, self.rtt))
        while self._rtts and now - self._rtts[0][0] > RTT_WINDOW:
            self._rtts.popleft()
        rembs = [f.remb_kbit for f in feedbacks if f.remb_at and now - f.remb_at < FRESH]
        self.remb_kbit = min(rembs) if rembs else None
        if self._sent_bytes is not None and now > self._sent_at:
            kbit = (sent_bytes - self._sent_bytes) * 8 / 1000 / (now - self._sent_at)
            self.sent_kbit = 0.5 * self.sent_kbit + 0.5 * max(0.0, kbit)
        self._sent_bytes, self._sent_at = sent_bytes, now
        self._fresh = bool(fresh) or self.remb_kbit is not None

    def _redundancy(self, now: float) -> None:
        played = self.client.audio_played
        client_fresh = self.client.at and now - self.client.at < FRESH
        if self.loss >= RED_ON or (client_fresh and played is not None and played < 0.99):
            self._lossy_at = now
            self.redundant = True
        elif self.loss >= RED_OFF:
            self._lossy_at = now
        elif self.redundant and now - self._lossy_at > RED_CALM:
            self.redundant = False

    @property
    def loss_floor(self) -> float:
        """The least pooled loss of the last ``RTT_WINDOW``; none measured yet: the loss
        now (a rise is not known before there is something to rise from)."""
        return min((loss for _, loss in self._losses), default=self.loss)

    def _rtt_floor(self) -> float:
        """The lowest round trip of the last ``RTT_WINDOW`` (there must be one)."""
        return min(r for _, r in self._rtts)

    @property
    def rtt_inflation(self) -> float:
        if self.rtt is None or not self._rtts:
            return 0.0
        return max(0.0, self.rtt - self._rtt_floor())

    # -- the judgement ----------------------------------------------------------------------

    def _trouble(self, now: float) -> tuple[int, str]:
        """0 none, 1 trouble, 2 severe; and why, in a few words for the log."""
        client = self.client
        # A freeze counts against the line only when fewer frames were decoded than sent:
        # a publisher that sends few frames (a busy picture, a slow camera) is not the line.
        line_lost_frames = self.sent_fps <= 0 or client.fps < FPS_KEPT * self.sent_fps
        if client.at and now - client.at < FRESH and client.new_freezes and line_lost_frames:
            # A short freeze on a lossy line is the line's loss, not its size: trouble; a
            # long one (over a second of frozen picture since the last report) is severe.
            long = client.new_freeze_seconds > LONG_FREEZE
            return (2 if long else 1), "freeze"
        if self.loss_burst >= LOSS_BURST:
            return 2, f"loss {self.loss_burst:.0%} in the last report"
        if self.loss >= LOSS_SEVERE and self._loss_pooled:  # not one report of a few packets
            return 2, f"loss {self.loss:.0%}"
        inflation = self.rtt_inflation
        if inflation >= RTT_SEVERE:
            return 2, f"delay +{inflation * 1000:.0f} ms"
        if (
            self.loss >= LOSS_TROUBLE
            and inflation >= RTT_FAIR
            and self.loss >= self.loss_floor + LOSS_RISE
        ):
            return 1, f"loss {self.loss:.0%}"
        if inflation >= RTT_TROUBLE:
            return 1, f"delay +{inflation * 1000:.0f} ms"
        remb = self.remb_kbit if self.uses_remb else None
        # While a probe runs, the receiver's estimate must cover the probe too.
        carried = self.sent_kbit + (self._probe_kbit if self.probing_until else 0.0)
        if remb is not None and self.sent_kbit > 50 and remb < REMB_TROUBLE * carried:
            return 1, f"estimate {remb:.0f} < sent {carried:.0f} kbit/s"
        return 0, ""

    def update(
        self,
        feedbacks: Iterable[Feedback],
        sent_bytes: int,
        now: float,
        costs: dict[str, float] | None = None,
        can_probe: bool = False,
        limit_kbit: float | None = None,
    ) -> bool:
        """Take the latest figures; True when the tier or the quality changed. ``costs``:
        kbit/s of the receiver's program in each tier now; ``can_probe``: the watch can
        probe its link (else a tier above is simply tried); ``limit_kbit``: what the link
        may carry at most (a child's configured budget), so a tier above it is not tried."""
        before = (self.tier, self.quality)
        feedbacks = list(feedbacks)
        self._read(feedbacks, sent_bytes, now)
        self._redundancy(now)
        level, why = self._trouble(now)
        if level:
            self._troubled_ticks += 1
            self.calm_since = now
            self.reason = why
        else:
            self._troubled_ticks = 0
        # The quality is the line as the chair should see it: one losing a tenth of its
        # packets is poor even when sending less would not help (so the tier is kept).
        if level or self.loss >= LOSS_TROUBLE:
            self.quality = POOR
        elif self.loss >= LOSS_FAIR or self.rtt_inflation >= RTT_FAIR:
            self.quality = FAIR
        elif self._fresh or self.client.at:
            self.quality = GOOD
        # While probing, a round trip that rose at all fails the step: the next would
        # overflow the queue the rise shows. Judged on each report's own round trip since
        # the probe began (rooms/roundtrip.py), the one behind the probe among them.
        if self.probing_until and not level:
            rise = self._probe_rise(feedbacks)
            if rise >= PROBE_RISE:
                level, why = 1, f"delay +{rise * 1000:.0f} ms"
                self.reason = why
        if level and self.probing_until:
            # The probe found the line full: keep the tier, wait longer, let the queue drain.
            self.probing_until = 0.0
            self._probe_step = 0
            # Four times longer: each failed probe delays the line's packets a little, and a
            # line that could not carry a tier rarely can a few seconds later.
            self.hold = min(HOLD_MAX, self.hold * PROBE_FAILED_HOLD)
            self.calm_since = now  # the hold counts from the failure
            self.settle_until = now + SETTLE
            self.grace_until = now + PROBE_GRACE
            self._troubled_ticks = 0
            log.info(
                "link of %s: probe for %s failed at +%.0f kbit/s (%s); hold %.0f s",
                self.name or "?",
                self._above(),
                self._probe_kbit,
                why,
                self.hold,
            )
        elif now >= self.settle_until:
            in_grace = now < self.grace_until
            if (level == 2 and not (in_grace and why == "freeze")) or (
                self._troubled_ticks >= 2 and not in_grace
            ):
                self._down(now)
            elif (
                now - self.calm_since >= self.hold
                and self.tier != HIGH
                and not (limit_kbit and costs and costs.get(self._above(), 0.0) > limit_kbit)
            ):
                extra = 0.0
                if costs:
                    extra = (
                        costs.get(self._above(), 0.0) - costs.get(self.tier, 0.0)
                    ) * PROBE_MARGIN
                first = min(extra, max(PROBE_MIN, PROBE_FIRST_SHARE * self.sent_kbit))
                if self.probing_until:
                    if now >= self.probing_until and self._probe_answered(feedbacks, now):
                        self.probing_until = 0.0
                        log.debug(
                            "link of %s: probe step +%.0f kbit/s for %.2f s passed (+%.0f ms)",
                            self.name or "?",
                            self._probe_kbit,
                            self.probe_seconds,
                            self._probe_rise(feedbacks) * 1000,
                        )
                        # The step passed. Short of the tier's own cost (``extra`` has a
                        # margin on it, and it rises while a publisher ramps up): the next.
                        if self._probe_kbit * PROBE_MARGIN < extra:
                            step = min(extra, self._probe_kbit * PROBE_GROWTH)
                            self._probe(now, step, self._probe_step + 1)
                        else:
                            self._probe_step = 0
                            self._up(now)  # the probe passed
                elif can_probe and extra > PROBE_MIN and now >= self.grace_until:
                    self._probe(now, first, 1)
                else:
                    self._up(now)
            elif self.trial_until and now > self.trial_until:
                self.trial_until = 0.0
                self.hold = max(HOLD_FIRST, self.hold / 2)  # the try held
        return (self.tier, self.quality) != before

    def _probe_answered(self, feedbacks: list[Feedback], now: float) -> bool:
        """Whether the receiver has answered a sender report sent after the probe ended
        (a step is passed on that answer, not on silence: a receiver reports about once a
        second, and an answer still on its way would pass a step that filled the line).
        A link that never gave a round trip is judged on time alone."""
        if not any(f.rtt_raw is not None for f in feedbacks):
            return True
        if any(f.probe_rtt_at >= self._probe_started for f in feedbacks):
            return True
        return now >= self.probing_until + PROBE_ANSWER_WAIT

    def _probe_rise(self, feedbacks: list[Feedback]) -> float:
        """How far the round trips measured since the probe began rose above the lowest."""
        since = [
            f.rtt_raw
            for f in feedbacks
            if f.rtt_raw is not None and f.rtt_raw_at >= self._probe_started
        ] + [
            f.probe_rtt
            for f in feedbacks
            if f.probe_rtt is not None and f.probe_rtt_at >= self._probe_started
        ]
        if not since or not self._rtts:
            return self.rtt_inflation
        return max(self.rtt_inflation, max(since) - self._rtt_floor())

    def _down(self, now: float) -> None:
        index = TIERS.index(self.tier)
        if index == len(TIERS) - 1:
            return
        if self.trial_until and now <= self.trial_until:
            self.hold = min(HOLD_MAX, self.hold * 2)  # the try failed
        self.trial_until = 0.0
        self.tier = TIERS[index + 1]
        self._changed(now, f"down to {self.tier}: {self.reason}")

    def _probe(self, now: float, kbit: float, step: int) -> None:
        if step == 1:
            self._proven = self.sent_kbit
        elif self._probe_step:  # the step before passed: the line carried it
            self._proven = max(self._proven, self.sent_kbit + self._probe_kbit)
        beyond = max(1.0, self.sent_kbit + kbit - self._proven) * 1000 / 8  # bytes/s
        excess = max(PROBE_EXCESS_MIN, self._proven * 1000 / 8 * PROBE_EXCESS_SECONDS)
        seconds = min(PROBE_SECONDS, max(PROBE_SECONDS_MIN, excess / beyond))
        self.probe_request = self._probe_kbit = kbit
        self.probe_seconds = seconds
        self._probe_started = now
        self._probe_step = step
        self.probing_until = now + seconds + PROBE_LISTEN
        self.probes += 1

    def _above(self) -> str:
        return TIERS[max(0, TIERS.index(self.tier) - 1)]

    def _up(self, now: float) -> None:
        self.tier = self._above()
        self.trial_until = now + TRIAL
        self.calm_since = now
        self._changed(now, f"trying {self.tier}")

    def _changed(self, now: float, why: str) -> None:
        self.changes += 1
        self.settle_until = now + SETTLE
        self._troubled_ticks = 0
        self._rtts.clear()  # the new tier's own round trips from now on
        log.info("link of %s %s (hold %.0f s)", self.name or "?", why, self.hold)

    def public(self) -> dict[str, Any]:
        client = self.client
        return {
            "quality": self.quality,
            "kbit": round(self.sent_kbit),
            "loss_pct": round(self.loss * 100, 1),
            "rtt_ms": None if self.rtt is None else round(self.rtt * 1000),
            "fps": round(client.fps, 1),
            "freezes": client.freezes,
            "audio_played_pct": (
                None if client.audio_played is None else round(client.audio_played * 100, 1)
            ),
        }


def sent_bytes(participant: Participant) -> int:
    peer = participant.peer
    if peer is None:
        return 0
    return sum(c.bytes_sent for c in peer.consumers.values())


def feedbacks(participant: Participant) -> list[Feedback]:
    peer = participant.peer
    if peer is None:
        return []
    return [c.feedback for c in peer.consumers.values() if c.producer is not None]


SITE_VIDEO = ("chair.video", "floor.video")
RELAY_VIDEO = ("chair.video.low", "chair.video", "floor.video.low", "floor.video")


def _probe_sender(consumers: dict[str, Consumer], names: tuple[str, ...] = SITE_VIDEO) -> Any:
    """A sender of the participant's program video that can carry a probe."""
    for name in names:
        consumer = consumers.get(name)
        if consumer is not None and consumer.producer is not None and can_probe(consumer.sender):
            return consumer.sender
    return None


class TierWatch:
    """One per live meeting; started with its first participant, stopped with the meeting."""

    def __init__(self, meeting: LiveMeeting) -> None:
        self.meeting = meeting
        self._task: asyncio.Task[None] | None = None
        self._ticks = 0
        self._figures: dict[str, dict[str, Any]] = {}

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        meeting = self.meeting
        while not meeting.ended:
            await asyncio.sleep(TICK)
            try:
                self.tick(time.monotonic())
            except Exception:  # a bug here must not stop the watch of every later tick
                log.exception("meeting %s: the tier watch failed", meeting.meeting_id)

    def tick(self, now: float) -> None:
        meeting = self.meeting
        changed = False
        program = meeting.program()
        # What each program video costs in each tier, once a tick for every receiver.
        chair_cost = {tier: program.chair_video.kbit(tier, now) for tier in TIERS}
        floor_cost = {tier: program.floor_video.kbit(tier, now) for tier in TIERS}
        nothing = dict.fromkeys(TIERS, 0.0)
        for participant in (meeting.chair, *meeting.sites.values()):
            if participant is None or participant.peer is None:
                continue
            estimate = participant.estimate
            gets_chair = chair_cost if participant is not meeting.chair else nothing
            gets_floor = (
                floor_cost if meeting.floor and participant is not program.holder else nothing
            )
            sender = _probe_sender(participant.peer.consumers)
            estimate.count_frames(
                {
                    name: c.frames_sent
                    for name, c in participant.peer.consumers.items()
                    if name in ("chair.video", "floor.video")
                },
                TICK,
            )
            costs = {tier: gets_chair[tier] + gets_floor[tier] for tier in TIERS}
            if estimate.update(
                feedbacks(participant), sent_bytes(participant), now, costs, sender is not None
            ):
                changed = True
                participant.auto_tier = estimate.tier
            for consumer in participant.peer.consumers.values():
                if consumer.kind == "audio":
                    consumer.redundancy = estimate.redundant
            self._probe(estimate, sender)
        for relay in meeting.relays.values():
            if relay.peer is None:
                continue
            # A child node's link: the tier it carries caps what crosses it (rooms/budget.py).
            videos = [program.chair_video]
            if meeting.floor and relay is not program.below:
                videos.append(program.floor_video)
            sender = _probe_sender(relay.peer.consumers, RELAY_VIDEO)
            estimate = relay.estimate
            if estimate.update(
                feedbacks(relay),
                sent_bytes(relay),
                now,
                relay_costs(videos, now),
                sender is not None,
                relay.budget_kbit,
            ):
                relay.auto_tier = estimate.tier
            self._probe(estimate, sender)
        meeting.route()
        self._ticks += 1
        if self._ticks % FIGURES_EVERY == 0:
            figures = {p.key: p.estimate.public() for p in meeting.sites.values()}
            if figures != self._figures:
                self._figures = figures
                changed = True  # the chair's wall and the level above see them
        if changed:
            meeting.changed()

    def _probe(self, estimate: LinkEstimate, sender: Any) -> None:
        if estimate.probe_request is not None:
            kbit, estimate.probe_request = estimate.probe_request, None
            if sender is not None:
                self.meeting.spawn(probe(sender, kbit, estimate.probe_seconds))

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["HIGH", "LOW", "LOWEST", "LinkEstimate", "TierWatch"]
