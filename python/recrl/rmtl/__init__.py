"""RMTL: multi-task recommendation with critic-weighted task losses.

Liu et al., "Multi-Task Recommendations with Reinforcement Learning", WWW 2023 (arXiv
2302.03328). Each session is an MDP: the state is the user-item step, the action the model's
(pCTR, pCTCVR), the reward per task the negative binary cross-entropy. One critic per task,
trained offline against the pretrained multi-task model, weights each sample's task loss by
omega = 1 - lambda * Q_k(s, a_k) during fine-tuning.
"""

from recrl.rmtl.config import CriticConfig, FinetuneConfig, PretrainConfig, RMTLConfig
from recrl.rmtl.critics import CriticTrainer, TaskCritics
from recrl.rmtl.data import TASK_NAMES, TaskData, task_labels
from recrl.rmtl.io import load_backbone, load_critics, save_backbone, save_critics
from recrl.rmtl.losses import (
    binary_cross_entropy,
    task_rewards,
    task_weights,
    td_targets,
    weighted_task_loss,
)
from recrl.rmtl.pipeline import RunPlan, method_name, run_rmtl
from recrl.rmtl.training import evaluate, finetune, predict, pretrain, train_critics

__all__ = [
    "TASK_NAMES",
    "CriticConfig",
    "CriticTrainer",
    "FinetuneConfig",
    "PretrainConfig",
    "RMTLConfig",
    "RunPlan",
    "TaskCritics",
    "TaskData",
    "binary_cross_entropy",
    "evaluate",
    "finetune",
    "load_backbone",
    "load_critics",
    "method_name",
    "predict",
    "pretrain",
    "run_rmtl",
    "save_backbone",
    "save_critics",
    "task_labels",
    "task_rewards",
    "task_weights",
    "td_targets",
    "train_critics",
    "weighted_task_loss",
]
