"""How much a sender may retransmit when its receiver asks (NACK), so a full line is not
filled further by its own repairs.

aiortc answers every NACK with a retransmission at once, and a browser behind a full modem
queue asks again for what is still in that queue, every round trip: each answer makes the
queue longer, the round trip longer, and the next round of NACKs bigger. Seen on a 256 kbit/s
line with 5% loss: 70% loss and 450 ms round trips that lasted 20 s after one failed probe,
with the receiver on the lowest tier at 80 kbit/s. A ``RepairBudget`` per sender answers a
NACK only when:

- the packet was not resent within the last round trip (its first copy may still be on the
  way; at least ``MIN_GAP`` s);
- it was first sent less than ``MAX_AGE`` s ago (an older one is past any jitter buffer's
  wait: resending it costs the line and shows nothing);
- the repairs stay within ``SHARE`` of what the sender carries (at least ``FLOOR_KBIT``),
  over a bucket of ``BUCKET`` s: random loss of 5 to 10% needs a tenth of the rate, so a
  quarter repairs a lossy line fully and cannot drown a full one.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiortc.rtp import RTP_HISTORY_SIZE

MIN_GAP = 0.1
MAX_AGE = 1.0
SHARE = 0.25
FLOOR_KBIT = 24.0
BUCKET = 0.5
REMEMBERED = 512  # sequence numbers whose last resend is kept
AST_UNITS = 1 << 18  # abs-send-time: 6.18 fixed point seconds, wrapping at 64 s
AST_WRAP = 64 * AST_UNITS


class RepairBudget:
    """One sender's retransmissions: which to answer, and the bits left for them."""

    def __init__(self, now: float) -> None:
        self.tokens = FLOOR_KBIT * 1000 / 8 * BUCKET
        self.at = now
        self.sent_then = 0
        self._resent: OrderedDict[int, float] = OrderedDict()
        self.answered = 0
        self.refused = 0

    def allow(
        self, seq: int, size: int, now: float, sent_total: int, rtt: float | None, age: float
    ) -> bool:
        """Whether to resend packet ``seq`` of ``size`` bytes; ``sent_total``: the bytes the
        sender has carried so far (for its rate), ``age``: seconds since it was first sent."""
        if now > self.at:
            rate = max(0, sent_total - self.sent_then) / (now - self.at)  # bytes/s
            allowed = max(FLOOR_KBIT * 1000 / 8, SHARE * rate)
            self.tokens = min(allowed * BUCKET, self.tokens + allowed * (now - self.at))
            self.at, self.sent_then = now, sent_total
        last = self._resent.get(seq)
        gap = max(MIN_GAP, rtt or 0.0)
        if (last is not None and now - last < gap) or age > MAX_AGE or self.tokens < size:
            self.refused += 1
            return False
        self.tokens -= size
        self._resent[seq] = now
        self._resent.move_to_end(seq)
        while len(self._resent) > REMEMBERED:
            self._resent.popitem(last=False)
        self.answered += 1
        return True


def age_of(abs_send_time: int | None, now_ast: int) -> float:
    """Seconds since a packet stamped ``abs_send_time`` was sent (0 when unstamped)."""
    if abs_send_time is None:
        return 0.0
    return ((now_ast - abs_send_time) % AST_WRAP) / AST_UNITS


def guard(
    sender: Any,
    retransmit: Callable[[int], Awaitable[None]],
    sent_total: Callable[[], int],
    now_ast: Callable[[], int],
) -> Callable[[int], Awaitable[None]]:
    """``retransmit`` (aiortc's ``RTCRtpSender._retransmit``) behind a ``RepairBudget``."""
    budget = RepairBudget(time.monotonic())
    sender.repairs = budget

    async def answer(sequence_number: int) -> None:
        history = sender._RTCRtpSender__rtp_history
        packet = history.get(sequence_number % RTP_HISTORY_SIZE)
        if packet is None or packet.sequence_number != sequence_number:
            return
        size = len(packet.payload) + 40
        age = age_of(getattr(packet, "_abs_send_time", None), now_ast())
        rtt = sender._RTCRtpSender__rtt
        if budget.allow(sequence_number, size, time.monotonic(), sent_total(), rtt, age):
            await retransmit(sequence_number)

    return answer
