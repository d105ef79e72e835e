"""The reference policy pi_ref: a mixture of the top-performing policies (Algorithm 1, l. 33)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch

from cgrpo_ros.core.policy import GaussianPolicy


class ReferencePolicy:
    """Equal-weight mixture of frozen snapshots of the top policies, moment-matched.

    A mixture of Gaussians is not Gaussian, so KL(pi_i || mixture) has no closed form. We use
    the Gaussian with the mixture's mean and variance at each state (moment matching):
        mean_ref(s) = sum_j w_j mu_j(s)
        var_ref(s)  = sum_j w_j (sigma_j^2 + mu_j(s)^2) - mean_ref(s)^2
    which is the KL-closest Gaussian to the mixture (docs/algorithm.md).
    """

    def __init__(self, members: Sequence[GaussianPolicy], source_ids: Sequence[int]) -> None:
        if not members:
            raise ValueError("a reference policy needs at least one member policy")
        self.members = [copy.deepcopy(m).eval().requires_grad_(False) for m in members]
        self.source_ids = list(source_ids)

    @staticmethod
    def from_top_policies(
        policies: Sequence[GaussianPolicy], scores: Sequence[float], top_k: int
    ) -> ReferencePolicy:
        """Snapshot the top_k policies by score (ties go to the lower index)."""
        order = sorted(range(len(policies)), key=lambda i: (-scores[i], i))[:top_k]
        return ReferencePolicy([policies[i] for i in order], order)

    @torch.no_grad()
    def moments(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log_std) of the moment-matched Gaussian at each state."""
        means = torch.stack([m(obs) for m in self.members])  # [M, B, A]
        variances = torch.stack([(2.0 * m.log_std).exp().expand_as(means[0]) for m in self.members])
        mean = means.mean(dim=0)
        second_moment = (variances + means.square()).mean(dim=0)
        var = torch.clamp(second_moment - mean.square(), min=1e-12)
        return mean, 0.5 * var.log()

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        return [m.state_dict() for m in self.members]
