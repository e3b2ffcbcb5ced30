"""A live meeting on one node, in lecture mode as provincial MCUs work.

The chair's site publishes; every invited site receives the *program*: the chair, plus the
site holding the floor. Sites publish too, but a site's media is forwarded only when needed:
the floor holder to everyone, a watched site to the chair. Only the chair and the floor
holder are heard. ``route()`` derives every consumer's source from this state, so each
change (floor, mute, watch, join, leave) is one state edit followed by ``route()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rooms.budget import SlotPlan, needs_below, plan
from rooms.linkrate import LinkEstimate, TierWatch
from rooms.peer import (
    CHAIR_LAYOUT,
    RELAY_LAYOUT,
    SITE_LAYOUT,
    WALL_SLOTS,
    MediaError,
    Peer,
    Slot,
)
from rooms.rollcall import RollCall
from rooms.roster import Roster
from rooms.router import Consumer, Producer, Router
from rooms.tiers import AUTO, LOW, MODES, Tiers, hears, video_tier

log = logging.getLogger(__name__)

CHAIR = "chair"
SITE = "site"
RELAY = "relay"  # a child node standing for all its sites
LINK_LOST = ("disconnected", "failed", "closed")  # a site's link so is shown offline


class RoomError(Exception):
    """A refused meeting action with a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Participant:
    key: str  # unit code of the site (the chair's is its host unit code)
    role: str  # CHAIR or SITE
    unit_name: str
    unit_path: list[str]
    user_id: int
    sid: str
    peer: Peer | None = None
    hand_raised: bool = False
    hand_raised_at: float = 0.0
    mic_on: bool = True
    camera_on: bool = True
    online: bool = True  # a relay whose heartbeats stopped is offline until they resume
    joined_at: float = field(default_factory=time.time)
    # What this participant receives (rooms/tiers.py): its receive mode, and in ``auto`` the
    # tier its link carries (rooms/linkrate.py).
    mode: str = AUTO
    auto_tier: str = LOW
    estimate: LinkEstimate = field(default_factory=lambda: LinkEstimate(time.monotonic()))
    # A relay (a child node's link): its budget in kbit/s as the parent's administrator set
    # it, and the tiers its sites use, as it reports them (rooms/budget.py).
    budget_kbit: int | None = None
    needs: frozenset[str] | None = None

    def producer(self, kind: str) -> Producer | None:
        if self.peer is None:
            return None
        if self.role == RELAY:
            return self.peer.producers.get(f"up.{kind}")
        return self.peer.producers.get("camera" if kind == "video" else "microphone")

    def video(self) -> Tiers:
        """Its camera in both tiers (a relay: what it sends up)."""
        if self.peer is None:
            return Tiers()
        prefix = "up.video" if self.role == RELAY else "camera"
        producers = self.peer.producers
        return Tiers(producers.get(prefix), producers.get(f"{prefix}.low"))

    @property
    def wants_video(self) -> str | None:
        return video_tier(self.mode, self.auto_tier)

    @property
    def hears(self) -> bool:
        return hears(self.mode)


class Program(NamedTuple):
    """What every site receives: the chair's video (in tiers) and audio, the floor holder's,
    and where the floor holder is (a site here, or the relay it is below)."""

    chair_video: Tiers
    chair_audio: Producer | None
    floor_video: Tiers
    floor_audio: Producer | None
    holder: Participant | None
    below: Participant | None


class LiveMeeting:
    def __init__(
        self, meeting_id: int, title: str, host_code: str, on_change: Callable[[LiveMeeting], None]
    ) -> None:
        self.meeting_id = meeting_id
        self.title = title
        self.host_code = host_code
        self.router = Router(f"meeting-{meeting_id}")
        self.live = False
        self.ended = False
        self.chair: Participant | None = None
        self.sites: dict[str, Participant] = {}
        self.floor: str | None = None
        self.muted: set[str] = set()
        self.watched: list[str | None] = [None] * WALL_SLOTS
        # Child nodes linked into this meeting, by node code.
        self.relays: dict[str, Participant] = {}
        # On a child node: the program as it arrives from the parent, by slot name
        # ("chair.video", "chair.audio", "floor.video", "floor.audio"); see rooms/uplink.py.
        self.upstream: dict[str, Producer] = {}
        # On a child node: the uplink's consumers that carry media up ("up.video", "up.audio",
        # "watch.0"...).
        self.up_slots: dict[str, Consumer] = {}
        # On a child node: the sites the level above asked to see, by its watch slot (the
        # ``watch`` node event); each goes up ``watch.N`` while asked for. A meeting has its
        # chair on one node, so a node has chair walls or watch orders from above, not both.
        self.up_watched: list[str | None] = [None] * WALL_SLOTS
        # Sites below child nodes, as their relays report them: unit code -> site state,
        # with "via" naming the relay. The floor may go to one of them.
        self.remote_sites: dict[str, dict[str, Any]] = {}
        # On a child node, who holds the floor when it is a site this node does not serve.
        self.floor_name: str | None = None
        # On a child node, for a meeting mirrored from the parent: "connecting", "connected",
        # "unreachable" or "refused" (server/cascade/parent_link.py).
        self.upper: str | None = None
        # Every invited site and its attendance (rooms/roster.py), and the roll call of the
        # moment (rooms/rollcall.py): on a child node, the one the parent's chair started.
        self.roster = Roster()
        self.roll_call: RollCall | None = None
        # Each unit's receive mode (rooms/tiers.py), kept across its rejoins.
        self.modes: dict[str, str] = {}
        self.tier_watch = TierWatch(self)
        self._on_change = on_change
        self._tasks: set[asyncio.Task[None]] = set()

    # -- membership ----------------------------------------------------------------------------

    def participant(self, key: str, role: str) -> Participant | None:
        if role == CHAIR:
            return self.chair
        return (self.relays if role == RELAY else self.sites).get(key)

    def everyone(self) -> list[Participant]:
        return [p for p in (self.chair, *self.sites.values(), *self.relays.values()) if p]

    def by_sid(self, sid: str) -> Participant | None:
        return next((p for p in self.everyone() if p.sid == sid), None)

    async def join(self, participant: Participant) -> Participant | None:
        """Add a participant; returns the one it replaces (same site rejoining), if any."""
        if self.ended:
            raise RoomError("meeting_ended", "The meeting has ended.")
        self.tier_watch.start()
        participant.mode = self.modes.get(participant.key, participant.mode)
        old = self.participant(participant.key, participant.role)
        if old is not None:
            participant.hand_raised = old.hand_raised
            participant.hand_raised_at = old.hand_raised_at
            await self._drop_peer(old)
        if participant.role == CHAIR:
            self.chair = participant
        elif participant.role == RELAY:
            self.relays[participant.key] = participant
        else:
            self.sites[participant.key] = participant
        self.route()
        self.changed()
        return old

    async def leave(self, participant: Participant) -> None:
        current = self.participant(participant.key, participant.role)
        if current is not participant:
            return  # already replaced by a newer link of the same site
        await self._drop_peer(participant)
        if participant.role == CHAIR:
            self.chair = None
        elif participant.role == RELAY:
            del self.relays[participant.key]
            self.set_remote_sites(participant.key, [])
        else:
            del self.sites[participant.key]
            participant.hand_raised = False
        self.route()
        self.changed()

    async def _drop_peer(self, participant: Participant) -> None:
        peer, participant.peer = participant.peer, None
        if peer is not None:
            await peer.close()

    # -- media -------------------------------------------------------------------------------

    def layout(self, role: str) -> tuple[Slot, ...]:
        return {CHAIR: CHAIR_LAYOUT, RELAY: RELAY_LAYOUT}.get(role, SITE_LAYOUT)

    async def connect(self, participant: Participant, sdp: str) -> str:
        """Answer a participant's offer; replaces an earlier link of the same participant."""
        if self.ended:
            raise RoomError("meeting_ended", "The meeting has ended.")
        await self._drop_peer(participant)
        # A new link proves its tiers afresh (rooms/linkrate.py).
        participant.estimate = LinkEstimate(
            time.monotonic(), remb=participant.role != RELAY, name=participant.key
        )
        participant.auto_tier = participant.estimate.tier
        peer = Peer(
            self.router,
            self.layout(participant.role),
            {"meeting": self.meeting_id, "unit": participant.key, "role": participant.role},
            on_producer=lambda _peer, _slot, _producer: self.route(),
            on_failed=self._peer_failed,
            on_change=lambda _peer: self.changed(),
        )
        participant.peer = peer
        try:
            answer = await peer.answer(sdp)
        except MediaError:
            participant.peer = None
            await peer.close()
            raise
        self.route()
        return answer

    def _peer_failed(self, peer: Peer) -> None:
        async def drop() -> None:
            for p in self.everyone():
                if p.peer is peer:
                    p.peer = None
            await peer.close()
            self.route()
            self.changed()

        self.spawn(drop())

    def spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def program(self) -> Program:
        """The program's sources now: the chair's video and audio, and the floor holder's."""
        chair = self.chair
        up = self.upstream if self.live else {}
        # The program: a local chair, or on a child node the program from the parent.
        if chair and self.live:
            cv, ca = chair.video(), chair.producer("audio")
        else:
            cv = Tiers(up.get("chair.video"), up.get("chair.video.low"))
            ca = up.get("chair.audio")
        # The floor holder: a site here, a site below a child node (its media comes up that
        # relay), or on a child node a site elsewhere (its media comes down the uplink).
        holder = self.sites.get(self.floor) if self.floor and self.live else None
        below = self._relay_of(self.floor) if self.floor and self.live else None
        source = holder or below
        if source is not None:
            assert self.floor is not None
            fv = source.video()
            fa = source.producer("audio") if self.floor not in self.muted else None
        else:
            fv = Tiers(up.get("floor.video"), up.get("floor.video.low"))
            fa = up.get("floor.audio")
        return Program(cv, ca, fv, fa, holder, below)

    def route(self) -> None:
        """Point every consumer at the producer the meeting's state calls for, in the tier
        each receiver's mode and link call for (rooms/tiers.py)."""
        now = time.monotonic()
        chair = self.chair
        cv, ca, fv, fa, holder, below = self.program()
        source = holder or below
        for relay in self.relays.values():
            if relay.peer is None:
                continue
            slots = relay.peer.consumers
            # The tiers its sites need that fit its link (rooms/budget.py), audio first:
            # within the configured budget and the tier its link is measured to carry.
            floor_video, floor_audio = (Tiers(), None) if relay is below else (fv, fa)
            chair_plan, floor_plan = plan(
                relay.needs,
                [cv, floor_video],
                [ca, floor_audio],
                relay.budget_kbit,
                now,
                cap=relay.estimate.tier,
            )
            _relay_video(slots, "chair.video", chair_plan)
            _attach(slots, "chair.audio", ca)
            _relay_video(slots, "floor.video", floor_plan)
            _attach(slots, "floor.audio", floor_audio)
        # Up to the parent: the floor holder, when it is here or below this node.
        up_video = source.video() if source else Tiers()
        _attach(self.up_slots, "up.video", up_video.high)
        _attach(self.up_slots, "up.video.low", up_video.low)
        _attach(self.up_slots, "up.audio", source.producer("audio") if source else None)
        for i, code in enumerate(self.up_watched):
            _attach(self.up_slots, f"watch.{i}", *self._wall_video(code, i).pick(LOW, now))
        for site in self.sites.values():
            if site.peer is None:
                continue
            own = site is holder
            slots = site.peer.consumers
            tier, hear = site.wants_video, site.hears
            _attach(slots, "chair.video", *cv.pick(tier, now))
            _attach(slots, "chair.audio", ca if hear else None)
            _attach(slots, "floor.video", *(Tiers() if own else fv).pick(tier, now))
            _attach(slots, "floor.audio", None if own or not hear else fa)
        if chair is not None and chair.peer is not None:
            slots = chair.peer.consumers
            tier, hear = chair.wants_video, chair.hears
            _attach(slots, "floor.video", *fv.pick(tier, now))
            _attach(slots, "floor.audio", fa if hear else None)
            for i, code in enumerate(self.watched):
                # The wall's pictures are small: the low tier serves them.
                wall = self._wall_video(code, i).pick(LOW if tier else None, now)
                _attach(slots, f"wall.{i}", *wall)

    def _relay_of(self, code: str) -> Participant | None:
        info = self.remote_sites.get(code)
        return self.relays.get(info["via"]) if info else None

    def _wall_video(self, code: str | None, slot: int) -> Tiers:
        """A watched site's video for wall (or watch) slot ``slot``: its camera when it is
        here, else what the relay it is below sends up ``watch.{slot}`` on request."""
        if not code or not self.live:
            return Tiers()
        site = self.sites.get(code)
        if site is not None:
            return site.video()
        relay = self._relay_of(code)
        if relay is None or relay.peer is None:
            return Tiers()
        return Tiers(low=relay.peer.producers.get(f"watch.{slot}"))

    def set_receive_mode(self, participant: Participant, mode: str) -> None:
        """What a participant receives (rooms/tiers.py); kept for its unit while the meeting
        lasts, so a rejoin receives the same."""
        if mode not in MODES:
            raise RoomError("bad_request", f"A receive mode is one of {', '.join(MODES)}.")
        self.modes[participant.key] = mode
        participant.mode = mode
        self.route()
        self.changed()

    # -- the cascade ---------------------------------------------------------------------------

    def set_remote_sites(self, relay_code: str, sites: list[dict[str, Any]]) -> None:
        """A relay's report of the sites below it (replaces its previous report)."""
        gone = {c for c, info in self.remote_sites.items() if info["via"] == relay_code}
        for code in gone:
            del self.remote_sites[code]
        relay = self.relays.get(relay_code)
        online = relay.online if relay is not None else False
        for site in sites:
            # A site is online here if the relay is, and the relay reports it online (a
            # node further down may have gone silent).
            reported = bool(site.get("online", True))
            self.remote_sites[site["unit"]] = {
                **site,
                "via": relay_code,
                "reported_online": reported,
                "online": online and reported,
            }
        # A watched site that left below (or whose relay left) is off the wall.
        gone -= set(self.remote_sites) | set(self.sites)
        self.watched = [None if c in gone else c for c in self.watched]
        self.up_watched = [None if c in gone else c for c in self.up_watched]
        if (
            self.floor
            and self.floor not in self.sites
            and self.floor not in self.remote_sites
            and self.chair is not None
        ):
            self.floor = None  # the floor holder went away below
        self.route()
        self.changed()

    def set_relay_online(self, relay_code: str, online: bool) -> None:
        """A child node's link went silent (or came back): so do the sites below it."""
        relay = self.relays.get(relay_code)
        if relay is None:
            return
        relay.online = online
        for info in self.remote_sites.values():
            if info["via"] == relay_code:
                info["online"] = online and info.get("reported_online", True)
        self.changed()

    async def relay_lost(self, relay: Participant) -> None:
        """A child node's socket closed without leaving (stopped, killed, cut): its media
        goes, and it stays listed offline with its sites until it joins again."""
        if self.relays.get(relay.key) is not relay:
            return  # already replaced by a newer link of the same node
        await self._drop_peer(relay)
        self.route()
        self.set_relay_online(relay.key, False)

    def floor_from_parent(self, code: str | None, name: str | None) -> None:
        """On a child node: the parent's chair gave the floor (or took it back)."""
        self.floor = code
        self.floor_name = name
        if code in self.sites:
            self.sites[code].hand_raised = False
        self.route()
        self.changed()

    def watch_from_parent(self, code: str, slot: int, on: bool) -> None:
        """On a child node: the level above wants ``code``'s video up ``watch.{slot}`` (or
        no longer). A site here sends its camera; one further below comes up its relay."""
        if on:
            self.up_watched[slot] = code
        elif self.up_watched[slot] == code:
            self.up_watched[slot] = None
        self.route()
        self.changed()

    def relay_watches(self) -> dict[str, dict[int, str]]:
        """What each relay must send up which ``watch.N`` slot: the sites watched here (by
        the chair, or by the level above) that are below it; by relay code, then slot."""
        wanted: dict[str, dict[int, str]] = {}
        if not self.live:
            return wanted
        for walls in (self.up_watched, self.watched):  # the chair's own walls win a slot
            for i, code in enumerate(walls):
                info = self.remote_sites.get(code) if code and code not in self.sites else None
                if info is not None:
                    wanted.setdefault(info["via"], {})[i] = info["unit"]
        return wanted

    def needs(self) -> list[str]:
        """The video tiers in use on this node and below it (a child reports them up)."""
        wants = [p.wants_video for p in self.sites.values()]
        return sorted(needs_below(wants, [r.needs for r in self.relays.values()]))

    def presence(self) -> list[dict[str, Any]]:
        """What a child node reports up: its sites and every site reported to it."""
        own = [
            {**self.site_state(p), "hand_raised_at": p.hand_raised_at} for p in self.sites.values()
        ]
        below = [
            {k: v for k, v in info.items() if k not in ("via", "reported_online")}
            for info in self.remote_sites.values()
        ]
        return own + below

    # -- chair and site actions --------------------------------------------------------------

    def start(self) -> None:
        if self.ended:
            raise RoomError("meeting_ended", "The meeting has ended.")
        self.live = True
        self.route()
        self.changed()

    def raise_hand(self, site: Participant, raised: bool) -> None:
        if site.role != SITE:
            raise RoomError("forbidden", "Only a site raises its hand.")
        if raised and not site.hand_raised:
            site.hand_raised_at = time.time()
        site.hand_raised = raised
        self.changed()

    def give_floor(self, code: str) -> None:
        if code not in self.sites and code not in self.remote_sites:
            raise RoomError("unknown_site", f"Site {code!r} is not connected.")
        self.floor = code
        if code in self.sites:
            self.sites[code].hand_raised = False
        else:
            self.remote_sites[code]["hand_raised"] = False
        self.route()
        self.changed()

    def take_floor(self) -> None:
        self.floor = None
        self.route()
        self.changed()

    def set_muted(self, code: str, muted: bool) -> None:
        if code not in self.sites and code not in self.remote_sites:
            raise RoomError("unknown_site", f"Site {code!r} is not connected.")
        if muted:
            self.muted.add(code)
        else:
            self.muted.discard(code)
        self.route()
        self.changed()

    def watch(self, code: str, watch: bool) -> None:
        """Put a site on the chair's wall, here or below a child node (which then sends its
        video up, see ``relay_watches``), or take it off."""
        if watch:
            if code not in self.sites and code not in self.remote_sites:
                raise RoomError("unknown_site", f"Site {code!r} is not connected.")
            if code not in self.watched:
                if None not in self.watched:
                    raise RoomError(
                        "wall_full", f"At most {WALL_SLOTS} sites can be watched at once."
                    )
                self.watched[self.watched.index(None)] = code
        else:
            self.watched = [None if c == code else c for c in self.watched]
        self.route()
        self.changed()

    def report_devices(self, participant: Participant, mic_on: bool, camera_on: bool) -> None:
        participant.mic_on, participant.camera_on = mic_on, camera_on
        self.changed()

    async def end(self) -> None:
        self.live = False
        self.ended = True
        self.floor = None
        for p in self.everyone():
            await self._drop_peer(p)
        self.changed()

    async def close(self) -> None:
        await self.tier_watch.close()
        await asyncio.gather(*(self._drop_peer(p) for p in self.everyone()))
        for task in tuple(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.router.close()

    def changed(self) -> None:
        self._on_change(self)

    # -- what each side sees -----------------------------------------------------------------

    def queue(self) -> list[dict[str, Any]]:
        """Raised hands here and below, first raised first."""
        raised = [
            (p.hand_raised_at, {"unit": p.key, "name": p.unit_name, "path": p.unit_path})
            for p in self.sites.values()
            if p.hand_raised
        ]
        raised += [
            (
                info.get("hand_raised_at", 0.0),
                {"unit": code, "name": info["name"], "path": info["path"]},
            )
            for code, info in self.remote_sites.items()
            if info.get("hand_raised")
        ]
        return [entry for _, entry in sorted(raised, key=lambda item: item[0])]

    def reception(self, p: Participant) -> dict[str, Any]:
        """What ``p`` receives and how its link is judged (rooms/tiers.py, linkrate.py)."""
        return {"mode": p.mode, "tier": p.wants_video, **p.estimate.public()}

    def publishing(self, p: Participant) -> dict[str, bool]:
        """Which of its camera's tiers the meeting may need from ``p`` now: the program's
        (the chair, the floor holder) both, a watched site the low one for the wall. A page
        need not send the others: a commune's uplink is as poor as its downlink."""
        program = p.role == CHAIR or (self.live and self.floor == p.key)
        watched = p.key in self.watched or p.key in self.up_watched
        return {"high": program, "low": program or watched}

    def site_state(self, p: Participant) -> dict[str, Any]:
        # The site's media link as the node sees it (rooms/liveness.py): a link that fell
        # silent or failed is offline even while its socket is still open.
        link = p.peer.link if p.peer is not None else "none"
        return {
            "online": link not in LINK_LOST,
            "link": link,
            "unit": p.key,
            "name": p.unit_name,
            "path": p.unit_path,
            "media": p.peer is not None and p.peer.flowing and bool(p.peer.producers),
            "hand_raised": p.hand_raised,
            "muted": p.key in self.muted,
            "mic_on": p.mic_on,
            "camera_on": p.camera_on,
            # What it receives and how its link is judged: the chair's monitoring wall, and
            # (in presence) the same for the level above.
            "receive": self.reception(p),
        }

    def floor_holder(self) -> dict[str, str] | None:
        if not self.floor:
            return None
        if self.floor in self.sites:
            return {"unit": self.floor, "name": self.sites[self.floor].unit_name}
        if self.floor in self.remote_sites:
            return {"unit": self.floor, "name": self.remote_sites[self.floor]["name"]}
        return {"unit": self.floor, "name": self.floor_name or self.floor}

    def state_for(self, viewer: Participant) -> dict[str, Any]:
        state: dict[str, Any] = {
            "meeting_id": self.meeting_id,
            "title": self.title,
            "status": self.status,
            "chair_present": self.chair is not None or bool(self.upstream),
            # On a child node: whether the level above is reachable (None on the root).
            "upper_level": self.upper,
            "floor": self.floor_holder(),
            "you": {
                "unit": viewer.key,
                "role": viewer.role,
                "has_floor": self.floor == viewer.key,
                "muted": viewer.key in self.muted,
                "hand_raised": viewer.hand_raised,
            },
        }
        if viewer.role != RELAY:
            # Its own tier and quality only: the figures change every tick, and a state
            # pushed to every site every 2 s would cost a commune's line more than it says.
            receive = self.reception(viewer)
            state["you"]["receive"] = {k: receive[k] for k in ("mode", "tier", "quality")}
            state["you"]["publish"] = self.publishing(viewer)
        roll_call = self.roll_call
        if roll_call is not None:
            record = self.roster.records.get(viewer.key)
            state["roll_call"] = {
                **roll_call.public(),
                "answered": record is not None and roll_call.id in record.answers,
                "answered_at": record.answered_at.get(roll_call.id) if record else None,
            }
        else:
            state["roll_call"] = None
        if viewer.role != CHAIR:
            record = self.roster.records.get(viewer.key)
            state["you"]["head_count"] = record.head_count if record else None
        if viewer.role == CHAIR:
            state["roster"] = self.roster.view()
            if roll_call is not None:
                state["roll_call"]["tally"] = self.roster.tally(roll_call.id)
            state["sites"] = self.site_list()
            state["queue"] = self.queue()
            state["watched"] = list(self.watched)
            state["nodes"] = self.node_list()
        return state

    @property
    def status(self) -> str:
        return "ended" if self.ended else ("live" if self.live else "waiting")

    def site_list(self) -> list[dict[str, Any]]:
        """Every connected site, here and below child nodes, by unit path: the chair's
        ``sites`` (and the monitoring wall's, server/http/monitor.py)."""
        local = [self.site_state(p) for p in self.sites.values()]
        below = [
            {k: v for k, v in info.items() if k not in ("hand_raised_at", "reported_online")}
            for info in self.remote_sites.values()
        ]
        return sorted([*local, *below], key=lambda site: site["path"])

    def node_list(self) -> list[dict[str, Any]]:
        """The child nodes linked into this meeting: the chair's ``nodes``."""
        return [
            {"node": r.key, "name": r.unit_name, "online": r.online}
            for r in sorted(self.relays.values(), key=lambda r: r.key)
        ]


def _attach(
    slots: dict[str, Any], name: str, producer: Producer | None, base_only: bool = False
) -> None:
    consumer = slots.get(name)
    if consumer is not None:
        consumer.attach(producer, base_only)


def _relay_video(slots: dict[str, Any], name: str, planned: SlotPlan) -> None:
    """A program video to a child node: the high tier up ``name``, the low (or lowest)
    up ``name.low``, as planned for its link."""
    _attach(slots, name, planned.high)
    _attach(slots, f"{name}.low", planned.low, planned.low_base_only)
