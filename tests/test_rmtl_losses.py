import math

import numpy as np
import pytest
import torch

from recrl.errors import InvalidArgumentError, ShapeError
from recrl.evaluation.metrics import (
    UndefinedMetricWarning,
    auc,
    grouped_auc,
    logloss,
    session_logloss,
    task_metrics,
)
from recrl.nets import FeatureSpec
from recrl.rmtl import (
    CriticConfig,
    CriticTrainer,
    binary_cross_entropy,
    task_rewards,
    task_weights,
    td_targets,
    weighted_task_loss,
)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


Q_VALUES = torch.tensor([[-1.0, -0.5], [0.0, -2.0]])
LABELS = torch.tensor([[1.0, 0.0], [0.0, 1.0]])


def test_omega_rmtl_hand_computed():
    weights = task_weights(Q_VALUES, LABELS, weight_scale=0.7)
    # omega = 1 - 0.7 * Q
    torch.testing.assert_close(weights, torch.tensor([[1.7, 1.35], [1.0, 2.4]]))


def test_omega_ablations_hand_computed():
    constant = task_weights(Q_VALUES, LABELS, 0.7, "cw")
    gated = task_weights(Q_VALUES, LABELS, 0.7, "wl")
    plain = task_weights(Q_VALUES, LABELS, 0.7, "nlc")

    torch.testing.assert_close(constant, torch.ones(2, 2))
    torch.testing.assert_close(gated, torch.tensor([[1.7, 1.0], [1.0, 2.4]]))
    torch.testing.assert_close(plain, torch.tensor([[1.0, 0.5], [0.0, 2.0]]))


def test_omega_is_detached():
    q_values = Q_VALUES.clone().requires_grad_(True)
    weights = task_weights(q_values, LABELS, 0.7)
    assert not weights.requires_grad


def test_omega_rejects_unknown_weighting():
    with pytest.raises(InvalidArgumentError, match="weighting"):
        task_weights(Q_VALUES, LABELS, 0.7, "uniform")


def test_rewards_are_negative_bce():
    actions = torch.tensor([[0.8, 0.8], [0.5, 1.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 0.0]])

    rewards = task_rewards(actions, labels)

    expected = torch.tensor([[math.log(0.8), math.log(0.2)], [math.log(0.5), math.log(1e-7)]])
    torch.testing.assert_close(rewards, expected)


def test_bce_rejects_mismatched_shapes():
    with pytest.raises(ShapeError, match="labels: expected shape"):
        binary_cross_entropy(torch.zeros(3, 2), torch.zeros(3, 1))


def test_weighted_loss_is_mean_over_tasks():
    probabilities = torch.tensor([[0.8, 0.5], [0.5, 0.2]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    weights = torch.tensor([[2.0, 1.0], [1.0, 3.0]])

    loss = weighted_task_loss(probabilities, labels, weights)

    task_ctr = (2 * -math.log(0.8) + 1 * -math.log(0.5)) / 2
    task_ctcvr = (1 * -math.log(0.5) + 3 * -math.log(0.8)) / 2
    assert float(loss) == pytest.approx((task_ctr + task_ctcvr) / 2, rel=1e-6)


def test_td_targets_drop_bootstrap_at_session_end():
    rewards = torch.tensor([[-0.1, -0.2], [-0.3, -0.4]])
    next_q = torch.tensor([[-1.0, -2.0], [float("nan"), float("nan")]])
    has_next = torch.tensor([True, False])

    targets = td_targets(rewards, next_q, has_next, gamma=0.95)

    torch.testing.assert_close(targets, torch.tensor([[-1.05, -2.1], [-0.3, -0.4]]))


def test_td_targets_reject_bad_gamma_and_shapes():
    rewards = torch.zeros(2, 2)
    with pytest.raises(InvalidArgumentError, match="gamma"):
        td_targets(rewards, rewards, torch.ones(2, dtype=torch.bool), gamma=1.0)
    with pytest.raises(ShapeError, match="has_next"):
        td_targets(rewards, rewards, torch.ones(3, dtype=torch.bool), gamma=0.9)


def test_critic_targets_with_known_target_values():
    spec = FeatureSpec(numeric_dim=1, cardinalities=(), user_vocabulary=3, item_vocabulary=3)
    config = CriticConfig(embedding_dim=2, bottom_dims=(4,), head_dims=(), gamma=0.95)
    trainer = CriticTrainer(spec, tasks=2, config=config)
    # A zero output layer with bias 0 makes every target value -softplus(0) = -log 2.
    for head in trainer.target_critics[0].heads:
        torch.nn.init.zeros_(head[-1].weight)
        torch.nn.init.zeros_(head[-1].bias)
    features = {
        "numeric": torch.zeros(3, 1),
        "categorical": torch.zeros(3, 0, dtype=torch.int64),
        "users": torch.tensor([1, 1, 1]),
        "items": torch.tensor([1, 2, 1]),
        "history": torch.zeros(3, 0, dtype=torch.int64),
    }
    # Rows 0 and 1 continue the session; row 2 is its last step.
    rewards = torch.tensor([[-0.1, -0.2], [-0.3, -0.4], [-0.5, -0.6]])
    has_next = torch.tensor([True, True, False])

    targets = trainer.compute_target(rewards, features, torch.full((3, 2), 0.5), has_next)

    bootstrap = -0.95 * math.log(2.0)
    expected = torch.tensor(
        [[-0.1 + bootstrap, -0.2 + bootstrap], [-0.3 + bootstrap, -0.4 + bootstrap], [-0.5, -0.6]]
    )
    torch.testing.assert_close(targets, expected)


def test_critic_values_are_never_positive():
    spec = FeatureSpec(numeric_dim=2, cardinalities=(4,), user_vocabulary=3, item_vocabulary=5)
    trainer = CriticTrainer(spec, tasks=2, config=CriticConfig(embedding_dim=2, double_q=True))
    features = {
        "numeric": torch.randn(16, 2) * 100,
        "categorical": torch.randint(0, 4, (16, 1)),
        "users": torch.randint(0, 3, (16,)),
        "items": torch.randint(0, 5, (16,)),
        "history": torch.zeros(16, 0, dtype=torch.int64),
    }
    values = trainer.values(features, torch.rand(16, 2))
    assert values.shape == (16, 2)
    assert bool((values <= 0).all())


def test_replay_actions_stay_near_predictions():
    spec = FeatureSpec(numeric_dim=1, cardinalities=(), user_vocabulary=2, item_vocabulary=2)
    generator = torch.Generator().manual_seed(0)
    config = CriticConfig(embedding_dim=2, action_noise=0.05)
    trainer = CriticTrainer(spec, 2, config, generator)
    predictions = torch.full((1000, 2), 0.3)
    predictions[:, 1] = 0.999

    actions = trainer.replay_actions(predictions)

    assert bool(((actions > 0) & (actions < 1)).all())
    assert float((actions[:, 0] - 0.3).abs().max()) < 0.05 * 6
    assert float(actions[:, 0].std()) == pytest.approx(0.05, rel=0.15)


def test_auc_with_ties_hand_computed():
    # Positive-negative pairs: (0.9, 0.1) 1, (0.9, 0.4) 1, (0.4, 0.1) 1, (0.4, 0.4) 1/2.
    assert auc([1, 0, 1, 0], [0.9, 0.1, 0.4, 0.4]) == pytest.approx(3.5 / 4)
    with pytest.warns(UndefinedMetricWarning, match="2 positive and 0 negative"):
        assert math.isnan(auc([1, 1], [0.2, 0.3]))


def test_session_logloss_hand_computed():
    labels = [1, 0, 1]
    scores = [0.5, 0.5, 0.8]
    sessions = [7, 7, 3]
    # Session 7: mean(log 2, log 2); session 3: -log 0.8.
    expected = (math.log(2.0) + -math.log(0.8)) / 2
    assert session_logloss(labels, scores, sessions) == pytest.approx(expected)
    assert logloss(labels, scores) == pytest.approx((2 * math.log(2.0) - math.log(0.8)) / 3)


def test_grouped_auc_skips_single_class_sessions():
    labels = [1, 0, 0, 1, 0, 1, 1]
    scores = [0.9, 0.2, 0.8, 0.1, 0.5, 0.4, 0.6]
    sessions = [0, 0, 1, 1, 1, 2, 2]
    # Session 0 (2 rows): AUC 1; session 1 (3 rows): AUC 0; session 2 has one class.
    assert grouped_auc(labels, scores, sessions).value == pytest.approx((1 * 2 + 0 * 3) / 5)


def test_task_metrics_per_task_and_shape_checks():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=np.float32)
    scores = np.array([[0.9, 0.2], [0.1, 0.3], [0.8, 0.7], [0.3, 0.6]])
    sessions = np.array([0, 0, 1, 1])

    metrics = task_metrics(labels, scores, sessions, ["ctr", "ctcvr"])

    assert metrics["ctr"]["auc"] == pytest.approx(1.0)
    # CTCVR positives score 0.3 and 0.7, negatives 0.2 and 0.6: 3 of 4 pairs ordered.
    assert metrics["ctcvr"]["auc"] == pytest.approx(0.75)
    assert metrics["ctr"]["logloss"] == pytest.approx(logloss(labels[:, 0], scores[:, 0]))
    with pytest.raises(ShapeError, match="scores"):
        task_metrics(labels, scores[:, :1], sessions, ["ctr", "ctcvr"])


def test_auc_matches_scikit_learn_with_ties():
    metrics = pytest.importorskip("sklearn.metrics")
    generator = np.random.default_rng(0)
    labels = generator.random(2000) < 0.2
    scores = np.round(generator.random(2000), 2)  # many ties

    assert auc(labels, scores) == pytest.approx(metrics.roc_auc_score(labels, scores), abs=1e-12)
    assert logloss(labels, scores) == pytest.approx(
        metrics.log_loss(labels, np.clip(scores, 1e-7, 1 - 1e-7)), rel=1e-9
    )
