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
from threadpoolctl import threadpool_limits
from torch import nn

from cgrpo_ros.core.advantages import (
    adaptive_clip_epsilon,
    branch_depths,
    generalized_advantages,
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
from cgrpo_ros.core.eq12_gradients import Eq12Terms, eq12_gradients
from cgrpo_ros.core.features import TrajectoryFeatures, cluster_policies
from cgrpo_ros.core.losses import (
    clipped_surrogate,
    diversity_penalty,
    masked_mean,
    smoothness_penalty,
)
from cgrpo_ros.core.minibatch import Minibatch, UpdateData
from cgrpo_ros.core.policy import (
    GaussianPolicy,
    gaussian_entropy,
    gaussian_kl,
    gaussian_log_prob,
    stacked_mean_forward,
)
from cgrpo_ros.core.reference import ReferencePolicy
from cgrpo_ros.core.value import ValueFunction


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
    # Value baseline only: the critic's mean squared error (in return-scale units) on this
    # iteration's lambda-returns before and after its regression; 0 without the critic.
    value_loss_before: float = 0.0
    value_loss_after: float = 0.0


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
            torch.optim.Adam(p.parameters(), lr=config.learning_rate, eps=1e-5, fused=True)
            for p in self.policies
        ]
        # Line 1: before any data every policy is equally good, so pi_ref mixes them all.
        self.reference = ReferencePolicy(self.policies, range(config.num_policies))
        self.iteration = 0
        # How the gradient of Eq. 12 is computed: in closed form (eq12_gradients), or by
        # autograd on _total_loss when False. Same objective; the tests compare the two.
        self.analytic_gradients = True
        # OpenMP threads for Eq. 7's neighbour searches (scikit-learn). The learner and
        # `cgrpo train` own the machine while they cluster (the workers wait for the new
        # policies), so they give it every core. The labels do not depend on it: scikit-learn
        # splits the search in fixed chunks (test_core_behaviour.py).
        self.cluster_threads = 1
        # Our option (value_baseline): a critic V(s) that replaces Eq. 6's cluster-mean
        # baseline. It belongs to the learner only; workers never receive it. Built after the
        # policies, so with the option off nothing here draws from the RNG.
        self.value: ValueFunction | None = None
        self.value_optimizer: torch.optim.Adam | None = None
        if config.value_baseline:
            self.value = ValueFunction(obs_dim, config.value_hidden_sizes)
            self.value_optimizer = torch.optim.Adam(
                self.value.parameters(), lr=config.value_learning_rate, eps=1e-5
            )

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
        elif cfg.value_baseline:
            # The critic V(s) is the state-aware baseline: no DBSCAN clusters (Eq. 7).
            labels = np.zeros(len(all_returns), dtype=np.int64)
            metrics.num_state_clusters = 0
        elif cfg.use_state_clusters and not cfg.linear_baseline:
            with threadpool_limits(self.cluster_threads, user_api="openmp"):
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
        elif self.value is not None:
            # Our option: GAE on a learned V(s) replaces Eq. 6 (G - cluster mean).
            advantages = self._value_advantages(batches, metrics)
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
        metrics.diversity = stats.diversity

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
                    clip_fraction=stats.clip_fraction[i],
                    approx_kl=stats.approx_kl[i],
                    surrogate=stats.surrogate[i],
                    smoothness=stats.smoothness[i],
                    reference_kl_loss=stats.reference_kl[i],
                )
            )
        self.iteration += 1
        return metrics

    def _value_advantages(
        self, batches: Sequence[RolloutBatch], metrics: IterationMetrics
    ) -> list[npt.NDArray[np.float64]]:
        """GAE advantages of each policy's batch on the critic, then one regression of it.

        The critic is shared by all policies and fitted on all their steps, as Eq. 6 pools
        every policy's states into one baseline. Order: the critic's normalisers absorb this
        batch, V(s) is predicted, advantages and lambda-return targets are computed per policy
        (an episode never crosses a batch), and only then is the critic fitted, so the
        advantages use a critic that has not seen these returns.
        """
        cfg = self.config
        value, optimizer = self.value, self.value_optimizer
        assert value is not None and optimizer is not None
        all_obs = np.concatenate([b.obs for b in batches])
        value.normalizer.update(all_obs)
        raw = np.concatenate([return_to_go(b.rewards, b.dones, cfg.gamma) for b in batches])
        value.returns.update(raw[:, None])
        advantages, targets = [], []
        for b in batches:
            v = value.predict(b.obs)
            # The batch carries no observation after a time-limit cut or after its last step,
            # so V(s_t) of the cut step stands in for V(s_{t+1}) (one step apart).
            adv, target = generalized_advantages(
                b.rewards, v, b.dones, b.terminated, cfg.gamma, cfg.gae_lambda, cut_values=v
            )
            advantages.append(adv)
            targets.append(target)
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + self.iteration + 50_021)
        metrics.value_loss_before, metrics.value_loss_after = value.fit(
            all_obs,
            np.concatenate(targets),
            optimizer,
            epochs=cfg.value_epochs,
            minibatch_size=cfg.value_minibatch_size,
            max_grad_norm=cfg.max_grad_norm,
            generator=generator,
        )
        return advantages

    def _optimise(
        self,
        batches: Sequence[RolloutBatch],
        advantages: Sequence[npt.NDArray[np.float64]],
        groups: npt.NDArray[np.int64],
        epsilons: Sequence[float],
    ) -> _UpdateStats:
        """Minimise -L^CGRPO + L_smooth + L_diversity (+ reference KL) for all policies (Eq. 12).

        All policies step together on minibatches of equal count, because Eq. 11 couples them.
        Each gradient step runs the N policies as one batched network (`stacked_mean_forward`)
        on one input per policy holding everything the step needs: its minibatch states,
        their successors (Eq. 10) and, with Eq. 11 on, the other policies' minibatch states
        (the shared probe set). Each policy's loss reads only its own outputs, so summing the
        N losses and one backward pass gives each policy exactly its own gradient.
        """
        cfg = self.config
        n = len(self.policies)
        data = UpdateData.build(self.policies, batches, advantages, self.reference)
        steps = [b.num_steps for b in batches]
        num_minibatches = max(1, math.ceil(max(steps) / cfg.minibatch_size))
        chunks = [math.ceil(t / num_minibatches) for t in steps]
        group_ids = sorted(set(groups.tolist()))
        use_diversity = cfg.diversity_coef > 0 and len(group_ids) > 1
        members = [[i for i in range(n) if groups[i] == g] for g in group_ids]
        epsilon = torch.tensor(epsilons, dtype=torch.float32).unsqueeze(1)  # [N, 1]
        sums = torch.zeros(len(_LOSS_STATS), n)
        diversity_total, count = torch.zeros(()), 0
        generator = torch.Generator().manual_seed(cfg.seed * 100_003 + self.iteration)
        terms = Eq12Terms.from_config(cfg)
        for _epoch in range(cfg.epochs):
            perms = [torch.randperm(t, generator=generator) for t in steps]
            epoch = data.epoch(
                perms,
                chunks,
                num_minibatches,
                with_probe=use_diversity,
                with_next=cfg.smoothness_coef > 0,
            )
            for minibatch in epoch:
                stats, diversity = self._gradients(
                    minibatch, epsilon, members if use_diversity else None, terms
                )
                diversity_total += diversity.detach()
                stepping = []
                for i, policy in enumerate(self.policies):
                    if not minibatch.has_rows[i]:
                        # No steps of policy i in this minibatch: its own terms are absent, so
                        # it steps only on Eq. 11's gradient, which never reaches log_std
                        # (Adam leaves a parameter without a gradient untouched).
                        if not use_diversity:
                            continue
                        policy.log_std.grad = None
                    stepping.append(i)
                clip_grad_norms([self.policies[i] for i in stepping], cfg.max_grad_norm)
                for i in stepping:
                    self.optimizers[i].step()
                sums += stats
                count += 1
        means = (sums / max(count, 1)).tolist()
        per_policy = dict(zip(_LOSS_STATS, means, strict=True))
        return _UpdateStats(**per_policy, diversity=float(diversity_total) / max(count, 1))

    def _gradients(
        self,
        minibatch: Minibatch,
        epsilon: torch.Tensor,
        members: list[list[int]] | None,
        terms: Eq12Terms,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Every policy parameter's `.grad` = d L_total / d parameter on `minibatch` (Eq. 12);
        returns the diagnostics [5, N] and Eq. 11's penalty.

        By hand (`eq12_gradients`; an update's gradient steps ~1.5x faster at the paper's
        sizes, docs/benchmarks.md) unless `analytic_gradients` is off; then by autograd on
        `_total_loss`, the objective's readable definition, which the tests hold the
        hand-written gradient to.
        """
        if self.analytic_gradients:
            return eq12_gradients(self.policies, minibatch, epsilon, members, terms)
        total, stats, diversity = self._total_loss(minibatch, epsilon, members)
        for optimizer in self.optimizers:
            optimizer.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        return stats, diversity

    def _total_loss(
        self, minibatch: Minibatch, epsilon: torch.Tensor, members: list[list[int]] | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Eq. 12 on one minibatch, summed over the policies, and its parts.

        L_total = sum_i (-L^CGRPO_i - c_H H_i + L_smooth,i + c_ref KL(pi_i || pi_ref))
                  + L_diversity,
        with L_diversity over the groups `members` (None: Eq. 11 off). Returns (L_total,
        the per-policy diagnostics [5, N], L_diversity).
        """
        cfg = self.config
        outputs = stacked_mean_forward(self.policies, minibatch.inputs)
        loss, stats = self._policy_losses(minibatch, outputs, epsilon)
        total = loss.sum()
        diversity = torch.zeros(())
        if members is not None:
            # Eq. 11: mu_g = mean behaviour of group g's policies on shared probe states.
            probe = outputs[:, minibatch.probe_rows]
            behaviour = [probe[ids].mean(0) for ids in members]
            diversity = diversity_penalty(behaviour, cfg.diversity_coef, cfg.diversity_tau)
            total = total + diversity
        return total, stats, diversity

    def _policy_losses(
        self, minibatch: Minibatch, outputs: torch.Tensor, epsilon: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Each policy's share of Eq. 12 on one minibatch ([N]) and its diagnostics ([5, N])."""
        cfg = self.config
        mask = minibatch.real  # None when every step is real (no padding)
        if minibatch.own_rows is None:
            mean = outputs[:, : minibatch.width]
        else:  # policy i's own steps are block i of the shared probe set
            own = minibatch.own_rows.unsqueeze(-1).expand(-1, -1, outputs.shape[-1])
            mean = outputs.gather(1, own)
        log_std = torch.stack([p.log_std for p in self.policies]).unsqueeze(1).expand_as(mean)
        log_prob = gaussian_log_prob(mean, log_std, minibatch.actions)
        surrogate = clipped_surrogate(
            log_prob, minibatch.old_log_prob, minibatch.adv, epsilon, mask
        )
        entropy = gaussian_entropy(log_std[:, 0])
        if mask is not None:  # a policy without steps in this minibatch gets no entropy term
            entropy = entropy * mask.any(dim=1).to(entropy.dtype)
        loss = -surrogate - cfg.entropy_coef * entropy
        smooth = torch.zeros_like(surrogate)
        if cfg.smoothness_coef > 0:
            next_outputs = outputs[:, minibatch.next_rows]
            smooth = smoothness_penalty(mean, next_outputs, cfg.smoothness_coef, minibatch.pairs)
        ref_kl = torch.zeros_like(surrogate)
        if cfg.use_reference and cfg.reference_coef > 0:
            kl = gaussian_kl(mean, log_std, minibatch.ref_mean, minibatch.ref_log_std)
            ref_kl = cfg.reference_coef * masked_mean(kl, mask)
        loss = loss + smooth + ref_kl
        with torch.no_grad():
            log_ratio = log_prob - minibatch.old_log_prob
            ratio = log_ratio.exp()
            stats = torch.stack(
                [
                    masked_mean(((ratio - 1.0).abs() > epsilon).float(), mask),
                    masked_mean((ratio - 1.0) - log_ratio, mask),
                    surrogate,
                    smooth,
                    ref_kl,
                ]
            )
        return loss, stats


_LOSS_STATS = ("clip_fraction", "approx_kl", "surrogate", "smoothness", "reference_kl")


@dataclass(frozen=True)
class _UpdateStats:
    """What `_optimise` measured, averaged over its gradient steps: per policy (lists of N, in
    _LOSS_STATS order, the rows of `_policy_losses`' diagnostics) and Eq. 11's penalty."""

    clip_fraction: list[float]
    approx_kl: list[float]
    surrogate: list[float]
    smoothness: list[float]
    reference_kl: list[float]
    diversity: float


@torch.no_grad()
def clip_grad_norms(policies: Sequence[nn.Module], max_norm: float) -> None:
    """`torch.nn.utils.clip_grad_norm_` on each policy's own gradient, for all at once.

    Same arithmetic as calling it once per policy (each tensor's norm, their 2-norm per
    policy, coefficient min(1, max_norm / (norm + 1e-6)), one multiply), with one
    `_foreach_norm` for every tensor of every policy: the per-call bookkeeping of
    clip_grad_norm_ cost about as much as the arithmetic at these sizes (issue 14).
    """
    grads = [[p.grad for p in policy.parameters() if p.grad is not None] for policy in policies]
    norms = torch._foreach_norm([g for policy_grads in grads for g in policy_grads], 2.0)
    start = 0
    for policy_grads in grads:
        if not policy_grads:
            continue
        total = torch.linalg.vector_norm(torch.stack(norms[start : start + len(policy_grads)]))
        start += len(policy_grads)
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        torch._foreach_mul_(policy_grads, coef)
