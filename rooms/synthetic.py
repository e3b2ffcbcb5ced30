"""Synthetic media for tests and benchmarks: a video that carries a frame counter in its
pixels, and a steady tone. The counter survives VP8 compression because each bit is drawn as
a large black or white block, so a receiver that decodes can read it back.
"""

from __future__ import annotations

import asyncio
import fractions
import math
import time
from typing import Any

import numpy as np
from aiortc import MediaStreamTrack
from av import AudioFrame, VideoFrame

BITS = 24
MASK = (1 << BITS) - 1
BLOCK = 8  # pixels per bit block side (24 bits fit across 192 pixels)
CHECK_ROW = 2  # the counter's complement, so that a misread picture is told from a true one
VIDEO_CLOCK = 90000
AUDIO_RATE = 48000
AUDIO_SAMPLES = 960  # 20 ms


class CounterVideoTrack(MediaStreamTrack):
    """640x480 at ``fps``; frame n carries n in its top rows, plus moving content below."""

    kind = "video"

    def __init__(
        self, width: int = 640, height: int = 480, fps: int = 30, stamp_time: bool = False
    ) -> None:
        super().__init__()
        self.width, self.height, self.fps = width, height, fps
        self.counter = 0
        self.stamp_time = stamp_time  # also carry send time (ms, 24 bits) in the second row
        self._start: float | None = None
        rng = np.random.default_rng(7)
        self._noise = rng.integers(0, 255, (height, width * 2), dtype=np.uint8)

    async def recv(self) -> VideoFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.counter / self.fps
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        n = self.counter
        self.counter += 1
        y = np.empty((self.height * 3 // 2, self.width), dtype=np.uint8)
        shift = (n * 8) % self.width
        y[: self.height] = self._noise[:, shift : shift + self.width]
        y[self.height :] = 128
        draw_bits(y, n, row=0)
        draw_bits(y, n ^ MASK, row=CHECK_ROW)
        if self.stamp_time:
            draw_bits(y, int(time.time() * 1000) & 0xFFFFFF, row=1)
        frame = VideoFrame.from_ndarray(y, format="yuv420p")
        frame.pts = int(n * VIDEO_CLOCK / self.fps)
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


def draw_bits(y: np.ndarray[Any, Any], value: int, row: int) -> None:
    top = row * BLOCK
    for bit in range(BITS):
        level = 235 if (value >> bit) & 1 else 16
        y[top : top + BLOCK, bit * BLOCK : (bit + 1) * BLOCK] = level


# Blocks are drawn at 16 (0) and 235 (1); a block whose mean lies between these bounds is
# neither, as in a picture the decoder could not reconstruct (grey where a lost reference
# frame should have been).
DARK_BELOW, LIGHT_ABOVE = 80.0, 176.0


def read_bits(frame: VideoFrame, row: int = 0) -> int | None:
    """The number drawn in ``row``, or None when the picture does not show one clearly."""
    return _read_plane(frame.to_ndarray(format="yuv420p"), row)


def read_counter(frame: VideoFrame) -> int | None:
    """The frame counter, or None unless the picture also shows its complement. A picture
    decoded against a lost reference can show clear blocks that spell a wrong number (a CI
    run read 331 between 164 and 181); both rows wrong and agreeing is not seen."""
    y = frame.to_ndarray(format="yuv420p")
    counter = _read_plane(y, 0)
    if counter is None or _read_plane(y, CHECK_ROW) != counter ^ MASK:
        return None
    return counter


def _read_plane(y: np.ndarray[Any, Any], row: int) -> int | None:
    top = row * BLOCK
    value = 0
    for bit in range(BITS):
        block = y[top + 2 : top + BLOCK - 2, bit * BLOCK + 2 : (bit + 1) * BLOCK - 2]
        mean = float(block.mean())
        if mean > LIGHT_ABOVE:
            value |= 1 << bit
        elif mean >= DARK_BELOW:
            return None
    return value


class ToneAudioTrack(MediaStreamTrack):
    """A 440 Hz tone, 48 kHz mono, 20 ms frames, paced in real time."""

    kind = "audio"

    def __init__(self, frequency: float = 440.0) -> None:
        super().__init__()
        self.frequency = frequency
        self.samples = 0
        self._start: float | None = None

    async def recv(self) -> AudioFrame:
        if self._start is None:
            self._start = time.monotonic()
        target = self._start + self.samples / AUDIO_RATE
        delay = target - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        t = (np.arange(AUDIO_SAMPLES) + self.samples) / AUDIO_RATE
        pcm = (np.sin(2 * math.pi * self.frequency * t) * 8000).astype(np.int16)
        frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = AUDIO_RATE
        frame.pts = self.samples
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        self.samples += AUDIO_SAMPLES
        return frame
