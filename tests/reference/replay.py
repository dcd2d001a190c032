"""Reference model of the replay buffer: a list of every slot ever written, in write order.

Write ``w`` lands in slot ``w % capacity`` and is live while ``w >= written - capacity``. A step
is sampleable when it and the write after it are both live, and its next observation is the
observation of that next write (the next step of the episode, or the boundary write that stores
the final next observation).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def find_prefix(values: list[float], mass: float) -> int:
    """Return the first i with mass < values[0] + ... + values[i]."""
    cumulative = 0.0
    for index, value in enumerate(values):
        cumulative += value
        if mass < cumulative:
            return index
    raise ValueError(f"mass {mass} is not below the total {cumulative}")


@dataclass
class Write:
    """One slot write: a step, or the boundary write that stores a final next observation."""

    observation: np.ndarray
    is_step: bool
    episode: int
    step: int


@dataclass
class ReferenceReplay:
    """Replay of every write, with sampleable slots and next observations by definition."""

    capacity: int
    writes: list[Write] = field(default_factory=list)
    episode: int = 0
    step: int = 0

    def extend(
        self,
        observations: np.ndarray,
        next_observations: np.ndarray,
        terminals: np.ndarray,
        truncations: np.ndarray,
    ) -> None:
        for row in range(len(observations)):
            self.writes.append(Write(observations[row], True, self.episode, self.step))
            self.step += 1
            if terminals[row] or truncations[row]:
                self.writes.append(Write(next_observations[row], False, self.episode, self.step))
                self.episode += 1
                self.step = 0

    def _live(self, write: int) -> bool:
        return len(self.writes) - self.capacity <= write < len(self.writes)

    def sampleable(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Map slot -> (observation, next observation) of every sampleable step."""
        result = {}
        for write, record in enumerate(self.writes):
            if record.is_step and self._live(write) and self._live(write + 1):
                result[write % self.capacity] = (
                    record.observation,
                    self.writes[write + 1].observation,
                )
        return result

    def windows(self, length: int) -> set[tuple[int, ...]]:
        """Every run of ``length`` sampleable steps of one episode, as slot tuples."""
        result = set()
        for start in range(len(self.writes)):
            run = range(start, start + length)
            if all(
                write + 1 < len(self.writes)
                and self._live(write)
                and self.writes[write].is_step
                and self.writes[write].episode == self.writes[start].episode
                for write in run
            ):
                result.add(tuple(write % self.capacity for write in run))
        return result


def prioritized_probabilities(priorities: np.ndarray, alpha: float) -> np.ndarray:
    """P(i) = p_i^alpha / sum_j p_j^alpha over the slots with positive priority."""
    mass = np.where(priorities > 0, priorities**alpha, 0.0)
    return mass / mass.sum()


def importance_weights(probabilities: np.ndarray, slots: np.ndarray, beta: float) -> np.ndarray:
    """w_i = (N P(i))^-beta / max_j (N P(j))^-beta, with j over every slot with P(j) > 0."""
    live = probabilities[probabilities > 0]
    count = len(live)
    weights = (count * probabilities[slots]) ** -beta
    return weights / ((count * live.min()) ** -beta)
