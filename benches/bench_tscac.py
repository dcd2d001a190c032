"""Stage-one TSCAC training steps: one batched critic ensemble against a loop over critics.

Both sides run the same stage-one update (TD targets, critic loss, critic step, the
advantage-weighted actor losses, actor step, soft update of the targets) from the same initial
weights. recrl evaluates the K critics as one ``EnsembleMLP``, with one batched product per
layer and one optimizer. The reference style keeps K separate critic modules, each with its own
target network and optimizer, and calls them one after another in a Python loop.

Run: python benches/bench_tscac.py [--steps 20] [--batch 512] [--state-dim 1000]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from recrl.tscac.agents import Tscac, _logged, _soft_update
from recrl.tscac.config import TscacConfig
from recrl.tscac.data import Batch, ProblemSpec

RESPONSES = (
    "watch_time",
    "is_click",
    "is_like",
    "is_follow",
    "is_comment",
    "is_forward",
    "is_hate",
)


class SeparateCritic(nn.Module):
    """One critic Q(s, j) = u(s) + <g(s), e(j)> as its own module (member m of an ensemble)."""

    def __init__(self, ensemble: nn.Module, member: int) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(ensemble.encoder)
        layers: list[nn.Module] = []
        for index, layer in enumerate(ensemble.heads.layers):
            linear = nn.Linear(layer.input_dim, layer.output_dim)
            with torch.no_grad():
                linear.weight.copy_(layer.weight[member].T)
                linear.bias.copy_(layer.bias[member, 0])
            layers.append(linear)
            if index < len(ensemble.heads.layers) - 1:
                layers.append(nn.ReLU())
        self.head = nn.Sequential(*layers)
        self.item_embeddings = nn.Parameter(ensemble.item_embeddings[member].detach().clone())

    def forward(self, numeric, categorical, history, candidates):
        heads = self.head(self.encoder(numeric, categorical, history))
        embedded = self.item_embeddings[candidates]
        return heads[:, :1] + torch.einsum("bd,bcd->bc", heads[:, 1:], embedded)


class LoopTscac(Tscac):
    """TSCAC stage one with one critic module, target and optimizer per response."""

    def __init__(self, spec: ProblemSpec, config: TscacConfig, start: Tscac) -> None:
        super().__init__(spec, config)
        self.load_state_dict(start.state_dict())
        members = range(len(spec.reward_names))
        self.loop_critics = nn.ModuleList(SeparateCritic(start.critics, m) for m in members)
        self.loop_targets = nn.ModuleList(SeparateCritic(start.target_critics, m) for m in members)
        self.loop_optimizers = [
            torch.optim.Adam(critic.parameters(), lr=config.critic_learning_rate)
            for critic in self.loop_critics
        ]

    def compute_targets(self, batch: Batch) -> torch.Tensor:
        with torch.no_grad():
            next_items = _logged(batch.next_candidates, batch.next_actions).unsqueeze(1)
            rewards = batch.rewards.T
            targets = []
            for m, target in enumerate(self.loop_targets):
                value = target(*batch.next_state(), next_items).squeeze(-1)
                targets.append(rewards[m] + self.discounts[m] * value * batch.bootstrap)
            return torch.stack(targets)

    def compute_critic_loss(self, batch: Batch, targets: torch.Tensor):
        losses, values = [], []
        for m, critic in enumerate(self.loop_critics):
            value = critic(*batch.state(), batch.candidates)
            error = (_logged(value, batch.actions) - targets[m]).pow(2) * batch.valid
            losses.append(error.sum() / batch.valid.sum().clamp(min=1.0))
            values.append(value.detach())
        self.loop_losses = losses
        return torch.stack(losses).sum(), torch.stack(values)

    def update_critics(self, loss: torch.Tensor) -> None:
        for critic_loss, optimizer in zip(self.loop_losses, self.loop_optimizers):
            optimizer.zero_grad(set_to_none=True)
            critic_loss.backward()
            optimizer.step()

    def soft_update(self) -> None:
        for target, critic in zip(self.loop_targets, self.loop_critics):
            _soft_update(target, critic, self.critic_config.target_update_rate)


def critic_step(method: Tscac, batch: Batch) -> None:
    """Run the critic half of a stage-one update: targets, TD loss, step, soft update."""
    targets = method.compute_targets(batch)
    loss, _ = method.compute_critic_loss(batch, targets)
    method.update_critics(loss)
    method.soft_update()


def make_batch(spec: ProblemSpec, batch: int, generator: torch.Generator) -> Batch:
    count = len(spec.candidate_items)
    candidates = torch.tensor(spec.candidate_items).expand(batch, count)
    logged = torch.randint(1, spec.item_vocabulary, (batch, 1), generator=generator)
    candidates = torch.cat([candidates, logged], dim=1)
    mask = torch.ones_like(candidates, dtype=torch.bool)
    actions = torch.randint(0, count + 1, (batch,), generator=generator)
    mask[:, count] = actions == count

    def state():
        return (
            torch.randn(batch, spec.numeric_dim, generator=generator),
            torch.zeros(batch, 0, dtype=torch.int64),
            torch.zeros(batch, 10, dtype=torch.int64),
        )

    numeric, categorical, history = state()
    next_numeric, next_categorical, next_history = state()
    rewards = torch.rand(batch, len(spec.reward_names), generator=generator)
    return Batch(
        numeric,
        categorical,
        history,
        next_numeric,
        next_categorical,
        next_history,
        candidates,
        mask,
        actions,
        candidates,
        mask,
        actions,
        rewards,
        rewards,
        torch.ones(batch),
        torch.ones(batch),
        torch.arange(batch),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--state-dim", type=int, default=1000)
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--candidates", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    spec = ProblemSpec(
        numeric_dim=args.state_dim,
        cardinalities=(),
        item_vocabulary=2000,
        reward_names=RESPONSES,
        reward_scales=(1.0,) * len(RESPONSES),
        reward_means=(0.5,) * len(RESPONSES),
        candidate_items=tuple(range(1, args.candidates + 1)),
    )
    config = TscacConfig(
        hidden_dims=tuple(args.hidden), batch_size=args.batch, candidates=args.candidates
    )
    torch.manual_seed(0)
    ensemble = Tscac(spec, config)
    loop = LoopTscac(spec, config, ensemble)
    batches = [
        make_batch(spec, args.batch, torch.Generator().manual_seed(i)) for i in range(args.steps)
    ]

    # Equal losses from the same initial weights, step by step.
    checked = 5
    for batch in batches[:checked]:
        ours, theirs = ensemble.update(batch), loop.update(batch)
        for key in ("loss/critic", "loss/actor"):
            assert abs(ours[key] - theirs[key]) <= 1e-5 * max(1.0, abs(theirs[key])), (
                key,
                ours,
                theirs,
            )
    print(f"losses of {checked} steps equal to 1e-5 (relative): yes")

    # Timing, the two sides interleaved so that machine load affects both alike.
    times = {"ensemble": [], "loop": []}
    for batch in batches:
        for name, method in (("ensemble", ensemble), ("loop", loop)):
            started = time.perf_counter()
            method.update(batch)
            times[name].append(time.perf_counter() - started)
    # The critic part alone: targets, TD loss, critic step and soft update.
    for batch in batches:
        for name, method in (("ensemble", ensemble), ("loop", loop)):
            started = time.perf_counter()
            critic_step(method, batch)
            times.setdefault(f"{name}, critics only", []).append(time.perf_counter() - started)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(
        f"stage-one step, batch {args.batch}, state dim {args.state_dim}, {len(RESPONSES)} "
        f"critics, hidden {args.hidden}, {args.candidates} candidates, {args.threads} thread(s)"
    )
    for name, median in medians.items():
        print(f"  {name:24s} {1.0 / median:8.2f} steps/s  (median {1000 * median:.1f} ms)")
    print(f"  ratio, full step         {medians['loop'] / medians['ensemble']:.2f}x")
    ratio = medians["loop, critics only"] / medians["ensemble, critics only"]
    print(f"  ratio, critics only      {ratio:.2f}x")


if __name__ == "__main__":
    main()
