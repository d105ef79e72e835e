"""A learned state-value baseline V(s) for CGRPO (our option, issue 13; off by default).

The paper's baseline (Eq. 6) is the mean return of a DBSCAN state cluster; on the MuJoCo tasks
DBSCAN finds one cluster, so the baseline is the batch mean (docs/algorithm.md). `ValueFunction`
replaces it with a regression of the return on the state: a critic owned by the learner, never
exported to rollout workers (they only sample the policies). Advantages then come from GAE
(`advantages.generalized_advantages`) and go through Eq. 8 and Eq. 9 unchanged.

The critic sees observations through its own running normaliser (the policies have theirs) and
predicts standardised values: V(s) = mean_G + std_G * net(s), with the running mean and standard
deviation of the discounted returns-to-go, so its regression targets stay near zero mean and
unit scale whatever the task's reward scale (HalfCheetah's returns-to-go are in the hundreds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from cgrpo_ros.core.policy import RunningObsNormalizer, tanh_hidden_layers


class ValueFunction(nn.Module):
    """V(s) = return_mean() + return_scale() * MLP(normalise(s)); a tanh MLP like the policies."""

    def __init__(self, obs_dim: int, hidden_sizes: Sequence[int]) -> None:
        super().__init__()
        self.normalizer = RunningObsNormalizer(obs_dim)
        # Running mean and variance of the discounted returns-to-go: the targets' standardisation.
        self.returns = RunningObsNormalizer(1)
        layers, width = tanh_hidden_layers(obs_dim, hidden_sizes)
        head = nn.Linear(width, 1)
        nn.init.orthogonal_(head.weight, gain=1.0)  # SB3/CleanRL's value-head gain
        nn.init.zeros_(head.bias)
        layers.append(head)
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(V(s) - return_mean) / return_scale, shape [B]."""
        result: torch.Tensor = self.net(self.normalizer(obs)).squeeze(-1)
        return result

    def return_scale(self) -> float:
        """Standard deviation of the returns seen so far (1 before any, never below 1e-3)."""
        if float(self.returns.count) == 0.0:
            return 1.0
        return max(math.sqrt(float(self.returns.var[0])), 1e-3)

    def return_mean(self) -> float:
        """Mean of the returns seen so far (0 before any)."""
        return float(self.returns.mean[0])

    @torch.no_grad()
    def predict(self, obs: npt.NDArray[np.floating]) -> npt.NDArray[np.float64]:
        """V(s) in return units."""
        scaled = self.forward(torch.as_tensor(obs, dtype=torch.float32))
        return scaled.double().numpy() * self.return_scale() + self.return_mean()

    def fit(
        self,
        obs: npt.NDArray[np.floating],
        targets: npt.NDArray[np.float64],
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        minibatch_size: int,
        max_grad_norm: float,
        generator: torch.Generator,
    ) -> tuple[float, float]:
        """Regress V(s) on `targets` (return units): minibatch Adam on 0.5 (V - target)^2.

        Returns the mean squared error (in standardised units) over the whole batch before and
        after.
        """
        x = torch.as_tensor(obs, dtype=torch.float32)
        standardised = (targets - self.return_mean()) / self.return_scale()
        y = torch.as_tensor(standardised, dtype=torch.float32)
        with torch.no_grad():
            before = float((self.forward(x) - y).square().mean())
        n = len(y)
        for _ in range(epochs):
            perm = torch.randperm(n, generator=generator)
            for start in range(0, n, minibatch_size):
                rows = perm[start : start + minibatch_size]
                loss = 0.5 * (self.forward(x[rows]) - y[rows]).square().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                nn.utils.clip_grad_norm_(self.net.parameters(), max_grad_norm)
                optimizer.step()
        with torch.no_grad():
            after = float((self.forward(x) - y).square().mean())
        return before, after
