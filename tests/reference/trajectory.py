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


def side_rows(
    table_ids: list[int],
    entity_ids: list[int],
    train: list[bool],
    shared_counts: tuple[list[int], list[int]] | None,
) -> dict[str, object]:
    sorted_ids = sorted(table_ids)
    code_of = {value: code + 1 for code, value in enumerate(sorted_ids)}
    codes = [code_of.get(value, 0) for value in entity_ids]
    if shared_counts is None:
        train_counts = [0] * (len(sorted_ids) + 1)
        all_counts = [0] * (len(sorted_ids) + 1)
        for code, is_train in zip(codes, train):
            all_counts[code] += 1
            train_counts[code] += int(is_train)
    else:
        train_counts, all_counts = shared_counts
    used = [code for code in range(1, len(sorted_ids) + 1) if all_counts[code] > 0]
    renumbered = {code: rank + 1 for rank, code in enumerate(used)}
    rows = [renumbered.get(code, 0) for code in codes]
    return {
        "rows": rows,
        "used": [table_ids.index(sorted_ids[code - 1]) for code in used],
        "train_counts": [train_counts[code] for code in [0, *used]],
        "all_counts": [all_counts[code] for code in [0, *used]],
        "matched": sum(1 for row in rows if row),
    }


def sort_episodes(
    users: list[int],
    times: list[int],
    segments: list[int] | None,
    episode_ends: list[int] | None,
    session_gap_ms: int | None,
    window_end_ms: int | None,
    active_within_ms: int,
) -> dict[str, list[int]]:
    order = stable_order(users, times)
    sorted_users = [users[row] for row in order]
    sorted_times = [times[row] for row in order]
    sorted_segments = None if segments is None else [segments[row] for row in order]
    sorted_ends = None if episode_ends is None else [episode_ends[row] for row in order]
    result = {"order": order, "users": sorted_users, "times": sorted_times}
    if sorted_segments is not None:
        result["segments"] = sorted_segments
    episodes = build_episodes(
        sorted_users,
        sorted_times,
        sorted_segments,
        sorted_ends,
        session_gap_ms,
        window_end_ms,
        active_within_ms,
    )
    return {**result, **episodes}


def take_columns(columns: list[list[float]], order: list[int]) -> np.ndarray:
    matrix = np.zeros((len(order), len(columns)), dtype=np.float32)
    for i, row in enumerate(order):
        for k, column in enumerate(columns):
            matrix[i, k] = column[row]
    return matrix


def build_episodes_vectorised(
    users: np.ndarray,
    times: np.ndarray,
    segments: np.ndarray | None,
    episode_ends: np.ndarray | None,
    session_gap_ms: int | None,
    window_end_ms: int | None,
    active_within_ms: int,
) -> dict[str, np.ndarray]:
    """:func:`build_episodes` in whole-array NumPy steps, for logs too long for the loop."""
    n = len(users)
    window_end = window_end_ms if window_end_ms is not None else int(times.max(initial=0))
    last_of_user = np.ones(n, dtype=bool)
    last_of_user[:-1] = users[1:] != users[:-1]
    same_user_next = ~last_of_user[:-1]
    flagged = np.zeros(n, dtype=bool) if episode_ends is None else episode_ends != 0
    session_end = np.zeros(n, dtype=bool)
    if session_gap_ms is not None:
        session_end[:-1] = same_user_next & (np.diff(times) > session_gap_ms)
    segment_change = np.zeros(n, dtype=bool)
    if segments is not None:
        segment_change[:-1] = same_user_next & (segments[1:] != segments[:-1])
    terminal = flagged | session_end
    truncated = ~terminal & segment_change
    user_end = ~terminal & ~segment_change & last_of_user
    may_still_be_active = window_end - times < active_within_ms
    truncated |= user_end & may_still_be_active
    terminal |= user_end & ~may_still_be_active
    ends = terminal | truncated
    return {
        "episode_starts": np.concatenate([[0], np.flatnonzero(ends) + 1]).astype(np.int64),
        "terminals": terminal.astype(np.uint8),
        "truncations": truncated.astype(np.uint8),
        "next_index": np.where(ends, -1, np.arange(1, n + 1)).astype(np.int64),
    }
