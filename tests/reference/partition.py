"""Plain-Python versions of the partition kernels, written for clarity, not speed."""

from __future__ import annotations

MASK = (1 << 64) - 1
SHARD_SALT = 0x5348415244533031


def splitmix64(value: int) -> int:
    z = (value + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def shard_of(user: int, shards: int) -> int:
    return splitmix64((user & MASK) ^ SHARD_SALT) % shards


def partition_rows(users: list[int], shards: int) -> list[list[int]]:
    """Return, for each shard, the row numbers of its users in input order."""
    result: list[list[int]] = [[] for _ in range(shards)]
    for row, user in enumerate(users):
        result[shard_of(user, shards)].append(row)
    return result
