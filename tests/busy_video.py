"""A camera with something to encode, for Chromium's fake capture.

Chromium's default fake camera (a moving pie on flat green) costs VP8 about 60 kbit/s at
any size, so an encoder never reaches its tier's bitrate and a test of tiers or budgets
would measure nothing. This writes a Y4M clip (``--use-file-for-fake-video-capture``, which
Chromium loops) with a band of texture that changes every frame over a moving gradient, so the
high tier fills its 700 kbit/s as a real camera does. Pure Python: no image library needed.
"""

from __future__ import annotations

import random
from pathlib import Path

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 20, 40


def write_busy_video(path: Path) -> Path:
    rng = random.Random(7)
    texture = rng.randbytes(WIDTH * HEIGHT + FRAMES * 4099)
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(FRAMES):
            out.write(b"FRAME\n")
            shifted = texture[i * 4099 : i * 4099 + WIDTH * HEIGHT]
            for row in range(HEIGHT):
                start = row * WIDTH
                if row < HEIGHT // 8:  # a band of texture that changes every frame
                    out.write(shifted[start : start + WIDTH])
                else:  # the bottom half: a gradient moving sideways
                    shade = bytes((x + i * 6 + row) & 0xFF for x in range(WIDTH))
                    out.write(shade)
            out.write(chroma)
            out.write(chroma)
    return path
