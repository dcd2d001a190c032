"""The stage-two target policy of TSCAC in closed form.

Cai et al., "Two-Stage Constrained Actor-Critic for Short Video Recommendation", WWW 2023
(arXiv 2302.01680). Stage two maximises, for every state s,

    E_{a ~ pi}[A_1(s, a)] - sum_i lambda_i KL(pi(.|s) || pi_i(.|s)),

where A_1 is the watch-time advantage and pi_i the stage-one policy of interaction i. Setting the
derivative with respect to pi(a|s) to zero on the simplex gives

    pi*(a|s) ∝ prod_i pi_i(a|s)^(lambda_i / Lambda) * exp(A_1(s, a) / Lambda),
    Lambda = sum_i lambda_i,

which the stage-two actor then fits by minimising KL(pi* || pi_theta).
"""

from __future__ import annotations

import torch

from recrl.errors import InvalidArgumentError, ShapeError

__all__ = [
    "categorical_target_log_probabilities",
    "gaussian_product_mean",
    "tilted_sample_weights",
]


def _check_lambdas(lambdas: torch.Tensor, members: int) -> torch.Tensor:
    if lambdas.dim() != 1 or lambdas.shape[0] != members:
        raise ShapeError(f"lambdas: expected shape ({members},), got {tuple(lambdas.shape)}")
    if not bool((lambdas > 0).all()):
        raise InvalidArgumentError(f"lambdas: expected positive values, got {lambdas.tolist()}")
    return lambdas


def categorical_target_log_probabilities(
    stage_one_log_probabilities: torch.Tensor,
    advantages: torch.Tensor,
    lambdas: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Compute log pi*(j|s) exactly over a candidate set.

    Args:
        stage_one_log_probabilities: float [I, B, C], log pi_i(j|s) of the I stage-one policies.
        advantages: float [B, C], watch-time advantage A_1(s, j) of every candidate.
        lambdas: float [I], positive Lagrange weights lambda_i.
        mask: bool [B, C], true for candidates that exist; others get log-probability -inf.

    Returns:
        float [B, C], log pi*(j|s), normalised over the candidates of each row.
    """
    if stage_one_log_probabilities.dim() != 3:
        raise ShapeError(
            "stage_one_log_probabilities: expected shape (I, B, C), got "
            f"{tuple(stage_one_log_probabilities.shape)}"
        )
    if advantages.shape != stage_one_log_probabilities.shape[1:]:
        raise ShapeError(
            f"advantages: expected shape {tuple(stage_one_log_probabilities.shape[1:])}, got "
            f"{tuple(advantages.shape)}"
        )
    lambdas = _check_lambdas(lambdas, stage_one_log_probabilities.shape[0])
    total = lambdas.sum()

    # Eq. (8) of Cai et al.: weighted geometric mean of the stage-one policies, tilted by A_1.
    weights = (lambdas / total).view(-1, 1, 1)
    logits = (weights * stage_one_log_probabilities).sum(0) + advantages / total
    if mask is not None:
        logits = logits.masked_fill(~mask, float("-inf"))
    return torch.log_softmax(logits, dim=-1)


def gaussian_product_mean(means: torch.Tensor, lambdas: torch.Tensor) -> torch.Tensor:
    """Return the mean of prod_i N(mu_i, sigma^2 I)^(lambda_i / Lambda) for a shared sigma.

    Completing the square, sum_i w_i |a - mu_i|^2 = |a - sum_i w_i mu_i|^2 + const when the
    weights w_i = lambda_i / Lambda sum to one, so the product is N(sum_i w_i mu_i, sigma^2 I).

    Args:
        means: float [I, B, D], means mu_i of the stage-one Gaussians.
        lambdas: float [I], positive weights lambda_i.

    Returns:
        float [B, D].
    """
    if means.dim() != 3:
        raise ShapeError(f"means: expected shape (I, B, D), got {tuple(means.shape)}")
    lambdas = _check_lambdas(lambdas, means.shape[0])
    weights = (lambdas / lambdas.sum()).view(-1, 1, 1)
    return (weights * means).sum(0)


def tilted_sample_weights(advantages: torch.Tensor, total_lambda: float) -> torch.Tensor:
    """Self-normalised weights exp(A/Lambda) of actions sampled from the Gaussian product.

    With actions a_1..a_S drawn from prod_i pi_i^(lambda_i/Lambda), the target pi* is that
    product tilted by exp(A_1(s, a)/Lambda), so E_{pi*}[f] ≈ sum_k w_k f(a_k) with
    w = softmax_k(A_1(s, a_k) / Lambda).

    Args:
        advantages: float [B, S], A_1(s, a_k) of S sampled actions per state.
        total_lambda: Lambda > 0.

    Returns:
        float [B, S], non-negative weights summing to one in each row.
    """
    if total_lambda <= 0:
        raise InvalidArgumentError(f"total_lambda: expected a positive number, got {total_lambda}")
    return torch.softmax(advantages / total_lambda, dim=-1)
