"""Plain-Python versions of the trajectory kernels, written for clarity, not speed."""

from __future__ import annotations

import numpy as np


def stable_order(users: list[int], times: list[int]) -> list[int]:
    return sorted(range(len(users)), key=lambda row: (users[row], times[row], row))


def build_episodes(
    users: list[int],
    times: list[int],
    segments: list[int] | None,
    episode_ends: list[int] | None,
    session_gap_ms: int | None,
    window_end_ms: int | None,
    active_within_ms: int,
) -> dict[str, list[int]]:
    n = len(users)
    window_end = window_end_ms if window_end_ms is not None else max(times, default=0)
    starts: list[int] = []
    terminals = [0] * n
    truncations = [0] * n
    next_index = [-1] * n
    episode_open = False
    for i in range(n):
        if not episode_open:
            starts.append(i)
            episode_open = True
        last_of_user = i == n - 1 or users[i + 1] != users[i]
        if episode_ends is not None and episode_ends[i]:
            terminals[i] = 1
            episode_open = False
        elif (
            not last_of_user
            and session_gap_ms is not None
            and times[i + 1] - times[i] > session_gap_ms
        ):
            terminals[i] = 1
            episode_open = False
        elif not last_of_user and segments is not None and segments[i + 1] != segments[i]:
            truncations[i] = 1
            episode_open = False
        elif last_of_user:
            if window_end - times[i] < active_within_ms:
                truncations[i] = 1
            else:
                terminals[i] = 1
            episode_open = False
        else:
            next_index[i] = i + 1
    starts.append(n)
    return {
        "episode_starts": starts,
        "terminals": terminals,
        "truncations": truncations,
        "next_index": next_index,
    }


def history_windows(users: list[int], items: list[int], length: int) -> np.ndarray:
    windows = np.zeros((len(users), length), dtype=np.int64)
    for row in range(len(users)):
        previous = row - 1
        slot = 0
        while slot < length and previous >= 0 and users[previous] == users[row]:
            windows[row, slot] = items[previous]
            slot += 1
            previous -= 1
    return windows


def encode_ids(source: list[int], values: list[int]) -> tuple[list[int], list[int]]:
    vocabulary = sorted(set(source))
    code_of = {value: code + 1 for code, value in enumerate(vocabulary)}
    return [code_of.get(value, 0) for value in values], vocabulary
