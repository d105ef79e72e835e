"""Rollout data as it travels from a rollout stream to the learner."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]


class RolloutBatch(NamedTuple):
    """T consecutive steps of one policy, possibly spanning several episodes.

    `dones[t]` is True where an episode ended after step t (terminated or truncated by a
    time limit) or, with same-state groups, where a branch ended; `terminated[t]` only where it
    ended in a terminal state. The last step of a
    batch is treated as the end of a (truncated) segment whether or not `dones` says so.
    """

    obs: FloatArray  # [T, obs_dim] raw (unnormalised) observations s_t
    actions: FloatArray  # [T, act_dim] sampled actions a_t, before clipping to the bounds
    rewards: FloatArray  # [T] r_t
    dones: BoolArray  # [T]
    terminated: BoolArray  # [T]
    episode_returns: npt.NDArray[np.float64]  # [E] undiscounted returns of finished episodes
    episode_lengths: npt.NDArray[np.int64]  # [E]
    # [T] same-state groups (GroupRolloutCollector): the branch point each step belongs to;
    # None for plain rollouts. Branch segments end where `dones` is True.
    branch_group: npt.NDArray[np.int64] | None = None

    @property
    def num_steps(self) -> int:
        return int(self.rewards.shape[0])
