"""Wire models of the ``/meeting`` socket.io namespace: one pydantic model per event.

docs/protocol.md documents each event, payload, acknowledgement and error code; a test fails
when an event handled here is missing from it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from server.errors import MAX_ROW_ID
from server.text import Line

MAX_SDP = 64 * 1024


class Event(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Join(Event):
    meeting_id: int = Field(ge=1, le=MAX_ROW_ID)  # the meetings.id column is 32-bit


class Offer(Event):
    sdp: str = Field(min_length=1, max_length=MAX_SDP)


class Empty(Event):
    pass


class RaiseHand(Event):
    raised: bool


class GiveFloor(Event):
    unit: Line = Field(min_length=1, max_length=64)


class Mute(Event):
    unit: Line = Field(min_length=1, max_length=64)
    muted: bool


class Watch(Event):
    unit: Line = Field(min_length=1, max_length=64)
    watch: bool


class Devices(Event):
    mic_on: bool
    camera_on: bool


class ReceiveMode(Event):
    """What this participant receives (rooms/tiers.py)."""

    mode: Literal["auto", "high", "low", "lowest", "audio", "none"]


MAX_COUNT = 10**12  # a cumulative counter of the browser's stats


class SlotReport(Event):
    """One receive slot's figures, as the browser's ``getStats()`` gives them (cumulative)."""

    slot: Line = Field(min_length=1, max_length=32)
    frames_decoded: int = Field(0, ge=0, le=MAX_COUNT)
    frames_per_second: float = Field(0.0, ge=0, le=1000)
    freeze_count: int = Field(0, ge=0, le=MAX_COUNT)
    total_freezes_duration: float = Field(0.0, ge=0, le=10**9)
    jitter_buffer_ms: float = Field(0.0, ge=0, le=600_000)
    bytes_received: int = Field(0, ge=0, le=MAX_COUNT)
    concealed_samples: int = Field(0, ge=0, le=MAX_COUNT)
    total_samples_received: int = Field(0, ge=0, le=MAX_COUNT)


class LinkReport(Event):
    """The browser's view of its link, sent every 2 s (docs/protocol.md, ``link_stats``)."""

    slots: list[SlotReport] = Field(default_factory=list, max_length=16)
    bytes_received: int = Field(0, ge=0, le=MAX_COUNT)
    rtt_ms: float | None = Field(None, ge=0, le=600_000)


MAX_HEAD_COUNT = 100_000


class Attendee(Event):
    name: Line = Field(min_length=1, max_length=200)
    position: Line = Field("", max_length=200)


class HeadCount(Event):
    count: int = Field(ge=0, le=MAX_HEAD_COUNT)
    names: list[Attendee] = Field(default_factory=list, max_length=500)


class RollCallAnswer(Event):
    roll_call: Line = Field(min_length=1, max_length=36)
    count: int = Field(ge=0, le=MAX_HEAD_COUNT)


class CallSite(Event):
    """Call one site by name (``unit``), or the next or previous site of the list."""

    unit: Line | None = Field(None, min_length=1, max_length=64)
    step: Literal["next", "previous"] | None = None

    @model_validator(mode="after")
    def _one(self) -> CallSite:
        if (self.unit is None) == (self.step is None):
            raise ValueError("give either unit or step")
        return self


# event name -> payload model; the namespace dispatches on this table
EVENTS: dict[str, type[Event]] = {
    "join": Join,
    "offer": Offer,
    "start": Empty,
    "end": Empty,
    "raise_hand": RaiseHand,
    "give_floor": GiveFloor,
    "take_floor": Empty,
    "mute": Mute,
    "watch": Watch,
    "devices": Devices,
    "leave": Empty,
    "head_count": HeadCount,
    "roll_call_start": Empty,
    "roll_call_end": Empty,
    "roll_call_answer": RollCallAnswer,
    "call_site": CallSite,
    "receive_mode": ReceiveMode,
    "link_stats": LinkReport,
}

# events the node sends
SERVER_EVENTS = ("state", "replaced", "ended", "session_ended")

ERROR_CODES = {
    "not_authenticated": "The socket has no valid session (connect refused), or it ended.",
    "bad_request": "The payload does not match the event's model.",
    "unknown_event": "No such event.",
    "not_joined": "Join a meeting first.",
    "meeting_not_found": "No such meeting, or not visible to this user.",
    "meeting_not_open": "The meeting was cancelled or has ended.",
    "not_invited": "The user's unit is neither the host nor an invited site.",
    "served_elsewhere": "Another node serves the user's unit: join the meeting there.",
    "forbidden": "The user's role in this meeting may not do this.",
    "bad_sdp": "The offer is not well-formed SDP.",
    "bad_offer": "The offer's sections do not follow the layout.",
    "unsupported_codec": "A section does not offer VP8 (video) or Opus (audio).",
    "already_negotiated": "This link already has an answer; join again to start over.",
    "ice_timeout": "The node could not gather ICE candidates in time.",
    "unknown_site": "The named site is not connected.",
    "wall_full": "The chair already watches the maximum number of sites.",
    "meeting_ended": "The meeting has ended.",
    "not_live": "The meeting has not started yet.",
    "roll_call_open": "A roll call is already open; close it first.",
    "no_roll_call": "No roll call is open.",
    "roll_call_closed": "That roll call is closed (or another one is open).",
    "no_site_to_call": "No connected site to call in that direction.",
    "node_busy": "The node is too busy to answer now; try again in a moment.",
    "internal_error": "The node failed; it has been logged.",
}


def validate(model: type[Event], payload: Any) -> Event | dict[str, Any]:
    """The payload as ``model``, or the ``bad_request`` acknowledgement naming each field."""
    try:
        return model.model_validate(payload if payload is not None else {})
    except ValidationError as exc:
        fields = {".".join(str(p) for p in e["loc"]) or "payload": e["msg"] for e in exc.errors()}
        return fail("bad_request", "Invalid payload: " + ", ".join(sorted(fields)), fields=fields)


def fail(code: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    return {"ok": False, "error": code, "message": message or ERROR_CODES[code], **extra}


def ok(**body: Any) -> dict[str, Any]:
    return {"ok": True, **body}
