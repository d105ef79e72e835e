"""Every equation of the paper recomputed by hand on a tiny case (SB3 test_gae.py style)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cgrpo_ros.core.advantages import (
    NOISE,
    adaptive_clip_epsilon,
    cluster_baselines,
    group_normalized_advantages,
    horizon_normalized_returns,
    return_to_go,
    state_aware_advantages,
    state_clusters,
)
from cgrpo_ros.core.features import cluster_policies, standardize_features
from cgrpo_ros.core.losses import clipped_surrogate, diversity_penalty, smoothness_penalty
from cgrpo_ros.core.policy import GaussianPolicy, gaussian_kl
from cgrpo_ros.core.reference import ReferencePolicy


@pytest.mark.parametrize("gamma", [0.5, 0.9, 0.99, 1.0])
def test_return_to_go_by_hand(gamma: float) -> None:
    rewards = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    dones = np.array([False, True, False, False, False])
    got = return_to_go(rewards, dones, gamma)
    # Episode 1: steps 0-1; segment 2: steps 2-4, cut by the end of the batch.
    expected = [
        1 + gamma * 2,
        2,
        3 + gamma * 4 + gamma**2 * 5,
        4 + gamma * 5,
        5,
    ]
    assert np.allclose(got, expected)


def test_horizon_normalized_returns_by_hand() -> None:
    gamma = 0.5
    rewards = np.array([1.0, 1.0, 1.0, 1.0, 1.0])
    dones = np.array([False, True, False, False, True])
    terminated = np.array([False, True, False, False, False])
    returns = return_to_go(rewards, dones, gamma)
    got = horizon_normalized_returns(returns, dones, terminated, gamma)
    # Steps 0-1 end in a terminal state: unchanged. Steps 2-4 were cut by a time limit with
    # 3, 2 and 1 steps left: G / (1 - gamma^h), which for a steady reward of 1 is always
    # 1 / (1 - gamma) = 2, the same for every step.
    assert np.allclose(got, [1.5, 1.0, 2.0, 2.0, 2.0])
    # The batch end is a cut too; gamma = 1 leaves returns alone.
    no_end = np.zeros(3, dtype=bool)
    open_returns = return_to_go(rewards[:3], no_end, gamma)
    open_end = horizon_normalized_returns(open_returns, no_end, no_end, gamma)
    assert np.allclose(open_end, [2.0, 2.0, 2.0])
    assert np.allclose(horizon_normalized_returns(returns, dones, terminated, 1.0), returns)


def test_cluster_baselines_and_eq6_advantages() -> None:
    returns = np.array([10.0, 12.0, 1.0, 3.0, 100.0])
    labels = np.array([0, 0, 1, 1, NOISE])
    baselines = cluster_baselines(returns, labels)
    batch_mean = returns.mean()  # noise points use the batch mean (docs/algorithm.md)
    assert np.allclose(baselines, [11.0, 11.0, 2.0, 2.0, batch_mean])
    assert np.allclose(state_aware_advantages(returns, labels), returns - baselines)


def test_dbscan_finds_two_blobs_and_noise() -> None:
    rng = np.random.default_rng(0)
    blob_a = rng.normal(0.0, 0.05, size=(40, 2))
    blob_b = rng.normal(5.0, 0.05, size=(40, 2))
    outlier = np.array([[20.0, -20.0]])
    states = np.concatenate([blob_a, blob_b, outlier])
    clusters = state_clusters(
        states, eps=0.3, min_samples=4, eps_quantile=0.5, max_points=1000, rng=rng
    )
    assert clusters.num_clusters == 2
    assert clusters.labels[-1] == NOISE
    assert len(set(clusters.labels[:40])) == 1 and len(set(clusters.labels[40:80])) == 1
    assert clusters.labels[0] != clusters.labels[40]


def test_dbscan_auto_eps_and_subsampled_assignment() -> None:
    rng = np.random.default_rng(1)
    states = np.concatenate([rng.normal(0, 0.1, (300, 3)), rng.normal(10, 0.1, (300, 3))])
    clusters = state_clusters(
        states, eps=None, min_samples=None, eps_quantile=0.5, max_points=100, rng=rng
    )
    assert clusters.min_samples == 6  # 2 * state dimension
    assert clusters.eps > 0
    # Points outside the subsample join the cluster of their nearest core point, and no
    # cluster ever spans the two blobs.
    first, second = clusters.labels[:300], clusters.labels[300:]
    assert not (set(first.tolist()) & set(second.tolist())) - {NOISE}
    assert clusters.noise_fraction < 0.5


def test_dbscan_on_principal_components_separates_what_full_space_merges() -> None:
    rng = np.random.default_rng(2)
    # Two groups apart along a direction shared by 10 of 20 correlated state dimensions
    # (as a robot's joint angles are), each dimension noisy.
    states = rng.normal(size=(400, 20))
    states[:200, :10] += 2.0
    kwargs = dict(eps=None, min_samples=None, eps_quantile=0.5, max_points=1000, rng=rng)
    full_space = state_clusters(states, **kwargs)  # type: ignore[arg-type]
    assert full_space.num_clusters == 1  # density is uninformative in 20 dimensions
    projected = state_clusters(states, project_dims=2, **kwargs)  # type: ignore[arg-type]
    assert projected.num_clusters >= 2
    first, second = set(projected.labels[:200].tolist()), set(projected.labels[200:].tolist())
    assert not (first & second) - {NOISE}


def test_group_normalization_eq8_by_hand() -> None:
    a0, a1, a2 = np.array([1.0, 3.0]), np.array([5.0, 7.0]), np.array([-2.0, 2.0])
    groups = np.array([0, 0, 1])
    delta = 1e-8
    result = group_normalized_advantages([a0, a1, a2], groups, delta)
    pooled = np.array([1.0, 3.0, 5.0, 7.0])
    mu, sigma = pooled.mean(), pooled.std()
    assert result.group_mean[0] == pytest.approx(4.0)
    assert result.group_std[0] == pytest.approx(math.sqrt(5.0))
    assert np.allclose(result.advantages[0], (a0 - mu) / (sigma + delta))
    assert np.allclose(result.advantages[1], (a1 - mu) / (sigma + delta))
    assert np.allclose(result.advantages[2], [-1.0, 1.0], atol=1e-6)
    assert result.global_std == pytest.approx(np.concatenate([a0, a1, a2]).std())


@pytest.mark.parametrize(
    ("sigma_g", "sigma_global", "expected"),
    [(1.0, 2.0, 0.2), (2.0, 2.0, 0.2), (3.0, 2.0, 0.3), (10.0, 1.0, 0.5), (1.0, 0.0, 0.2)],
)
def test_adaptive_clip_eq9(sigma_g: float, sigma_global: float, expected: float) -> None:
    # epsilon_g = 0.2 * max(1, sigma_g / sigma_global), capped at 0.5.
    assert adaptive_clip_epsilon(0.2, sigma_g, sigma_global, 0.5) == pytest.approx(expected)


def test_clipped_surrogate_eq8_by_hand() -> None:
    old = torch.log(torch.tensor([1.0, 1.0, 1.0, 1.0]))
    new = torch.log(torch.tensor([1.5, 0.5, 1.1, 0.7]))
    adv = torch.tensor([1.0, -1.0, 2.0, 1.0])
    eps = 0.2
    # ratio 1.5, A>0 -> clipped 1.2; ratio 0.5, A<0 -> clip 0.8*-1=-0.8 vs -0.5 -> min -0.8;
    # ratio 1.1 -> 2.2; ratio 0.7, A>0 -> min(0.7, 0.8) = 0.7.
    expected = (1.2 + -0.8 + 2.2 + 0.7) / 4
    assert float(clipped_surrogate(new, old, adv, eps)) == pytest.approx(expected)


def test_smoothness_penalty_eq10_by_hand() -> None:
    f_t = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    f_next = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    # ||(3,4)|| = 5, ||(0,1)|| = 1 -> mean 3, times lambda_s.
    assert float(smoothness_penalty(f_t, f_next, 0.1)) == pytest.approx(0.3)
    assert float(smoothness_penalty(f_t[:0], f_next[:0], 0.1)) == 0.0


def test_diversity_penalty_eq11_by_hand() -> None:
    mu = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0])]
    tau = 0.5
    cos01 = 1 / math.sqrt(2)  # also cos12; cos02 = 0
    # Ordered pairs i != j: (0,1),(1,0),(1,2),(2,1) exceed tau; (0,2),(2,0) do not.
    expected = 0.1 * 4 * (cos01 - tau)
    assert float(diversity_penalty(mu, 0.1, tau)) == pytest.approx(expected, rel=1e-6)
    assert float(diversity_penalty(mu[:1], 0.1, tau)) == 0.0


def test_trajectory_features_eq4_and_kmeans_eq5() -> None:
    phi = np.array(
        [[10.0, 1.0, 0.5, 0.0], [11.0, 1.0, 0.5, 0.1], [-5.0, 3.0, 2.0, 1.0], [-6.0, 3.0, 2.0, 1.1]]
    )
    z = standardize_features(phi)
    assert np.allclose(z.mean(axis=0), 0.0) and np.allclose(z.std(axis=0), 1.0)
    labels = cluster_policies(phi, 2, seed=0)
    assert labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(ValueError, match="num_groups=5"):
        cluster_policies(phi, 5, seed=0)
    assert cluster_policies(phi, 1, seed=0).tolist() == [0, 0, 0, 0]


def test_gaussian_kl_and_entropy_by_hand() -> None:
    mean_p, log_std_p = torch.tensor([[0.0]]), torch.tensor([[0.0]])
    mean_q, log_std_q = torch.tensor([[1.0]]), torch.tensor([[math.log(2.0)]])
    # KL(N(0,1)||N(1,4)) = log 2 + (1 + 1)/(2*4) - 1/2
    expected = math.log(2.0) + 2.0 / 8.0 - 0.5
    assert float(gaussian_kl(mean_p, log_std_p, mean_q, log_std_q)[0]) == pytest.approx(expected)
    policy = GaussianPolicy(3, 2, (8,), init_log_std=math.log(0.5))
    expected_entropy = 2 * (0.5 + 0.5 * math.log(2 * math.pi) + math.log(0.5))
    assert float(policy.entropy().detach()) == pytest.approx(expected_entropy, rel=1e-6)


def test_reference_mixture_is_moment_matched() -> None:
    torch.manual_seed(0)
    a = GaussianPolicy(2, 1, (4,), init_log_std=0.0)
    b = GaussianPolicy(2, 1, (4,), init_log_std=math.log(2.0))
    with torch.no_grad():
        a.mean_net[-1].bias.fill_(1.0)
        b.mean_net[-1].bias.fill_(3.0)
    obs = torch.zeros(1, 2)
    ref = ReferencePolicy.from_top_policies([a, b, a], scores=[1.0, 5.0, 3.0], top_k=2)
    assert ref.source_ids == [1, 2]  # the two best by score
    mean, log_std = ref.moments(obs)
    mu_b, mu_a = float(b(obs)[0, 0]), float(a(obs)[0, 0])
    mix_mean = (mu_b + mu_a) / 2
    mix_var = ((4.0 + mu_b**2) + (1.0 + mu_a**2)) / 2 - mix_mean**2
    assert float(mean[0, 0]) == pytest.approx(mix_mean, rel=1e-5)
    assert float(log_std[0, 0]) == pytest.approx(0.5 * math.log(mix_var), rel=1e-5)
    # Snapshots are frozen: later training of `b` does not move the reference.
    with torch.no_grad():
        b.mean_net[-1].bias.fill_(-10.0)
    assert float(ref.moments(obs)[0][0, 0]) == pytest.approx(mix_mean, rel=1e-5)


def test_running_normalizer_matches_numpy() -> None:
    policy = GaussianPolicy(3, 1, (4,), 0.0)
    rng = np.random.default_rng(0)
    first, second = rng.normal(2, 3, (50, 3)), rng.normal(-1, 0.5, (70, 3))
    policy.normalizer.update(first.astype(np.float32))
    policy.normalizer.update(second.astype(np.float32))
    both = np.concatenate([first, second]).astype(np.float32).astype(np.float64)
    assert np.allclose(policy.normalizer.mean.numpy(), both.mean(0), atol=1e-6)
    assert np.allclose(policy.normalizer.var.numpy(), both.var(0), atol=1e-5)


def test_total_loss_eq12_by_hand() -> None:
    """Eq. 12 on one minibatch of two policies in two groups, every term written out in
    numpy from the networks' outputs f_theta(s): the surrogate with each policy's own clip
    (Eq. 8-9), the entropy bonus, smoothness over in-episode pairs (Eq. 10), the KL to the
    reference, and the diversity of the two groups' behaviour on the shared states (Eq. 11)."""
    from cgrpo_ros.core.buffers import RolloutBatch
    from cgrpo_ros.core.cgrpo import CGRPO
    from cgrpo_ros.core.config import CGRPOConfig
    from cgrpo_ros.core.minibatch import UpdateData

    config = CGRPOConfig.for_variant(
        "full", num_policies=2, num_groups=2, seed=0, hidden_sizes=(3,), minibatch_size=8,
        entropy_coef=0.05, smoothness_coef=0.3, reference_coef=0.2, diversity_coef=0.4,
        diversity_tau=-0.5,
    )  # fmt: skip
    algo = CGRPO(config, obs_dim=2, act_dim=1)
    rng = np.random.default_rng(3)
    dones = [np.array([False, True, False, False]), np.array([False, False, False, True])]
    batches = [
        RolloutBatch(
            obs=rng.normal(size=(4, 2)).astype(np.float32),
            actions=rng.normal(size=(4, 1)).astype(np.float32),
            rewards=np.zeros(4, dtype=np.float32),
            dones=d,
            terminated=d.copy(),
            episode_returns=np.zeros(0),
            episode_lengths=np.zeros(0, dtype=np.int64),
        )
        for d in dones
    ]
    advantages = [np.array([1.0, -2.0, 0.5, 3.0]), np.array([-1.0, 0.3, 2.0, -0.7])]
    data = UpdateData.build(algo.policies, batches, advantages, algo.reference)
    with torch.no_grad():  # the policies move after the old log-probabilities were taken
        algo.policies[0].mean_net[-1].bias.add_(0.4)
        algo.policies[1].mean_net[-1].bias.add_(0.7)
        algo.policies[1].log_std.add_(0.2)
    perms = [torch.arange(4), torch.tensor([2, 0, 3, 1])]  # one minibatch, any order
    (minibatch,) = data.epoch(perms, [4, 4], 1, with_probe=True, with_next=True)
    eps = [0.1, 0.3]
    total, _, _ = algo._total_loss(minibatch, torch.tensor(eps).unsqueeze(1), [[0], [1]])

    def f(i: int, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return algo.policies[i](torch.as_tensor(obs)).numpy().astype(np.float64)

    def log_normal(a: np.ndarray, mean: np.ndarray, log_std: float) -> np.ndarray:
        z = (a - mean) / math.exp(log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    expected = 0.0
    for i, (batch, adv) in enumerate(zip(batches, advantages, strict=True)):
        log_std = float(algo.policies[i].log_std)
        old = data.old_log_prob[i].numpy().astype(np.float64)
        ratio = np.exp(log_normal(batch.actions, f(i, batch.obs), log_std) - old)
        surrogate = np.mean(np.minimum(ratio * adv, np.clip(ratio, 1 - eps[i], 1 + eps[i]) * adv))
        entropy = 0.5 + 0.5 * math.log(2 * math.pi) + log_std
        mean = f(i, batch.obs)
        pairs = [t for t in range(3) if not batch.dones[t]]
        smooth = np.mean([abs(mean[t + 1, 0] - mean[t, 0]) for t in pairs])
        moments = algo.reference.moments(torch.as_tensor(batch.obs))
        ref_mean, ref_log_std = (x.numpy().astype(np.float64) for x in moments)
        kl = (
            ref_log_std - log_std
            + (math.exp(2 * log_std) + (mean - ref_mean) ** 2) / (2 * np.exp(2 * ref_log_std))
            - 0.5
        ).sum(-1)  # fmt: skip
        expected += -surrogate - 0.05 * entropy + 0.3 * smooth + 0.2 * np.mean(kl)
    probe = np.concatenate([batches[0].obs[perms[0]], batches[1].obs[perms[1]]])
    mu0, mu1 = f(0, probe).ravel(), f(1, probe).ravel()
    cos = mu0 @ mu1 / (np.linalg.norm(mu0) * np.linalg.norm(mu1))
    assert cos > -0.5  # the diversity term is active in this case
    expected += 0.4 * 2 * (cos + 0.5)  # ordered pairs (0, 1) and (1, 0)
    assert float(total) == pytest.approx(expected, rel=1e-5)
