"""Trajectory features phi_i (Eq. 4) and k-means policy clustering (Eq. 5)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning


class TrajectoryFeatures(NamedTuple):
    """phi_i of Eq. 4 for one policy."""

    mean_reward: float  # R-bar_i = (1/T) sum_t r_{i,t}
    entropy: float  # H(pi_i)
    action_variance: float  # sigma_a(pi_i) = E_s[Var(a|s)], averaged over action dims
    kl_to_reference: float  # D_KL(pi_i || pi_ref), averaged over pi_i's visited states

    def as_array(self) -> npt.NDArray[np.float64]:
        return np.array(self, dtype=np.float64)


def standardize_features(features: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """z-score each feature across policies; a constant feature becomes 0.

    The four features have unrelated units (reward vs nats), so without this k-means would
    group policies by whichever feature happens to have the largest scale.
    """
    mean = features.mean(axis=0)
    std = features.std(axis=0)
    safe_std = np.where(std > 1e-12, std, 1.0)
    result: npt.NDArray[np.float64] = (features - mean) / safe_std
    return result


def cluster_policies(
    features: Sequence[TrajectoryFeatures] | npt.NDArray[np.float64],
    num_groups: int,
    *,
    seed: int,
    n_init: int = 10,
    use_features: Sequence[int] | None = None,
) -> npt.NDArray[np.int64]:
    """Eq. 5: G_k = {i : argmin_j ||phi_i - mu_j|| = k}, with k-means on standardised phi.

    Returns the group label of every policy. Labels are renumbered 0..K'-1 in order of first
    appearance, so that equal groupings give equal labels whatever k-means' internal order.
    """
    phi = np.asarray(features, dtype=np.float64)
    if phi.ndim != 2:
        raise ValueError(f"features must be [num_policies, d_phi], got shape {phi.shape}")
    if not 1 <= num_groups <= phi.shape[0]:
        raise ValueError(f"num_groups={num_groups} must be in [1, num_policies={phi.shape[0]}]")
    if use_features is not None:
        phi = phi[:, list(use_features)]
    if num_groups == 1:
        return np.zeros(phi.shape[0], dtype=np.int64)
    z = standardize_features(phi)
    with warnings.catch_warnings():
        # Fewer distinct points than K (e.g. identical fresh policies) is expected early on.
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = KMeans(n_clusters=num_groups, n_init=n_init, random_state=seed).fit_predict(z)
    _, first_index, inverse = np.unique(labels, return_index=True, return_inverse=True)
    order = np.argsort(np.argsort(first_index))
    renumbered: npt.NDArray[np.int64] = order[inverse].astype(np.int64)
    return renumbered
