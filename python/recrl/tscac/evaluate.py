"""Off-policy evaluation of trained methods on a split, against a behaviour policy.

The behaviour policy is known exactly for random-exposure logs (KuaiRand ``is_rand = 1``:
uniform over the candidate set) and is otherwise a behaviour-cloning actor trained on the
training split only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import torch

from recrl.progress import progress_bar
from recrl.tscac.data import Batch, Transitions
from recrl.tscac.off_policy import estimate_policy_values

__all__ = ["Evaluator", "selection_score"]

logger = logging.getLogger(__name__)

LogProbabilityFunction = Callable[
    [tuple[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor
]


class Evaluator:
    """Estimate every response's value of a policy on the rows of a split.

    Args:
        transitions: the dataset's transitions.
        behaviour: log pi_beta over candidates, or None for the uniform policy of a random log.
        cap: weight cap of NCIS and per-decision IS.
        discount: gamma of the per-decision estimate.
        batch_size: rows per forward pass.
    """

    def __init__(
        self,
        transitions: Transitions,
        behaviour: LogProbabilityFunction | None,
        *,
        cap: float = 10.0,
        discount: float = 0.9,
        batch_size: int = 2048,
    ) -> None:
        self.transitions = transitions
        self.cap = cap
        self.discount = discount
        self.batch_size = batch_size
        starts = np.asarray(transitions.dataset["episode_starts"])
        self.episode_ids = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
        self.behaviour_log_probabilities: dict[str, npt.NDArray[np.float64]] = {}
        for split in ("train", "validation", "test"):
            rows = transitions.split_rows(split)
            if behaviour is None:
                self.behaviour_log_probabilities[split] = self._uniform(rows)
            else:
                self.behaviour_log_probabilities[split] = self.logged_log_probabilities(
                    behaviour, rows
                )

    def _uniform(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        sizes = [
            self.transitions.batch(rows[i : i + self.batch_size]).mask.sum(1).cpu().numpy()
            for i in range(0, len(rows), self.batch_size)
        ]
        return -np.log(np.concatenate(sizes).astype(np.float64))

    def logged_log_probabilities(
        self, policy: LogProbabilityFunction, rows: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """Return log pi(a_t|s_t) [R] of the logged items of ``rows`` [R]."""
        parts = []
        with torch.no_grad():
            starts = range(0, len(rows), self.batch_size)
            for start in progress_bar(starts, description="evaluate", unit="batch", leave=False):
                batch: Batch = self.transitions.batch(rows[start : start + self.batch_size])
                log_probabilities = policy(batch.state(), batch.candidates, batch.mask)
                logged = log_probabilities.gather(1, batch.actions.unsqueeze(1)).squeeze(1)
                parts.append(logged.double().cpu().numpy())
        return np.concatenate(parts) if parts else np.zeros(0)

    def estimate(self, policy: LogProbabilityFunction, split: str) -> dict[str, np.ndarray]:
        """Return every estimator's per-response values [K] of ``policy`` on ``split``."""
        rows = self.transitions.split_rows(split)
        return estimate_policy_values(
            self.logged_log_probabilities(policy, rows),
            self.behaviour_log_probabilities[split],
            self.transitions.raw_rewards[torch.as_tensor(rows, device=self.transitions.device)]
            .cpu()
            .numpy(),
            self.episode_ids[rows],
            cap=self.cap,
            discount=self.discount,
        )


def selection_score(
    estimates: np.ndarray, logged: np.ndarray, main: int, signs: list[float], penalty: float = 10.0
) -> float:
    """Score a checkpoint for model selection: relative main gain minus constraint violations.

    Args:
        estimates: float [K] estimated values.
        logged: float [K] logged means of the same split (the constraint bounds).
        main: column of the main response.
        signs: K signs, -1 where lower is better.
        penalty: weight of the summed relative violations.
    """
    scale = np.maximum(np.abs(logged), 1e-8)
    relative = (estimates - logged) / scale
    violations = [
        max(0.0, -sign * change)
        for k, (sign, change) in enumerate(zip(signs, relative))
        if k != main
    ]
    return float(relative[main] - penalty * sum(violations))
