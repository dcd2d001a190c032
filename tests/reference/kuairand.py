"""Plain-Python KuaiRand response conversions, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def watch_responses(play_ms: list[int], duration_ms: list[int]) -> dict[str, object]:
    watch_time = []
    watch_ratio = []
    duration_zero = []
    negative = 0
    zero = 0
    for play, duration in zip(play_ms, duration_ms):
        if play < 0:
            negative += 1
            play = 0
        watch_time.append(np.float32(play / 1000.0))
        if duration <= 0:
            zero += 1
            duration_zero.append(1)
            watch_ratio.append(np.float32(0.0))
        else:
            duration_zero.append(0)
            # Both converted to double first, as NumPy divides int64 arrays.
            watch_ratio.append(np.float32(float(play) / float(duration)))
    return {
        "watch_time": np.asarray(watch_time, dtype=np.float32),
        "watch_ratio": np.asarray(watch_ratio, dtype=np.float32),
        "duration_zero": np.asarray(duration_zero, dtype=np.uint8),
        "negative_play_rows": negative,
        "zero_duration_rows": zero,
    }
