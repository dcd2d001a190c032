"""Per-task critics of RMTL and their offline TD training.

Critic k estimates Q_k(s_t, a_k), the discounted sum of the task-k rewards -BCE(a_k, y_k) from
step t to the end of the session, when the backbone acts from t + 1 on. Rewards are never
positive, so the output unit is -softplus and Q_k <= 0.

Training follows the RMTL paper (Liu et al., WWW 2023). The pretrained backbone is frozen.
Replay actions are its predictions plus small Gaussian noise, clipped into (0, 1), and never
uniform random numbers. The target bootstraps from the target critics at the next logged step
of the session, with the backbone's noiseless prediction there as the action. The target
critics track the online critics by soft updates.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.nn import functional

from recrl.distributed import BatchPart
from recrl.nets.mtl import FeatureSpec, MultiTaskInput, dense_stack
from recrl.rmtl.config import CriticConfig
from recrl.rmtl.losses import PROBABILITY_EPSILON, task_rewards, td_targets

__all__ = ["CriticTrainer", "TaskCritics"]

logger = logging.getLogger(__name__)


class TaskCritics(nn.Module):
    """One Q network per task, with a shared bottom (the paper) or independent networks.

    Args:
        spec: input sizes of the dataset.
        tasks: K, the number of tasks.
        config: widths and sharing.
    """

    def __init__(self, spec: FeatureSpec, tasks: int, config: CriticConfig) -> None:
        super().__init__()
        self.tasks = tasks
        self.inputs = MultiTaskInput(spec, config.embedding_dim)
        bottoms = 1 if config.shared_bottom else tasks
        self.bottoms = nn.ModuleList(
            dense_stack(self.inputs.output_dim, config.bottom_dims, 0.0) for _ in range(bottoms)
        )
        width = config.bottom_dims[-1] if config.bottom_dims else self.inputs.output_dim
        last = config.head_dims[-1] if config.head_dims else width + 1
        self.heads = nn.ModuleList(
            nn.Sequential(*dense_stack(width + 1, config.head_dims, 0.0), nn.Linear(last, 1))
            for _ in range(tasks)
        )

    def forward(self, features: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Return Q_k(s, a_k) float [B, K], all <= 0.

        Args:
            features: a batch of states (see :class:`recrl.nets.MultiTaskInput`).
            actions: float [B, K], the task predictions a_k in [0, 1].
        """
        state = self.inputs(features)
        hidden = [bottom(state) for bottom in self.bottoms]
        values = [
            head(torch.cat([hidden[k % len(hidden)], actions[:, k : k + 1]], dim=1))
            for k, head in enumerate(self.heads)
        ]
        return -functional.softplus(torch.cat(values, dim=1))


class CriticTrainer:
    """TD training of :class:`TaskCritics` from logged sessions and fixed backbone actions.

    Args:
        spec: input sizes of the dataset.
        tasks: K.
        config: critic settings.
        generator: random generator of the replay-action noise.
    """

    def __init__(
        self,
        spec: FeatureSpec,
        tasks: int,
        config: CriticConfig,
        generator: torch.Generator | None = None,
    ) -> None:
        self.config = config
        self.generator = generator
        count = 2 if config.double_q else 1
        self.critics = nn.ModuleList(TaskCritics(spec, tasks, config) for _ in range(count))
        self.target_critics = copy.deepcopy(self.critics)
        self.target_critics.requires_grad_(False)
        self.optimizer = torch.optim.Adam(self.critics.parameters(), lr=config.learning_rate)
        # The modules that update() trains through: the critics themselves, or their
        # DistributedDataParallel wrappers under torchrun.
        self.trained_critics: nn.ModuleList = self.critics

    def to(self, device: str | torch.device) -> CriticTrainer:
        """Move the online and target critics to ``device``."""
        self.critics.to(device)
        self.target_critics.to(device)
        return self

    def replay_actions(
        self, predictions: torch.Tensor, part: BatchPart[torch.Tensor] | None = None
    ) -> torch.Tensor:
        """Add N(0, sigma^2) noise to the predictions [B, K] and clip the sum into (0, 1).

        With ``part``, the predictions are one rank's rows of a global batch. The noise of the
        whole global batch is drawn and the rank keeps its rows of it, so every rank advances
        the generator alike and the actions equal those of a single process.
        """
        shape = predictions.shape if part is None else (part.total, *predictions.shape[1:])
        noise = torch.randn(
            shape,
            generator=self.generator,
            device="cpu" if self.generator is not None else predictions.device,
        ).to(predictions.device)
        if part is not None:
            noise = noise[part.start : part.stop]
        noisy = predictions + self.config.action_noise * noise
        return noisy.clamp(PROBABILITY_EPSILON, 1.0 - PROBABILITY_EPSILON)

    @torch.no_grad()
    def compute_target(
        self,
        rewards: torch.Tensor,
        next_features: dict[str, torch.Tensor],
        next_actions: torch.Tensor,
        has_next: torch.Tensor,
    ) -> torch.Tensor:
        """Return y_k = r_k + gamma * min_j Q'_jk(s', a') [B, K]; session ends get y_k = r_k."""
        next_values = torch.stack(
            [target(next_features, next_actions) for target in self.target_critics]
        ).amin(0)
        return td_targets(rewards, next_values, has_next, self.config.gamma)

    def update(
        self,
        features: dict[str, torch.Tensor],
        predictions: torch.Tensor,
        labels: torch.Tensor,
        next_features: dict[str, torch.Tensor],
        next_predictions: torch.Tensor,
        has_next: torch.Tensor,
        part: BatchPart[torch.Tensor] | None = None,
    ) -> dict[str, float]:
        """Take one gradient step on a batch of transitions and return its losses.

        Args:
            features: states s_t of the batch.
            predictions: float [B, K], the frozen backbone's predictions at s_t.
            labels: float [B, K].
            next_features: states s_{t+1}; rows without a successor may hold any state.
            next_predictions: float [B, K], the backbone's predictions at s_{t+1}.
            has_next: bool [B].
            part: under torchrun, where the B rows lie in the global batch; the returned loss
                is then the global batch's.
        """
        # Replay actions and their rewards.
        actions = self.replay_actions(predictions, part)
        rewards = task_rewards(actions, labels)

        # TD targets from the target critics.
        targets = self.compute_target(rewards, next_features, next_predictions, has_next)

        # Mean squared TD error of every critic set and task.
        losses = torch.stack(
            [
                functional.mse_loss(critic(features, actions), targets)
                for critic in self.trained_critics
            ]
        )
        loss = losses.sum()

        # Update the online critics, then soft-update the targets.
        scale = 1.0 if part is None else part.loss_scale
        self.optimizer.zero_grad(set_to_none=True)
        (loss * scale).backward()  # type: ignore[no-untyped-call]
        self.optimizer.step()
        self.soft_update()
        value = float(loss.detach()) / len(self.critics)
        return {"loss/critic": value if part is None else part.global_mean(value)}

    @torch.no_grad()
    def soft_update(self) -> None:
        """Move each target parameter by tau toward its online parameter."""
        tau = self.config.tau
        for online, target in zip(self.critics.parameters(), self.target_critics.parameters()):
            target.lerp_(online, tau)

    @torch.no_grad()
    def values(self, features: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Return the weighting critic's values [B, K]: the minimum over critic sets."""
        return torch.stack([critic(features, actions) for critic in self.critics]).amin(0)
