"""TSCAC against behaviour cloning on a bandit whose values are known exactly."""

from pathlib import Path

import numpy as np
import pytest
import torch

from recrl.data import InteractionLog, PreparedDataset, PrepareOptions, prepare
from recrl.tscac.agents import build_method
from recrl.tscac.config import BehaviourCloningConfig, TscacConfig
from recrl.tscac.data import Transitions

# A contextual bandit with known response means, logged by a known behaviour policy.
RESPONSES = ("watch_time", "is_click", "is_like", "is_hate")

#: Mean of each response [K, S contexts, A items]. Item 0 has the longest watch time but poor
#: interactions; item 1 is second on watch time and best on every interaction.
MEANS = np.array(
    [
        [[10.0, 7.0, 3.0, 4.0], [10.0, 7.0, 4.0, 3.0]],
        [[0.10, 0.60, 0.30, 0.30], [0.10, 0.60, 0.30, 0.30]],
        [[0.05, 0.30, 0.10, 0.10], [0.05, 0.30, 0.10, 0.10]],
        [[0.30, 0.02, 0.10, 0.10], [0.30, 0.02, 0.10, 0.10]],
    ]
)
BEHAVIOUR = np.array([[0.4, 0.2, 0.2, 0.2], [0.4, 0.2, 0.2, 0.2]])
CONTEXT_PROBABILITIES = np.array([0.5, 0.5])
ITEM_IDS = np.array([101, 102, 103, 104], dtype=np.int64)


def write_bandit(out: Path, rows: int = 4000, seed: int = 0) -> PreparedDataset:
    """Log ``rows`` one-step episodes of the bandit and prepare them into ``out``."""
    rng = np.random.default_rng(seed)
    contexts = rng.choice(2, size=rows, p=CONTEXT_PROBABILITIES)
    actions = np.array([rng.choice(4, p=BEHAVIOUR[s]) for s in contexts])
    watch = MEANS[0, contexts, actions] + rng.normal(0.0, 1.0, size=rows)
    responses = {"watch_time": np.maximum(watch, 0.0).astype(np.float32)}
    for k, name in enumerate(RESPONSES[1:], start=1):
        responses[name] = (rng.random(rows) < MEANS[k, contexts, actions]).astype(np.float32)
    log = InteractionLog(
        name="bandit",
        user_ids=np.arange(rows, dtype=np.int64),
        item_ids=ITEM_IDS[actions],
        timestamps=np.arange(rows, dtype=np.int64) * 3_600_000,
        responses=responses,
        categorical_features={"context": contexts.astype(np.int64) + 1},
        episode_ends=np.ones(rows, dtype=np.uint8),
    )
    return prepare(log, out, PrepareOptions(episodes="user"))


def true_values(
    dataset: PreparedDataset, policy: np.ndarray, candidate_items: tuple[int, ...]
) -> np.ndarray:
    """Return the exact value [K] of a policy given as probabilities [S, C] over candidates."""
    vocabulary = np.asarray(dataset["item_vocabulary"])
    actions = [int(np.flatnonzero(ITEM_IDS == vocabulary[j - 1])[0]) for j in candidate_items]
    means = MEANS[:, :, actions]
    return np.einsum("s,sc,ksc->k", CONTEXT_PROBABILITIES, policy, means)


def behaviour_values() -> np.ndarray:
    """Return the exact value [K] of the logging policy."""
    return np.einsum("s,sa,ksa->k", CONTEXT_PROBABILITIES, BEHAVIOUR, MEANS)


STEPS = 150
NETWORK = {"candidates": 4, "hidden_dims": (16,), "embedding_dim": 4, "action_dim": 4}


@pytest.fixture(autouse=True)
def single_thread():
    # Small models train fastest on one thread, and much faster on a busy machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def bandit(tmp_path_factory):
    dataset = write_bandit(tmp_path_factory.mktemp("bandit") / "prepared")
    spec = Transitions.build_spec(dataset, 4)
    return dataset, spec, Transitions(dataset, spec)


def train(method, transitions, steps, seed):
    rows = transitions.split_rows("train")
    generator = np.random.default_rng(seed)
    for stage in method.stages:
        method.set_stage(stage)
        for _ in range(steps):
            method.update(transitions.batch(rows[generator.integers(0, len(rows), 64)]))
    method.eval()


def policy_table(method, transitions, dataset):
    """Probabilities [2 contexts, 4 candidates] of the method's policy."""
    contexts = np.asarray(dataset["row_categorical"])[:, 0]
    rows = np.array([np.flatnonzero(contexts == code)[0] for code in (1, 2)])
    batch = transitions.batch(rows)
    with torch.no_grad():
        log_probabilities = method.policy_log_probabilities(
            batch.state(), batch.candidates, batch.mask
        )
    return log_probabilities[:, :4].exp().numpy()


def test_tscac_beats_behaviour_cloning_within_constraints(bandit):
    dataset, spec, transitions = bandit
    torch.manual_seed(0)
    cloning = build_method("behaviour_cloning", spec, BehaviourCloningConfig(**NETWORK))
    train(cloning, transitions, steps=STEPS, seed=0)
    torch.manual_seed(0)
    config = TscacConfig(
        **NETWORK,
        lambdas=0.3,
        default_discount=0.0,
        critic_learning_rate=3e-3,
        actor_learning_rate=3e-3,
        behaviour_cloning_weight=0.1,
    )
    tscac = build_method("tscac", spec, config)
    train(tscac, transitions, steps=STEPS, seed=0)

    logged = behaviour_values()
    cloning_values = true_values(
        dataset, policy_table(cloning, transitions, dataset), spec.candidate_items
    )
    tscac_values = true_values(
        dataset, policy_table(tscac, transitions, dataset), spec.candidate_items
    )
    assert tscac_values[0] > cloning_values[0] + 0.1
    assert tscac_values[0] > logged[0]
    for k, name in enumerate(RESPONSES[1:], start=1):
        if name == "is_hate":
            assert tscac_values[k] <= logged[k], name
        else:
            assert tscac_values[k] >= logged[k], name
