"""A byte-rate meter cheap enough to run on every forwarded frame.

Producers measure what each of their layers carries (rooms/router.py), so a link budget can
be compared with what a tier costs right now, not with a figure assumed in advance.
"""

from __future__ import annotations

BUCKET = 0.25  # seconds per bucket
BUCKETS = 8  # the rate is taken over the last two seconds


class RateMeter:
    """Bytes per second over the last ``BUCKET * BUCKETS`` seconds."""

    __slots__ = ("_buckets", "_current", "_started")

    def __init__(self) -> None:
        self._buckets = [0] * BUCKETS
        self._current = -1  # index (in bucket units since the epoch) of the newest bucket
        self._started: int | None = None

    def _advance(self, now: float) -> int:
        index = int(now / BUCKET)
        if self._started is None:
            self._started = index
            self._current = index
        elif index > self._current:
            for i in range(self._current + 1, min(index, self._current + BUCKETS) + 1):
                self._buckets[i % BUCKETS] = 0
            self._current = index
        return index

    def add(self, size: int, now: float) -> None:
        index = self._advance(now)
        if index >= self._current - BUCKETS + 1:
            self._buckets[index % BUCKETS] += size

    def kbit(self, now: float) -> float:
        """kbit/s over the window (over the time measured so far, when that is shorter)."""
        self._advance(now)
        assert self._started is not None
        span = min(BUCKETS, self._current - self._started + 1)
        if span <= 0:
            return 0.0
        total = sum(self._buckets[(self._current - i) % BUCKETS] for i in range(span))
        return total * 8 / 1000 / (span * BUCKET)
