"""Offline evaluation: classification metrics per task and off-policy estimates per response.

:mod:`recrl.evaluation.metrics` computes AUC, grouped AUC, logloss and session logloss in Rust;
:mod:`recrl.evaluation.off_policy` contains the importance-sampling estimators.
"""

from __future__ import annotations

from recrl.evaluation.metrics import (
    GroupedAuc,
    UndefinedMetricWarning,
    auc,
    grouped_auc,
    logloss,
    session_logloss,
    task_metrics,
)
from recrl.evaluation.off_policy import (
    ImportanceWeights,
    OffPolicyEstimate,
    importance_weights,
    ips,
    ncis,
    per_decision_is,
    snips,
    target_probabilities,
)

__all__ = [
    "GroupedAuc",
    "ImportanceWeights",
    "OffPolicyEstimate",
    "UndefinedMetricWarning",
    "auc",
    "grouped_auc",
    "importance_weights",
    "ips",
    "logloss",
    "ncis",
    "per_decision_is",
    "session_logloss",
    "snips",
    "target_probabilities",
    "task_metrics",
]
