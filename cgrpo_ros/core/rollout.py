"""Algorithm 1 lines 4-5: collecting a policy's trajectory from a gymnasium task."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import numpy.typing as npt

from cgrpo_ros.core.buffers import RolloutBatch

ActFn = Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]


class RolloutCollector:
    """Steps one environment with a policy, T steps at a time, across episode boundaries.

    An episode that straddles two batches keeps counting its return, so reported episode
    returns are always of whole episodes.

    Success (goal-conditioned and reach tasks): `episode_successes` holds, for the episodes
    that ended in the last `collect` call and in the order of its `episode_returns`, the
    task's `info["is_success"]` on the episode's last step; it is None while the task has
    never reported `is_success`. It lives beside RolloutBatch, not in it (the update never
    reads it); the ROS path carries it in the trajectory frame's `episode_successes` section.
    """

    def __init__(self, env: gym.Env[Any, Any], seed: int) -> None:
        space = env.action_space
        if not isinstance(space, gym.spaces.Box):
            raise ValueError(f"CGRPO needs a continuous (Box) action space, got {space}")
        self.env = env
        self.action_low = np.asarray(space.low, dtype=np.float32)
        self.action_high = np.asarray(space.high, dtype=np.float32)
        obs, _ = env.reset(seed=seed)
        self._obs = np.asarray(obs, dtype=np.float32)
        self._episode_return = 0.0
        self._episode_length = 0
        self.total_steps = 0
        self.reports_success = False
        self.episode_successes: list[bool] | None = None

    def collect(self, act: ActFn, num_steps: int) -> RolloutBatch:
        obs_dim = self._obs.shape[0]
        act_dim = self.action_low.shape[0]
        obs = np.zeros((num_steps, obs_dim), dtype=np.float32)
        actions = np.zeros((num_steps, act_dim), dtype=np.float32)
        rewards = np.zeros(num_steps, dtype=np.float32)
        dones = np.zeros(num_steps, dtype=bool)
        terminated = np.zeros(num_steps, dtype=bool)
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        successes: list[bool] = []
        for t in range(num_steps):
            action = act(self._obs)
            obs[t], actions[t] = self._obs, action
            # The sampled action is stored unclipped (its log-probability is what the update
            # needs); only the environment sees it clipped to the bounds.
            next_obs, reward, term, trunc, info = self.env.step(
                np.clip(action, self.action_low, self.action_high)
            )
            rewards[t], dones[t], terminated[t] = reward, term or trunc, term
            self._episode_return += float(reward)
            self._episode_length += 1
            if term or trunc:
                episode_returns.append(self._episode_return)
                episode_lengths.append(self._episode_length)
                success = _success_flag(info)
                if success is not None:
                    self.reports_success = True
                successes.append(bool(success))
                self._episode_return, self._episode_length = 0.0, 0
                next_obs, _ = self.env.reset()
            self._obs = np.asarray(next_obs, dtype=np.float32)
        self.total_steps += num_steps
        self.episode_successes = successes if self.reports_success else None
        return RolloutBatch(
            obs=obs,
            actions=actions,
            rewards=rewards,
            dones=dones,
            terminated=terminated,
            episode_returns=np.asarray(episode_returns, dtype=np.float64),
            episode_lengths=np.asarray(episode_lengths, dtype=np.int64),
        )


def _success_flag(info: dict[str, Any]) -> bool | None:
    """The task's `is_success` (gymnasium-robotics reports 0.0/1.0 floats), or None."""
    value = info.get("is_success")
    return None if value is None else bool(value)


def evaluate_with_success(
    env: gym.Env[Any, Any], act: ActFn, episodes: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_] | None]:
    """Returns of `episodes` whole episodes and, when the task reports `is_success`, whether
    each episode ended in success (its last step's flag); None otherwise."""
    space = env.action_space
    assert isinstance(space, gym.spaces.Box)
    returns = np.zeros(episodes, dtype=np.float64)
    successes = np.zeros(episodes, dtype=np.bool_)
    reported = False
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            action = act(np.asarray(obs, dtype=np.float32))
            obs, reward, term, trunc, info = env.step(np.clip(action, space.low, space.high))
            returns[episode] += float(reward)
            done = term or trunc
        success = _success_flag(info)
        reported = reported or success is not None
        successes[episode] = bool(success)
    return returns, (successes if reported else None)


def evaluate(
    env: gym.Env[Any, Any], act: ActFn, episodes: int, seed: int
) -> npt.NDArray[np.float64]:
    """Undiscounted return of `episodes` whole episodes with a (usually deterministic) policy."""
    return evaluate_with_success(env, act, episodes, seed)[0]
