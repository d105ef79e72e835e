"""Synthetic rollout batches for measurements that need data of a real size, not learning."""

from __future__ import annotations

import numpy as np

from cgrpo_ros.core.buffers import RolloutBatch


def synthetic_batch(
    steps: int, obs_dim: int, act_dim: int, seed: int = 0, episode_steps: int = 1000
) -> RolloutBatch:
    """Gaussian observations, actions and rewards; an episode ends every `episode_steps`."""
    rng = np.random.default_rng(seed)
    dones = np.zeros(steps, bool)
    dones[episode_steps - 1 :: episode_steps] = True
    return RolloutBatch(
        obs=rng.standard_normal((steps, obs_dim)).astype(np.float32),
        actions=rng.standard_normal((steps, act_dim)).astype(np.float32),
        rewards=rng.standard_normal(steps).astype(np.float32),
        dones=dones,
        terminated=np.zeros(steps, bool),
        episode_returns=np.ones(int(dones.sum())),
        episode_lengths=np.full(int(dones.sum()), episode_steps, np.int64),
    )
