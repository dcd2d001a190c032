"""Stage-one TSCAC training steps: recrl's ensembles against a loop over separate modules.

Both sides run the same stage-one update (TD targets, critic loss, critic step, the
advantage-weighted actor losses, actor step, soft update of the targets) from the same initial
weights. recrl evaluates the K critics as one ensemble and the I + 1 stage-one actors as another,
each with one batched product per layer and one fused Adam. It scores the global candidates,
which every row shares, with one product per member. The reference style keeps K critic modules,
K target modules and I + 1 actor modules, each with its own Adam, calls them one after another in
a Python loop, and looks up the embeddings of every row's candidates.

Run: python benches/bench_tscac.py [--steps 20] [--repeats 3] [--batch 512] [--state-dim 1000]
"""

from __future__ import annotations

import argparse
import copy
import time

import numpy as np
import torch
from torch import nn

from recrl.tscac.agents import Tscac, _advantages, _logged
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


class ReferenceStageOne:
    """TSCAC stage one in the reference style: separate modules and optimizers, Python loops.

    Copies the weights of ``start``: K critics and K targets, I interaction actors and the
    behaviour actor, each a module with its own Adam.
    """

    def __init__(self, config: TscacConfig, start: Tscac) -> None:
        self.config = config
        members = range(start.critics.members)
        self.critics = [SeparateCritic(start.critics, m) for m in members]
        self.targets = [SeparateCritic(start.target_critics, m) for m in members]
        self.critic_optimizers = [
            torch.optim.Adam(critic.parameters(), lr=config.critic_learning_rate)
            for critic in self.critics
        ]
        ensemble = start.stage_one_actors
        self.actors = [ensemble.member(m) for m in range(ensemble.members - 1)]
        self.behaviour = ensemble.member(ensemble.members - 1)
        self.actor_optimizers = [
            torch.optim.Adam(actor.parameters(), lr=config.actor_learning_rate)
            for actor in [*self.actors, self.behaviour]
        ]
        self.discounts = start.discounts.clone()
        self.signs = start.signs.clone()
        self.interaction_members = list(start.interaction_members)

    def critic_step(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Train every critic on its TD target; return the summed loss and Q [K, B, C]."""
        with torch.no_grad():
            next_items = _logged(batch.next_candidates, batch.next_actions).unsqueeze(1)
            rewards = batch.rewards.T
            targets = []
            for m, target in enumerate(self.targets):
                value = target(*batch.next_state(), next_items).squeeze(-1)
                targets.append(rewards[m] + self.discounts[m] * value * batch.bootstrap)
        losses, values = [], []
        for m, (critic, optimizer) in enumerate(zip(self.critics, self.critic_optimizers)):
            value = critic(*batch.state(), batch.candidates)
            error = (_logged(value, batch.actions) - targets[m]).pow(2) * batch.valid
            loss = error.sum() / batch.valid.sum().clamp(min=1.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            values.append(value.detach())
        return torch.stack(losses).sum(), torch.stack(values)

    def soft_update(self) -> None:
        rate = self.config.target_update_rate
        with torch.no_grad():
            for target, critic in zip(self.targets, self.critics):
                for target_parameter, parameter in zip(target.parameters(), critic.parameters()):
                    target_parameter.lerp_(parameter, rate)

    def update(self, batch: Batch) -> dict[str, float]:
        critic_loss, values = self.critic_step(batch)
        state = batch.state()
        log_probabilities = torch.stack(
            [
                actor.masked_log_probabilities(
                    actor.preferences(*state), batch.candidates, batch.mask
                )
                for actor in self.actors
            ]
        )
        advantages = _advantages(
            values[self.interaction_members], log_probabilities, batch.actions
        ) * self.signs.unsqueeze(1)
        logged = _logged(log_probabilities, batch.actions)
        behaviour = _logged(
            self.behaviour.masked_log_probabilities(
                self.behaviour.preferences(*state), batch.candidates, batch.mask
            ),
            batch.actions,
        )
        config = self.config
        if config.offline_correction == "importance_ratio":
            ratios = (logged.detach() - behaviour.detach()).exp().clamp(max=config.importance_clip)
            loss = -(ratios * advantages * logged).mean(1).sum()
        else:
            loss = -(advantages * logged).mean(1).sum()
            loss = loss - config.behaviour_cloning_weight * logged.mean(1).sum()
        actor_loss = loss - behaviour.mean()
        for optimizer in self.actor_optimizers:
            optimizer.zero_grad(set_to_none=True)
        actor_loss.backward()
        for optimizer in self.actor_optimizers:
            optimizer.step()
        self.soft_update()
        return {"loss/critic": float(critic_loss), "loss/actor": float(actor_loss.detach())}


def recrl_critic_step(method: Tscac, batch: Batch) -> None:
    """Run the critic half of a stage-one update: targets, TD loss, step, soft update."""
    targets = method.compute_targets(batch)
    loss, _ = method.compute_critic_loss(batch, targets)
    method.update_critics(loss)
    method.soft_update()


def reference_critic_step(method: ReferenceStageOne, batch: Batch) -> None:
    """Run the same critic half in the reference style."""
    method.critic_step(batch)
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
    # The default widths are the library's (TscacConfig.hidden_dims).
    parser.add_argument("--hidden", type=int, nargs="+", default=list(TscacConfig().hidden_dims))
    parser.add_argument("--candidates", type=int, default=150)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
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
    loop = ReferenceStageOne(config, ensemble)
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

    # Timing, the two sides interleaved step by step so that machine load affects both alike,
    # repeated; each repeat reports medians over the batches.
    print(
        f"stage-one step, batch {args.batch}, state dim {args.state_dim}, {len(RESPONSES)} "
        f"critics, hidden {args.hidden}, {args.candidates} candidates, {args.threads} thread(s)"
    )
    sides = {"recrl": (ensemble, ensemble.update, lambda b: recrl_critic_step(ensemble, b))}
    sides["reference"] = (loop, loop.update, lambda b: reference_critic_step(loop, b))
    ratios: dict[str, list[float]] = {"full step": [], "critics only": []}
    for repeat in range(args.repeats):
        times: dict[str, list[float]] = {}
        for part, index in (("full step", 1), ("critics only", 2)):
            for batch in batches:
                for side, functions in sides.items():
                    started = time.perf_counter()
                    functions[index](batch)
                    times.setdefault(f"{side}, {part}", []).append(time.perf_counter() - started)
        medians = {name: float(np.median(values)) for name, values in times.items()}
        print(f"repeat {repeat + 1}")
        for name, median in medians.items():
            print(f"  {name:26s} {1.0 / median:6.2f} steps/s  (median {1000 * median:.1f} ms)")
        for part in ratios:
            ratio = medians[f"reference, {part}"] / medians[f"recrl, {part}"]
            ratios[part].append(ratio)
            print(f"  ratio, {part:19s} {ratio:.2f}x")
    for part, values in ratios.items():
        print(f"ratio, {part}, over repeats: " + ", ".join(f"{v:.2f}x" for v in values))


if __name__ == "__main__":
    main()
