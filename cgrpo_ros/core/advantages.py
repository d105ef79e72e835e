"""State-aware advantages (Eq. 6-7), group normalisation (Eq. 8) and adaptive clip (Eq. 9)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sklearn.cluster import DBSCAN
from sklearn.neighbors import NearestNeighbors

F64 = npt.NDArray[np.float64]
NOISE = -1


def return_to_go(
    rewards: npt.NDArray[np.floating], dones: npt.NDArray[np.bool_], gamma: float
) -> F64:
    """G(s_t) = sum_{k=t}^{T} gamma^(k-t) r_k, restarting after every episode end (Eq. 6).

    The last step of the batch closes a segment: no value function means no bootstrap.
    """
    returns = np.zeros(len(rewards), dtype=np.float64)
    running = 0.0
    for t in range(len(rewards) - 1, -1, -1):
        if dones[t]:
            running = 0.0
        running = float(rewards[t]) + gamma * running
        returns[t] = running
    return returns


def horizon_normalized_returns(
    returns: F64,
    dones: npt.NDArray[np.bool_],
    terminated: npt.NDArray[np.bool_],
    gamma: float,
) -> F64:
    """G_t rescaled to a common horizon where the segment was cut, not ended (our addition).

    A segment that ends by a time limit or by the end of the batch sums only h_t rewards
    (h_t = steps from t to the cut), so late steps look worse than early ones for reasons
    that have nothing to do with the action. Dividing by (1 - gamma^h_t) gives the discounted
    value of the same reward rate held forever: unbiased when the rate is steady, and equal
    for every t. Segments that end in a terminal state are left alone: there the future really
    is zero. With gamma = 1 there is no common horizon, so returns are unchanged.
    """
    if gamma >= 1.0:
        return returns.copy()
    normalized = returns.copy()
    end = len(returns)  # one past the last step of the current segment
    cut = True  # the batch end is a cut
    for t in range(len(returns) - 1, -1, -1):
        if dones[t]:
            end, cut = t + 1, not bool(terminated[t])
        if cut:
            normalized[t] = returns[t] / (1.0 - gamma ** (end - t))
    return normalized


class StateClusters(NamedTuple):
    labels: npt.NDArray[np.int64]  # cluster of every state, NOISE (-1) for DBSCAN noise
    eps: float  # the epsilon used (on standardised states)
    min_samples: int

    @property
    def num_clusters(self) -> int:
        return len(set(self.labels.tolist()) - {NOISE})

    @property
    def noise_fraction(self) -> float:
        return float(np.mean(self.labels == NOISE)) if len(self.labels) else 0.0


def default_min_samples(state_dim: int) -> int:
    """minPts = 2 * dimension, the usual DBSCAN rule of thumb (Sander et al., 1998)."""
    return max(4, 2 * state_dim)


def state_clusters(
    states: npt.NDArray[np.floating],
    *,
    eps: float | None,
    min_samples: int | None,
    eps_quantile: float,
    max_points: int,
    rng: np.random.Generator,
    project_dims: int | None = None,
) -> StateClusters:
    """Eq. 7: DBSCAN({s_t}, eps, minPts) on z-scored states.

    eps=None picks eps as the `eps_quantile` quantile of each point's distance to its
    minPts-th nearest neighbour (the k-distance rule of the DBSCAN paper), so the rule works
    across tasks whose state scales differ. Beyond `max_points` states, DBSCAN is fitted on a
    random subsample and every other state joins the cluster of its nearest core sample when
    that one is within eps, else it is noise.

    `project_dims` first projects the z-scored states on their leading principal components:
    density is not informative in many dimensions (on HalfCheetah's 17, DBSCAN finds one
    cluster whatever eps is), so the baseline would degrade to the batch mean.
    """
    x = np.asarray(states, dtype=np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0)
    z = (x - mean) / np.where(std > 1e-12, std, 1.0)
    if project_dims is not None and project_dims < z.shape[1]:
        # Principal axes from the SVD of the centred states (z is centred by construction).
        _, _, axes = np.linalg.svd(z, full_matrices=False)
        signs = np.sign(axes[:, :1]) + (axes[:, :1] == 0)  # fix the SVD's sign ambiguity
        z = z @ (axes * signs)[:project_dims].T
    n = len(z)
    k = min_samples if min_samples is not None else default_min_samples(z.shape[1])
    k = max(1, min(k, n))
    fit_index = np.arange(n)
    if n > max_points:
        fit_index = np.sort(rng.choice(n, size=max_points, replace=False))
    fit_points = z[fit_index]
    if eps is None:
        neighbours = NearestNeighbors(n_neighbors=min(k, len(fit_points))).fit(fit_points)
        distances, _ = neighbours.kneighbors(fit_points)
        eps = float(np.quantile(distances[:, -1], eps_quantile))
        eps = max(eps, 1e-6)
    model = DBSCAN(eps=eps, min_samples=k).fit(fit_points)
    labels = np.full(n, NOISE, dtype=np.int64)
    labels[fit_index] = model.labels_
    rest = np.setdiff1d(np.arange(n), fit_index)
    if len(rest) and len(model.core_sample_indices_):
        core_points = fit_points[model.core_sample_indices_]
        core_labels = model.labels_[model.core_sample_indices_]
        nearest = NearestNeighbors(n_neighbors=1).fit(core_points)
        dist, idx = nearest.kneighbors(z[rest])
        labels[rest] = np.where(dist[:, 0] <= eps, core_labels[idx[:, 0]], NOISE)
    return StateClusters(labels=labels, eps=eps, min_samples=k)


def cluster_baselines(returns: F64, labels: npt.NDArray[np.int64]) -> F64:
    """G-bar_cluster(s_t): the mean return-to-go of the states in s_t's cluster (Eq. 6).

    DBSCAN noise points have no similar states, so they get the least informative baseline,
    the mean return of the whole batch. (A singleton cluster instead would give them an
    advantage of exactly 0 and silently drop them from the gradient.)
    """
    baselines = np.full(len(returns), float(returns.mean()) if len(returns) else 0.0)
    for label in np.unique(labels):
        if label == NOISE:
            continue
        members = labels == label
        baselines[members] = returns[members].mean()
    return baselines


def state_aware_advantages(returns: F64, labels: npt.NDArray[np.int64]) -> F64:
    """Eq. 6: A_i(s_t, a_t) = G_i(s_t) - G-bar_cluster(s_t)."""
    return returns - cluster_baselines(returns, labels)


class GroupNormalization(NamedTuple):
    advantages: list[F64]  # A-hat per policy (Eq. 8)
    group_std: dict[int, float]  # sigma_g of each group's raw advantages
    group_mean: dict[int, float]  # mu_g
    global_std: float  # sigma_global over all policies' raw advantages


def group_normalized_advantages(
    advantages: Sequence[F64], groups: npt.NDArray[np.int64], delta: float
) -> GroupNormalization:
    """Eq. 8 / Algorithm 1 lines 23-26: A-hat = (A - mu_g) / (sigma_g + delta) within group g."""
    if len(advantages) != len(groups):
        raise ValueError(
            f"got advantages of {len(advantages)} policies but {len(groups)} group labels"
        )
    normalized: list[F64] = [np.zeros(0)] * len(advantages)
    group_std: dict[int, float] = {}
    group_mean: dict[int, float] = {}
    for group in sorted(set(groups.tolist())):
        members = [i for i, g in enumerate(groups.tolist()) if g == group]
        pooled = np.concatenate([advantages[i] for i in members])
        mu, sigma = float(pooled.mean()), float(pooled.std())
        group_mean[group], group_std[group] = mu, sigma
        for i in members:
            normalized[i] = (advantages[i] - mu) / (sigma + delta)
    global_std = float(np.concatenate(list(advantages)).std())
    return GroupNormalization(normalized, group_std, group_mean, global_std)


def adaptive_clip_epsilon(
    epsilon_base: float, group_std: float, global_std: float, max_epsilon: float = np.inf
) -> float:
    """Eq. 9: epsilon_g = epsilon_base * max(1, sigma_g / sigma_global), capped at max_epsilon.

    sigma_global = 0 (every advantage equal) means no group is more spread than the whole,
    so epsilon_g = epsilon_base.
    """
    ratio = group_std / global_std if global_std > 0 else 1.0
    return float(min(epsilon_base * max(1.0, ratio), max_epsilon))


def branch_depths(dones: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Steps since the start of each segment (segments end where `dones` is True)."""
    depth = np.zeros(len(dones), dtype=np.int64)
    for t in range(1, len(dones)):
        depth[t] = 0 if dones[t - 1] else depth[t - 1] + 1
    return depth


def same_state_group_advantages(
    returns: F64,
    dones: npt.NDArray[np.bool_],
    branch_group: npt.NDArray[np.int64],
    *,
    credit: str,
    scale: str,
    delta: float,
) -> F64:
    """Group-relative advantages of same-state groups (GroupRolloutCollector, our addition).

    The G branches of one branch point start in the very same simulator state. For the step
    at depth d of branch g, the group is the branches of the same point still running at
    depth d, and (GRPO's group-relative advantage)

        A = (G_g,d - mean_g' G_g',d) / (std_g' G_g',d + delta)     scale="std"
        A =  G_g,d - mean_g' G_g',d                                 scale="none"

    At d = 0 the baseline is exactly the mean return of the policy from that state. With
    credit="first_action" only d = 0 steps get an advantage (the rest are 0: they were paid
    for to measure the first action's return). A step whose group has a single running
    branch, or that belongs to no group (branch_group -1), gets 0: nothing to compare with.
    """
    if credit not in ("all_steps", "first_action"):
        raise ValueError(f"credit={credit!r} is not one of 'all_steps', 'first_action'")
    if scale not in ("std", "none"):
        raise ValueError(f"scale={scale!r} is not one of 'std', 'none'")
    advantages = np.zeros(len(returns), dtype=np.float64)
    depth = branch_depths(dones)
    grouped = branch_group >= 0
    if credit == "first_action":
        grouped &= depth == 0
    if not grouped.any():
        return advantages
    # One key per (branch point, depth): the members of a comparison.
    keys = branch_group[grouped] * (int(depth.max()) + 1) + depth[grouped]
    _, key_index = np.unique(keys, return_inverse=True)
    values = returns[grouped]
    count = np.bincount(key_index).astype(np.float64)
    mean = np.bincount(key_index, weights=values) / count
    centred = values - mean[key_index]
    result = centred
    if scale == "std":
        std = np.sqrt(np.bincount(key_index, weights=centred**2) / count)
        result = centred / (std[key_index] + delta)
    advantages[grouped] = np.where(count[key_index] >= 2, result, 0.0)
    return advantages


def linear_feature_baseline(
    states: npt.NDArray[np.floating],
    steps: npt.NDArray[np.int64],
    returns: F64,
    ridge: float = 1e-5,
) -> F64:
    """b(s_t) fitted by ridge regression of G_t on [s, s^2, t, t^2, t^3, 1] (our option).

    The linear feature baseline of Duan et al. (2016, rllab's LinearFeatureBaseline): states
    clipped to [-10, 10], t = steps since the segment began / 100. Fitted on this batch and
    used on it; with ~2 x obs_dim + 4 weights against thousands of steps the fit has little
    room to absorb the actions' effect. The ridge term grows tenfold until the system solves.
    """
    x = np.clip(np.asarray(states, dtype=np.float64), -10.0, 10.0)
    t = np.asarray(steps, dtype=np.float64)[:, None] / 100.0
    features = np.hstack([x, x**2, t, t**2, t**3, np.ones_like(t)])
    gram = features.T @ features
    target = features.T @ returns
    identity = np.eye(gram.shape[0])
    for _ in range(5):
        weights = np.linalg.lstsq(gram + ridge * identity, target, rcond=None)[0]
        if np.all(np.isfinite(weights)):
            break
        ridge *= 10.0
    return np.asarray(features @ weights, dtype=np.float64)


def generalized_advantages(
    rewards: npt.NDArray[np.floating],
    values: F64,
    dones: npt.NDArray[np.bool_],
    terminated: npt.NDArray[np.bool_],
    gamma: float,
    lam: float,
    cut_values: F64,
) -> tuple[F64, F64]:
    """GAE(gamma, lambda) (Schulman et al. 2016) of one policy's batch: (advantages, targets).

    Replaces Eq. 6's A = G - G-bar_cluster when a value baseline is on (our option):
    delta_t = r_t + gamma V(s_{t+1}) - V(s_t),  A_t = delta_t + gamma lambda A_{t+1},
    and the critic's regression target is the lambda-return A_t + V(s_t). Where step t ends an
    episode in a terminal state (`terminated`) the future is zero. Where it is a cut (a time
    limit: `dones` without `terminated`, or the last step of the batch) the episode would have
    gone on, so the tail bootstraps from `cut_values[t]`, the value of the state after s_t;
    the GAE sum does not cross into the next episode in either case.
    With lambda = 1 and V = 0 this is the return-to-go of Eq. 6 plus the bootstrap.
    """
    count = len(rewards)
    advantages = np.zeros(count, dtype=np.float64)
    carry = 0.0
    for t in range(count - 1, -1, -1):
        if terminated[t]:
            next_value, carry = 0.0, 0.0
        elif dones[t] or t == count - 1:
            next_value, carry = float(cut_values[t]), 0.0
        else:
            next_value = float(values[t + 1])
        delta = float(rewards[t]) + gamma * next_value - float(values[t])
        carry = delta + gamma * lam * carry
        advantages[t] = carry
    return advantages, advantages + values
