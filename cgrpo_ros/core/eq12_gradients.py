"""The gradient of Eq. 12 on one minibatch, written out by hand (issue 14).

`CGRPO._total_loss` is the readable definition of the objective: the paper's terms composed
from `losses.py` and differentiated by autograd. At the paper's sizes (64x64 networks,
minibatches of 64) autograd spends most of a gradient step on per-operation bookkeeping,
not arithmetic: recording ~100 graph nodes and walking them back. This module computes the
same gradient in closed form, term by term, and back-propagates it through the tanh MLP
with one batched matmul per layer and parameter: far fewer operations, and an update's
gradient steps ~1.5x faster (docs/benchmarks.md).

It is the same objective, not an approximation: `test_eq12_gradients.py` checks every
parameter's gradient and every diagnostic against autograd on `_total_loss`, with padding,
the shared probe set, Eq. 10, Eq. 11 and the reference KL on and off. Float rounding differs
(other operation order), so updates agree to ~1e-6, not bit for bit.

Per policy i (w_t = the step's weight in a masked mean, 1/B without padding):
    log pi  = sum_a -z^2/2 - log_std - log(2 pi)/2,   z = (a - mean) / sigma
    Eq. 8   d/d log pi_t of -E[min(r A, clip(r) A)] = -w_t r_t A_t  where r A <= clip(r) A
            (the unclipped branch is the smaller or both are equal), else 0
    entropy d/d log_std of -c_H H = -c_H (per action dimension)
    Eq. 10  d/d mean_t of lambda_s E||f(s_t+1) - f(s_t)|| = -lambda_s w_t u_t, and +lambda_s
            w_t u_t for f(s_t+1), u_t the unit vector from f(s_t) to f(s_t+1)
    KL      d/d mean = c_ref w_t (mean - mean_ref) / var_ref,
            d/d log_std = c_ref w_t (var / var_ref - 1)
    Eq. 11  penalty lambda_d sum_{g != h} max(0, cos(mu_g, mu_h) - tau) over ordered pairs:
            d/d mu_g = 2 lambda_d sum_{h active} (mu_h / (|mu_g| |mu_h|) - cos mu_g / |mu_g|^2),
            shared equally by the policies of group g (mu_g is their mean).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.minibatch import Minibatch
from cgrpo_ros.core.policy import GaussianPolicy

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)


@dataclass(frozen=True)
class Eq12Terms:
    """The coefficients of Eq. 12 that the gradient needs (from CGRPOConfig)."""

    entropy_coef: float
    smoothness_coef: float  # 0: Eq. 10 off
    reference_coef: float  # 0: no KL to the reference policy
    diversity_coef: float
    diversity_tau: float

    @staticmethod
    def from_config(cfg: CGRPOConfig) -> Eq12Terms:
        return Eq12Terms(
            entropy_coef=cfg.entropy_coef,
            smoothness_coef=cfg.smoothness_coef,
            reference_coef=cfg.reference_coef if cfg.use_reference else 0.0,
            diversity_coef=cfg.diversity_coef,
            diversity_tau=cfg.diversity_tau,
        )


@torch.no_grad()
def eq12_gradients(
    policies: Sequence[GaussianPolicy],
    minibatch: Minibatch,
    epsilon: torch.Tensor,
    members: list[list[int]] | None,
    terms: Eq12Terms,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Set every policy parameter's `.grad` to d L_total / d parameter on `minibatch`.

    Same contract as `CGRPO._total_loss` followed by `backward()`: `epsilon` [N, 1] is each
    policy's eps_g, `members` the groups' policy ids for Eq. 11 (None: off). Returns the
    per-policy diagnostics [5, N] (clip fraction, approx. KL, surrogate, smoothness,
    reference KL) and Eq. 11's penalty, as `_total_loss` does.
    """
    layers = [policy.linear_layers() for policy in policies]
    depth = len(layers[0])
    weights = [torch.stack([per[k].weight for per in layers]) for k in range(depth)]
    biases = [torch.stack([per[k].bias for per in layers]) for k in range(depth)]
    log_std = torch.stack([p.log_std for p in policies])  # [N, A]

    # Forward pass, keeping each layer's input for the backward pass.
    inputs = [minibatch.inputs]
    hidden = minibatch.inputs
    for k in range(depth):
        hidden = torch.baddbmm(biases[k].unsqueeze(1), hidden, weights[k].transpose(1, 2))
        if k < depth - 1:
            # numpy's tanh, in place: torch.tanh costs ~7x more here (65 vs 9 us on a
            # [2, 192, 64] tensor, one core), more than all of a layer's matmul.
            np.tanh(hidden.numpy(), out=hidden.numpy())
            inputs.append(hidden)
    outputs = hidden  # [N, R, A]

    own_rows = minibatch.own_rows
    if own_rows is None:
        mean = outputs[:, : minibatch.width]
    else:
        own_index = own_rows.unsqueeze(-1).expand(-1, -1, outputs.shape[-1])
        mean = outputs.gather(1, own_index)
    mask = minibatch.real
    weight = _step_weights(mask, mean.shape[:2], mean.dtype)  # [N, B]

    # Eq. 8 with the Gaussian log-likelihood.
    std = log_std.exp().unsqueeze(1)  # [N, 1, A]
    z = (minibatch.actions - mean) / std
    log_prob = (-0.5 * z.square() - log_std.unsqueeze(1) - _HALF_LOG_2PI).sum(dim=-1)
    log_ratio = log_prob - minibatch.old_log_prob
    ratio = log_ratio.exp()
    adv = minibatch.adv
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + epsilon) * adv
    surrogate = (torch.minimum(unclipped, clipped) * weight).sum(dim=-1)
    d_log_prob = -(weight * unclipped) * (unclipped <= clipped)  # [N, B]
    d_mean = d_log_prob.unsqueeze(-1) * (z / std)
    d_log_std = (d_log_prob.unsqueeze(-1) * (z.square() - 1.0)).sum(dim=1)
    has_steps = weight.sum(dim=1, keepdim=True) > 0  # [N, 1]: no entropy for an empty row
    d_log_std = d_log_std - terms.entropy_coef * has_steps

    d_outputs = torch.zeros_like(outputs)
    smooth = torch.zeros_like(surrogate)
    if terms.smoothness_coef > 0 and mean.shape[1] > 0:  # Eq. 10
        step = outputs[:, minibatch.next_rows] - mean
        distance = torch.linalg.vector_norm(step, dim=-1)  # [N, B]
        pair_weight = _step_weights(minibatch.pairs, distance.shape, distance.dtype)
        smooth = terms.smoothness_coef * (distance * pair_weight).sum(dim=-1)
        scale = terms.smoothness_coef * pair_weight / torch.where(distance > 0, distance, 1.0)
        d_next = scale.unsqueeze(-1) * step
        d_mean = d_mean - d_next
        d_outputs[:, minibatch.next_rows] += d_next

    reference_kl = torch.zeros_like(surrogate)
    if terms.reference_coef > 0:
        ref_var = (2.0 * minibatch.ref_log_std).exp()
        var = (2.0 * log_std).exp().unsqueeze(1)
        gap = mean - minibatch.ref_mean
        kl = minibatch.ref_log_std - log_std.unsqueeze(1) + (var + gap.square()) / (2.0 * ref_var)
        kl = (kl - 0.5).sum(dim=-1)
        reference_kl = terms.reference_coef * (kl * weight).sum(dim=-1)
        ref_weight = terms.reference_coef * weight.unsqueeze(-1)
        d_mean = d_mean + ref_weight * gap / ref_var
        d_log_std = d_log_std + (ref_weight * (var / ref_var - 1.0)).sum(dim=1)

    if own_rows is None:
        d_outputs[:, : minibatch.width] += d_mean
    else:
        d_outputs.scatter_add_(1, own_index, d_mean)

    diversity = torch.zeros(())
    if members is not None and len(members) > 1:  # Eq. 11
        probe = outputs[:, minibatch.probe_rows]  # [N, P, A]
        n = len(policies)
        # mu_g = the mean of group g's policies' probe outputs: one matmul with [G, N] weights.
        group_mean = torch.zeros(len(members), n)
        for g, ids in enumerate(members):
            group_mean[g, ids] = 1.0 / len(ids)
        behaviour = group_mean @ probe.reshape(n, -1)  # [G, P*A]
        norms = torch.linalg.vector_norm(behaviour, dim=-1, keepdim=True).clamp(min=1e-8)
        unit = behaviour / norms
        cosine = unit @ unit.T
        off_diagonal = 1.0 - torch.eye(len(members))
        excess = cosine - terms.diversity_tau
        diversity = terms.diversity_coef * (excess.clamp(min=0.0) * off_diagonal).sum()
        active = (excess >= 0) * off_diagonal
        # d cos(g, h) / d mu_g = (unit_h - cos(g, h) unit_g) / |mu_g|; each unordered pair is
        # counted twice (ordered pairs), hence the 2.
        d_unit = active @ unit - (active * cosine).sum(dim=1, keepdim=True) * unit
        d_behaviour = (2.0 * terms.diversity_coef) * d_unit / norms
        d_probe = group_mean.T @ d_behaviour  # [N, P*A]
        d_outputs[:, minibatch.probe_rows] += d_probe.view(probe.shape)

    # Back through the MLP: one batched matmul per weight, one per layer input.
    grad = d_outputs
    for k in reversed(range(depth)):
        d_weight = torch.bmm(grad.transpose(1, 2), inputs[k])
        d_bias = grad.sum(dim=1)
        for i, per in enumerate(layers):
            per[k].weight.grad = d_weight[i]
            per[k].bias.grad = d_bias[i]
        if k > 0:
            grad = torch.bmm(grad, weights[k]) * (1.0 - inputs[k].square())
    for i, policy in enumerate(policies):
        policy.log_std.grad = d_log_std[i]

    stats = torch.stack(
        [
            (((ratio - 1.0).abs() > epsilon).to(weight.dtype) * weight).sum(dim=-1),
            (((ratio - 1.0) - log_ratio) * weight).sum(dim=-1),
            surrogate,
            smooth,
            reference_kl,
        ]
    )
    return stats, diversity


def _step_weights(
    mask: torch.Tensor | None, shape: torch.Size | tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """Each step's weight in `losses.masked_mean` over the last dimension: 1/count on the
    steps `mask` keeps (1/B for all when mask is None), 0 elsewhere."""
    if mask is None:
        return torch.full(shape, 1.0 / shape[-1], dtype=dtype)
    kept = mask.to(dtype)
    return kept / kept.sum(dim=-1, keepdim=True).clamp(min=1.0)
