"""Algorithm 1 of the paper (Continuous GRPO), one call of `CGRPO.update` per iteration.

The data-collection lines (3-8) happen outside, in a rollout loop or in ROS rollout workers;
`update` receives one RolloutBatch per policy and runs lines 9-33.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import torch

from cgrpo_ros.core.advantages import (
    adaptive_clip_epsilon,
    branch_depths,
    group_normalized_advantages,
    horizon_normalized_returns,
    linear_feature_baseline,
    return_to_go,
    same_state_group_advantages,
    state_aware_advantages,
    state_clusters,
)
from cgrpo_ros.core.buffers import RolloutBatch
from cgrpo_ros.core.config import CGRPOConfig
from cgrpo_ros.core.features import TrajectoryFeatures, cluster_policies
from cgrpo_ros.core.losses import clipped_surrogate, diversity_penalty, smoothness_penalty
from cgrpo_ros.core.policy import GaussianPolicy, gaussian_kl, gaussian_log_prob
from cgrpo_ros.core.reference import ReferencePolicy


@dataclass
class PolicyMetrics:
    policy_id: int
    group: int
    mean_reward: float
    mean_episode_return: float  # NaN when no episode finished in the batch
    episodes: int
    entropy: float
    action_variance: float
    kl_to_reference: float
    clip_epsilon: float
    clip_fraction: float
    approx_kl: float
    surrogate: float
    smoothness: float
    reference_kl_loss: float


@dataclass
class IterationMetrics:
    iteration: int  # the iteration this update completed (policy version after it)
    policies: list[PolicyMetrics] = field(default_factory=list)
    groups: list[int] = field(default_factory=list)
    num_state_clusters: int = 0
    state_noise_fraction: float = 0.0
    dbscan_eps: float = 0.0
    diversity: float = 0.0
    global_advantage_std: float = 0.0
    kmeans_seconds: float = 0.0
    dbscan_seconds: float = 0.0
    update_seconds: float = 0.0
    reference_members: list[int] = field(default_factory=list)


class CGRPO:
    """N Gaussian policies trained together by Continuous GRPO."""

    def __init__(
        self,
        config: CGRPOConfig,
        obs_dim: int,
        act_dim: int,
        initial_action: Sequence[float] | None = None,
    ) -> None:
        if obs_dim < 1 or act_dim < 1:
            raise ValueError(f"obs_dim={obs_dim} and act_dim={act_dim} must both be >= 1")
        self.config = config
        self.obs_dim = obs_dim
        self.act_dim = act_dim
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.policies = [
            GaussianPolicy(
                obs_dim, act_dim, config.hidden_sizes, config.init_log_std, initial_action
            )
            for _ in range(config.num_policies)
        ]
        self.optimizers = [
            torch.optim.Adam(p.parameters(), lr=config.learning_rate, eps=1e-5)
            for p in self.policies
        ]
        # Line 1: before any data every policy is equally good, so pi_ref mixes them all.
        self.reference = ReferencePolicy(self.policies, range(config.num_policies))
        self.iteration = 0

    # --- Eq. 4 -------------------------------------------------------------------------
    @torch.no_grad()
    def trajectory_features(self, policy_id: int, batch: RolloutBatch) -> TrajectoryFeatures:
        """phi_i (Eq. 4). Entropy and action variance are exact: log_std is state-free."""
        policy = self.policies[policy_id]
        obs = torch.as_tensor(batch.obs)
        mean = policy(obs)
        ref_mean, ref_log_std = self.reference.moments(obs)
        kl = gaussian_kl(mean, policy.log_std.expand_as(mean), ref_mean, ref_log_std)
        return TrajectoryFeatures(
            mean_reward=float(np.mean(batch.rewards)),
            entropy=float(policy.entropy()),
            action_variance=float((2.0 * policy.log_std).exp().mean()),
            kl_to_reference=float(kl.mean()),
        )

    def update(self, batches: Sequence[RolloutBatch]) -> IterationMetrics:
        """Algorithm 1, lines 9-33, on one batch per policy (index = policy id)."""
        cfg = self.config
        if len(batches) != cfg.num_policies:
            raise ValueError(
                f"update needs one batch per policy: got {len(batches)}, "
                f"num_policies={cfg.num_policies}"
            )
        for i, b in enumerate(batches):
            if b.obs.shape[1:] != (self.obs_dim,) or b.actions.shape[1:] != (self.act_dim,):
                raise ValueError(
                    f"batch of policy {i}: obs {b.obs.shape} / actions {b.actions.shape} do not "
                    f"match obs_dim={self.obs_dim}, act_dim={self.act_dim}"
                )
            if b.num_steps < 2:
                raise ValueError(f"batch of policy {i} has {b.num_steps} steps; need >= 2")
        metrics = IterationMetrics(iteration=self.iteration + 1)

        # Lines 4-7 (features) and 9-10: policy clustering, Eq. 4-5.
        started = time.perf_counter()
        features = [self.trajectory_features(i, b) for i, b in enumerate(batches)]
        phi = np.stack([f.as_array() for f in features])
        # Without a reference policy the KL feature carries no information ("basic").
        used = None if cfg.use_reference else [0, 1, 2]
        groups = cluster_policies(
            phi,
            cfg.num_groups,
            seed=cfg.seed + self.iteration,
            n_init=cfg.kmeans_n_init,
            use_features=used,
        )
        metrics.kmeans_seconds = time.perf_counter() - started
        metrics.groups = groups.tolist()

        # Lines 11-21: state clustering (Eq. 7) and state-aware advantages (Eq. 6).
        returns = [return_to_go(b.rewards, b.dones, cfg.gamma) for b in batches]
        if cfg.horizon_normalized_returns:
            returns = [
                horizon_normalized_returns(g, b.dones, b.terminated, cfg.gamma)
                for g, b in zip(returns, batches, strict=True)
            ]
        all_returns = np.concatenate(returns)
        started = time.perf_counter()
        grouped = [b.branch_group is not None for b in batches]
        if any(grouped) and not all(grouped):
            raise ValueError(
                f"batches with same-state groups: {grouped}; all or none of the policies' "
                "batches must come from a GroupRolloutCollector"
            )
        if all(grouped):
            # Same-state groups: the baseline of a step is its sibling branches (no DBSCAN).
            labels = np.zeros(len(all_returns), dtype=np.int64)
            metrics.num_state_clusters = 0
        elif cfg.use_state_clusters and not cfg.linear_baseline:
            clusters = state_clusters(
                np.concatenate([b.obs for b in batches]),
                eps=cfg.dbscan_eps,
                min_samples=cfg.dbscan_min_samples,
                eps_quantile=cfg.dbscan_eps_quantile,
                max_points=cfg.dbscan_max_points,
                rng=self.rng,
                project_dims=cfg.dbscan_project_dims,
            )
            labels = clusters.labels
            metrics.num_state_clusters = clusters.num_clusters
            metrics.state_noise_fraction = clusters.noise_fraction
            metrics.dbscan_eps = clusters.eps
        else:
            labels = np.zeros(len(all_returns), dtype=np.int64)  # one cluster: batch mean
            metrics.num_state_clusters = 1
        metrics.dbscan_seconds = time.perf_counter() - started
        splits = np.cumsum([b.num_steps for b in batches])[:-1]
        if all(grouped):
            advantages = [
                same_state_group_advantages(
                    g,
                    b.dones,
                    b.branch_group,
                    credit=cfg.group_credit,
                    scale=cfg.group_scale,
                    delta=cfg.advantage_delta,
                )
                for g, b in zip(returns, batches, strict=True)
                if b.branch_group is not None
            ]
        elif cfg.linear_baseline:
            all_obs = np.concatenate([b.obs for b in batches])
            all_depth = np.concatenate([branch_depths(b.dones) for b in batches])
            baseline = linear_feature_baseline(all_obs, all_depth, all_returns)
            advantages = np.split(all_returns - baseline, splits)
        else:
            advantages = np.split(state_aware_advantages(all_returns, labels), splits)

        # Lines 22-26 and 29: group normalisation (Eq. 8) and adaptive clipping (Eq. 9).
        norm = group_normalized_advantages(advantages, groups, cfg.advantage_delta)
        metrics.global_advantage_std = norm.global_std
        epsilons = [
            adaptive_clip_epsilon(
                cfg.clip_epsilon_base, norm.group_std[g], norm.global_std, cfg.max_clip_epsilon
            )
            if cfg.adaptive_clip
            else cfg.clip_epsilon_base
            for g in groups.tolist()
        ]

        # Lines 27-31: policy updates with Eq. 12.
        started = time.perf_counter()
        stats = self._optimise(batches, norm.advantages, groups, epsilons)
        metrics.update_seconds = time.perf_counter() - started
        metrics.diversity = stats.pop("diversity")[0]

        # The observation normaliser moves only after the gradient steps, so that the old
        # log-probabilities above were computed with the statistics the workers acted with.
        for policy, batch in zip(self.policies, batches, strict=True):
            policy.normalizer.update(batch.obs)

        # Line 33: reference policy = mixture of the top-performing policies.
        scores = [f.mean_reward for f in features]
        if cfg.use_reference:
            self.reference = ReferencePolicy.from_top_policies(
                self.policies, scores, cfg.reference_top_k
            )
        metrics.reference_members = list(self.reference.source_ids)

        for i, (batch, feat) in enumerate(zip(batches, features, strict=True)):
            returns_i = batch.episode_returns
            metrics.policies.append(
                PolicyMetrics(
                    policy_id=i,
                    group=int(groups[i]),
                    mean_reward=feat.mean_reward,
                    mean_episode_return=float(returns_i.mean()) if len(returns_i) else math.nan,
                    episodes=len(returns_i),
                    entropy=feat.entropy,
                    action_variance=feat.action_variance,
                    kl_to_reference=feat.kl_to_reference,
                    clip_epsilon=epsilons[i],
                    clip_fraction=stats["clip_fraction"][i],
                    approx_kl=stats["approx_kl"][i],
                    surrogate=stats["surrogate"][i],
                    smoothness=stats["smoothness"][i],
                    reference_kl_loss=stats["reference_kl"][i],
                )
            )
        self.iteration += 1
        return metrics

    def _optimise(
        self,
        batches: Sequence[RolloutBatch],
        advantages: Sequence[npt.NDArray[np.float64]],
        groups: npt.NDArray[np.int64],
        epsilons: Sequence[float],
    ) -> dict[str, list[float]]:
        """Minimise -L^CGRPO + L_smooth + L_diversity (+ reference KL) for all policies (Eq. 12).

        All policies step together on minibatches of equal count, because Eq. 11 couples them.
        """
        cfg = self.config
        n = len(self.policies)
        data = [
            _PolicyData.build(p, b, a, self.reference)
            for p, b, a in zip(self.policies, batches, advantages, strict=True)
        ]
        steps = [b.num_steps for b in batches]
        num_minibatches = max(1, math.ceil(max(steps) / cfg.minibatch_size))
        group_ids = sorted(set(groups.tolist()))
        use_diversity = cfg.diversity_coef > 0 and len(group_ids) > 1
        sums: dict[str, list[float]] = {k: [0.0] * n for k in _LOSS_STATS}
        diversity_total, count = 0.0, 0
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + self.iteration)
        for _epoch in range(cfg.epochs):
            perms = [torch.randperm(t, generator=generator) for t in steps]
            for mb in range(num_minibatches):
                chunks = [math.ceil(t / num_minibatches) for t in steps]
                idx_all = [
                    perm[mb * c : (mb + 1) * c] for perm, c in zip(perms, chunks, strict=True)
                ]
                total = torch.zeros(())
                for i in range(n):
                    if len(idx_all[i]) == 0:
                        continue
                    loss, stats = self._policy_loss(i, data[i], idx_all[i], epsilons[i])
                    total = total + loss
                    for key, value in stats.items():
                        sums[key][i] += value
                if use_diversity:
                    # Eq. 11: mu_g = mean behaviour of group g's policies on shared probe states.
                    probe = torch.cat([d.obs[idx] for d, idx in zip(data, idx_all, strict=True)])
                    outputs = [policy(probe) for policy in self.policies]
                    behaviour = [
                        torch.stack([outputs[i] for i in range(n) if groups[i] == g]).mean(0)
                        for g in group_ids
                    ]
                    diversity = diversity_penalty(behaviour, cfg.diversity_coef, cfg.diversity_tau)
                    total = total + diversity
                    diversity_total += float(diversity.detach())
                for optimizer in self.optimizers:
                    optimizer.zero_grad(set_to_none=True)
                total.backward()  # type: ignore[no-untyped-call]
                for policy, optimizer in zip(self.policies, self.optimizers, strict=True):
                    torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
                    optimizer.step()
                count += 1
        result = {k: [v / max(count, 1) for v in vals] for k, vals in sums.items()}
        result["diversity"] = [diversity_total / max(count, 1)]
        return result

    def _policy_loss(
        self, i: int, data: _PolicyData, idx: torch.Tensor, epsilon: float
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Policy i's share of Eq. 12 on one minibatch, and its diagnostics."""
        cfg = self.config
        policy = self.policies[i]
        mean = policy(data.obs[idx])
        log_std = policy.log_std.expand_as(mean)
        log_prob = gaussian_log_prob(mean, log_std, data.actions[idx])
        surrogate = clipped_surrogate(log_prob, data.old_log_prob[idx], data.adv[idx], epsilon)
        loss = -surrogate - cfg.entropy_coef * policy.entropy()
        smooth = torch.zeros(())
        if cfg.smoothness_coef > 0:
            pairs = idx[data.has_next[idx]]
            smooth = smoothness_penalty(
                policy(data.obs[pairs]), policy(data.obs[pairs + 1]), cfg.smoothness_coef
            )
        ref_kl = torch.zeros(())
        if cfg.use_reference and cfg.reference_coef > 0:
            kl = gaussian_kl(mean, log_std, data.ref_mean[idx], data.ref_log_std[idx])
            ref_kl = cfg.reference_coef * kl.mean()
        loss = loss + smooth + ref_kl
        with torch.no_grad():
            log_ratio = log_prob - data.old_log_prob[idx]
            ratio = log_ratio.exp()
            stats = {
                "clip_fraction": float(((ratio - 1.0).abs() > epsilon).float().mean()),
                "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
                "surrogate": float(surrogate),
                "smoothness": float(smooth),
                "reference_kl": float(ref_kl),
            }
        return loss, stats


_LOSS_STATS = ("clip_fraction", "approx_kl", "surrogate", "smoothness", "reference_kl")


@dataclass
class _PolicyData:
    """One policy's batch as tensors, with what stays fixed during the update."""

    obs: torch.Tensor
    actions: torch.Tensor
    adv: torch.Tensor
    old_log_prob: torch.Tensor
    ref_mean: torch.Tensor
    ref_log_std: torch.Tensor
    has_next: torch.Tensor  # (t, t+1) lies inside one episode (Eq. 10 pairs)

    @staticmethod
    @torch.no_grad()
    def build(
        policy: GaussianPolicy,
        batch: RolloutBatch,
        advantages: npt.NDArray[np.float64],
        reference: ReferencePolicy,
    ) -> _PolicyData:
        obs = torch.as_tensor(batch.obs)
        actions = torch.as_tensor(batch.actions)
        ref_mean, ref_log_std = reference.moments(obs)
        return _PolicyData(
            obs=obs,
            actions=actions,
            adv=torch.as_tensor(advantages, dtype=torch.float32),
            old_log_prob=policy.log_prob(obs, actions),
            ref_mean=ref_mean,
            ref_log_std=ref_log_std,
            has_next=torch.as_tensor(np.append(~batch.dones[:-1], False)),
        )
