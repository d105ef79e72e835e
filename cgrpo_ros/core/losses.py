"""The terms of the total objective (Eq. 8, 10, 11, 12)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last dimension (the steps), counting only where `mask` is True.

    Leading dimensions are independent (one row per policy in the batched update); a row
    with no True entry gives 0, as an empty minibatch contributes nothing.
    """
    if mask is None:
        return values.mean(dim=-1)
    weights = mask.to(values.dtype)
    return (values * weights).sum(dim=-1) / weights.sum(dim=-1).clamp(min=1.0)


def clipped_surrogate(
    log_prob_new: torch.Tensor,
    log_prob_old: torch.Tensor,
    advantages: torch.Tensor,
    clip_epsilon: float | torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 8: E[min(r_t A-hat, clip(r_t, 1 - eps_g, 1 + eps_g) A-hat)], to be maximised.

    The expectation runs over the last dimension; with inputs [N, B] (N policies) and
    `clip_epsilon` a tensor [N, 1] of each policy's eps_g, the result is one value per policy.
    """
    ratio = torch.exp(log_prob_new - log_prob_old)
    unclipped = ratio * advantages
    eps = torch.as_tensor(clip_epsilon, dtype=ratio.dtype)
    clipped = torch.clamp(ratio, 1.0 - eps, 1.0 + eps) * advantages
    return masked_mean(torch.min(unclipped, clipped), mask)


def smoothness_penalty(
    output_t: torch.Tensor,
    output_next: torch.Tensor,
    coef: float,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Eq. 10: lambda_s E[||f_theta(s_{t+1}) - f_theta(s_t)||_2] over consecutive steps.

    Only pairs inside one episode count (never across a reset): the caller passes those
    alone, or all rows with `mask` True where (t, t+1) is such a pair. Inputs [N, B, A] give
    one value per policy.
    """
    if output_t.shape[-2] == 0:
        return output_t.new_zeros(output_t.shape[:-2])
    distance: torch.Tensor = torch.linalg.vector_norm(output_next - output_t, dim=-1)
    return coef * masked_mean(distance, mask)


def diversity_penalty(
    group_behaviour: Sequence[torch.Tensor], coef: float, tau: float
) -> torch.Tensor:
    """Eq. 11: lambda_d sum_{i != j} max(0, cos(mu_i, mu_j) - tau) over groups.

    mu_g is a group's behaviour vector: the mean over its policies of f_theta on a shared set
    of probe states, flattened (docs/algorithm.md explains the choice). The sum runs over
    ordered pairs, as the paper writes it, so each unordered pair counts twice.
    """
    if len(group_behaviour) < 2:
        return torch.zeros(())
    stacked = torch.stack([mu.reshape(-1) for mu in group_behaviour])
    similarity = F.cosine_similarity(stacked.unsqueeze(1), stacked.unsqueeze(0), dim=-1)
    off_diagonal = ~torch.eye(len(group_behaviour), dtype=torch.bool)
    penalty: torch.Tensor = coef * torch.clamp(similarity[off_diagonal] - tau, min=0.0).sum()
    return penalty
