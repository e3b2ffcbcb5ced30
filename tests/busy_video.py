"""A camera with something to encode, for Chromium's fake capture.

Chromium's default fake camera (a moving pie on flat green) costs VP8 about 60 kbit/s at
any size, so an encoder never reaches its tier's bitrate and a test of tiers or budgets
would measure nothing. This writes a Y4M clip (``--use-file-for-fake-video-capture``, which
Chromium loops): a textured band sliding sideways over a moving gradient with a little grain,
so the tiers spend their bits as a real camera's would. Pure Python: no image library.
"""

from __future__ import annotations

import random
from pathlib import Path

WIDTH, HEIGHT, FPS, FRAMES = 640, 360, 20, 40
BAND = HEIGHT // 20  # rows of texture: enough for the high tier to spend its bits


def write_busy_video(path: Path) -> Path:
    rng = random.Random(7)
    texture = rng.randbytes(WIDTH * 2 * BAND)  # twice as wide: it slides sideways
    chroma = bytes([128]) * (WIDTH // 2 * HEIGHT // 2)
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{WIDTH} H{HEIGHT} F{FPS}:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(FRAMES):
            out.write(b"FRAME\n")
            shift = (i * 5) % WIDTH
            for row in range(HEIGHT):
                if row < BAND:  # a textured band sliding 5 pixels a frame
                    start = row * WIDTH * 2 + shift
                    out.write(texture[start : start + WIDTH])
                else:  # below it a gradient moving the other way, with a little grain
                    line = bytearray((x - i * 3 + row) & 0xFF for x in range(WIDTH))
                    for _ in range(8):
                        line[rng.randrange(WIDTH)] = rng.randrange(256)
                    out.write(line)
            out.write(chroma)
            out.write(chroma)
    return path
