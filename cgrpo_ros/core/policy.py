"""Gaussian MLP policy with running observation normalisation."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

# Normalised observations are clipped so that one outlier cannot saturate the tanh layers.
OBS_CLIP = 10.0


class RunningObsNormalizer(nn.Module):
    """Running mean/variance of observations (parallel-update formula of Chan et al.).

    Stored as buffers so that checkpoints and the ONNX graph carry the statistics.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, obs_dim: int, epsilon: float = 1e-8) -> None:
        super().__init__()
        self.epsilon = epsilon
        self.register_buffer("mean", torch.zeros(obs_dim, dtype=torch.float64))
        self.register_buffer("var", torch.ones(obs_dim, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(0.0, dtype=torch.float64))

    @torch.no_grad()
    def update(self, obs: npt.NDArray[np.float32]) -> None:
        batch = torch.as_tensor(obs, dtype=torch.float64)
        batch_mean = batch.mean(dim=0)
        batch_var = batch.var(dim=0, unbiased=False)
        batch_count = float(batch.shape[0])
        total = self.count + batch_count
        delta = batch_mean - self.mean
        new_mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count
        m2 = m2 + delta.square() * self.count * batch_count / total
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(self.var + self.epsilon).to(obs.dtype)
        normalised = (obs - self.mean.to(obs.dtype)) / std
        return torch.clamp(normalised, -OBS_CLIP, OBS_CLIP)


def tanh_hidden_layers(in_dim: int, hidden_sizes: Sequence[int]) -> tuple[list[nn.Module], int]:
    """The hidden part of the policy and value networks: Linear + tanh per width, orthogonal
    init with gain sqrt(2) as in PPO implementations (SB3, CleanRL); returns the layers and
    the last width (the head's input)."""
    layers: list[nn.Module] = []
    width = in_dim
    for hidden in hidden_sizes:
        linear = nn.Linear(width, hidden)
        nn.init.orthogonal_(linear.weight, gain=math.sqrt(2.0))
        nn.init.zeros_(linear.bias)
        layers += [linear, nn.Tanh()]
        width = hidden
    return layers, width


class GaussianPolicy(nn.Module):
    """pi_theta(a|s) = N(f_theta(s), diag(exp(log_std))^2), f_theta an MLP on normalised s."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden_sizes: Sequence[int],
        init_log_std: float,
        initial_action: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        self.normalizer = RunningObsNormalizer(obs_dim)
        layers, width = tanh_hidden_layers(obs_dim, hidden_sizes)
        head = nn.Linear(width, act_dim)
        # A small output gain starts every policy near the zero action (CleanRL: std 0.01).
        nn.init.orthogonal_(head.weight, gain=0.01)
        # ... and near `initial_action` when the task has a rest action (an arm's home pose for
        # absolute joint-position actions): an untrained policy then holds the arm where it
        # is instead of commanding every joint towards 0 rad.
        if initial_action is None:
            nn.init.zeros_(head.bias)
        else:
            if len(initial_action) != act_dim:
                raise ValueError(
                    f"initial_action has {len(initial_action)} entries; allowed: act_dim={act_dim}"
                )
            with torch.no_grad():
                head.bias.copy_(torch.as_tensor(list(initial_action), dtype=head.bias.dtype))
        layers.append(head)
        self.mean_net = nn.Sequential(*layers)
        self.log_std = nn.Parameter(torch.full((act_dim,), float(init_log_std)))

    def linear_layers(self) -> list[nn.Linear]:
        """The MLP's affine layers in order (a tanh follows each but the last)."""
        return [m for m in self.mean_net if isinstance(m, nn.Linear)]

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """f_theta(s): the pre-sampling network output used by Eq. 10."""
        result: torch.Tensor = self.mean_net(self.normalizer(obs))
        return result

    def log_prob(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """log pi(a|s), summed over action dimensions."""
        mean = self.forward(obs)
        return gaussian_log_prob(mean, self.log_std.expand_as(mean), actions)

    def entropy(self) -> torch.Tensor:
        """H(pi) of the diagonal Gaussian: state-independent because log_std is."""
        return gaussian_entropy(self.log_std)


def stacked_mean_forward(
    policies: Sequence[GaussianPolicy], normalised_obs: torch.Tensor
) -> torch.Tensor:
    """f_theta of N same-shaped policies at once: [N, B, obs_dim] -> [N, B, act_dim].

    Row i of `normalised_obs` must already be normalised by policy i's normaliser. One
    batched matmul per layer replaces N module calls; the weights are stacked afresh on every
    call, so gradients flow to each policy's own parameters.
    """
    layers = [policy.linear_layers() for policy in policies]
    hidden = normalised_obs
    for depth in range(len(layers[0])):
        weight = torch.stack([per_policy[depth].weight for per_policy in layers])
        bias = torch.stack([per_policy[depth].bias for per_policy in layers])
        hidden = torch.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
        if depth < len(layers[0]) - 1:
            hidden = torch.tanh(hidden)
    return hidden


def gaussian_entropy(log_std: torch.Tensor) -> torch.Tensor:
    """H(N(mu, diag(exp(log_std))^2)), summed over the last dimension."""
    return (0.5 + 0.5 * math.log(2.0 * math.pi) + log_std).sum(dim=-1)


def gaussian_kl(
    mean_p: torch.Tensor, log_std_p: torch.Tensor, mean_q: torch.Tensor, log_std_q: torch.Tensor
) -> torch.Tensor:
    """KL(N_p || N_q) of diagonal Gaussians, summed over the last dimension."""
    var_p = (2.0 * log_std_p).exp()
    var_q = (2.0 * log_std_q).exp()
    kl = log_std_q - log_std_p + (var_p + (mean_p - mean_q).square()) / (2.0 * var_q) - 0.5
    return kl.sum(dim=-1)


def gaussian_log_prob(
    mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
) -> torch.Tensor:
    """log N(a; mean, diag(exp(log_std))^2), summed over the last dimension.

    Written out instead of torch's Normal.log_prob, which is untyped under mypy --strict.
    """
    z = (actions - mean) / log_std.exp()
    return (-0.5 * z.square() - log_std - 0.5 * math.log(2.0 * math.pi)).sum(dim=-1)
