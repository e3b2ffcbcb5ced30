"""A roll call (điểm danh) in progress or just closed, as the chair's node started it.

The chair's node makes the id and tells every relay below (the ``roll_call`` node event);
each site answers on its own node, and the answer is an attendance event that travels up
like the others. The tally lives in the meeting's ``Roster`` (rooms/roster.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RollCall:
    number: int  # 1, 2, ... within the meeting
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None

    @property
    def open(self) -> bool:
        return self.ended_at is None

    def public(self) -> dict[str, Any]:
        """As participants see it (``state``)."""
        return {**self.public_order(), "open": self.open}

    def public_order(self) -> dict[str, Any]:
        """What a relay is told of it (the ``roll_call`` node event)."""
        return {
            "id": self.id,
            "number": self.number,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
        }
