"""The counter drawn into the synthetic video reads back, and a grey picture, or one whose
check row disagrees, reads as none."""

from __future__ import annotations

import numpy as np
from av import VideoFrame

from rooms.synthetic import CHECK_ROW, MASK, CounterVideoTrack, draw_bits, read_bits, read_counter


def picture(fill: int, value: int | None = None) -> VideoFrame:
    y = np.full((240 * 3 // 2, 320), fill, dtype=np.uint8)
    if value is not None:
        draw_bits(y, value, row=0)
    return VideoFrame.from_ndarray(y, format="yuv420p")


def test_drawn_counter_reads_back() -> None:
    for value in (0, 1, 83, 0xABCDEF, 0xFFFFFF):
        assert read_bits(picture(128, value)) == value


def test_a_picture_without_a_clear_counter_reads_as_none() -> None:
    # What a decoder shows where a lost reference frame should have been: grey, not 0.
    assert read_bits(picture(128)) is None
    # One block half-way between the two levels is enough to distrust the whole number.
    y = np.full((240 * 3 // 2, 320), 16, dtype=np.uint8)
    y[0:8, 40:48] = 128
    assert read_bits(VideoFrame.from_ndarray(y, format="yuv420p")) is None


async def test_the_track_counter_reads_back_with_its_check_and_a_wrong_check_does_not() -> None:
    track = CounterVideoTrack(width=256, height=144, fps=30)
    for n in range(3):
        assert read_counter(await track.recv()) == n
    # Clear blocks that spell a number, as a picture decoded against a lost reference can
    # show: without the counter's complement in the check row it is not read.
    y = picture(128, 331).to_ndarray(format="yuv420p")
    assert read_bits(VideoFrame.from_ndarray(y, format="yuv420p")) == 331
    draw_bits(y, 181 ^ MASK, row=CHECK_ROW)
    assert read_counter(VideoFrame.from_ndarray(y, format="yuv420p")) is None
    draw_bits(y, 331 ^ MASK, row=CHECK_ROW)
    assert read_counter(VideoFrame.from_ndarray(y, format="yuv420p")) == 331
